"""jaxnn.rows: the row layout, and integer class labels in both layouts.

References: ``jax.grad`` of ``jaxnn.rows.cost`` (autodiff of the row forward pass)
and jaxnn's column functions on the transposed data (a separate implementation
of the same math). float64 to 1e-10, float32 to 1e-4 of each leaf's scale.
"""

import jax
import jax.extend
import jax.numpy as jnp
import numpy as np
import pytest

import jaxnn
from jaxnn import rows
from tests.helpers import assert_trees_close, fast_jit, sample

NETS = {
    "softmax+ce": jaxnn.Network((5, 7, 4), ("tanh", "softmax"), "cross_entropy"),
    "sigmoid+bce": jaxnn.Network(
        (5, 6, 3, 2), ("relu", "softmax", "sigmoid"), "binary_cross_entropy"
    ),
    "linear+mse": jaxnn.Network((5, 6, 2), ("leaky_relu", "linear"), "mse"),
    "softmax+mse": jaxnn.Network((5, 6, 3), ("sigmoid", "softmax"), "mse"),
}
M = 9  # differs from every layer size, so a transposed (m, n) array is recognisable


def problem(name, dtype=jnp.float64, seed=0):
    """Row-layout X (m, n_x), Y (m, n_L), and params with non-zero biases."""
    net = NETS[name]
    rng = np.random.default_rng(seed)
    params = [
        {
            "W": jnp.asarray(rng.normal(0, 1 / np.sqrt(n_in), (n_out, n_in)), dtype),
            "b": jnp.asarray(rng.normal(0, 0.5, (n_out, 1)), dtype),
        }
        for n_in, n_out in zip(net.sizes[:-1], net.sizes[1:], strict=True)
    ]
    X = jnp.asarray(rng.normal(size=(M, net.sizes[0])), dtype)
    n = net.sizes[-1]
    if net.loss == "cross_entropy":
        Y = rng.dirichlet(np.ones(n), size=M)
    elif net.loss == "binary_cross_entropy":
        Y = rng.uniform(size=(M, n))
    else:
        Y = rng.normal(size=(M, n))
    return net, params, X, jnp.asarray(Y, dtype)


def _rows_and_columns(params, X, Y, net):
    """Each function in rows (fused and not) and in columns, and jax.grad of rows.cost."""
    return {
        "fused": [
            (
                rows.value_and_backprop(params, X, Y, net, fused=fused),
                jaxnn.value_and_backprop(params, X.T, Y.T, net, fused=fused),
                rows.backprop(params, X, Y, net, fused=fused),
            )
            for fused in (True, False)
        ],
        "auto": jax.grad(rows.cost)(params, X, Y, net),
        "out": (rows.predict(params, X, net), jaxnn.predict(params, X.T, net)),
        "out1": (rows.predict(params, X[0], net), jaxnn.predict(params, X[0], net)),
        "caches": (rows.forward(params, X, net), jaxnn.forward(params, X.T, net)),
    }


rows_and_columns = fast_jit(_rows_and_columns)  # the Network is a leafless pytree


@pytest.mark.slow
@pytest.mark.parametrize("name", NETS)
def test_rows_equal_columns_and_autodiff(name):
    """Fused and not: the same program."""
    net, params, X, Y = problem(name)
    got = rows_and_columns(params, X, Y, net)
    auto = got["auto"]
    for fused, ((cost, grads), (col_cost, col_grads), again) in zip(
        (True, False), got["fused"], strict=True
    ):
        np.testing.assert_allclose(cost, col_cost, rtol=1e-12, err_msg=f"fused={fused}")
        assert_trees_close(grads, col_grads, 1e-10, f"columns, fused={fused}")
        assert_trees_close(grads, auto, 1e-10, f"jax.grad, fused={fused}")
        assert_trees_close(again, auto, 1e-10, f"backprop, fused={fused}")
    out, out1 = got["out"], got["out1"]
    np.testing.assert_allclose(out[0], out[1].T, rtol=1e-12)
    np.testing.assert_allclose(out1[0], out1[1], rtol=1e-12)
    cache, col_cache = got["caches"]
    for a, b in zip(cache.Z + cache.A, col_cache.Z + col_cache.A, strict=True):
        np.testing.assert_allclose(a, b.T, rtol=1e-12)


