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


def apply_gradients(state, grads, tx):
  """One optimiser update; returns the new state and the l2 norms of grads/params/updates."""
  updates, opt_state = tx.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  new = TrainState(step=state.step + 1, params=params, opt_state=opt_state)
  return new, norms.l2_norms(grads, state.params, updates)


def make_optimizer(lr, grad_clip=0.0, weight_decay=0.0):
  """Adam(W) with global-norm clipping applied to the gradients before the update."""
  parts = [optax.clip_by_global_norm(grad_clip)] if grad_clip > 0 else []
  parts.append(optax.adamw(lr, weight_decay=weight_decay) if weight_decay > 0 else optax.adam(lr))
  return optax.chain(*parts)
