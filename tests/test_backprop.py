"""Hand backpropagation (BP1-BP4, F1-F3) against three independent witnesses.

1. ``jax.grad(jaxnn.cost)``: automatic differentiation of the library's own cost;
2. ``jax.grad(reference_cost)``: of a cost written without jaxnn (tests/test_network.py);
3. central finite differences of a NumPy transcription of the seeds, no JAX at all.

The matrix runs eagerly: each network is evaluated a handful of times, so compiling it
would cost more than running it, while eager primitives are compiled once per shape
and shared by all the tests (the widths are the same few throughout).
"""

import functools
import math
import zlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.scipy.special import logsumexp

import jaxnn
from tests.helpers import (
    HIDDEN,
    PAIRS,
    assert_trees_close,
    leaf_relative_error,
    max_relative_error,
    sample,
)
from tests.test_network import (
    REFERENCE_ACTIVATIONS,
    random_params,
    random_targets,
    reference_cost,
    reference_loss,
)

# Hidden widths are equal so that the eager primitives, compiled once per shape, are
# shared by all depths (compiling is most of these tests' time); n_x, n_hidden, n_L and
# m all differ, and a transposed square W would still fail on values.
SIZES = {1: (4, 3), 2: (4, 5, 3), 3: (4, 5, 5, 3), 4: (4, 5, 5, 5, 3)}
M = 9


def _hidden(depth, start):
    """depth - 1 hidden activations, starting at HIDDEN[start] and cycling."""
    return tuple(HIDDEN[(start + k) % len(HIDDEN)] for k in range(depth - 1))


def _net(depth, hidden, pair):
    return jaxnn.Network(SIZES[depth], (*hidden, pair[0]), pair[1])


# The matrix. Depths 2 and 3: every hidden activation x every (output, loss) pair; at
# depth 3 the second hidden layer is the next activation in HIDDEN, so each activation
# is also back-propagated through (BP2) from every other position. Depths 1 and 4:
# each pair, with depth 4's three hidden layers rotating through HIDDEN. Each network
# runs with fused=True and fused=False, and with each label kind of its loss at m = 9;
# depths 1 and 4 also with m = 1.
MATRIX = [
    _net(depth, _hidden(depth, i), pair)
    for depth in (2, 3)
    for i in range(len(HIDDEN))
    for pair in PAIRS
] + [_net(depth, _hidden(depth, j), pair) for j, pair in enumerate(PAIRS) for depth in (1, 4)]
DEPTH3 = [net for net in MATRIX if net.L == 3]
# The inner loop runs every 7th case of these matrices (7 is coprime with the 6 pairs and
# the 10 hidden activations: the sample still meets each); CI runs them all.
EVERY = 7


def net_id(net):
    return f"L{net.L}-" + "-".join(net.activations) + f"-{net.loss}"


LABELS = {
    "cross_entropy": ("one-hot", "soft"),
    "binary_cross_entropy": ("binary", "fractional"),
    "mse": ("real",),
}
SOFT = {"soft", "fractional"}


def batches(net):
    """Each label kind at m = 9; at depths 1 and 4 also m = 1 (one more set of shapes to
    compile, so not at every depth)."""
    kinds = LABELS[net.loss]
    return [(kind, M) for kind in kinds] + ([(kinds[0], 1)] if net.L in (1, 4) else [])


@functools.cache
def problem(net, labels, m, dtype=np.float64):
    """Fixed-seed params, X and Y for one case; the seed comes from the case itself."""
    seed = zlib.crc32(f"{net_id(net)}/{labels}/{m}".encode())
    rng = np.random.default_rng(seed)
    X = jnp.asarray(rng.normal(size=(net.sizes[0], m)), dtype)
    Y = jnp.asarray(random_targets(net.loss, net.sizes[-1], m, rng, labels in SOFT), dtype)
    return random_params(net.sizes, seed, dtype), X, Y


@functools.cache
def autodiff_grads(net, labels, m):
    """jax.grad of jaxnn.cost in float64, shared by the fused and unfused tests."""
    return jax.grad(jaxnn.cost)(*problem(net, labels, m), net)