def _deltas_and_derivatives(params, X, Y, net):
    """rows.backward's deltas and dX, and jax.grad of the cost in each Z^[l] and in X."""
    cache = rows.forward(params, X, net)
    back = rows.backward(params, cache, Y, net)

    def cost_from_Z(Z, l):  # the cost as a function of Z^[l+1], rows
        A = jaxnn.activations.apply(jaxnn.activations.get(net.activations[l]), Z, axis=1)
        for layer, act in zip(params[l + 1 :], net.activations[l + 1 :], strict=True):
            Z = A @ layer["W"].T + layer["b"].T
            A = jaxnn.activations.apply(jaxnn.activations.get(act), Z, axis=1)
        return rows.output_cost(jaxnn.Cache([Z], [A]), Y, net)

    expected = [jax.grad(cost_from_Z)(cache.Z[l], l) for l in range(net.L)]
    return back, expected, jax.grad(rows.cost, argnums=1)(params, X, Y, net)


deltas_and_derivatives = fast_jit(_deltas_and_derivatives)  # the Network is a leafless pytree


@pytest.mark.parametrize("name", sample(NETS, 3))
def test_rows_backward_deltas_and_dX_are_the_derivatives(name):
    """(BP1-R), (BP2-R): deltas[l] = dC/dZ^[l] (rows); (BP2-X-R): dX = dC/dX."""
    net, params, X, Y = problem(name)
    back, expected, dX = deltas_and_derivatives(params, X, Y, net)
    for l in range(net.L):
        np.testing.assert_allclose(back.deltas[l], expected[l], rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(back.dX, dX, rtol=1e-10, atol=1e-14)


def _float32_and_float64(params, X, Y, net):
    """rows.backprop as given (float32), and jax.grad of rows.cost in float64."""
    up = lambda tree: jax.tree.map(lambda x: x.astype(jnp.float64), tree)
    return rows.backprop(params, X, Y, net), jax.grad(rows.cost)(up(params), up(X), up(Y), net)


float32_and_float64 = fast_jit(_float32_and_float64)


@pytest.mark.slow
@pytest.mark.parametrize("name", NETS)
def test_rows_float32(name):
    net, params, X, Y = problem(name, jnp.float32)
    grads, auto = float32_and_float64(params, X, Y, net)
    assert {g.dtype for g in jax.tree.leaves(grads)} == {jnp.dtype(jnp.float32)}
    up = jax.tree.map(lambda g: np.asarray(g, np.float64), grads)
    assert_trees_close(up, auto, 1e-4)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["softmax+ce", "linear+mse"])
def test_rows_hand_gradient_functions_equal_autodiff(name):
    net, params, X, Y = problem(name)
    cost = rows.cost_with_hand_gradients(net)
    # The block, under any downstream cost: here a weighted sine of the outputs.
    block = rows.network_with_hand_gradients(net)
    weights = jnp.asarray(np.random.default_rng(1).normal(size=Y.shape))
    f = lambda p, x: jnp.sum(jnp.sin(block(p, x)) * weights)
    g = lambda p, x: jnp.sum(jnp.sin(rows.predict(p, x, net)) * weights)

    def results(params, X, Y):  # one program
        return (
            jax.value_and_grad(cost, argnums=(0, 1, 2))(params, X, Y),
            jax.value_and_grad(rows.cost, argnums=(0, 1, 2))(params, X, Y, net),
            jax.grad(f, (0, 1))(params, X),
            jax.grad(g, (0, 1))(params, X),
        )

    got, want, block_grads, predict_grads = fast_jit(results)(params, X, Y)
    np.testing.assert_allclose(got[0], want[0], rtol=1e-12)
    assert_trees_close(got[1], want[1], 1e-10)
    assert_trees_close(block_grads, predict_grads, 1e-10)


@pytest.mark.parametrize("layout", ["columns", "rows"])
def test_backprop_transposes_no_data(layout):
    """BP4's sum over examples contracts the data as it lies: the only transposes in
    the program are of parameters (W^T), never of an (n, m) or (m, n) array."""
    net, params, X, Y = problem("softmax+ce")
    fn, args = (
        (rows.value_and_backprop, (X, Y))
        if layout == "rows"
        else (jaxnn.value_and_backprop, (X.T, Y.T))
    )
    jaxpr = jax.make_jaxpr(fn, static_argnums=3)(params, *args, net)

    def transposes(jaxpr):  # every transpose, in nested programs too (platform branches)
        for eqn in jaxpr.eqns:
            if eqn.primitive.name == "transpose":
                yield eqn.invars[0].aval.shape
            for inner in jax.extend.core.jaxprs_in_params(eqn.params):
                yield from transposes(inner)

    shapes = list(transposes(jaxpr.jaxpr))
    assert shapes and all(M not in shape for shape in shapes), shapes


