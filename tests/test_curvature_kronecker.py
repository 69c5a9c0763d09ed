"""Kronecker factors (KFLR, KFAC) and the gradients' moments against autodiff.

The reference GGN is built by autodiff alone: J = ``jax.jacfwd`` of the output
pre-activation Z^[L] in the parameters, and each example's output curvature H_x by
``jax.hessian`` of its own cost in z^[L] (for MSE after a sigma, ``jax.jacfwd`` of sigma:
J^T J), then (1/m) sum_x J_x^T H_x J_x. Its bias block is KFLR's G (K1) exactly; for one example,
its weight block is ``np.kron(G, A)`` (K3). The moments' reference is
``jax.vmap(jax.grad(...))`` of each example's cost, squared and averaged in NumPy.
float64 within 1e-10 of each leaf's scale; float32 within the stated looser tolerance.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxnn
from jaxnn import activations, backpropagation, losses
from jaxnn.curvature import (
    diagonals,
    heads,
    kfac,
    kflr,
    kronecker,
    moments,
    sum_grad_squared,
    variance,
)
from tests.helpers import assert_trees_close, fast_jit, leaf_relative_error

# Every head of jaxnn.losses.HEADS and MSE after softmax, hidden activations with
# sigma'' != 0 and a kink, the last bias as (n,).
NETS = {
    "softmax+ce": jaxnn.Network((4, 5, 3), ("tanh", "softmax"), "cross_entropy"),
    "sigmoid+bce": jaxnn.Network((4, 5, 2), ("sigmoid", "sigmoid"), "binary_cross_entropy"),
    "linear+mse": jaxnn.Network((4, 6, 3, 2), ("leaky_relu", "tanh", "linear"), "mse"),
    "softmax+mse": jaxnn.Network((4, 5, 3), ("relu", "softmax"), "mse"),
}
M = 7  # differs from every layer size, so a transposed array is recognisable


def problem(name, dtype=jnp.float64, m=M, seed=0):
    net = NETS[name]
    rng = np.random.default_rng(seed)
    params = [
        {
            "W": jnp.asarray(rng.normal(0, 1.5 / np.sqrt(n_in), (n_out, n_in)), dtype),
            # the last layer's bias as Flax holds it, (n,): results keep that shape
            "b": jnp.asarray(rng.normal(0, 0.5, (n_out,) if l == net.L - 1 else (n_out, 1)), dtype),
        }
        for l, (n_in, n_out) in enumerate(zip(net.sizes[:-1], net.sizes[1:], strict=True))
    ]
    X = jnp.asarray(rng.normal(size=(net.sizes[0], m)), dtype)
    n = net.sizes[-1]
    if net.loss == "cross_entropy":
        Y = np.eye(n)[:, rng.integers(0, n, m)]
    elif net.loss == "binary_cross_entropy":
        Y = rng.integers(0, 2, (n, m)).astype(float)
    else:
        Y = rng.normal(size=(n, m))
    return net, params, X, jnp.asarray(Y, dtype)


def output_curvature(net):
    """Lambda_x(z, y), the GGN's output Hessian of one example, by autodiff: the Hessian in
    z of its cost (jaxnn.losses' stable form) for cross-entropy and BCE; for MSE, the
    cost's Hessian in a (the identity) pulled back through sigma, J^T J (BackPACK's split,
    where the output activation is a module before the loss)."""
    act, loss = activations.get(net.activations[-1]), losses.get(net.loss)
    if net.loss == "mse":
        sigma = lambda z: act.fn(z[:, None])[:, 0]
        return lambda z, y: jax.jacfwd(sigma)(z).T @ jax.jacfwd(sigma)(z)
    cost = lambda z, y: loss.stable_value(z[:, None], act.fn(z[:, None]), y[:, None])[0]
    return jax.hessian(cost)


def reference_ggn_blocks(params, X, Y, net):
    """[{"W": W^[l]'s GGN block, "b": b^[l]'s}] per layer, by autodiff; W flattened by rows."""
    m = X.shape[1]
    Z_L = lambda p: jaxnn.forward_unchecked(p, X, net).Z[-1]
    J = jax.jacfwd(Z_L)(params)  # leaves (n_L, m, *leaf.shape)
    H = jax.vmap(output_curvature(net), in_axes=(1, 1))(Z_L(params), Y)  # (m, n_L, n_L)
    n_L = net.sizes[-1]
    block = lambda Jp: (
        jnp.einsum("imp,mij,jmq->pq", Jp.reshape(n_L, m, -1), H, Jp.reshape(n_L, m, -1)) / m
    )
    return [{"W": block(Jl["W"]), "b": block(Jl["b"])} for Jl in J]


@functools.cache
def compiled(name):
    """(hand, reference) for NETS[name], each one jitted program for the module."""
    net = NETS[name]

    def hand(params, X, Y):
        return (
            kflr(params, X, Y, net),
            sum_grad_squared(params, X, Y, net),
            variance(params, X, Y, net),
        )

    def reference(params, X, Y):
        one = lambda p, x, y: jaxnn.cost(p, x[:, None], y[:, None], net)  # C_x
        per_example = jax.vmap(jax.grad(one), in_axes=(None, 1, 1))(params, X, Y)
        return reference_ggn_blocks(params, X, Y, net), per_example

    return fast_jit(hand), fast_jit(reference)


@pytest.mark.slow
@pytest.mark.parametrize(("dtype", "rtol"), [(jnp.float64, 1e-10), (jnp.float32, 1e-4)])
@pytest.mark.parametrize("name", NETS)
def test_kflr_factors_and_moments_equal_autodiff(name, dtype, rtol):
    """G is the exact GGN block of b (K1), A the input's second moment (K2); the moments
    are those of vmap(grad)'s per-example gradients (M1)-(M3). float32: 1e-4 of each
    leaf's scale, where up to 3.3e-7 was seen (the variance, a difference of moments, can
    lose more where it is tiny beside the squared mean: (M3)'s warning; not here)."""
    net, params, X, Y = problem(name, dtype)
    hand, reference = compiled(name)
    factors, sgs, var = hand(params, X, Y)
    blocks, per_example = reference(*problem(name, jnp.float64)[1:])
    cache = jaxnn.forward(*problem(name, jnp.float64)[1:3], net)
    for l, (f, block) in enumerate(zip(factors, blocks, strict=True)):
        G, A = f["W"]
        assert np.array_equal(f["b"][0], G), "the same G for W and b, as BackPACK returns it"
        assert G.shape == (net.sizes[l + 1],) * 2 and A.shape == (net.sizes[l],) * 2
        assert G.dtype == A.dtype == dtype
        assert leaf_relative_error(G, block["b"]) <= rtol, f"layer {l + 1}: G"
        A_prev = np.asarray(cache.A[l])
        assert leaf_relative_error(A, A_prev @ A_prev.T / M) <= rtol, f"layer {l + 1}: A"
    g = jax.tree.map(lambda x: np.asarray(x, np.float64) / M, per_example)  # BackPACK's g_x / m
    sgs_ref = jax.tree.map(lambda x, p: np.sum(x * x, axis=0).astype(p.dtype), g, params)
    var_ref = jax.tree.map(lambda x, p: np.var(x, axis=0).astype(p.dtype), g, params)
    assert_trees_close(sgs, sgs_ref, rtol, "sum_grad_squared")
    assert_trees_close(var, var_ref, rtol, "variance")


