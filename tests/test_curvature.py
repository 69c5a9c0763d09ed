"""jaxnn.curvature against autodiff: every activation, every head, every function of A's.

Each reference is independent of the code under test:

* ``hvp``: ``jax.jvp(jax.grad(jaxnn.cost))``, forward over reverse;
* ``ggn_vp``: J^T (Lambda (J V)) by ``jax.jvp`` and ``jax.vjp`` of the network up to the
  GGN's split point (Z^[L] for softmax + CE and sigmoid + BCE, A^[L] for MSE: (H4)),
  Lambda V by ``jax.jvp(jax.grad(...))`` of the loss there;
* ``diag_ggn`` and ``diag_hessian``: the diagonals of the dense GGN (J^T Lambda J from
  ``jax.jacfwd`` and ``jax.hessian``) and of the dense Hessian (``jax.hessian``) of small
  networks, parameters flattened; ``diag_ggn_mc``: the dense GGN of the same sampled
  factor (its expectation is tested on the heads);
* the heads: ``jax.hessian`` of one example's cost in z^[L]; sigma'': ``jax.grad`` twice.

float64 within 1e-10 of each leaf's largest entry; float32 (the hand code in float32,
the reference in float64) within 1e-4. tests/curvature_corpus.py's seeded errors must
each fail these same checks (``test_each_seeded_error_is_caught``).
"""

import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

import jaxnn
from jaxnn import activations, curvature, losses
from jaxnn.curvature import heads
from jaxnn.curvature.second_derivatives import (
    SECOND_DERIVATIVES,
    residual_factors,
    residual_vp,
    second_derivative,
)
from tests import curvature_corpus
from tests.helpers import PAIRS, assert_trees_close, fast_jit, leaf_relative_error, sample

M = 5
SIZES = (3, 4, 4, 3)
MC_SAMPLES = 3
# The heads whose cost is convex in z^[L]: the GGN splits there; MSE splits at A^[L].
# Written here, apart from jaxnn's table, so that a head moved in the library shows.
SPLIT_AT_Z = {("softmax", "cross_entropy"), ("sigmoid", "binary_cross_entropy")}
QUANTITIES = ("hvp", "ggn_vp", "diag_ggn", "diag_hessian", "diag_ggn_mc")
DEEP = ("softmax", "tanh", "sigmoid", "softmax")  # softmax first: its residuals reach it


def _nets() -> dict:
    """Every hidden activation (two to a network, the heads in turn), every head, the
    corpus's networks, and a deeper network whose residuals travel two layers."""
    names = list(activations.ACTIVATIONS)
    hidden = [(*names[i : i + 2], "tanh")[:2] for i in range(0, len(names), 2)]
    nets = [
        jaxnn.Network(SIZES, (*h, output), loss)
        for h, (output, loss) in zip(hidden, itertools.cycle(PAIRS))
    ]
    covered = {(net.activations[-1], net.loss) for net in nets}
    nets += [
        jaxnn.Network(SIZES, ("tanh", "sigmoid", o), l) for o, l in PAIRS if (o, l) not in covered
    ]
    nets += [*curvature_corpus.NETS, jaxnn.Network((3, 4, 3, 4, 3), DEEP, "mse")]
    return {f"{','.join(net.activations)}-{net.loss}": net for net in nets}


NETS = _nets()


def problem(net: jaxnn.Network, dtype=jnp.float64, seed: int = 0):
    """params (non-zero biases), X, Y and a direction V, all of ``dtype``."""
    rng = np.random.default_rng(seed)

    def like_params(scale):
        return [
            {
                "W": jnp.asarray(rng.normal(0, scale / np.sqrt(n_in), (n_out, n_in)), dtype),
                "b": jnp.asarray(rng.normal(0, 0.5, (n_out, 1)), dtype),
            }
            for n_in, n_out in zip(net.sizes[:-1], net.sizes[1:], strict=True)
        ]

    params, V = like_params(1.5), like_params(1.0)
    X = jnp.asarray(rng.normal(size=(net.sizes[0], M)), dtype)
    n = net.sizes[-1]
    if net.loss == "cross_entropy":
        Y = np.eye(n)[:, rng.integers(0, n, M)]
    elif net.loss == "binary_cross_entropy":
        Y = rng.uniform(size=(n, M))
    else:
        Y = rng.normal(size=(n, M))
    return params, X, jnp.asarray(Y, dtype), V