@pytest.mark.parametrize("fused", [True, False], ids=["fused", "bp1"])
@pytest.mark.parametrize("net", sample(MATRIX, EVERY), ids=net_id)
def test_backprop_equals_jax_grad_float64(net, fused):
    """Per leaf, max |error| / max |expected| <= 1e-10; and the cost is jaxnn.cost."""
    for labels, m in batches(net):
        params, X, Y = problem(net, labels, m)
        value, grads = jaxnn.value_and_backprop(params, X, Y, net, fused=fused)
        assert_trees_close(grads, autodiff_grads(net, labels, m), 1e-10, f"{labels}, m={m}")
        assert value == jaxnn.cost(params, X, Y, net)
        assert abs(value - reference_cost(params, X, Y, net)) <= 1e-12 * abs(value)


# float32: fused=False only where it is a different computation (the pairs with a closed
# form); elsewhere both settings run the same BP1, already covered by the float64 matrix.
CLOSED_FORM = {("softmax", "cross_entropy"), ("sigmoid", "binary_cross_entropy"), ("linear", "mse")}
MATRIX_FLOAT32 = [(net, True) for net in MATRIX] + [
    (net, False) for net in MATRIX if (net.activations[-1], net.loss) in CLOSED_FORM
]


@pytest.mark.parametrize(
    ("net", "fused"),
    sample(MATRIX_FLOAT32, EVERY, unpack=True),
    ids=[f"{net_id(net)}-{'fused' if fused else 'bp1'}" for net, fused in MATRIX_FLOAT32],
)
def test_backprop_equals_jax_grad_float32(net, fused):
    """float32 params and data give float32 gradients within 1e-4 per leaf of the float64
    jax.grad (float32 rounds at 6e-8 per operation; the worst case here is 4e-5, BCE
    through BP1). The reference is the float64 gradient, the exact answer, not jax.grad in
    float32, which is another float32 approximation (see the next test)."""
    for labels, m in batches(net):
        params, X, Y = problem(net, labels, m, np.float32)
        grads = jaxnn.backprop(params, X, Y, net, fused=fused)
        exact = jax.tree.map(lambda g: g.astype(np.float32), autodiff_grads(net, labels, m))
        assert_trees_close(grads, exact, 1e-4, f"{labels}, m={m}")


@pytest.mark.slow
def test_float32_limit_of_an_almost_one_hot_hidden_softmax():
    """Where float32 cannot reach 1e-4, for jaxnn or for jax.grad: a hidden softmax that is
    one-hot to 1.1e-4 (a_max = 0.99989) makes delta^[1] = a (g - sum_j a_j g_j) (S2) about
    1e-5 of g, a cancellation that leaves float32 ~3 digits. jaxnn's float32 error is
    no worse than jax.grad's own (both ~2e-3 vs float64), and float64 is exact to 1e-10."""
    net = _net(3, ("softmax", "sigmoid"), ("softmax", "mse"))
    params, X, Y = problem(net, "real", 1)
    A1 = jaxnn.forward(params, X, net).A[1]
    assert 1 - np.max(A1) < 2e-4
    exact = jax.grad(jaxnn.cost)(params, X, Y, net)
    assert_trees_close(jaxnn.backprop(params, X, Y, net), exact, 1e-10, "float64")
    p32, X32, Y32 = problem(net, "real", 1, np.float32)
    ours = jaxnn.backprop(p32, X32, Y32, net)
    theirs = jax.grad(jaxnn.cost)(p32, X32, Y32, net)
    err_ours = leaf_relative_error(ours[0]["W"], exact[0]["W"])
    err_theirs = leaf_relative_error(theirs[0]["W"], exact[0]["W"])
    assert err_theirs > 1e-4 and err_ours > 1e-4
    assert err_ours <= 2 * err_theirs
    for l in (1, 2):  # the layers after the softmax are unaffected
        assert_trees_close(ours[l], jax.tree.map(lambda g: g.astype(np.float32), exact[l]), 1e-5)


@pytest.mark.parametrize("net", sample(DEPTH3, EVERY), ids=net_id)
def test_backprop_equals_grad_of_reference_cost(net):
    """The second witness: jax.grad of a cost written without jaxnn."""
    for labels, m in batches(net):
        params, X, Y = problem(net, labels, m)
        want = jax.grad(reference_cost)(params, X, Y, net)
        assert_trees_close(jaxnn.backprop(params, X, Y, net), want, 1e-10, labels)


# ---------------------------------------------------------------------------
# The third witness: central finite differences of a NumPy transcription of the seeds.

