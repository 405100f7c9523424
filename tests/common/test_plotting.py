"""A panel without records says so in words instead of drawing an empty axis range."""
import ml_collections

from common import plotting


def _config(**fields):
  return ml_collections.ConfigDict(
      {**dict(num_steps=30, log_every=10, eval_every=15, eval_at_end=True), **fields})


def test_first_record_step_follows_the_loop_schedule():
  assert plotting.first_record_step(_config(), 'train') == 10
  assert plotting.first_record_step(_config(), 'eval') == 15
  late = _config(log_every=50, eval_every=100)
  assert plotting.first_record_step(late, 'train') == 30   # the last step always logs
  assert plotting.first_record_step(late, 'eval') == 30
  late.eval_at_end = False
  assert plotting.first_record_step(late, 'eval') is None


def test_not_yet_names_the_first_step():
  assert plotting.not_yet(_config(), 'eval') == 'no evaluation yet (the first at step 15)'
  assert plotting.not_yet(_config(), 'train') == 'no training records yet (the first at step 10)'
  assert plotting.not_yet(_config(eval_every=100, eval_at_end=False), 'eval') == 'no evaluation in this run'


def test_note_on_an_empty_panel_has_no_axis_range_and_on_a_full_one_joins_the_title():
  fig, (empty, full) = plotting.plt.subplots(1, 2)
  plotting.note(empty, 'no evaluation yet')
  full.plot([0, 1], [1, 2])
  full.set_title('losses')
  plotting.note(full, 'no evaluation yet')
  assert [t.get_text() for t in empty.texts] == ['no evaluation yet'] and not empty.lines
  assert len(empty.get_xticks()) == len(empty.get_yticks()) == 0
  assert full.get_title() == 'losses\nno evaluation yet' and not full.texts
  assert len(full.get_xticks()) > 0
  plotting.plt.close(fig)