def hand_function(net: jaxnn.Network, quantities: tuple[str, ...] = QUANTITIES):
    """The ``quantities`` by jaxnn.curvature, one compiled program (not cached: the corpus
    compiles it again under each seeded error, for the quantities that must catch it)."""

    def hand(params, X, Y, V, key):
        every = {
            "hvp": lambda: curvature.hvp(params, X, Y, net, V),
            "ggn_vp": lambda: curvature.ggn_vp(params, X, Y, net, V),
            "diag_ggn": lambda: curvature.diag_ggn(params, X, Y, net),
            "diag_hessian": lambda: curvature.diag_hessian(params, X, Y, net),
            "diag_ggn_mc": lambda: curvature.diag_ggn_mc(params, X, Y, net, key, MC_SAMPLES),
        }
        return tuple(every[what]() for what in quantities)

    return fast_jit(hand)


hand_compiled = functools.cache(hand_function)


@functools.cache
def reference(net: jaxnn.Network, dtype=jnp.float64):
    """The same quantities by autodiff (see the module's docstring), one compiled program,
    in float64; the Monte Carlo factor's draws from hand's forward pass in ``dtype``."""
    output_act = activations.get(net.activations[-1])
    at_z = (net.activations[-1], net.loss) in SPLIT_AT_Z

    def ref(params, X, Y, V, key):
        # the draws of the Monte Carlo factor depend on the dtype: the reference takes hand's
        cache = jaxnn.forward_unchecked(cast(params, dtype), cast(X, dtype), net)
        S = heads.sampled_output_factor(cache.Z[-1], cache.A[-1], net, key, MC_SAMPLES)
        S = jnp.asarray(S, jnp.float64)
        cost = lambda p: jaxnn.cost(p, X, Y, net)
        hv = jax.jvp(jax.grad(cost), (params,), (V,))[1]

        def split(p):  # the network up to the GGN's split point
            cache = jaxnn.forward_unchecked(p, X, net)
            return cache.Z[-1] if at_z else cache.A[-1]

        def loss(out):  # the mean cost from the split point on
            if at_z:
                value = losses.get(net.loss).stable_value(out, output_act.fn(out), Y)
            else:
                value = losses.mse(out, Y)
            return jnp.mean(value)

        out, J_V = jax.jvp(split, (params,), (V,))
        gv = jax.vjp(split, params)[1](jax.jvp(jax.grad(loss), (out,), (J_V,))[1])[0]

        flat, unravel = ravel_pytree(params)
        H = jax.hessian(lambda t: cost(unravel(t)))(flat)
        J = jax.jacfwd(lambda t: split(unravel(t)))(flat).reshape(out.size, flat.size)
        G = J.T @ jax.hessian(loss)(out).reshape(out.size, out.size) @ J

        # the Monte Carlo factor's GGN: (1/m) sum_x J_x^T S~_x S~_x^T J_x, J of Z^[L]
        J_Z = jax.jacfwd(lambda t: jaxnn.forward_unchecked(unravel(t), X, net).Z[-1])(flat)
        projected = jnp.einsum("ncx,nxp->cxp", S, J_Z)
        mc = jnp.sum(projected**2, axis=(0, 1)) / X.shape[1]
        return hv, gv, unravel(jnp.diag(G)), unravel(jnp.diag(H)), unravel(mc)

    return fast_jit(ref)


def cast(tree, dtype):
    return jax.tree.map(lambda a: jnp.asarray(a, dtype), tree)


def errors(
    net: jaxnn.Network, hand, dtype=jnp.float64, quantities: tuple[str, ...] = QUANTITIES
) -> tuple[dict, tuple, tuple]:
    """``({quantity: the largest relative error of any leaf}, hand's, reference's)`` for
    the ``quantities`` ``hand`` computes, ``hand`` run in ``dtype``, the reference in float64."""
    params, X, Y, V = problem(net, jnp.float64)
    key = jax.random.key(7)
    every = dict(zip(QUANTITIES, reference(net, dtype)(params, X, Y, V, key), strict=True))
    want = tuple(every[what] for what in quantities)
    got = hand(*cast((params, X, Y, V), dtype), key)
    found = {}
    for what, g, w in zip(quantities, got, want, strict=True):
        assert jax.tree.structure(g) == jax.tree.structure(w), what
        leaves = zip(jax.tree.leaves(g), jax.tree.leaves(w), strict=True)
        found[what] = max(leaf_relative_error(a, b) for a, b in leaves)
    return found, got, want