NP_ACTIVATIONS = {
    "sigmoid": lambda z: 1 / (1 + np.exp(-z)),
    "tanh": np.tanh,
    "relu": lambda z: np.maximum(z, 0),
    "leaky_relu": lambda z: np.where(z > 0, z, 0.01 * z),
    "linear": lambda z: z,
    "softmax": lambda z: np.exp(z) / np.sum(np.exp(z), axis=0, keepdims=True),
    "gelu": lambda z: z / 2 * (1 + np.vectorize(math.erf)(z / math.sqrt(2))),
    "gelu_tanh": lambda z: z / 2 * (1 + np.tanh(math.sqrt(2 / math.pi) * (z + 0.044715 * z**3))),
    "silu": lambda z: z / (1 + np.exp(-z)),
    "softplus": lambda z: np.log1p(np.exp(z)),
}
NP_COSTS = {
    "mse": lambda A, Y: 0.5 * np.sum((Y - A) ** 2, axis=0),
    "binary_cross_entropy": lambda A, Y: -np.sum(Y * np.log(A) + (1 - Y) * np.log(1 - A), axis=0),
    "cross_entropy": lambda A, Y: -np.sum(Y * np.log(A), axis=0),
}


def numpy_cost(params, X, Y, net):
    """(F-Z), (F-A), (C1)-(C3), (C-M); also returns every Z, to see which side of a kink
    each relu / leaky_relu unit is on."""
    A, Zs = X, []
    for layer, name in zip(params, net.activations, strict=True):
        Zs.append(layer["W"] @ A + layer["b"])
        A = NP_ACTIVATIONS[name](Zs[-1])
    return float(np.mean(NP_COSTS[net.loss](A, Y))), Zs


H = 1e-6
EPS = np.finfo(np.float64).eps


@pytest.mark.parametrize("net", sample(DEPTH3, EVERY), ids=net_id)
def test_backprop_equals_central_finite_differences(net):
    """dC/dtheta ~ (C(theta + h) - C(theta - h)) / 2h for every entry, h = 1e-6.

    The error of central differences is the truncation h^2 |C'''| / 6 plus the
    rounding of C, ~ k eps |C| / h with k ~ 10 for a few dozen operations. Taking
    |C'''| <= 100 (small networks, Z of order 1), the bound is ~1e-10 + 2e-9 |C|; we
    allow 10 times that, tol = 10 (100 h^2 + 10 eps max(1, |C|) / h) ~ 2e-8 max(1, |C|)
    absolute per entry, where the gradients' entries are O(0.01-1). (Measured: the
    largest error is ~1% of tol.)
    """
    labels = LABELS[net.loss][-1]
    params, X, Y = (jax.tree.map(np.array, x) for x in problem(net, labels, M))  # writable
    C, Zs = numpy_cost(params, X, Y, net)
    assert C == pytest.approx(float(jaxnn.cost(params, X, Y, net)), rel=1e-13)
    kinked = [l for l, act in enumerate(net.activations) if act in ("relu", "leaky_relu")]

    def side_of_kinks(Zs):
        return [np.asarray(Zs[l] > 0) for l in kinked]

    sides = side_of_kinks(Zs)

    def cost_at(params):
        c, Zs = numpy_cost(params, X, Y, net)
        for before, after in zip(sides, side_of_kinks(Zs), strict=True):
            assert np.array_equal(before, after), "a finite difference crossed a kink"
        return c

    tol = 10 * (100 * H**2 + 10 * EPS * max(1.0, abs(C)) / H)
    fd = []
    for layer in params:
        fd_layer = {}
        for name, value in layer.items():
            g = np.zeros_like(value)
            for idx in np.ndindex(value.shape):
                saved = value[idx]
                value[idx] = saved + H
                c_plus = cost_at(params)
                value[idx] = saved - H
                c_minus = cost_at(params)
                value[idx] = saved
                g[idx] = (c_plus - c_minus) / (2 * H)
            fd_layer[name] = g
        fd.append(fd_layer)
    for fused in (True, False):
        grads = jaxnn.backprop(params, X, Y, net, fused=fused)
        for l, (got, want) in enumerate(zip(grads, fd, strict=True)):
            for name in ("W", "b"):
                err = np.max(np.abs(np.asarray(got[name]) - want[name]))
                assert err <= tol, f"layer {l + 1} {name}, fused={fused}: {err:.2e} > {tol:.2e}"
                assert np.max(np.abs(want[name])) > 100 * tol  # the test has teeth