@pytest.mark.slow
@pytest.mark.parametrize("name", NETS)
def test_kron_of_the_factors_is_the_exact_weight_block_for_one_example(name):
    """With m = 1 nothing is averaged apart, so kron(G, A) is W's exact GGN block (K3);
    the transposed order, kron(A, G), is not."""
    _, params, X, Y = problem(name, m=1)
    hand, reference = compiled(name)
    factors, blocks = hand(params, X, Y)[0], reference(params, X, Y)[0]
    for l, (f, block) in enumerate(zip(factors, blocks, strict=True)):
        G, A = f["W"]
        assert leaf_relative_error(jnp.kron(G, A), block["W"]) <= 1e-10, f"layer {l + 1}"
        assert leaf_relative_error(jnp.kron(A, G), block["W"]) > 1e-3, f"layer {l + 1}"


@pytest.mark.slow
@pytest.mark.parametrize("name", NETS)
def test_kfac_is_kflr_in_expectation(name):
    """(K4): with 4000 labels drawn per example, KFAC's G is within 5% of KFLR's (of the
    largest entry; the Monte Carlo error is about 1/sqrt(4000 m) ~ 0.6%), A is KFLR's A
    exactly, one key gives one result and another key another."""
    net, params, X, Y = problem(name)
    run = fast_jit(lambda p, x, y, key: kfac(p, x, y, net, key, samples=4000))
    key = jax.random.key(0)
    sampled, exact = run(params, X, Y, key), compiled(name)[0](params, X, Y)[0]  # kflr
    for l, (s, e) in enumerate(zip(sampled, exact, strict=True)):
        assert leaf_relative_error(s["W"][0], e["W"][0]) < 0.05, f"layer {l + 1}: G"
        assert leaf_relative_error(s["W"][1], e["W"][1]) <= 1e-12, f"layer {l + 1}: A"
        assert np.array_equal(s["b"][0], s["W"][0])
    again, other = run(params, X, Y, key), run(params, X, Y, jax.random.key(1))
    assert jax.tree.all(jax.tree.map(jnp.array_equal, again, sampled))
    assert not jnp.array_equal(other[0]["W"][0], sampled[0]["W"][0])


