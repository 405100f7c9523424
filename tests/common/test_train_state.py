"""TrainState's optional batch_stats: absent from the pytree unless given, kept by an update."""
import jax
import jax.numpy as jnp
import numpy as np
import optax

from common import train_state


def _keys(state):
  return [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_flatten_with_path(state)[0]]


def test_without_batch_stats_the_tree_is_step_params_opt_state():
  state = train_state.create({'w': jnp.ones(2)}, optax.adam(0.1))
  assert state.batch_stats is None
  keys = _keys(state)
  assert keys[:2] == ['.step', ".params['w']"]
  assert len(keys) > 2 and all(k.startswith('.opt_state') for k in keys[2:])
  leaves, treedef = jax.tree.flatten(state)
  assert jax.tree.unflatten(treedef, leaves).batch_stats is None


def test_batch_stats_sit_between_params_and_opt_state_and_survive_an_update():
  tx = optax.adam(0.1)
  state = train_state.create({'w': jnp.ones(2)}, tx, batch_stats={'mean': jnp.zeros(2)})
  keys = _keys(state)
  assert keys[:3] == ['.step', ".params['w']", ".batch_stats['mean']"]
  assert all(k.startswith('.opt_state') for k in keys[3:])
  new, norms = jax.jit(lambda s, g: train_state.apply_gradients(s, g, tx))(
      state, {'w': jnp.ones(2)})
  assert int(new.step) == 1 and set(norms) == {'grad_norm', 'param_norm', 'update_norm'}
  np.testing.assert_array_equal(new.batch_stats['mean'], np.zeros(2))
  assert train_state.create({}, tx, batch_stats={}).batch_stats == {}