@pytest.mark.slow
@pytest.mark.parametrize("name", sample(NETS, 2))
def test_curvature_equals_autodiff_float64(name):
    _, got, want = errors(NETS[name], hand_compiled(NETS[name]))
    for what, g, w in zip(QUANTITIES, got, want, strict=True):
        assert_trees_close(g, w, 1e-10, f"{name}: {what}")


@pytest.mark.slow
@pytest.mark.parametrize(
    "net",
    [curvature_corpus.CROSS_ENTROPY, curvature_corpus.SIGMOID_MSE],
    ids=lambda net: f"{','.join(net.activations)}-{net.loss}",
)
def test_curvature_equals_autodiff_float32(net):
    found, got, _ = errors(net, hand_compiled(net), jnp.float32)
    assert all(a.dtype == jnp.float32 for a in jax.tree.leaves(got))
    assert max(found.values()) <= 1e-4, found


def test_the_cases_cover_every_activation_and_head():
    hidden = {a for net in NETS.values() for a in net.activations[:-1]}
    assert hidden == set(activations.ACTIVATIONS)
    assert {(net.activations[-1], net.loss) for net in NETS.values()} == set(PAIRS)


@pytest.mark.slow
@pytest.mark.parametrize("fault", sample(curvature_corpus.FAULTS, 2), ids=lambda f: f.name)
def test_each_seeded_error_is_caught(fault, monkeypatch):
    fault.plant(monkeypatch)
    # only the quantities that must catch it: the claim is about them alone
    found, _, _ = errors(
        fault.net, hand_function(fault.net, fault.caught_by), quantities=fault.caught_by
    )
    caught = {what for what, err in found.items() if err > 1e-6}
    assert set(fault.caught_by) <= caught, (fault.name, found)


def test_hvp_costs_at_most_two_and_a_half_backprops_in_flops():
    """The issue's network, 784-512-512-10 at batch 256 in float32: XLA's count of the
    compiled programs' flops (not a timing), hvp against one backprop and against
    forward-over-reverse autodiff. Compiled only, never run."""
    net = jaxnn.Network((784, 512, 512, 10), ("relu", "relu", "softmax"), "cross_entropy")
    params = jax.eval_shape(lambda: jaxnn.init_params(jax.random.key(0), net, dtype=jnp.float32))
    X = jax.ShapeDtypeStruct((784, 256), jnp.float32)
    Y = jax.ShapeDtypeStruct((10, 256), jnp.float32)

    def flops(fun, *args):
        return jax.jit(fun).lower(*args).compile().cost_analysis()["flops"]

    backprop = flops(lambda p, x, y: jaxnn.backprop(p, x, y, net), params, X, Y)
    hvp = flops(lambda p, x, y, v: curvature.hvp(p, x, y, net, v), params, X, Y, params)
    cost = lambda p, x, y: jaxnn.cost(p, x, y, net)
    autodiff = flops(
        lambda p, x, y, v: jax.jvp(lambda q: jax.grad(cost)(q, x, y), (p,), (v,))[1],
        params,
        X,
        Y,
        params,
    )
    assert hvp <= 2.5 * backprop, (hvp, backprop)
    assert hvp <= 1.05 * autodiff, (hvp, autodiff)


def test_the_diagonals_memory_is_of_the_widths_not_the_parameters_squared():
    """XLA's plan for 784-512-512-10 at batch 256, float32 (compiled, never run): the
    diagonals' scratch memory is of the factors, (n^[l], n_L, m) floats (5 MB for a
    hidden layer), where one row of the dense Hessian alone would take 2.7 MB and the
    whole 1.8 TB."""
    net = jaxnn.Network((784, 512, 512, 10), ("tanh", "tanh", "softmax"), "cross_entropy")
    params = jax.eval_shape(lambda: jaxnn.init_params(jax.random.key(0), net, dtype=jnp.float32))
    X = jax.ShapeDtypeStruct((784, 256), jnp.float32)
    Y = jax.ShapeDtypeStruct((10, 256), jnp.float32)
    for fun in (curvature.diag_ggn, curvature.diag_hessian):
        compiled = jax.jit(lambda p, x, y, fun=fun: fun(p, x, y, net)).lower(params, X, Y)
        scratch = compiled.compile().memory_analysis().temp_size_in_bytes
        assert scratch <= 64 * 2**20, (fun.__name__, scratch)