# ---------------------------------------------------------------------------
# deltas: delta^[l] = dC/dZ^[l], against autodiff through additive taps on every Z.


def tapped_cost(taps, params, X, Y, net):
    """reference_cost with Z^[l] = W A + b + taps[l]; its gradient at taps = 0 is dC/dZ^[l]."""
    A = X
    for layer, name, tap in zip(params, net.activations, taps, strict=True):
        A = REFERENCE_ACTIVATIONS[name](layer["W"] @ A + layer["b"] + tap)
    return reference_loss(A, Y, net.loss)


@pytest.mark.parametrize("fused", [True, False], ids=["fused", "bp1"])
@pytest.mark.parametrize("net", [net for net in MATRIX if net.L == 4], ids=net_id)
def test_deltas_are_dC_dZ(net, fused):
    """(BP1) / (F1-F3) give delta^[L], (BP2) every delta^[l]: each equals autodiff dC/dZ^[l]."""
    labels = LABELS[net.loss][-1]
    params, X, Y = problem(net, labels, M)
    cache = jaxnn.forward(params, X, net)
    taps = [jnp.zeros_like(Z) for Z in cache.Z]
    want = jax.grad(tapped_cost)(taps, params, X, Y, net)
    delta_L = jaxnn.output_delta(cache, Y, net, fused=fused)
    assert_trees_close(delta_L, want[-1], 1e-10, "output_delta")
    deltas = jaxnn.backward(params, cache, Y, net, fused=fused).deltas
    assert_trees_close(deltas, want, 1e-10, "deltas")


# ---------------------------------------------------------------------------
# The mean-over-m convention (C-M) and vectorisation.


def test_gradient_is_of_the_mean_cost():
    """delta carries 1/m: the batch repeated twice (m -> 2m) has the same gradient, and m
    times the gradient is jax.grad of the summed (not averaged) cost."""
    net = _net(2, ("sigmoid",), ("softmax", "cross_entropy"))
    params, X, Y = problem(net, "soft", M)
    grads = jaxnn.backprop(params, X, Y, net)
    twice = jaxnn.backprop(params, jnp.concatenate([X, X], 1), jnp.concatenate([Y, Y], 1), net)
    assert_trees_close(twice, grads, 1e-13, "2m")
    sum_grads = jax.grad(lambda p: M * reference_cost(p, X, Y, net))(params)
    assert_trees_close(jax.tree.map(lambda g: g * M, grads), sum_grads, 1e-10, "sum")


def test_vmap_over_examples_gives_per_example_grads_whose_mean_is_backprop():
    """A vector X of length n_x is one example: in_axes over columns gives per-example
    gradients, each jax.grad of that example's cost, and their mean is the batch's."""
    net = _net(3, ("sigmoid", "tanh"), ("sigmoid", "binary_cross_entropy"))
    params, X, Y = problem(net, "fractional", M)
    # jitted (net static): one compilation instead of one per batched primitive
    per_example = jax.jit(jax.vmap(jaxnn.backprop, in_axes=(None, 1, 1, None)), static_argnums=3)(
        params, X, Y, net
    )
    want = jax.jit(jax.vmap(jax.grad(jaxnn.cost), in_axes=(None, 1, 1, None)), static_argnums=3)(
        params, X, Y, net
    )
    assert jax.tree.leaves(per_example)[0].shape[0] == M
    assert_trees_close(per_example, want, 1e-10, "per example")
    mean = jax.tree.map(lambda g: jnp.mean(g, axis=0), per_example)
    assert_trees_close(mean, jax.grad(reference_cost)(params, X, Y, net), 1e-10, "mean")


def test_vmap_over_parameter_sets():
    net = _net(3, ("tanh", "relu"), ("sigmoid", "binary_cross_entropy"))
    sets = [problem(net, "binary", M)[0], problem(net, "fractional", M)[0]]
    _, X, Y = problem(net, "binary", M)
    stacked = jax.tree.map(lambda *leaves: jnp.stack(leaves), *sets)
    got = jax.jit(jax.vmap(jaxnn.backprop, in_axes=(0, None, None, None)), static_argnums=3)(
        stacked, X, Y, net
    )
    for k, params in enumerate(sets):
        want = jax.grad(reference_cost)(params, X, Y, net)
        assert_trees_close(jax.tree.map(lambda g, k=k: g[k], got), want, 1e-10, f"set {k}")


