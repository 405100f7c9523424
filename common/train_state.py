"""The train state every project checkpoints: a plain pytree, no methods with hidden state."""
import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import optax

from common import norms


@jax.tree_util.register_pytree_with_keys_class
@dataclasses.dataclass(frozen=True)
class TrainState:
  """step, params, opt_state and, for a model with BatchNorm, its running statistics.

  batch_stats=None (the default) is no node of the pytree at all, not an empty one: a state
  without statistics flattens, and so checkpoints, as step, params and opt_state alone (orbax
  records even an empty node, so a flax.struct field would change every saved tree). A model
  that can have statistics passes a dict ({} when it has none), checkpointed between params and
  opt_state.
  """
  step: jax.Array
  params: Any
  opt_state: Any
  batch_stats: Any = None

  def replace(self, **changes):
    return dataclasses.replace(self, **changes)

  def tree_flatten_with_keys(self):
    names = ('step', 'params') + (() if self.batch_stats is None else ('batch_stats',)) + (
        'opt_state',)
    return ([(jax.tree_util.GetAttrKey(n), getattr(self, n)) for n in names],
            self.batch_stats is not None)

  @classmethod
  def tree_unflatten(cls, has_stats, children):
    if has_stats:
      step, params, batch_stats, opt_state = children
      return cls(step, params, opt_state, batch_stats)
    return cls(*children)


def create(params, tx, batch_stats=None):
  return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params),
                    batch_stats=batch_stats)


def apply_gradients(state, grads, tx, update_norm=True):
  """One optimiser update; returns the new state and the l2 norms of the gradients, the new
  parameters and (if update_norm) the updates."""
  updates, opt_state = tx.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  new = state.replace(step=state.step + 1, params=params, opt_state=opt_state)
  return new, norms.l2_norms(grads, params, updates if update_norm else None)


OPTIMIZERS = ('adam', 'rmsprop', 'momentum')


def make_optimizer(lr, grad_clip=0.0, weight_decay=0.0, name='adam', momentum=0.9,
                   decay=0.9, eps=1e-8, adamw=False):
  """Global-norm clipping applied to the gradients, then the update rule.

  'adam' (AdamW when weight_decay > 0 or adamw), 'rmsprop' (decay, eps; plus momentum when
  > 0) or 'momentum' (SGD with heavy-ball momentum; weight_decay adds an L2 term to the
  gradient). At weight_decay 0 AdamW updates as Adam but keeps a different opt_state, so a
  run's checkpoints restore only into the same choice of adamw.
  """
  if name not in OPTIMIZERS:
    raise ValueError(f'optimizer {name!r} is unknown; allowed values are {", ".join(OPTIMIZERS)}')
  parts = [optax.clip_by_global_norm(grad_clip)] if grad_clip > 0 else []
  if name == 'adam':
    parts.append(optax.adamw(lr, eps=eps, weight_decay=weight_decay) if weight_decay > 0 or adamw
                 else optax.adam(lr, eps=eps))
    return optax.chain(*parts)
  if weight_decay > 0:
    parts.append(optax.add_decayed_weights(weight_decay))
  if name == 'rmsprop':
    parts.append(optax.rmsprop(lr, decay=decay, eps=eps, momentum=momentum or None))
  else:
    parts.append(optax.sgd(lr, momentum=momentum or None))
  return optax.chain(*parts)