@pytest.mark.slow
def test_kfac_with_one_sample_is_a_positive_semidefinite_estimate():
    net, params, X, Y = problem("softmax+ce")
    for f in kfac(params, X, Y, net, jax.random.key(3)):
        G = np.asarray(f["W"][0])
        np.testing.assert_allclose(G, G.T, atol=1e-15)
        assert np.linalg.eigvalsh(G).min() > -1e-12


@fast_jit
def from_labels_and_one_hot(params, X, labels, Y):
    """[(fn from integer labels, fn from one-hot Y)] for kflr, sum_grad_squared, variance."""
    net = NETS["softmax+ce"]
    fns = (kflr, sum_grad_squared, variance)
    return [(fn(params, X, labels, net), fn(params, X, Y, net)) for fn in fns]


def test_integer_labels_give_the_one_hot_results():
    _, params, X, Y = problem("softmax+ce")
    labels = jnp.asarray(np.argmax(np.asarray(Y), axis=0))
    results = from_labels_and_one_hot(params, X, labels, Y)
    for name, (got, expected) in zip(
        ("kflr", "sum_grad_squared", "variance"), results, strict=True
    ):
        assert_trees_close(got, expected, 1e-14, name)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda p, X, Y, net: kflr(p, X.T, Y, net), r"X has shape \(7, 4\), the network expects"),
        (lambda p, X, Y, net: sum_grad_squared(p, X, Y[:, :3], net), "same number of examples"),
        (lambda p, X, Y, net: variance(p[:1], X, Y, net), "params has 1 layers"),
        (lambda p, X, Y, net: kfac(p, X, Y, net, jax.random.key(0), 0), "samples must be"),
        (lambda p, X, Y, net: kfac(p, X, Y, net, 0), "kfac: key must be a jax.random key"),
    ],
)
def test_bad_input_is_a_clear_error_before_any_math(call, match):
    net, params, X, Y = problem("softmax+ce")
    with pytest.raises(ValueError, match=match):
        call(params, X, Y, net)


# Seeded errors, each planted in the library for one test (as tests/curvature_corpus.py
# plants A's), and the comparisons above that must catch it. A transposed Kronecker
# order, [A, G], is caught by test_kron_of_the_factors_is_the_exact_weight_block_for_one_example.
def _no_sigma_prime_in_the_factors(mp):
    mp.setattr(diagonals, "vjp_columns", lambda name, Z, A, F: F)  # BP2 without J^T


