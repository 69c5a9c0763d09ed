"""``jaxnn.from_flax`` / ``to_flax`` and ``jaxnn.from_equinox`` / ``to_equinox`` on real
Flax (Linen and NNX) and Equinox modules.

References: the modules' own forward passes, and ``jax.grad`` (``eqx.filter_grad``) of a
cost computed with the modules themselves, in the modules' own trees. jaxnn's hand
gradients, converted back with ``to_flax`` / ``to_equinox``, must equal them: float64
to 1e-10, float32 to 1e-4 of each leaf's scale.
"""

import equinox as eqx
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import jaxnn
from jaxnn import rows
from tests.helpers import assert_trees_close, fast_jit

M = 9
NET = jaxnn.Network((5, 7, 4), ("tanh", "softmax"), "cross_entropy")
TOLERANCES = [(jnp.float64, 1e-10), (jnp.float32, 1e-4)]


def data(dtype):
    rng = np.random.default_rng(0)
    X = jnp.asarray(rng.normal(size=(M, 5)), dtype)  # rows, as Flax and Equinox hold them
    labels = jnp.asarray(rng.integers(0, 4, M))
    return X, labels, jax.nn.one_hot(labels, 4, dtype=dtype)


def cross_entropy(A, Y):
    """(C3), mean over the rows: written here, apart from jaxnn."""
    return -jnp.mean(jnp.sum(Y * jnp.log(A), axis=1))


class LinenMLP(nn.Module):
    dtype: jnp.dtype = jnp.float64

    @nn.compact
    def __call__(self, x):
        x = jnp.tanh(nn.Dense(7, param_dtype=self.dtype, dtype=self.dtype)(x))
        return jax.nn.softmax(nn.Dense(4, param_dtype=self.dtype, dtype=self.dtype)(x))


@pytest.mark.slow
@pytest.mark.parametrize(("dtype", "rtol"), TOLERANCES)
def test_flax_linen_dense_params_and_hand_gradients(dtype, rtol):
    X, labels, Y = data(dtype)
    model = LinenMLP(dtype)
    hand_cost = rows.cost_with_hand_gradients(NET)

    def results(key, X, Y):  # one program; the labels as given
        variables = model.init(key, X)
        variables = jax.tree.map(  # non-zero biases, so that a lost bias shows
            lambda v: v + 0.3 if v.ndim == 1 else v, variables
        )
        params = jaxnn.from_flax(variables)
        return {
            "params": params,
            "model": model.apply(variables, X),
            "rows": rows.predict(params, X, NET),
            "columns": jaxnn.predict(params, X.T, NET),
            "auto": jax.grad(lambda v: cross_entropy(model.apply(v, X), Y))(variables),
            "hand": jaxnn.to_flax(rows.backprop(params, X, labels, NET), like=variables),
            "through": jax.grad(lambda v: hand_cost(jaxnn.from_flax(v), X, labels))(variables),
        }

    got = fast_jit(results)(jax.random.key(1), X, Y)
    assert [(p["W"].shape, p["b"].shape) for p in got["params"]] == [((7, 5), (7,)), ((4, 7), (4,))]
    np.testing.assert_allclose(got["rows"], got["model"], rtol=rtol)
    np.testing.assert_allclose(got["columns"], got["model"].T, rtol)
    auto = got["auto"]
    assert jax.tree.structure(got["hand"]) == jax.tree.structure(auto)
    assert_trees_close(got["hand"], auto, rtol, "to_flax(hand) vs jax.grad of the Flax model")
    assert_trees_close(got["through"], auto, rtol, "jax.grad through from_flax")


@pytest.mark.slow
def test_flax_round_trip_names_and_order():
    """Linen's numbered names are taken by number (Dense_10 after Dense_9), nn.Sequential's
    names (layers_0, layers_2) too; to_flax(like=...) gives the same tree back."""

    class Deep(nn.Module):
        @nn.compact
        def __call__(self, x):
            for width in range(2, 13):  # 11 layers, widths 2, 3, ..., 12
                x = nn.Dense(width)(x)
            return x

    variables = jax.jit(Deep().init)(jax.random.key(0), jnp.ones((1, 1)))  # one program
    shuffled = {"params": dict(sorted(variables["params"].items()))}  # Dense_10 before Dense_2
    params = jaxnn.from_flax(shuffled)
    assert [p["W"].shape for p in params] == [(w, w - 1 if w > 2 else 1) for w in range(2, 13)]
    back = jaxnn.to_flax(params, like=variables)
    assert_trees_close(back, variables, 0.0)
    default = jaxnn.to_flax(params)
    assert sorted(default["params"]) == sorted(variables["params"])  # Linen's own names

    seq = nn.Sequential([nn.Dense(7), jnp.tanh, nn.Dense(4)])
    seq_vars = jax.jit(seq.init)(jax.random.key(0), jnp.ones((1, 5)))
    assert sorted(seq_vars["params"]) == ["layers_0", "layers_2"]
    seq_params = jaxnn.from_flax(seq_vars["params"])
    x = jnp.ones((3, 5))
    net = jaxnn.Network((5, 7, 4), ("tanh", "linear"))
    np.testing.assert_allclose(rows.predict(seq_params, x, net), seq.apply(seq_vars, x), 1e-12)
    assert_trees_close(jaxnn.to_flax(seq_params, like=seq_vars["params"]), seq_vars["params"], 0.0)


