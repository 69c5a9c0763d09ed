"""What a JAX user meets when importing jaxnn's functions: the network as a block with
hand gradients, dC/dX from ``backward``, a jit-friendly Network, types, and checkpoints
with only the params."""

import inspect
import pathlib
import typing

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxnn
from tests.helpers import assert_trees_close, fast_jit
from tests.test_rows import NETS

M = 9


def problem(name, dtype=jnp.float64, seed=0):
    net = NETS[name]
    rng = np.random.default_rng(seed)
    params = [
        {
            "W": jnp.asarray(rng.normal(0, 1 / np.sqrt(n_in), (n_out, n_in)), dtype),
            "b": jnp.asarray(rng.normal(0, 0.5, (n_out, 1)), dtype),
        }
        for n_in, n_out in zip(net.sizes[:-1], net.sizes[1:], strict=True)
    ]
    X = jnp.asarray(rng.normal(size=(net.sizes[0], M)), dtype)
    return net, params, X


@pytest.mark.slow
@pytest.mark.parametrize(("dtype", "rtol"), [(jnp.float64, 1e-10), (jnp.float32, 1e-4)])
@pytest.mark.parametrize("name", NETS)
def test_network_block_gradients_equal_autodiff_under_any_downstream_cost(name, dtype, rtol):
    """BP1 with an arbitrary incoming cotangent (a nonlinear function of the outputs),
    through sigma' or the softmax Jacobian, then BP2-BP4 and dX, against jax.grad of
    jaxnn.predict: the same model differentiated by autodiff."""
    net, params, X = problem(name, dtype)
    block = jaxnn.network_with_hand_gradients(net)
    weights = jnp.asarray(np.random.default_rng(1).normal(size=(net.sizes[-1], M)), dtype)
    model = lambda f: lambda p, x: jnp.sum(jnp.tanh(3 * f(p, x)) * weights)
    hand = fast_jit(jax.value_and_grad(model(block), argnums=(0, 1)))(params, X)
    auto = fast_jit(jax.value_and_grad(model(lambda p, x: jaxnn.predict(p, x, net)), (0, 1)))(
        params, X
    )
    np.testing.assert_allclose(hand[0], auto[0], rtol=rtol)
    assert_trees_close(hand[1], auto[1], rtol)
    assert hand[1][1].dtype == dtype
    np.testing.assert_array_equal(block(params, X), jaxnn.predict(params, X, net))
    np.testing.assert_array_equal(block(params, X[:, 0]), jaxnn.predict(params, X[:, 0], net))


def test_network_block_runs_the_hand_backward_pass(monkeypatch):
    """jax.grad through the block calls jaxnn's backward pass (BP2-BP4), once per
    backward trace, and not in the forward pass."""
    import jaxnn.hand_gradients as hg

    calls = []
    real = hg.backward_from
    monkeypatch.setattr(hg, "backward_from", lambda *a: calls.append(1) or real(*a))
    net, params, X = problem("softmax+ce")
    block = jaxnn.network_with_hand_gradients(net)
    block(params, X)
    assert calls == []
    jax.grad(lambda p: jnp.sum(block(p, X) ** 2))(params)
    assert calls == [1]


@pytest.mark.slow
@pytest.mark.parametrize("name", NETS)
def test_backward_exposes_dC_dX(name):
    net, params, X = problem(name)
    rng = np.random.default_rng(2)
    Y = jnp.asarray(rng.uniform(0.1, 0.9, (net.sizes[-1], M)))
    back = jaxnn.backward(params, jaxnn.forward(params, X, net), Y, net)
    np.testing.assert_allclose(
        back.dX, jax.grad(jaxnn.cost, argnums=1)(params, X, Y, net), rtol=1e-10, atol=1e-15
    )
    _, deltas, dX = back  # a NamedTuple of three
    assert dX.shape == X.shape and len(deltas) == net.L


@pytest.mark.slow
def test_network_is_a_leafless_pytree_and_jits_without_static_argnames():
    net, params, X = problem("softmax+ce")
    Y = jnp.eye(net.sizes[-1])[:, np.arange(M) % net.sizes[-1]]
    assert jax.tree.leaves(net) == []
    for fn, args in [
        (jaxnn.cost, (params, X, Y, net)),
        (jaxnn.forward, (params, X, net)),
        (jaxnn.predict, (params, X, net)),
        (jaxnn.backprop, (params, X, Y, net)),
        (jaxnn.value_and_backprop, (params, X, Y, net)),
        (jaxnn.rows.cost, (params, X.T, Y.T, net)),
        (jaxnn.rows.value_and_backprop, (params, X.T, Y.T, net)),
        (jaxnn.per_example_grad_norms, (params, X, Y, net)),
    ]:
        assert_trees_close(jax.jit(fn)(*args), fn(*args), 1e-12, fn.__name__)


def test_an_equal_network_does_not_retrace():
    net, params, X = problem("softmax+ce")
    Y = jnp.eye(net.sizes[-1])[:, np.arange(M) % net.sizes[-1]]

    @jax.jit
    @chex.assert_max_traces(n=1)
    def cost(params, X, Y, net):
        return jaxnn.cost(params, X, Y, net)

    first = cost(params, X, Y, net)
    again = jaxnn.Network(list(net.sizes), list(net.activations), net.loss)  # equal, not same
    assert again == net and again is not net
    assert cost(params, X + 1, Y, again) != first  # runs, with new values: no second trace
    other = jaxnn.Network(net.sizes, ("relu", "softmax"), net.loss)
    with pytest.raises(AssertionError, match="traced > 1 times"):  # a different network does trace
        cost(params, X, Y, other)


MATH_MODULES = ("network", "backpropagation", "hand_gradients", "rows", "per_example")


def test_py_typed_and_public_math_signatures_are_annotated():
    root = pathlib.Path(jaxnn.__file__).parent
    assert (root / "py.typed").is_file()
    pyproject = (root.parent / "pyproject.toml").read_text()
    assert 'jaxnn = ["py.typed", "*.pyi"]' in pyproject  # the marker and the root's stub
    for name in MATH_MODULES:
        module = __import__(f"jaxnn.{name}", fromlist=["_"])
        for fname, fn in inspect.getmembers(module, inspect.isfunction):
            if fn.__module__ != module.__name__ or fname.startswith("_"):
                continue
            if fname not in jaxnn.__all__ and name not in ("rows",):
                continue
            hints = typing.get_type_hints(fn)
            params = inspect.signature(fn).parameters
            missing = [p for p in params if p not in hints] + (
                [] if "return" in hints else ["return"]
            )
            assert not missing, f"jaxnn.{name}.{fname}: no annotation for {missing}"
    hints = typing.get_type_hints(jaxnn.backprop)
    assert hints["net"] is jaxnn.Network and hints["params"] == jaxnn.Params
    assert typing.get_type_hints(jaxnn.cost)["return"] is jax.Array


def test_checkpoint_save_needs_only_params(tmp_path):
    ocp = pytest.importorskip("orbax.checkpoint")
    from jaxnn.checkpoint import Checkpoints

    _, params, _ = problem("softmax+ce")
    with Checkpoints(tmp_path / "run") as ckpts:
        ckpts.save(1, params)  # no optimizer state, no key
        ckpts.save(2, params, key=jax.random.key(3))
        assert ckpts.epochs() == [1, 2]
    state = ocp.StandardCheckpointer().restore(tmp_path / "run" / "1" / "state")
    assert_trees_close(list(state["params"]), params, 0.0)
    assert jax.tree.leaves(state.get("opt_state")) == [] and jax.tree.leaves(state.get("key")) == []