def _transposed_output_factor(mp):
    transposed = lambda *args: jnp.swapaxes(heads.output_hessian_factor(*args), 0, 1)
    mp.setattr(kronecker, "output_hessian_factor", transposed)  # S^T for S


def _examples_own_errors_for_the_means_deltas(mp):
    mp.setattr(moments, "output_delta", backpropagation.output_error)  # the 1/m lost


def _unscaled_sampled_factor(mp):
    unscaled = lambda *args, **kw: heads.sampled_output_factor(*args, **kw) * jnp.sqrt(args[4])
    mp.setattr(kronecker, "sampled_output_factor", unscaled)  # no 1/sqrt(samples)


FAULTS = {
    "sigma' left out of the factors' BP2": (_no_sigma_prime_in_the_factors, ("kflr G", "kfac G")),
    "S^T for S": (_transposed_output_factor, ("kflr G",)),
    "the 1/m of the mean lost": (
        _examples_own_errors_for_the_means_deltas,
        ("sum_grad_squared", "variance"),
    ),
    "the Monte Carlo factor without 1/sqrt(samples)": (_unscaled_sampled_factor, ("kfac G",)),
}


def errors(name):
    """{quantity: relative error against autodiff}, computed eagerly (a jitted function
    would keep the program traced before a fault was planted)."""
    net, params, X, Y = problem(name)
    blocks, per_example = compiled(name)[1](params, X, Y)
    g = jax.tree.map(lambda x: np.asarray(x) / M, per_example)
    sgs, var = sum_grad_squared(params, X, Y, net), variance(params, X, Y, net)
    sampled = kfac(params, X, Y, net, jax.random.key(0), samples=4000)
    leaves = lambda t: [np.asarray(x) for x in jax.tree.leaves(t)]
    moment = lambda ours, ref: max(
        leaf_relative_error(a, b.reshape(a.shape))
        for a, b in zip(leaves(ours), leaves(ref), strict=True)
    )
    return {
        "kflr G": max(
            leaf_relative_error(f["W"][0], b["b"])
            for f, b in zip(kflr(params, X, Y, net), blocks, strict=True)
        ),
        "kfac G": max(
            leaf_relative_error(f["W"][0], b["b"]) / 0.05  # its tolerance: 1 is the line
            for f, b in zip(sampled, blocks, strict=True)
        ),
        "sum_grad_squared": moment(sgs, jax.tree.map(lambda x: np.sum(x * x, axis=0), g)),
        "variance": moment(var, jax.tree.map(lambda x: np.var(x, axis=0), g)),
    }


@pytest.mark.slow
@pytest.mark.parametrize("fault", FAULTS)
def test_each_seeded_error_is_caught(fault, monkeypatch):
    """Unplanted, every error is within the tests' tolerances; each fault pushes the
    quantities it touches past them (1e-6 for the exact ones, 5% for KFAC's G)."""
    plant, caught_by = FAULTS[fault]
    clean = errors("softmax+ce")
    assert clean["kfac G"] < 1 and max(v for k, v in clean.items() if k != "kfac G") < 1e-10
    plant(monkeypatch)
    found = errors("softmax+ce")
    caught = {k for k, v in found.items() if v > (1 if k == "kfac G" else 1e-6)}
    assert set(caught_by) <= caught, (fault, found)


@pytest.mark.slow
def test_the_benchmark_script_reports_every_contender():
    """scripts/bench_curvature.py on a tiny network, one round (its figures are not
    checked: no timed tests), so that the script cannot rot unseen."""
    import importlib.util
    import pathlib

    path = pathlib.Path(__file__).resolve().parent.parent / "scripts" / "bench_curvature.py"
    spec = importlib.util.spec_from_file_location("bench_curvature", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    results = bench.bench(sizes=(12, 8, 8, 3), batch=5, rounds=1, with_torch=False)
    assert set(results) == set(bench.FUNCTIONS)
    assert results["backprop"]["time_ratio"] == 1.0
    assert all(r["peak_mb"] > 0 for r in results.values())
    assert bench.markdown(results).count("\n") == len(results) + 2
