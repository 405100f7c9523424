"""The synthesised music data: pitch, STFT, synthesis, melodies, determinism, standardisation."""
import jax.numpy as jnp
import numpy as np
import pytest

from sps import music as M


def test_midi_to_hz():
  np.testing.assert_allclose([M.midi_to_hz(69), M.midi_to_hz(81), M.midi_to_hz(60)],
                             [440.0, 880.0, 261.6256], rtol=1e-5)


def test_log_spectrogram_matches_numpy_and_peaks_at_the_sine_bin():
  t = np.arange(M.NOTE_SAMPLES) / M.SAMPLE_RATE
  audio = np.sin(2 * np.pi * 500.0 * t).astype(np.float32)          # 500 Hz = bin 32 exactly
  spec = np.asarray(M.log_spectrogram(jnp.asarray(audio)))
  assert spec.shape == (M.FRAMES_PER_NOTE, M.NUM_BINS)
  assert (spec.argmax(1) == 32).all()
  window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(1024) / 1024)   # periodic Hann
  ref = np.stack([np.abs(np.fft.rfft(audio[i * 512:i * 512 + 1024] * window)) for i in range(4)])
  # Magnitudes agree to float32 FFT noise (~1e-5 of the 256 peak); logs agree where it matters.
  np.testing.assert_allclose(np.exp(spec) - 1e-3, ref, atol=2e-3)
  np.testing.assert_allclose(spec[:, 31:34], np.log(ref[:, 31:34] + 1e-3), rtol=1e-4)


def test_a_note_has_its_harmonics_and_none_above_nyquist():
  timbre = {'harmonics': jnp.full((M.NUM_HARMONICS,), 1.0 / M.NUM_HARMONICS),
            'attack': jnp.float32(0.01), 'decay': jnp.float32(0.0)}
  pitch = 69 + 12 * np.log2(500 / 440)                              # 500 Hz: bins 32, 64, 96
  spec = np.asarray(M.log_spectrogram(M.synth_note(pitch, timbre)))[-1]
  for k in (1, 2, 3):
    assert abs(int(spec[32 * k - 3:32 * k + 4].argmax()) - 3) <= 1
  # 3000 Hz: only 3000 and 6000 Hz lie below 8 kHz; no energy elsewhere (e.g. a 9 kHz alias at 7 kHz).
  high = 69 + 12 * np.log2(3000 / 440)
  spec = np.exp(np.asarray(M.log_spectrogram(M.synth_note(high, timbre)))[-1])
  peaks = sorted(np.argsort(spec)[-2:])
  assert [round(p * 16000 / 1024) for p in peaks] == [2984, 6000] or \
      abs(peaks[0] - 192) <= 1 and abs(peaks[1] - 384) <= 1
  assert spec[440:450].max() < 1e-2 * spec.max()                    # nothing near 7 kHz


def test_melodies_are_ionian_and_deterministic():
  d = M.make_dataset(8, seed=0, split='train', num_timbres=4)
  assert d['frames'].shape == (8, 15, 4, 513) and d['frames'].dtype == np.float32
  np.testing.assert_array_equal(d['positions'][..., 0], d['root'][:, None] + np.array(M.IONIAN))
  assert d['root'].min() >= 48 and d['root'].max() <= 72 and d['timbre'].max() < 4
  again = M.make_dataset(8, seed=0, split='train', num_timbres=4)
  np.testing.assert_array_equal(d['frames'], again['frames'])
  assert not np.allclose(d['frames'], M.make_dataset(8, 0, 'eval', num_timbres=4)['frames'])
  with pytest.raises(ValueError, match='split'):
    M.make_dataset(2, 0, 'test')


def test_held_out_timbres_differ_from_training_timbres():
  train, held = M.timbres(0, 16), M.timbres(0, 16, heldout=True)
  d = np.abs(train['harmonics'][:, None] - held['harmonics'][None]).sum(-1)
  assert d.min() > 1e-3
  np.testing.assert_allclose(train['harmonics'].sum(1), 1.0, rtol=1e-5)


def test_standardisation_constants_hold_on_a_reference_sample():
  d = M.make_dataset(64, seed=0, split='train')
  assert abs(d['frames'].mean()) < 0.1 and abs(d['frames'].std() - 1) < 0.1


def test_higher_notes_move_the_fundamental_up():
  timbre = {'harmonics': jnp.asarray(np.r_[1.0, np.zeros(M.NUM_HARMONICS - 1)], jnp.float32),
            'attack': jnp.float32(0.01), 'decay': jnp.float32(1.0)}
  peaks = [int(np.asarray(M.log_spectrogram(M.synth_note(p, timbre)))[1].argmax())
           for p in M.melody_pitches(60)[:8]]
  assert peaks == sorted(peaks) and peaks[-1] > peaks[0]
  assert abs(peaks[0] - 261.63 * 1024 / 16000) <= 1
