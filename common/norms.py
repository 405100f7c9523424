"""l2 norms logged every step (as big_vision does): they are the first thing to read when a run diverges."""
import optax


def l2_norms(grads, params, updates):
  return {
      'grad_norm': optax.tree.norm(grads),
      'param_norm': optax.tree.norm(params),
      'update_norm': optax.tree.norm(updates),
  }
