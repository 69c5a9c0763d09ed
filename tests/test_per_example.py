"""Per-example gradients, norms and clipped means against jax.vmap(jax.grad(...)).

The reference differentiates each example's own cost, ``jaxnn.cost`` on one
column, by autodiff and vmaps it over the examples; norms and clipping are then
taken of those gradients in NumPy. float64 to 1e-10 and float32 to 1e-4 of each
leaf's scale.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxnn
from tests.helpers import assert_trees_close, fast_jit
from tests.test_rows import NETS

M = 9


def problem(name, dtype, seed=0):
    net = NETS[name]
    rng = np.random.default_rng(seed)
    params = [
        {
            "W": jnp.asarray(rng.normal(0, 1 / np.sqrt(n_in), (n_out, n_in)), dtype),
            "b": jnp.asarray(rng.normal(0, 0.5, (n_out, 1)), dtype),
        }
        for n_in, n_out in zip(net.sizes[:-1], net.sizes[1:], strict=True)
    ]
    X = jnp.asarray(rng.normal(size=(net.sizes[0], M)) * rng.uniform(0.1, 3, M), dtype)
    n = net.sizes[-1]
    if net.loss == "cross_entropy":
        Y = np.eye(n)[:, rng.integers(0, n, M)]
    elif net.loss == "binary_cross_entropy":
        Y = rng.uniform(size=(n, M))
    else:
        Y = rng.normal(size=(n, M))
    return net, params, X, jnp.asarray(Y, dtype)


@functools.cache
def compiled(name):
    """(hand, reference) for NETS[name], jitted once for the module."""
    net = NETS[name]

    def hand(params, X, Y, max_norm):
        return (
            jaxnn.per_example_grads(params, X, Y, net),
            jaxnn.per_example_grad_norms(params, X, Y, net),
            jaxnn.clipped_mean_grads(params, X, Y, net, max_norm),
            jaxnn.backprop(params, X, Y, net),
        )

    def reference(params, X, Y):
        one = lambda p, x, y: jaxnn.cost(p, x[:, None], y[:, None], net)  # C_x
        return jax.vmap(jax.grad(one), in_axes=(None, 1, 1))(params, X, Y)

    return fast_jit(hand), fast_jit(reference)


def reference_norms_and_clipped_mean(per_example, max_norm):
    leaves = [np.asarray(g, np.float64).reshape(M, -1) for g in jax.tree.leaves(per_example)]
    norms = np.sqrt(sum(np.sum(g * g, axis=1) for g in leaves))
    scale = np.minimum(1.0, max_norm / norms)
    clipped = jax.tree.map(
        lambda g: np.mean(
            np.asarray(g, np.float64) * scale.reshape((M,) + (1,) * (g.ndim - 1)), axis=0
        ),
        per_example,
    )
    return norms, clipped


@pytest.mark.slow
@pytest.mark.parametrize(("dtype", "rtol"), [(jnp.float64, 1e-10), (jnp.float32, 1e-4)])
@pytest.mark.parametrize("name", NETS)
def test_per_example_quantities_equal_vmap_grad(name, dtype, rtol):
    _, params, X, Y = problem(name, dtype)
    hand, reference = compiled(name)
    expected = reference(params, X, Y)
    norms_ref, _ = reference_norms_and_clipped_mean(expected, 1.0)
    max_norm = float(np.median(norms_ref))  # clips about half of the examples
    per_example, norms, clipped, mean = hand(params, X, Y, max_norm)
    assert_trees_close(per_example, expected, rtol, "per_example_grads")
    # Their mean is backprop's result.
    assert_trees_close(jax.tree.map(lambda g: jnp.mean(g, axis=0), per_example), mean, rtol)
    norms_ref, clipped_ref = reference_norms_and_clipped_mean(expected, max_norm)
    assert norms.shape == (M,) and norms.dtype == dtype
    np.testing.assert_allclose(norms, norms_ref, rtol=rtol)
    assert 0 < np.sum(norms_ref > max_norm) < M  # some clipped, some not
    clipped_ref = jax.tree.map(lambda g, p: g.astype(p.dtype), clipped_ref, params)
    assert_trees_close(clipped, clipped_ref, rtol, "clipped_mean_grads")


def test_clipping_with_a_large_norm_is_backprop_and_zero_gradients_keep_scale_one():
    net, params, X, Y = problem("linear+mse", jnp.float64)
    hand, _ = compiled("linear+mse")
    _, norms, clipped, mean = hand(params, X, Y, 1e6)
    assert_trees_close(clipped, mean, 1e-12)
    # An example whose targets equal its outputs has a zero gradient: its scale stays 1.
    Y0 = Y.at[:, 0].set(jaxnn.forward_unchecked(params, X, net).A[-1][:, 0])
    _, norms, clipped, _ = hand(params, X, Y0, 0.5)
    assert norms[0] == 0 and np.all(np.isfinite(jax.tree.leaves(clipped)[0]))


@pytest.mark.parametrize("bad", [0, -1.0, float("nan")])
def test_max_norm_must_be_positive(bad):
    net, params, X, Y = problem("softmax+ce", jnp.float64)
    with pytest.raises(ValueError, match=f"max_norm must be a positive number, got {bad}"):
        jaxnn.clipped_mean_grads(params, X, Y, net, bad)


@pytest.mark.slow
def test_benchmark_reports_every_function_and_the_hand_norms_plan_less_memory():
    """The benchmark's memory figures come from XLA's compiled plan (deterministic, not
    timed): the hand norms never hold the m per-example gradients that vmap(grad) does."""
    from jaxnn.bench import per_example as bench_per_example

    results = bench_per_example.bench_per_example(sizes=(20, 16, 4), batch=8, rounds=1)
    assert set(results) == set(bench_per_example.FUNCTIONS)
    assert results["backprop"]["time_ratio"] == results["backprop"]["memory_ratio"] == 1.0
    hand, vmap = results["per-example grads (hand)"], results["per-example grads (vmap grad)"]
    # Both return m gradients: (20*16 + 16 + 16*4 + 4) floats per example, float32.
    assert hand["peak_mb"] * 2**20 >= 8 * (20 * 16 + 16 + 16 * 4 + 4) * 4
    assert results["clipped mean (hand)"]["peak_mb"] < vmap["peak_mb"]
    assert results["norms (hand)"]["peak_mb"] < vmap["peak_mb"]
    table = bench_per_example.markdown(results)
    assert table.count("\n") == len(results) + 2