def test_backprop_under_jit_traces_once():
    """The network and fused are static; new values of the same shapes reuse the trace."""
    net = _net(3, ("sigmoid", "tanh"), ("softmax", "cross_entropy"))
    traces = []

    def traced(params, X, Y, net, fused):
        traces.append(net)
        return jaxnn.value_and_backprop(params, X, Y, net, fused=fused)

    step = jax.jit(traced, static_argnames=("net", "fused"))
    for labels in LABELS[net.loss]:
        params, X, Y = problem(net, labels, M)
        value, grads = step(params, X, Y, net, True)
        assert_trees_close(grads, autodiff_grads(net, labels, M), 1e-10, labels)
        assert abs(value - reference_cost(params, X, Y, net)) <= 1e-12 * value
    assert len(traces) == 1
    step(params, X, Y, net, False)
    assert len(traces) == 2


def test_float32_params_with_float64_data_give_float32_grads():
    """Gradients have the params' dtypes, as jax.grad's do, even when X and Y are float64."""
    net = _net(3, ("sigmoid", "tanh"), ("softmax", "cross_entropy"))
    params, X, Y = problem(net, "soft", M)
    p32 = jax.tree.map(lambda x: x.astype(np.float32), params)
    grads = jaxnn.backprop(p32, X, Y, net)
    assert_trees_close(grads, jax.grad(jaxnn.cost)(p32, X, Y, net), 1e-5, "mixed")


# ---------------------------------------------------------------------------
# Extremes: logits of 1e3 to 1e4, saturated sigmoids.


def _stable_sigmoid(z):
    s = jnp.exp(-jnp.abs(z))  # never overflows, in the value or in its derivative
    return jnp.where(z >= 0, 1 / (1 + s), s / (1 + s))


def _stable_softmax(z):
    e = jnp.exp(z - jnp.max(z, axis=0, keepdims=True))
    return e / jnp.sum(e, axis=0, keepdims=True)


STABLE_ACTIVATIONS = {
    **REFERENCE_ACTIVATIONS,
    "sigmoid": _stable_sigmoid,
    "tanh": jnp.tanh,
    "softmax": _stable_softmax,
}


def stable_reference_cost(params, X, Y, net):
    """reference_cost made stable: the output cost from Z by log-softmax and softplus, and
    activations that neither overflow nor lose their derivative at saturation."""
    A = X
    for layer, name in zip(params[:-1], net.activations[:-1], strict=True):
        A = STABLE_ACTIVATIONS[name](layer["W"] @ A + layer["b"])
    Z = params[-1]["W"] @ A + params[-1]["b"]
    if net.loss == "cross_entropy":
        per_example = -jnp.sum(Y * (Z - logsumexp(Z, axis=0, keepdims=True)), axis=0)
    elif net.loss == "binary_cross_entropy":  # -log sigma(z) = softplus(-z) = log(1 + e^-z)
        per_example = jnp.sum(jnp.logaddexp(0.0, Z) - Y * Z, axis=0)
    else:
        A = STABLE_ACTIVATIONS[net.activations[-1]](Z)
        per_example = 0.5 * jnp.sum((Y - A) ** 2, axis=0)
    return jnp.mean(per_example)


def saturated_problem(net, labels, scale):
    """The last layer's W scaled by ``scale``: O(1) hidden activations, huge output logits."""
    params, X, Y = problem(net, labels, M)
    params = [*params[:-1], {"W": params[-1]["W"] * scale, "b": params[-1]["b"]}]
    return params, X, Y


SATURATED = [_net(2, ("tanh",), pair) for pair in PAIRS if pair != ("linear", "mse")]