# --- sigma'' and the residual of softmax -------------------------------------------------

ELEMENTWISE = [name for name, act in activations.ACTIVATIONS.items() if act.deriv is not None]


def test_every_elementwise_activation_has_its_second_derivative():
    assert set(SECOND_DERIVATIVES) == set(ELEMENTWISE)
    with pytest.raises(ValueError, match="no second derivative for activation 'softmax'"):
        second_derivative("softmax")


@fast_jit
def second_derivatives_and_autodiff(z, far64, far32):
    """{name: (sigma''(z), autodiff's, sigma''(far64), sigma''(far32))}, every element-wise
    activation in one program."""

    def autodiff(name):
        sigma = lambda x: activations.get(name).fn(jnp.reshape(x, (1, 1)))[0, 0]
        return jax.vmap(jax.grad(jax.grad(sigma)))(z)

    seconds = {name: second_derivative(name) for name in ELEMENTWISE}
    return {name: (f(z), autodiff(name), f(far64), f(far32)) for name, f in seconds.items()}


@pytest.mark.slow
def test_second_derivative_equals_autodiff():
    z = jnp.linspace(-6.0, 6.0, 97) + 0.013  # no point at relu's kink
    far = [-800.0, -60.0, -30.0, 30.0, 60.0, 800.0]  # no overflow into inf or nan far out
    results = second_derivatives_and_autodiff(
        z, jnp.asarray(far, jnp.float64), jnp.asarray(far, jnp.float32)
    )
    failures = []
    for name, (got, expected, far64, far32) in results.items():
        try:
            np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-13, err_msg=name)
        except AssertionError as e:
            failures.append(str(e))
        for dtype, values in (("float64", far64), ("float32", far32)):
            if values.dtype != dtype or not np.all(np.isfinite(values)):
                failures.append(f"{name}: far out in {dtype}: {values}")
    assert not failures, "\n".join(failures)


@functools.partial(fast_jit, static_argnums=0)
def residual_and_autodiff(name, Z, G, V):
    """(Res(g) v, the Hessian of g . a(z) times v, Res(g) from its factors, that Hessian)."""
    act = activations.get(name)
    A = act.fn(Z)
    g_dot_a = lambda z, g: jnp.dot(g, act.fn(z[:, None])[:, 0])
    expected = jnp.moveaxis(jax.vmap(jax.hessian(g_dot_a), in_axes=(1, 1))(Z, G), 0, -1)
    d, F, w = residual_factors(name, Z, A, G)
    got = jnp.eye(4)[:, :, None] * d[:, None, :]
    if F is not None:
        got = got + jnp.einsum("icm,cm,jcm->ijm", F, jnp.broadcast_to(w, F.shape[1:]), F)
    return residual_vp(name, Z, A, G, V), jnp.einsum("ijm,jm->im", expected, V), got, expected


@pytest.mark.slow
@pytest.mark.parametrize("name", ["sigmoid", "softmax"])
def test_residual_equals_the_hessian_of_g_dot_a(name):
    """Res(g) = d^2 (g . a(z)) / dz^2, per column (SD-R), (SD-S1), (SD-S2)."""
    rng = np.random.default_rng(1)
    Z, G, V = (jnp.asarray(rng.normal(size=(4, 3))) for _ in range(3))
    vp, expected_vp, got, expected = residual_and_autodiff(name, Z, G, V)
    np.testing.assert_allclose(vp, expected_vp, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-15)


# --- the heads -------------------------------------------------------------------------


def head_problem(output: str, loss: str, m: int = 4):
    """Z, A = sigma(Z), Y for a head: labels that do not sum to 1 for cross-entropy, so
    that (H1)'s sum_k y_k is tested."""
    rng = np.random.default_rng(2)
    net = jaxnn.Network((2, 3), (output,), loss)
    Z = jnp.asarray(rng.normal(size=(3, m)) * 2)
    if loss == "cross_entropy":
        Y = rng.uniform(0.1, 1.0, size=(3, m))
    elif loss == "binary_cross_entropy":
        Y = rng.uniform(size=(3, m))
    else:
        Y = rng.normal(size=(3, m))
    return net, Z, activations.get(output).fn(Z), jnp.asarray(Y)


