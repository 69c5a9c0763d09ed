"""Mixed precision: bfloat16 and float16 params and data with every product and sum in
float32 (``jaxnn.Network(..., preferred_element_type="float32")``, (MP)).

References: ``jax.grad`` of the same mixed-precision cost; a float64 computation on the
same (rounded) params and data. Hand and autodiff both compute in float32 and round
each gradient once, to the params' dtype, so they differ only where the two float32
values (summed in different orders) lie on either side of a rounding boundary: one unit
in the last place of that dtype, ``ULP``, relative to each leaf's largest entry.
"""

import jax
import jax.extend
import jax.numpy as jnp
import numpy as np
import pytest

import jaxnn
from jaxnn import rows
from tests.helpers import assert_trees_close, fast_jit, leaf_relative_error, sample
from tests.test_rows import NETS, M, problem

# One unit in the last place of the params' dtype at most, relative to the entry: bfloat16
# keeps 8 significant bits (a spacing of 2^-8 to 2^-7 of the number), float16 11.
ULP = {jnp.bfloat16: 2.0**-7, jnp.float16: 2.0**-10}


def mixed(net: jaxnn.Network) -> jaxnn.Network:
    """``net`` with its products and sums in float32."""
    return jaxnn.Network(net.sizes, net.activations, net.loss, preferred_element_type="float32")


# Every network with both dtypes; the inner loop keeps every third (both dtypes, three
# networks of four).
@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "dtype"),
    sample([(name, dtype) for name in NETS for dtype in ("bfloat16", "float16")], 3, True),
)
def test_hand_gradients_equal_autodiff_of_the_mixed_precision_cost(name, dtype):
    """Every output head (and a hidden softmax), both layouts, the plain functions, the
    ``custom_vjp`` cost (with dC/dX and dC/dY) and block, and per-example gradients:
    the hand pass against jax.grad of the same mixed-precision function."""
    dtype = jnp.dtype(dtype).type
    base, params, X, Y = problem(name, dtype)  # rows: X (m, n_x), Y (m, n_L)
    net = mixed(base)
    weights = jnp.asarray(np.random.default_rng(1).normal(size=(M, net.sizes[-1])), jnp.float32)
    downstream = lambda A: jnp.sum(jnp.tanh(3 * A) * weights)  # any cost after the block
    col_block, row_block = (
        jaxnn.network_with_hand_gradients(net),
        rows.network_with_hand_gradients(net),
    )
    col_cost, row_cost = jaxnn.cost_with_hand_gradients(net), rows.cost_with_hand_gradients(net)
    one = lambda p, x, y: jaxnn.cost(p, x, y, net)  # one example: vectors

    def pairs(params, X, Y):  # (hand, autodiff) of each; one compiled program
        Xc, Yc = X.T, Y.T
        every = (0, 1, 2)
        return {
            "columns": (
                jaxnn.value_and_backprop(params, Xc, Yc, net),
                jax.value_and_grad(jaxnn.cost)(params, Xc, Yc, net),
            ),
            "rows": (
                rows.value_and_backprop(params, X, Y, net),
                jax.value_and_grad(rows.cost)(params, X, Y, net),
            ),
            "custom_vjp cost": (
                jax.grad(col_cost, every)(params, Xc, Yc),
                jax.grad(jaxnn.cost, every)(params, Xc, Yc, net),
            ),
            "custom_vjp cost, rows": (
                jax.grad(row_cost, every)(params, X, Y),
                jax.grad(rows.cost, every)(params, X, Y, net),
            ),
            "block": (
                jax.grad(lambda p, x: downstream(col_block(p, x).T), (0, 1))(params, Xc),
                jax.grad(lambda p, x: downstream(jaxnn.predict(p, x, net).T), (0, 1))(params, Xc),
            ),
            "block, rows": (
                jax.grad(lambda p, x: downstream(row_block(p, x)), (0, 1))(params, X),
                jax.grad(lambda p, x: downstream(rows.predict(p, x, net)), (0, 1))(params, X),
            ),
            "per example": (
                jaxnn.per_example_grads(params, Xc, Yc, net),
                jax.vmap(jax.grad(one), in_axes=(None, 1, 1))(params, Xc, Yc),
            ),
            "per example, rows": (
                rows.per_example_grads(params, X, Y, net),
                jax.vmap(jax.grad(one), in_axes=(None, 0, 0))(params, X, Y),
            ),
            "norms": (
                jaxnn.per_example_grad_norms(params, Xc, Yc, net),
                rows.per_example_grad_norms(params, X, Y, net),
            ),
        }

    results = fast_jit(pairs)(params, X, Y)
    for what, (hand, auto) in results.items():
        if what != "norms":
            assert_trees_close(hand, auto, ULP[dtype], what)  # shapes and dtypes too
    cost, grads = results["columns"][0]
    assert cost.dtype == jnp.float32 and {g.dtype for g in jax.tree.leaves(grads)} == {
        jnp.dtype(dtype)
    }
    hand_norms, row_norms = results["norms"]
    per_example = results["per example"][1]  # autodiff's, in the params' dtype
    flat = jnp.concatenate(
        [g.reshape(M, -1).astype(jnp.float32) for g in jax.tree.leaves(per_example)], axis=1
    )
    np.testing.assert_allclose(hand_norms, jnp.linalg.norm(flat, axis=1), rtol=ULP[dtype])
    np.testing.assert_allclose(row_norms, hand_norms, rtol=1e-6)