@pytest.mark.slow
@pytest.mark.parametrize("net", SATURATED, ids=net_id)
def test_extreme_logits_fused_is_finite_and_exact(net):
    """|Z^[L]| up to ~1e4: the cost equals a stable reference to 1e-12 and the fused
    gradient equals jax.grad of that reference to 1e-10."""
    for labels in LABELS[net.loss]:
        for scale in (1e3, 1e4):
            params, X, Y = saturated_problem(net, labels, scale)
            Z_L = jaxnn.forward(params, X, net).Z[-1]
            assert 0.5 * scale < np.max(np.abs(Z_L)) < 10 * scale
            value, grads = jaxnn.value_and_backprop(params, X, Y, net)
            want = stable_reference_cost(params, X, Y, net)
            assert np.isfinite(value) and value >= 0
            assert abs(value - want) <= 1e-12 * abs(want), (labels, scale)
            want_grads = jax.grad(stable_reference_cost)(params, X, Y, net)
            if net.activations[-1] != "softmax" or net.loss != "mse":
                assert_trees_close(grads, want_grads, 1e-10, f"{labels}, scale {scale}")
                continue
            # softmax + MSE has no fused form and its gradient vanishes, < e^-100 here. The
            # unit with a_k = 1 gets a_k (g_k - sum_j a_j g_j) (S2) with a_k rounded to 1,
            # so its entry, ~e^-100 g_k, is lost (0 up to e^-500); autodiff through
            # exp(z - max z) gets it as minus the other units' sum. An error far below
            # any gradient of an unsaturated network, but not a relative 1e-10.
            # So: against jax.grad with an absolute tolerance, 1e-40, some 1e39 times below
            # the gradients of this network unsaturated (~0.1).
            assert jax.tree.structure(grads) == jax.tree.structure(want_grads)
            for g, w in zip(jax.tree.leaves(grads), jax.tree.leaves(want_grads), strict=True):
                assert g.shape == w.shape and g.dtype == w.dtype and np.all(np.isfinite(g))
                assert np.max(np.abs(g - w)) < 1e-40 and np.max(np.abs(w)) < 1e-40


def test_saturated_hidden_sigmoids():
    """Hidden sigmoids at |z| > 340 are 0 or 1 to 1e-150, with sigma' < 1e-147: the
    gradients that flow through them are that small and still exact (relative), as
    sigma(z) sigma(-z) keeps them; the rest are exact too."""
    net = jaxnn.Network((4, 5, 3), ("sigmoid", "softmax"), "cross_entropy")
    params, X, Y = problem(net, "soft", M)
    params = [{"W": params[0]["W"] * 1e4, "b": params[0]["b"]}, params[1]]
    Z1 = jaxnn.forward(params, X, net).Z[0]
    assert np.min(np.abs(Z1)) > 340  # every unit saturated: sigma'(z) < 1e-147
    A1 = jaxnn.forward(params, X, net).A[1]
    assert np.all(np.minimum(A1, 1 - A1) < 1e-150)
    grads = jaxnn.backprop(params, X, Y, net)
    want = jax.grad(stable_reference_cost)(params, X, Y, net)
    assert_trees_close(grads, want, 1e-10, "saturated")
    assert 0 < np.max(np.abs(grads[0]["W"])) < 1e-100


def one_example(logits, targets, out, loss):
    """A depth-1 network with W = I and b = 0, so that Z^[L] = X, and m = 1."""
    n = len(logits)
    net = jaxnn.Network((n, n), (out,), loss)
    params = [{"W": jnp.eye(n), "b": jnp.zeros((n, 1))}]
    X, Y = jnp.array([logits], float).T, jnp.array([targets], float).T
    return net, params, X, Y


