"""The synthesised music data: pitch, STFT, synthesis, melodies, determinism, standardisation."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sps import music as M


def _flat_timbre(decay=0.0):
  """Equal harmonics and a fixed envelope, so spectra can be predicted by hand."""
  return {'harmonics': jnp.full((M.NUM_HARMONICS,), 1.0 / M.NUM_HARMONICS),
          'attack': jnp.float32(0.01), 'decay': jnp.float32(decay)}


def _midi(hz):
  return 69 + 12 * np.log2(hz / 440)


def _bin(hz):
  return int(round(hz * M.N_FFT / M.SAMPLE_RATE))


def test_constants():
  assert (M.SAMPLE_RATE, M.N_FFT, M.HOP, M.NUM_BINS, M.FRAMES_PER_NOTE) == (16000, 1024, 512, 513, 4)
  assert M.IONIAN == (0, 2, 4, 5, 7, 9, 11, 12, 11, 9, 7, 5, 4, 2, 0)
  assert M.ROOT_RANGE == (48, 72) and M.NUM_HARMONICS == 24 and M.NOTE_SAMPLES == 2560


def test_midi_to_hz():
  np.testing.assert_allclose([M.midi_to_hz(69), M.midi_to_hz(81), M.midi_to_hz(60), M.midi_to_hz(57)],
                             [440.0, 880.0, 261.6256, 220.0], rtol=1e-5)


def test_hann_is_periodic():
  w = np.asarray(M.hann())
  assert w.shape == (1024,) and w[0] == 0 and abs(w[512] - 1) < 1e-6
  np.testing.assert_allclose(w[1:], w[1:][::-1], atol=1e-6)      # symmetric about n/2, not (n-1)/2
  np.testing.assert_allclose(w, np.hanning(1025)[:-1], atol=1e-6)


def test_log_spectrogram_matches_numpy_and_peaks_at_the_sine_bin():
  t = np.arange(M.NOTE_SAMPLES) / M.SAMPLE_RATE
  audio = np.sin(2 * np.pi * 500.0 * t).astype(np.float32)          # 500 Hz = bin 32 exactly
  spec = np.asarray(M.log_spectrogram(jnp.asarray(audio)))
  assert spec.shape == (M.FRAMES_PER_NOTE, M.NUM_BINS)
  assert (spec.argmax(1) == 32).all()
  window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(1024) / 1024)   # periodic Hann
  ref = np.stack([np.abs(np.fft.rfft(audio[i * 512:i * 512 + 1024] * window)) for i in range(4)])
  # By hand: a bin-centred sine under a periodic Hann window has main lobe N/8, N/4, N/8 and
  # exact zeros elsewhere.
  np.testing.assert_allclose(ref[:, 31:34], np.broadcast_to([128.0, 256.0, 128.0], (4, 3)), rtol=1e-4)
  # Magnitudes agree to float32 FFT noise (~1e-5 of the 256 peak); logs agree on the main lobe
  # (the exact zeros elsewhere are float noise, which the log magnifies).
  np.testing.assert_allclose(np.exp(spec) - 1e-3, ref, atol=2e-3)
  np.testing.assert_allclose(spec[:, 31:34], np.log(ref[:, 31:34] + 1e-3), rtol=1e-4)


def test_log_spectrogram_frame_count_has_no_padding():
  assert M.log_spectrogram(jnp.zeros(M.N_FFT)).shape == (1, M.NUM_BINS)
  assert M.log_spectrogram(jnp.zeros(M.N_FFT + 3 * M.HOP)).shape == (4, M.NUM_BINS)
  np.testing.assert_allclose(M.log_spectrogram(jnp.zeros(M.N_FFT)), np.log(1e-3), rtol=1e-6)


def test_a_note_has_the_right_length_and_envelope():
  audio = np.asarray(M.synth_note(69.0, _flat_timbre(decay=4.0)))
  assert audio.shape == (M.NOTE_SAMPLES,) and np.isfinite(audio).all()
  assert audio[0] == 0 and np.abs(audio).max() <= 1.0 + 1e-6        # amplitudes sum to 1
  # Exponential decay: the second half of the note is quieter by about exp(-4 * 0.08 s).
  half = M.NOTE_SAMPLES // 2
  ratio = np.sqrt(np.mean(audio[half:] ** 2) / np.mean(audio[160:half] ** 2))
  assert 0.6 < ratio < 0.85


def test_a_note_matches_an_independent_numpy_synthesis():
  timbre = M.sample_timbre(jax.random.PRNGKey(3))
  pitch = 64.0
  t = np.arange(M.NOTE_SAMPLES) / M.SAMPLE_RATE
  f = 440 * 2 ** ((pitch - 69) / 12)
  a = np.asarray(timbre['harmonics'], np.float64)
  wave = sum(a[k - 1] * np.sin(2 * np.pi * k * f * t) for k in range(1, 25) if k * f < 8000)
  env = np.minimum(t / float(timbre['attack']), 1) * np.exp(-float(timbre['decay']) * t)
  np.testing.assert_allclose(M.synth_note(pitch, timbre), wave * env, atol=2e-4)


def test_a_sampled_timbres_strongest_harmonics_peak_at_k_times_f():
  bank = M.timbres(0, 4)
  for i in range(4):
    timbre = jax.tree.map(lambda a, i=i: a[i], bank)
    for pitch in (48, 60, 72):
      f = 440 * 2 ** ((pitch - 69) / 12)
      spec = np.asarray(M.log_spectrogram(M.synth_note(pitch, timbre)))[1]
      amps = np.asarray(timbre['harmonics'])
      audible = [k for k in range(1, 25) if k * f < 8000]
      for k in sorted(audible, key=lambda k: -amps[k - 1])[:3]:
        b = _bin(k * f)
        assert abs(int(spec[b - 3:b + 4].argmax()) - 3) <= 1, (i, pitch, k)
      b = _bin(f)                                                     # the fundamental
      assert abs(int(spec[b - 3:b + 4].argmax()) - 3) <= 1


def test_flat_harmonics_peak_at_multiples_of_the_fundamental():
  spec = np.asarray(M.log_spectrogram(M.synth_note(_midi(500.0), _flat_timbre())))[-1]
  for k in range(1, 16):                                              # 500 Hz: bins 32, 64, ..., 480
    assert abs(int(spec[32 * k - 3:32 * k + 4].argmax()) - 3) <= 1, k


def test_harmonics_above_nyquist_are_absent():
  # 3000 Hz: only 3000 and 6000 Hz lie below 8 kHz. Were the others kept, 9, 12, 15 ... kHz
  # would alias to 7, 4, 1 ... kHz and carry most of the energy of the 24 equal harmonics.
  power = np.exp(np.asarray(M.log_spectrogram(M.synth_note(_midi(3000.0), _flat_timbre()))))[-1] ** 2
  b1, b2 = _bin(3000.0), _bin(6000.0)
  assert (b1, b2) == (192, 384)
  near = power[b1 - 4:b1 + 5].sum() + power[b2 - 4:b2 + 5].sum()
  assert near / power.sum() > 0.999
  assert abs(power[b1 - 4:b1 + 5].sum() / power[b2 - 4:b2 + 5].sum() - 1) < 0.05   # equal amplitudes
  # Just below Nyquist a harmonic is kept: 2650 Hz has three (2650, 5300, 7950 Hz).
  power = np.exp(np.asarray(M.log_spectrogram(M.synth_note(_midi(2650.0), _flat_timbre()))))[-1] ** 2
  b3 = _bin(7950.0)
  assert power[b3 - 4:b3 + 5].sum() > 0.2 * power.sum()


def test_higher_notes_move_the_fundamental_up():
  timbre = {'harmonics': jnp.asarray(np.r_[1.0, np.zeros(M.NUM_HARMONICS - 1)], jnp.float32),
            'attack': jnp.float32(0.01), 'decay': jnp.float32(1.0)}
  pitches = np.asarray(M.melody_pitches(60))[:8]                      # C4 up to C5
  peaks = [int(np.asarray(M.log_spectrogram(M.synth_note(p, timbre)))[1].argmax()) for p in pitches]
  assert all(a < b for a, b in zip(peaks, peaks[1:]))
  expected = [_bin(440 * 2 ** ((p - 69) / 12)) for p in pitches]
  assert np.abs(np.array(peaks) - expected).max() <= 1
  assert expected == [17, 19, 21, 22, 25, 28, 32, 33]                 # by hand: f * 1024 / 16000


def test_melody_pitches():
  np.testing.assert_array_equal(M.melody_pitches(60),
                                [60, 62, 64, 65, 67, 69, 71, 72, 71, 69, 67, 65, 64, 62, 60])


def test_timbres_are_normalised_in_range_and_deterministic():
  bank = M.timbres(0, 32)
  assert bank['harmonics'].shape == (32, M.NUM_HARMONICS)
  assert bank['attack'].shape == bank['decay'].shape == (32,)
  np.testing.assert_allclose(bank['harmonics'].sum(1), 1.0, rtol=1e-5)
  assert (bank['harmonics'] > 0).all()
  assert (bank['attack'] >= 0.005).all() and (bank['attack'] <= 0.05).all()
  assert (bank['decay'] >= 0.5).all() and (bank['decay'] <= 6.0).all()
  jax.tree.map(np.testing.assert_array_equal, bank, M.timbres(0, 32))
  assert not np.allclose(bank['harmonics'], M.timbres(1, 32)['harmonics'])


def test_held_out_timbres_differ_from_training_timbres():
  train, held = M.timbres(0, 16), M.timbres(0, 16, heldout=True)
  d = np.abs(train['harmonics'][:, None] - held['harmonics'][None]).sum(-1)
  assert d.min() > 1e-3
  a = M.make_dataset(4, 0, num_timbres=4)
  b = M.make_dataset(4, 0, num_timbres=4, heldout_timbres=True)
  assert not np.allclose(a['frames'], b['frames'])


def test_dataset_shapes_melodies_and_determinism():
  d = M.make_dataset(8, seed=0, split='train', num_timbres=4)
  assert d['frames'].shape == (8, 15, 4, 513) and d['frames'].dtype == np.float32
  assert d['positions'].shape == (8, 15, 1) and d['positions'].dtype == np.float32
  assert d['timbre'].shape == d['root'].shape == (8,) and d['timbre'].dtype == np.int32
  assert np.isfinite(d['frames']).all()
  np.testing.assert_array_equal(d['positions'][..., 0], d['root'][:, None] + np.array(M.IONIAN))
  assert d['root'].min() >= 48 and d['root'].max() <= 72
  assert d['timbre'].min() >= 0 and d['timbre'].max() < 4
  again = M.make_dataset(8, seed=0, split='train', num_timbres=4)
  for name in d:
    np.testing.assert_array_equal(d[name], again[name])
  assert not np.allclose(d['frames'], M.make_dataset(8, 0, 'eval', num_timbres=4)['frames'])
  assert not np.allclose(d['frames'], M.make_dataset(8, 1, 'train', num_timbres=4)['frames'])
  with pytest.raises(ValueError, match='split'):
    M.make_dataset(2, 0, 'test')


def test_dataset_frames_are_the_notes_synthesised_one_by_one():
  d = M.make_dataset(3, seed=2, num_timbres=5)                       # 3: not a multiple of a chunk
  bank = M.timbres(2, 5)
  for n in range(3):
    timbre = jax.tree.map(lambda a, n=n: a[d['timbre'][n]], bank)
    for i in (0, 7, 14):
      raw = M.log_spectrogram(M.synth_note(d['positions'][n, i, 0], timbre))
      # Jitted and eager float32 differ by rounding, which the log magnifies in near-empty bins.
      np.testing.assert_allclose(d['frames'][n, i], (raw - M.LOG_MEAN) / M.LOG_STD, atol=1e-2)
  # Repeated scale degrees of one melody (up and down) are the same note, hence the same frames.
  np.testing.assert_allclose(d['frames'][:, 1], d['frames'][:, 13], atol=1e-5)


def test_roots_and_timbres_cover_their_ranges():
  d = M.make_dataset(256, seed=0, num_timbres=4)
  assert set(d['root'].tolist()) <= set(range(48, 73)) and len(set(d['root'].tolist())) >= 20
  assert {48, 72} & set(d['root'].tolist())
  assert set(d['timbre'].tolist()) == {0, 1, 2, 3}


def test_standardisation_constants_hold_on_a_reference_sample():
  # Recompute the global mean and std from 64 fresh melodies of training timbres, built directly
  # from the synthesis and the STFT rather than through make_dataset.
  rng = np.random.default_rng(0)
  bank = M.timbres(5, 64)
  roots = rng.integers(48, 73, size=64)
  which = rng.integers(0, 64, size=64)
  pitches = jnp.asarray(roots[:, None] + np.array(M.IONIAN), jnp.float32).reshape(-1)
  timbre = jax.tree.map(lambda a: jnp.repeat(a[which], 15, axis=0), bank)
  spec = np.asarray(jax.jit(jax.vmap(lambda p, t: M.log_spectrogram(M.synth_note(p, t))))(
      pitches, timbre), np.float64)
  assert abs(spec.mean() - M.LOG_MEAN) < 0.1 * abs(M.LOG_MEAN)
  assert abs(spec.std() - M.LOG_STD) < 0.1 * M.LOG_STD
  # And make_dataset's standardised frames are then close to zero mean, unit std.
  frames = M.make_dataset(64, seed=0)['frames'].astype(np.float64)
  assert abs(frames.mean()) < 0.1 and abs(frames.std() - 1) < 0.1
  held = M.make_dataset(64, seed=0, split='eval', heldout_timbres=True)['frames'].astype(np.float64)
  assert abs(held.mean()) < 0.15 and abs(held.std() - 1) < 0.1