def head_output_and_autodiff(output, loss, Z, A, Y, V):
    """(jaxnn's H_out, H_out V, Lambda V, S S^T) and autodiff's (H, H V, Lambda V, Lambda)."""
    net = jaxnn.Network((2, 3), (output,), loss)
    act = activations.get(output)
    one = lambda z, y: losses.get(loss).stable_value(z[:, None], act.fn(z[:, None]), y[:, None])[0]
    H = jnp.moveaxis(jax.vmap(jax.hessian(one), in_axes=(1, 1))(Z, Y), 0, -1)  # (n, n, m)
    if (output, loss) in SPLIT_AT_Z:
        Lambda = H
    else:  # J^T J, J the output activation's Jacobian
        J = jax.vmap(jax.jacobian(lambda z: act.fn(z[:, None])[:, 0]), in_axes=1)(Z)
        Lambda = jnp.moveaxis(jnp.einsum("mki,mkj->mij", J, J), 0, -1)
    S = heads.output_hessian_factor(Z, A, Y, net)
    got = (
        heads.output_hessian(Z, A, Y, net),
        heads.output_hessian_vp(Z, A, Y, net, V),
        heads.ggn_output_hessian_vp(Z, A, Y, net, V),
        jnp.einsum("icm,jcm->ijm", S, S),
    )
    lambda_v = jnp.einsum("ijm,jm->im", Lambda, V)
    return got, (H, jnp.einsum("ijm,jm->im", H, V), lambda_v, Lambda)


@fast_jit
def every_head_and_autodiff(problems, V):
    """``head_output_and_autodiff`` of every pair of PAIRS, one program."""
    return [
        head_output_and_autodiff(output, loss, *problem, V)
        for (output, loss), problem in zip(PAIRS, problems, strict=True)
    ]


@pytest.mark.slow
def test_output_hessian_and_its_factor_equal_autodiff():
    """Every head of PAIRS: H_out, H_out V, Lambda V and S S^T = Lambda."""
    problems = [head_problem(output, loss)[1:] for output, loss in PAIRS]
    V = jnp.asarray(np.random.default_rng(3).normal(size=problems[0][0].shape))
    names = ("output_hessian", "output_hessian_vp", "ggn_output_hessian_vp", "S S^T")
    failures = []
    for pair, (got, want) in zip(PAIRS, every_head_and_autodiff(problems, V), strict=True):
        for what, g, w in zip(names, got, want, strict=True):
            try:
                np.testing.assert_allclose(g, w, rtol=1e-12, atol=1e-14, err_msg=f"{pair}: {what}")
            except AssertionError as e:
                failures.append(str(e))
    assert not failures, "\n".join(failures)


SAMPLES = 40000


@fast_jit
def sampled_and_exact_factors(problems, key):
    """Per pair of PAIRS: (S~'s shape as an array, the mean and the spread of one draw's
    S~ S~^T, Lambda = S S^T), one program."""
    out = []
    for (output, loss), (Z, A, Y) in zip(PAIRS, problems, strict=True):
        net = jaxnn.Network((2, 3), (output,), loss)
        S = heads.sampled_output_factor(Z, A, net, key, SAMPLES, Y=Y)
        outer = jnp.einsum("icm,jcm->cijm", S, S) * SAMPLES  # one draw's S~ S~^T each
        factor = heads.output_hessian_factor(Z, A, Y, net)
        exact = jnp.einsum("icm,jcm->ijm", factor, factor)  # Lambda, by (H5)
        out.append((jnp.asarray(S.shape), jnp.mean(outer, axis=0), jnp.std(outer, axis=0), exact))
    return out