@pytest.mark.slow
def test_unfused_bp1_at_saturation():
    """What fused=False does at saturation, stated by the test.

    BP1 computes grad_a C (G2, G3) from A. Once A rounds to exactly 1.0 (sigmoid, z >~ 37)
    or 0.0 (softmax, a logit ~750 below the largest), a target that puts weight on the
    other side divides by 1 - a = 0 or a = 0: grad_a C is infinite. BP1 multiplies it by
    sigma'(z), which is e^-40 ~ 4e-18 at z = 40 (inf * 4e-18 = inf) and underflows to 0
    at z = 1000 (inf * 0 = NaN); the softmax product (S2) sums a_j g_j = 0 * inf = NaN
    into every entry. Where no target weight sits on the saturated side, grad_a C stays
    finite and BP1 is exact. The fused forms (F1, F2) never form grad_a C: always finite.
    """
    cases = [  # (logits, targets, out, loss, what BP1 gives)
        ([1000.0], [0.3], "sigmoid", "binary_cross_entropy", "nan"),
        ([40.0], [0.3], "sigmoid", "binary_cross_entropy", "inf"),
        ([1000.0], [0.0], "sigmoid", "binary_cross_entropy", "nan"),
        ([1000.0], [1.0], "sigmoid", "binary_cross_entropy", "exact"),
        ([-1000.0], [0.0], "sigmoid", "binary_cross_entropy", "exact"),
        ([1000.0, 0.0, -1000.0], [1.0, 0.0, 0.0], "softmax", "cross_entropy", "exact"),
        ([1000.0, 0.0, -1000.0], [0.0, 0.0, 1.0], "softmax", "cross_entropy", "nan"),
        ([1000.0, 0.0, -1000.0], [0.5, 0.3, 0.2], "softmax", "cross_entropy", "nan"),
    ]
    for logits, targets, out, loss, unfused in cases:
        net, params, X, Y = one_example(logits, targets, out, loss)
        want = jax.grad(stable_reference_cost)(params, X, Y, net)[0]["b"]
        cost = jaxnn.cost(params, X, Y, net)
        assert np.isfinite(cost) and cost == pytest.approx(
            float(stable_reference_cost(params, X, Y, net)), rel=1e-14
        )
        fused = jaxnn.backprop(params, X, Y, net, fused=True)[0]["b"]
        assert_trees_close(fused, want, 1e-15, f"fused {logits} {targets}")
        bp1 = np.asarray(jaxnn.backprop(params, X, Y, net, fused=False)[0]["b"])
        if unfused == "exact":
            assert_trees_close(bp1, np.asarray(want), 1e-15, f"bp1 {logits} {targets}")
        elif unfused == "inf":
            assert np.all(np.isinf(bp1)), (logits, targets, bp1)
        else:
            assert np.all(np.isnan(bp1)), (logits, targets, bp1)
        # The seed's literal cost, log(A), is infinite where grad_a C is.
        literal = jaxnn.losses.get(loss).value(
            jax.nn.sigmoid(X) if out == "sigmoid" else jax.nn.softmax(X, axis=0), Y
        )
        assert np.isfinite(literal[0]) == (unfused == "exact")


def test_unfused_bp1_loses_accuracy_before_saturation():
    """sigmoid + BCE, z in [15, 30], y = 0.3: 1 - a has lost log10(e^z) of its 16 digits,
    so BP1's (1 - y) / (1 - a) is off by up to eps / e^-z ~ 1e-9 to 1e-3; F2 (a - y)
    stays within an ulp. The exact delta is 0.7 - sigma(-z) (no cancellation)."""
    z = np.linspace(15.0, 30.0, 31)
    y = np.full_like(z, 0.3)
    net = jaxnn.Network((31, 31), ("sigmoid",), "binary_cross_entropy")
    params = [{"W": jnp.eye(31), "b": jnp.zeros((31, 1))}]
    X, Y = jnp.asarray(z)[:, None], jnp.asarray(y)[:, None]
    exact = 0.7 - 1 / (1 + np.exp(z))
    fused = np.asarray(jaxnn.backprop(params, X, Y, net, fused=True)[0]["b"])[:, 0]
    bp1 = np.asarray(jaxnn.backprop(params, X, Y, net, fused=False)[0]["b"])[:, 0]
    assert max_relative_error(fused, exact) <= 2 * EPS
    assert 1e-6 < max_relative_error(bp1, exact) < 1e-2
    # at moderate z the two forms agree
    z_small = np.linspace(-5, 5, 31)
    X_small = jnp.asarray(z_small)[:, None]
    fused_small = jaxnn.backprop(params, X_small, Y, net, fused=True)
    bp1_small = jaxnn.backprop(params, X_small, Y, net, fused=False)
    assert max_relative_error(bp1_small[0]["b"], fused_small[0]["b"]) <= 1e-13
    assert max_relative_error(fused_small[0]["b"][:, 0], 1 / (1 + np.exp(-z_small)) - 0.3) <= 1e-13