def _dots_and_sums(jaxpr):
    """The output dtype of every dot_general and reduce_sum, nested programs included."""
    for eqn in jaxpr.eqns:
        if eqn.primitive.name in ("dot_general", "reduce_sum"):
            yield eqn.primitive.name, eqn.outvars[0].aval.dtype
        for inner in jax.extend.core.jaxprs_in_params(eqn.params):
            yield from _dots_and_sums(inner)


@pytest.mark.parametrize("layout", ["columns", "rows"])
def test_every_product_and_sum_accumulates_in_float32(layout):
    """With the option, no product or sum of the cost and its gradients returns (so
    accumulates in) a 16-bit type; without it, the bfloat16 network's products do."""
    base, params, X, Y = problem("softmax+ce", jnp.bfloat16)
    module, X, Y = (rows, X, Y) if layout == "rows" else (jaxnn, X.T, Y.T)
    for net, narrow in ((mixed(base), False), (base, True)):
        jaxpr = jax.make_jaxpr(module.value_and_backprop, static_argnums=3)(params, X, Y, net)
        found = list(_dots_and_sums(jaxpr.jaxpr))
        assert {name for name, _ in found} == {"dot_general", "reduce_sum"}, found
        sixteen = [(name, dt) for name, dt in found if jnp.dtype(dt).itemsize < 4]
        if narrow:
            assert ("dot_general", jnp.dtype(jnp.bfloat16)) in sixteen, found
        else:
            assert not sixteen, sixteen


@pytest.mark.slow
def test_float32_accumulation_brings_the_gradients_near_float32s():
    """The gap between bfloat16 gradients and float64 gradients of the same (rounded)
    params and data, the largest over the leaves relative to each leaf's largest entry:
    with float32 products and sums, the final rounding of each gradient (one unit in its
    last place); computing in bfloat16 throughout, over ten times more (relu's kinks
    and the cancellations of BP4's sums amplify the roundings of Z, A and delta)."""
    net = jaxnn.Network((64, 256, 128, 10), ("relu", "relu", "softmax"), "cross_entropy")
    rng = np.random.default_rng(0)
    params = jaxnn.init_params(jax.random.key(0), net, dtype=jnp.bfloat16)
    X = jnp.asarray(rng.normal(size=(64, 128)), jnp.bfloat16)
    labels = jnp.asarray(rng.integers(0, 10, 128))

    def grads(params, X, labels):  # one program, from the rounded params and data
        wide = jax.tree.map(lambda a: a.astype(jnp.float64), (params, X))
        return (
            jaxnn.backprop(*wide, labels, net),  # float64, the same rounded values
            jaxnn.backprop(params, X, labels, net),
            jaxnn.backprop(params, X, labels, mixed(net)),
            jax.grad(jaxnn.cost)(params, X, labels, mixed(net)),
        )

    exact, *rounded = fast_jit(grads)(params, X, labels)

    def gap(grads):
        return max(map(leaf_relative_error, jax.tree.leaves(grads), jax.tree.leaves(exact)))

    bfloat16, float32, autodiff = map(gap, rounded)
    assert max(float32, autodiff) <= ULP[jnp.bfloat16], (float32, autodiff, bfloat16)
    assert bfloat16 >= 10 * float32, (float32, bfloat16)


def test_float32_params_with_float32_accumulation_compute_as_before():
    """With float32 params (and data) the option rounds nothing and changes no type:
    the same bits as the network without it."""
    base, params, X, Y = problem("sigmoid+bce", jnp.float32)
    plain = jax.jit(rows.value_and_backprop, static_argnums=3)(params, X, Y, base)
    again = jax.jit(rows.value_and_backprop, static_argnums=3)(params, X, Y, mixed(base))
    for a, b in zip(jax.tree.leaves(plain), jax.tree.leaves(again), strict=True):
        np.testing.assert_array_equal(a, b)


def test_the_option_is_a_dtype_name_and_params_may_not_be_wider():
    sizes, acts = (3, 2), ("linear",)
    net = jaxnn.Network(sizes, acts, "mse", preferred_element_type=jnp.float32)
    assert net.preferred_element_type == "float32"
    assert net == jaxnn.Network(sizes, acts, "mse", preferred_element_type="float32")
    assert jaxnn.Network(sizes, acts, "mse").preferred_element_type is None
    for bad in ("int32", "nope", 3):
        with pytest.raises(ValueError, match="preferred_element_type must be None or a floating"):
            jaxnn.Network(sizes, acts, "mse", preferred_element_type=bad)
    params = [{"W": jnp.zeros((2, 3), jnp.float64), "b": jnp.zeros((2,), jnp.float64)}]
    with pytest.raises(ValueError, match="layer 1: W has dtype float64, wider than"):
        jaxnn.predict(params, np.zeros((3, 4)), net)
    params[0]["W"] = params[0]["W"].astype(jnp.bfloat16)
    with pytest.raises(ValueError, match="layer 1: b has dtype float64"):
        rows.cost(params, np.zeros((4, 3)), np.zeros((4, 2)), net)
