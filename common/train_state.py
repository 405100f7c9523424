"""The train state every project checkpoints: a plain pytree, no methods with hidden state."""
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import optax

from common import norms


@flax.struct.dataclass
class TrainState:
  step: jax.Array
  params: Any
  opt_state: Any


def create(params, tx):
  return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params))


def apply_gradients(state, grads, tx, update_norm=True):
  """One optimiser update; returns the new state and the l2 norms of the gradients, the new
  parameters and (if update_norm) the updates."""
  updates, opt_state = tx.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  new = TrainState(step=state.step + 1, params=params, opt_state=opt_state)
  return new, norms.l2_norms(grads, params, updates if update_norm else None)


OPTIMIZERS = ('adam', 'rmsprop', 'momentum')


def make_optimizer(lr, grad_clip=0.0, weight_decay=0.0, name='adam', momentum=0.9,
                   decay=0.9, eps=1e-8):
  """Global-norm clipping applied to the gradients, then the update rule.

  'adam' (AdamW when weight_decay > 0), 'rmsprop' (decay, eps; plus momentum when > 0) or
  'momentum' (SGD with heavy-ball momentum; weight_decay adds an L2 term to the gradient).
  """
  if name not in OPTIMIZERS:
    raise ValueError(f'optimizer {name!r} is unknown; allowed values are {", ".join(OPTIMIZERS)}')
  parts = [optax.clip_by_global_norm(grad_clip)] if grad_clip > 0 else []
  if name == 'adam':
    parts.append(optax.adamw(lr, eps=eps, weight_decay=weight_decay) if weight_decay > 0
                 else optax.adam(lr, eps=eps))
    return optax.chain(*parts)
  if weight_decay > 0:
    parts.append(optax.add_decayed_weights(weight_decay))
  if name == 'rmsprop':
    parts.append(optax.rmsprop(lr, decay=decay, eps=eps, momentum=momentum or None))
  else:
    parts.append(optax.sgd(lr, momentum=momentum or None))
  return optax.chain(*parts)
