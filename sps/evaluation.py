"""SPS evaluation metrics: every seed's held-out losses and read-outs of the positions from z
(Evaluator), their summary for the log (medians, success rate) and the collapse detector."""
import jax
import numpy as np

from sps import losses
from sps import metrics as sps_metrics
from sps.models import SPS


class Evaluator:
  """Held-out metrics of every seed: losses with the prior rolling out on its own, linear
  projection, a nearest-neighbour read-out of the positions (and, for music, pitch R² per timbre
  on held-out and training timbres)."""

  def __init__(self, config, model, data, seen_timbres=None):
    """data: the eval set; seen_timbres: for music, the eval melodies in the training timbres
    (train.make_evaluator loads both)."""
    self.config, self.model = config, model
    self.data, self.seen_timbres = data, seen_timbres
    encode = lambda p, x: model.apply(p, x, method=SPS.encode)[0]
    eval_losses = lambda p, x, k: losses.loss_fn(p, model, config, x, k, 0.0, with_symmetry=False,
                                                 train=False)[1]
    self._encode = jax.jit(jax.vmap(encode, in_axes=(0, None)))
    self._losses = jax.jit(jax.vmap(eval_losses, in_axes=(0, None, None)))
    frames = self.data['frames']
    self.baseline_recon = float(losses.reconstruction(
        mean_frame_logits(frames, config.loss.kind), frames, config.loss.kind))

  def encode(self, params, data=None):
    """mu of every seed for every frame of `data` (default: the eval set): (S, N, T, d)."""
    frames = (data or self.data)['frames']
    n, t = frames.shape[:2]
    flat = frames.reshape((n * t,) + frames.shape[2:])
    bs = self.config.eval.batch_size * t
    mus = [self._encode(params, flat[i:i + bs]) for i in range(0, len(flat), bs)]
    mus = np.concatenate(jax.device_get(mus), axis=1)
    return mus.reshape((len(mus), n, t, -1))

  def seed_metrics(self, params):
    """{name: (S,) array}, one value per seed."""
    frames = self.data['frames']
    bs = self.config.eval.batch_size
    key = jax.random.PRNGKey(0)   # fixed: the same eval every time
    starts = range(0, len(frames), bs)
    chunks = [jax.device_get(self._losses(params, frames[i:i + bs], key)) for i in starts]
    sizes = [len(frames[i:i + bs]) for i in starts]
    out = {k.split('/')[0]: np.average(np.stack([c[k] for c in chunks]), axis=0, weights=sizes)
           for k in chunks[0]}
    out['self_recon_ratio'] = out['self_recon'] / self.baseline_recon
    mu = self.encode(params)
    pos = self.data['positions']
    axes = np.stack([sps_metrics.linear_projection(m.reshape(-1, m.shape[-1]),
                                                   pos.reshape(-1, pos.shape[-1]))[0]
                     for m in mu])                                     # (S, P)
    out['linear_projection_mse'] = axes.mean(1)
    for i in range(axes.shape[1]):
      out[f'r2_axis{i}'] = 1.0 - axes[:, i]
    # is the position in z at all? (low here, high above: a curved code, not disentangled)
    out['knn_projection_mse'] = np.array([sps_metrics.knn_projection(m, pos).mean() for m in mu])
    if self.seen_timbres is not None:
      out['pitch_r2_heldout'] = self.pitch_r2(mu, self.data)
      out['pitch_r2_train_timbres'] = self.pitch_r2(self.encode(params, self.seen_timbres),
                                                    self.seen_timbres)
    return out

  @staticmethod
  def pitch_r2(mu, data):
    """Per seed, the mean over timbres of R² of a linear fit of pitch from z: (S,)."""
    timbre = np.repeat(data['timbre'], data['positions'].shape[1])
    pitch = data['positions'].reshape(-1)
    return np.array([np.mean([sps_metrics.r2(m.reshape(-1, m.shape[-1])[timbre == c],
                                             pitch[timbre == c]) for c in np.unique(timbre)])
                     for m in mu])

  def summary(self, state):
    return summarize(jax.device_get(self.seed_metrics(state.params)), int(np.max(state.step)),
                     self.config)


def summarize(per_seed, step, config):
  """Scalar metrics for the log: the median over seeds of every metric, each seed's linear
  projection MSE and self-recon ratio, the success rate and the collapse detector's count."""
  out = {k: float(np.median(v)) for k, v in per_seed.items()}
  lp = per_seed['linear_projection_mse']
  out['success_rate'] = float(np.mean(lp < config.eval.success_threshold))
  collapsed = collapsed_seeds(per_seed['self_recon_ratio'], step, config.collapse)
  out['collapsed_seeds'] = len(collapsed)
  if collapsed:
    print(f'\ncollapse detector: seed(s) {collapsed} have self-recon at '
          f'{np.round(per_seed["self_recon_ratio"][collapsed], 2).tolist()} x the mean-frame '
          f'loss after {step} steps (> collapse.max_ratio={config.collapse.max_ratio}): '
          'their z has most likely collapsed')
  if len(lp) > 1:
    for i, v in enumerate(lp):
      out[f'linear_projection_mse/seed{i}'] = float(v)
      out[f'self_recon_ratio/seed{i}'] = float(per_seed['self_recon_ratio'][i])
  return out


def collapsed_seeds(ratio, step, collapse):
  """Seeds whose self-recon is still > max_ratio x the mean-frame loss at step >= check_step.

  The log found a collapsed z can be told early from self-recon alone and never recovers.
  """
  if step < collapse.check_step:
    return []
  return [int(i) for i in np.flatnonzero(np.asarray(ratio) > collapse.max_ratio)]


def mean_frame_logits(frames, kind):
  """Outputs that decode to the mean frame, shaped like frames: the loss of a model whose z
  carries nothing."""
  return np.broadcast_to(frame_logits(frames.mean((0, 1)), kind), frames.shape)


def frame_logits(frame, kind):
  """The outputs that decode to `frame` (an image in [0, 1], or a spectrum for mse_linear)."""
  frame = np.asarray(frame, np.float32)
  if kind == 'mse_linear':
    return frame
  p = np.clip(frame, 1e-4, 1 - 1e-4)
  return np.log(p) - np.log1p(-p)