def test_flax_nnx_linear_layers():
    layers = [nnx.Linear(5, 7, rngs=nnx.Rngs(0)), nnx.Linear(7, 4, rngs=nnx.Rngs(1))]
    X, _, _ = data(jnp.float32)
    params = jaxnn.from_flax(layers)
    want = jax.nn.softmax(layers[1](jnp.tanh(layers[0](X))))
    np.testing.assert_allclose(rows.predict(params, X, NET), want, rtol=1e-5)


def test_flax_errors_name_the_layer():
    variables = jax.jit(LinenMLP().init)(jax.random.key(1), jnp.ones((1, 5)))
    bad = {"params": {**variables["params"], "BatchNorm_0": {"mean": jnp.zeros(3)}}}
    with pytest.raises(ValueError, match=r"Flax params\['BatchNorm_0'\] is not a Dense layer"):
        jaxnn.from_flax(bad)
    with pytest.raises(ValueError, match="from_flax got int; it takes a Linen variables dict"):
        jaxnn.from_flax(3)
    swapped = [variables["params"]["Dense_1"], variables["params"]["Dense_0"]]
    with pytest.raises(ValueError, match="Flax layer 2 takes 5 inputs, but layer 1 gives 4"):
        jaxnn.from_flax(swapped)
    params = jaxnn.from_flax(variables)
    with pytest.raises(ValueError, match="to_flax: params has 1 layers, like has 2"):
        jaxnn.to_flax(params[:1], like=variables)


@pytest.mark.slow
@pytest.mark.parametrize(("dtype", "rtol"), TOLERANCES)
def test_equinox_mlp_params_and_hand_gradients(dtype, rtol):
    X, labels, Y = data(dtype)
    # Equinox applies final_activation unit by unit; the softmax goes after the MLP
    mlp = eqx.filter_jit(
        lambda key: eqx.nn.MLP(5, 4, 7, 2, activation=jnp.tanh, key=key, dtype=dtype)
    )(jax.random.key(2))
    model = lambda m, x: jax.nn.softmax(m(x))
    net = jaxnn.Network((5, 7, 7, 4), ("tanh", "tanh", "softmax"), "cross_entropy")

    def results(mlp, X, Y):  # one program; the labels as given
        params = jaxnn.from_equinox(mlp)
        auto = eqx.filter_grad(lambda m: cross_entropy(jax.vmap(lambda x: model(m, x))(X), Y))(mlp)
        hand = jaxnn.to_equinox(rows.backprop(params, X, labels, net), mlp)
        return {
            "params": params,
            "want": jax.vmap(lambda x: model(mlp, x))(X),
            "rows": rows.predict(params, X, net),
            # one example, as Equinox calls a model
            "one": (jaxnn.predict(params, X[0], net), model(mlp, X[0])),
            "hand": eqx.filter(hand, eqx.is_array),
            "auto": eqx.filter(auto, eqx.is_array),
            "hand_params": jaxnn.from_equinox(hand),
            # and the Equinox style: vmap of one example's gradient, a scalar label each
            "each": jax.vmap(lambda x, y: jaxnn.backprop(params, x, y, net))(X, labels),
            "round_trip": jaxnn.from_equinox(jaxnn.to_equinox(params, mlp)),
        }

    got = eqx.filter_jit(results)(mlp, X, Y)
    params = got["params"]
    assert [p["b"].shape for p in params] == [(7,), (7,), (4,)]
    np.testing.assert_allclose(got["rows"], got["want"], rtol=rtol)
    np.testing.assert_allclose(*got["one"], rtol=rtol)
    assert_trees_close(got["hand"], got["auto"], rtol, "to_equinox(hand)")
    mean = jax.tree.map(lambda g: np.mean(g, axis=0), got["each"])
    assert_trees_close(mean, got["hand_params"], rtol)
    assert_trees_close(got["round_trip"], params, 0.0)


def test_equinox_linear_without_bias_and_errors():
    linear = eqx.nn.Linear(3, 2, use_bias=False, key=jax.random.key(0))
    (layer,) = jaxnn.from_equinox(linear)
    np.testing.assert_array_equal(layer["b"], jnp.zeros(2))
    np.testing.assert_array_equal(layer["W"], linear.weight)
    back = jaxnn.to_equinox([{"W": layer["W"] * 2, "b": layer["b"]}], linear)
    np.testing.assert_array_equal(back.weight, linear.weight * 2)
    assert back.bias is None
    with pytest.raises(ValueError, match="layer 1 of the Equinox model has no bias"):
        jaxnn.to_equinox([{"W": layer["W"], "b": jnp.ones(2)}], linear)
    with pytest.raises(ValueError, match=r"layer 1: W has shape \(3, 2\), the Equinox layer's"):
        jaxnn.to_equinox([{"W": layer["W"].T, "b": layer["b"]}], linear)
    with pytest.raises(ValueError, match=r"from_equinox takes an eqx\.nn\.Linear, an eqx\.nn\.MLP"):
        jaxnn.from_equinox({"weight": 1})