@pytest.mark.slow
def test_the_sampled_factor_is_the_ggn_output_hessian_in_expectation():
    """E[S~ S~^T] = Lambda (H6), every head of PAIRS: 40000 draws, within 5 standard
    errors of the mean."""
    problems = [head_problem(output, loss, m=2)[1:] for output, loss in PAIRS]
    results = sampled_and_exact_factors(problems, jax.random.key(0))
    failures = []
    for pair, (shape, mean, spread, exact) in zip(PAIRS, results, strict=True):
        if tuple(shape) != (3, SAMPLES, 2):
            failures.append(f"{pair}: S~ has shape {tuple(shape)}")
        elif not np.all(np.abs(mean - exact) <= 5 * spread / np.sqrt(SAMPLES) + 1e-12):
            failures.append(f"{pair}: mean {mean} vs Lambda {exact}")
    assert not failures, "\n".join(failures)


def test_every_convex_head_of_the_table_is_a_head_of_jaxnn():
    """CONVEX_HEADS names heads of jaxnn.losses.HEADS; every other head is MSE (H3)."""
    pairs = {(h.activation, h.loss) for h in losses.HEADS}
    assert set(heads.CONVEX_HEADS) <= pairs
    assert all(loss == "mse" for _, loss in pairs - set(heads.CONVEX_HEADS))
    assert set(heads.CONVEX_HEADS) == SPLIT_AT_Z


# --- conventions and errors ------------------------------------------------------------


def as_vectors(tree):
    """params as a tuple of layers with (n,) biases."""
    return tuple({"W": layer["W"], "b": layer["b"][:, 0]} for layer in tree)


@fast_jit
def with_labels_and_vector_biases(params, X, labels, V, key):
    """Every quantity for CROSS_ENTROPY from integer labels and ``as_vectors`` params."""
    net, p, v = curvature_corpus.CROSS_ENTROPY, as_vectors(params), as_vectors(V)
    return (
        curvature.hvp(p, X, labels, net, v),
        curvature.ggn_vp(p, X, labels, net, v),
        curvature.diag_ggn(p, X, labels, net),
        curvature.diag_hessian(p, X, labels, net),
        curvature.diag_ggn_mc(p, X, labels, net, key, MC_SAMPLES),
    )


@pytest.mark.slow
def test_labels_tuples_and_vector_biases_give_the_same_numbers_in_the_callers_shapes():
    net = curvature_corpus.CROSS_ENTROPY
    params, X, Y, V = problem(net)
    key = jax.random.key(7)
    expected = hand_compiled(net)(params, X, Y, V, key)
    labels = jnp.asarray(np.argmax(np.asarray(Y), axis=0))
    got = with_labels_and_vector_biases(params, X, labels, V, key)
    for what, g, e in zip(QUANTITIES, got, expected, strict=True):
        assert_trees_close(g, as_vectors(e), 1e-12, what)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda V: V[:1], "V has 1 layers, params has 3"),
        (lambda V: [V[0], {"W": V[1]["W"]}, V[2]], "V: layer 2: expected a dict with keys"),
        (
            lambda V: [V[0], V[1], {"W": V[2]["W"].T, "b": V[2]["b"]}],
            r"V: layer 3: W has shape \(4, 3\), params' W has \(3, 4\)",
        ),
        (lambda V: [V[0], V[1], {"W": V[2]["W"], "b": V[2]["b"][:, 0]}], "layer 3: b has shape"),
        (lambda V: {"W": 1}, "V is a dict"),
    ],
)
def test_a_direction_unlike_the_params_is_a_clear_error(change, message):
    net = curvature_corpus.CROSS_ENTROPY
    params, X, Y, V = problem(net)
    for fun in (curvature.hvp, curvature.ggn_vp):
        with pytest.raises(ValueError, match=message):
            fun(params, X, Y, net, change(V))


def test_bad_inputs_are_clear_errors_before_any_math():
    net = curvature_corpus.CROSS_ENTROPY
    params, X, Y, _ = problem(net)
    key = jax.random.key(0)
    with pytest.raises(ValueError, match="samples must be an integer >= 1, got 0"):
        curvature.diag_ggn_mc(params, X, Y, net, key, 0)
    with pytest.raises(ValueError, match=r"diag_ggn_mc: key must be a jax\.random key"):
        curvature.diag_ggn_mc(params, X, Y, net, 0)
    with pytest.raises(ValueError, match="X has shape"):
        curvature.diag_hessian(params, X.T, Y, net)
    block = jaxnn.Network(net.sizes, net.activations)  # no loss
    for fun in (curvature.diag_ggn, curvature.diag_hessian):
        with pytest.raises(ValueError, match="this network has no loss"):
            fun(params, X, Y, block)
