"""Synthesised monophonic melodies for SPS, in JAX: additive synthesis and a log-magnitude STFT.

Each note is synthesised and analysed on its own: in the released recipe a silent gap frame
separates the notes, so a note's frames do not overlap its neighbours' and this is equivalent.
Datasets are deterministic functions of (seed, split, timbre set).
"""
import functools

import jax
import jax.numpy as jnp
import numpy as np

SAMPLE_RATE = 16000
N_FFT = 1024
HOP = 512
NUM_BINS = N_FFT // 2 + 1
FRAMES_PER_NOTE = 4
NOTE_SAMPLES = (FRAMES_PER_NOTE - 1) * HOP + N_FFT
IONIAN = (0, 2, 4, 5, 7, 9, 11, 12, 11, 9, 7, 5, 4, 2, 0)
ROOT_RANGE = (48, 72)
NUM_HARMONICS = 24
# Global scalar standardisation of log(|STFT| + 1e-3), the same for every split and timbre set so
# that no split leaks its own statistics: mean and std over every bin of 4096 training melodies
# (make_dataset(512, seed) for seeds 0..7, 64 training timbres each), rounded to 2 decimals.
LOG_MEAN = -4.42
LOG_STD = 2.52


def midi_to_hz(m):
  """Equal temperament, A4 = MIDI 69 = 440 Hz."""
  return 440.0 * 2.0 ** ((jnp.asarray(m, jnp.float32) - 69.0) / 12.0)


def sample_timbre(key):
  """A random harmonic profile k^-alpha with an odd/even balance and jitter, and an envelope."""
  k_a, k_odd, k_jit, k_att, k_dec = jax.random.split(key, 5)
  k = jnp.arange(1, NUM_HARMONICS + 1, dtype=jnp.float32)
  alpha = jax.random.uniform(k_a, (), minval=0.5, maxval=2.0)
  even = jax.random.uniform(k_odd, (), minval=0.1, maxval=1.0)
  amp = k ** -alpha * jnp.where(k % 2 == 0, even, 1.0)
  amp = amp * jnp.exp(0.3 * jax.random.normal(k_jit, (NUM_HARMONICS,)))
  return {'harmonics': amp / amp.sum(),
          'attack': jax.random.uniform(k_att, (), minval=0.005, maxval=0.05),
          'decay': jax.random.uniform(k_dec, (), minval=0.5, maxval=6.0)}


def timbres(seed, n, heldout=False):
  """n timbres stacked; held-out timbres come from a separate key stream."""
  key = jax.random.fold_in(jax.random.PRNGKey(seed), 1 if heldout else 0)
  return jax.vmap(sample_timbre)(jax.random.split(key, n))


def synth_note(pitch_midi, timbre):
  """One note of NOTE_SAMPLES samples; harmonics at or above Nyquist are left out."""
  t = jnp.arange(NOTE_SAMPLES, dtype=jnp.float32) / SAMPLE_RATE
  f = midi_to_hz(pitch_midi)
  k = jnp.arange(1, NUM_HARMONICS + 1, dtype=jnp.float32)
  amp = jnp.where(k * f < SAMPLE_RATE / 2, timbre['harmonics'], 0.0)
  # Wrap the fundamental's phase to [0, 1) cycles first so float32 keeps the high harmonics in tune.
  cycles = jnp.mod(f * t, 1.0)
  wave = jnp.sum(amp[:, None] * jnp.sin(2 * jnp.pi * k[:, None] * cycles[None]), axis=0)
  env = jnp.minimum(t / timbre['attack'], 1.0) * jnp.exp(-timbre['decay'] * t)
  return wave * env


def hann(n=N_FFT):
  """The periodic Hann window."""
  return 0.5 - 0.5 * jnp.cos(2 * jnp.pi * jnp.arange(n) / n)


def log_spectrogram(audio):
  """log(|STFT| + 1e-3), window N_FFT, hop HOP, no padding: (frames, NUM_BINS)."""
  n = (audio.shape[-1] - N_FFT) // HOP + 1
  idx = jnp.arange(n)[:, None] * HOP + jnp.arange(N_FFT)[None]
  return jnp.log(jnp.abs(jnp.fft.rfft(audio[idx] * hann(), axis=-1)) + 1e-3)


def melody_pitches(root):
  """The 15 MIDI pitches of the Ionian scale up and down from root."""
  return jnp.asarray(root) + jnp.asarray(IONIAN)


@functools.partial(jax.jit, static_argnums=(0,))
def _melodies(n, key, bank):
  k_root, k_timbre = jax.random.split(key)
  roots = jax.random.randint(k_root, (n,), ROOT_RANGE[0], ROOT_RANGE[1] + 1)
  which = jax.random.randint(k_timbre, (n,), 0, bank['harmonics'].shape[0])
  pitches = jax.vmap(melody_pitches)(roots).astype(jnp.float32)          # (n, 15)

  def one(pitch, timbre_idx):
    timbre = jax.tree.map(lambda a: a[timbre_idx], bank)
    return log_spectrogram(synth_note(pitch, timbre))

  # Chunked over sequences so the (notes, harmonics, samples) sines never all sit in memory at once.
  spec = jax.lax.map(lambda a: jax.vmap(one, in_axes=(0, None))(*a), (pitches, which),
                     batch_size=32)
  return (spec - LOG_MEAN) / LOG_STD, pitches, which, roots


def make_dataset(num_sequences, seed, split='train', num_timbres=64, heldout_timbres=False):
  """N melodies, each one root's Ionian scale played by one timbre of the chosen set.

  Returns numpy arrays {'frames': (N, 15, FRAMES_PER_NOTE, NUM_BINS) float32 log-magnitude
  standardised by LOG_MEAN and LOG_STD, 'positions': (N, 15, 1) float32 MIDI pitch,
  'timbre': (N,) int32 index into timbres(seed, num_timbres, heldout_timbres), 'root': (N,) int32}.
  """
  if split not in ('train', 'eval'):
    raise ValueError(f'split {split!r}: use "train" or "eval"')
  key = jax.random.fold_in(jax.random.fold_in(jax.random.PRNGKey(seed), 7),
                           0 if split == 'train' else 1)
  key = jax.random.fold_in(key, int(heldout_timbres))
  bank = timbres(seed, num_timbres, heldout_timbres)
  frames, pitches, which, roots = _melodies(num_sequences, key, bank)
  return {'frames': np.asarray(frames, np.float32),
          'positions': np.asarray(pitches, np.float32)[..., None],
          'timbre': np.asarray(which, np.int32), 'root': np.asarray(roots, np.int32)}