@pytest.mark.slow
@pytest.mark.parametrize("layout", ["columns", "rows"])
def test_integer_labels_equal_one_hot(layout):
    net, params, X, _ = problem("softmax+ce")
    labels = np.arange(M) % net.sizes[-1]
    one_hot = np.eye(net.sizes[-1])[labels]
    if layout == "columns":
        module, X, one_hot = jaxnn, X.T, one_hot.T
    else:
        module = rows
    ys = (labels, jnp.asarray(labels, jnp.int32))
    hand = jax.grad(module.cost_with_hand_gradients(net))

    def results(params, X, traced):  # one program; ys as given, and traced
        columns = X if layout == "columns" else X.T
        return {
            "labels": [(module.cost(params, X, y, net), hand(params, X, y)) for y in ys],
            "traced": [module.backprop(params, X, y, net) for y in traced],
            "one_hot": (
                module.cost(params, X, one_hot, net),
                module.backprop(params, X, one_hot, net),
                jax.grad(module.cost)(params, X, one_hot, net),
            ),
            "per_example": (
                jaxnn.per_example_grads(params, columns, labels, net),
                jaxnn.per_example_grads(params, columns, np.eye(net.sizes[-1])[labels].T, net),
            ),
        }

    got = fast_jit(results)(params, X, ys)
    cost, backprop, autodiff = got["one_hot"]
    for y, (y_cost, y_hand), y_backprop in zip(ys, got["labels"], got["traced"], strict=True):
        np.testing.assert_allclose(y_cost, cost, err_msg=str(y.dtype))
        assert_trees_close(y_backprop, backprop, 1e-12, f"backprop {y.dtype}")
        assert_trees_close(y_hand, autodiff, 1e-10, f"hand {y.dtype}")
    assert_trees_close(*got["per_example"], 1e-12, "per_example_grads")
    bad = labels.copy()
    bad[4] = net.sizes[-1]
    with pytest.raises(
        ValueError,
        match=r"Y \(class labels\) must be from 0 to 3 \(4 classes\), and 1 is not: the "
        r"first is label 4 \(example 4\)",
    ):
        module.cost(params, X, bad, net)
    bad[4] = -1
    with pytest.raises(ValueError, match=r"the first is label -1 \(example 4\)"):
        module.backprop(params, X, bad, net)
    # Under jit a label cannot be inspected: the cost and gradients come out NaN.
    assert np.isnan(jax.jit(module.cost)(params, X, bad, net))


def test_integer_labels_need_softmax_cross_entropy_and_one_per_example():
    net, params, X, _ = problem("sigmoid+bce")
    with pytest.raises(
        ValueError,
        match="class labels, which need a softmax output with "
        "cross_entropy; this network has sigmoid with "
        r"binary_cross_entropy, so give Y as \(m, n_L\)",
    ):
        rows.cost(params, X, np.zeros(M, int), net)
    net, params, X, _ = problem("softmax+ce")
    with pytest.raises(ValueError, match="give one label per example"):
        jaxnn.cost(params, X.T, np.zeros(M - 1, int), net)


def test_rows_errors_name_the_layout():
    net, params, X, Y = problem("softmax+ce")
    with pytest.raises(
        ValueError,
        match=r"X has shape \(5, 9\), the network expects \(m, 5\) "
        r"\(m x n_x, one example per row\); examples go in rows "
        r"here \(jaxnn.rows\), so transpose it",
    ):
        rows.cost(params, X.T, Y, net)
    with pytest.raises(ValueError, match=r"Y has shape \(4, 9\), the network expects \(m, 4\)"):
        rows.backprop(params, X, Y.T, net)
    with pytest.raises(
        ValueError,
        match=r"examples go in columns, so transpose it, or call "
        "jaxnn.rows.cost, which takes rows",
    ):
        jaxnn.cost(params, X, Y, net)
    with pytest.raises(ValueError, match=r"or call jaxnn.rows.clipped_mean_grads, which takes"):
        jaxnn.clipped_mean_grads(params, X, Y, net, max_norm=1.0)
    with pytest.raises(ValueError, match=r"so transpose it, or call jaxnn.cost, which takes col"):
        rows.cost(params, X.T, Y.T, net)