@pytest.mark.slow
@pytest.mark.parametrize("scale", [1e3, 1e4])
@pytest.mark.parametrize("net", SATURATED[:2], ids=net_id)
def test_extreme_values_in_float32(net, scale):
    """float32 at the same extremes: finite, and the fused gradient within 1e-4."""
    params, X, Y = saturated_problem(net, LABELS[net.loss][-1], scale)
    p32, X32, Y32 = (jax.tree.map(lambda x: x.astype(np.float32), t) for t in (params, X, Y))
    value, grads = jaxnn.value_and_backprop(p32, X32, Y32, net)
    assert np.isfinite(value) and value >= 0
    want = jax.grad(stable_reference_cost)(p32, X32, Y32, net)
    assert_trees_close(grads, want, 1e-4, "float32")
    assert math.isclose(value, stable_reference_cost(params, X, Y, net), rel_tol=1e-4)


def test_tuple_params_get_tuple_gradients():
    """Gradients have the params' pytree structure, container type included."""
    net = _net(2, ("tanh",), ("softmax", "cross_entropy"))  # the matrix's shapes: no compiles
    params, X, Y = problem(net, "one-hot", M)
    params = tuple(params)
    grads = jaxnn.backprop(params, X, Y, net)
    expected = jax.grad(jaxnn.cost)(params, X, Y, net)
    assert jax.tree.structure(grads) == jax.tree.structure(expected)
    assert_trees_close(grads, expected, 1e-12)


# (BP2)'s product as lowered (the CPU's form here, unless the tests run elsewhere), and
# each backend's form called directly, so that both are tested on any machine.
BP2_FORMS = ("transpose_times", "transpose_times_cpu", "transpose_times_default")


@pytest.mark.parametrize("form", BP2_FORMS)
@pytest.mark.parametrize("n_out, n_in, m", [(64, 48, 2), (3, 5, 9), (16, 16, 8)])
def test_bp2_product_either_way(n_out, n_in, m, form):
    """(BP2)'s W^T delta: on the CPU through a transposed copy of W, or of delta and the
    product when those are smaller (m (n_out + n_in) < n_out n_in); elsewhere as
    written. The same values."""
    rng = np.random.default_rng(n_out + m)
    W, delta = rng.normal(size=(n_out, n_in)), rng.normal(size=(n_out, m))
    got = jax.jit(getattr(jaxnn.backpropagation, form))(jnp.asarray(W), jnp.asarray(delta))
    np.testing.assert_allclose(got, W.T @ delta, rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("platform, barriers", [("cpu", True), ("cuda", False), ("tpu", False)])
def test_bp2_cpu_form_only_where_lowered_for_the_cpu(platform, barriers):
    """The CPU-measured barriers are chosen when the program is lowered, for the
    platform it is lowered for, not where it is traced (jax.export lowers for any)."""
    W, delta = jnp.ones((64, 48)), jnp.ones((64, 2))  # both CPU forms' barriers
    exported = jax.export.export(
        jax.jit(jaxnn.backpropagation.transpose_times), platforms=[platform]
    )(W, delta)
    assert ("optimization_barrier" in exported.mlir_module()) == barriers


@pytest.mark.slow
@pytest.mark.parametrize("form", BP2_FORMS)
def test_backprop_with_a_small_batch_through_wide_layers(form, monkeypatch):
    """The (delta^T W)^T form of BP2 in every hidden layer (2 examples, widths 40 and 30),
    and the other backends' form, against jax.grad in float64."""
    bp = jaxnn.backpropagation
    monkeypatch.setattr(bp, "transpose_times", getattr(bp, form))
    net = jaxnn.Network((6, 40, 30, 4), ("tanh", "relu", "softmax"), "cross_entropy")
    assert all(2 * (o + i) < o * i for i, o in zip(net.sizes[1:-1], net.sizes[2:], strict=True))
    rng = np.random.default_rng(3)
    params = random_params(net.sizes, 3)
    X = jnp.asarray(rng.normal(size=(6, 2)))
    Y = jnp.asarray(random_targets(net.loss, 4, 2, rng))
    expected = jax.grad(jaxnn.cost)(params, X, Y, net)
    assert_trees_close(jaxnn.backprop(params, X, Y, net), expected, rtol=1e-10)
    jitted = jax.jit(lambda p, X, Y: jaxnn.backprop(p, X, Y, net))  # traced anew: the form's
    assert_trees_close(jitted(params, X, Y), expected, rtol=1e-10)
    traced = str(jax.make_jaxpr(jitted)(params, X, Y))  # as lowered: both forms, a cond
    assert ("optimization_barrier" in traced) == (form != "transpose_times_default")
