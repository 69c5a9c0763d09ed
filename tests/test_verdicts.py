"""Issue 23: verdicts a researcher can trust. Each test is one reproducer from the issue.

Never "ok" for a wrong gradient (NaN, Inf, a vanishing direction, nothing tested, an
error excused as a kink), never an alarm for a right one (an exact zero, a float32
leaf beside float64 ones, finite differences that cannot resolve the cost), and a
clear error for bad input. "inconclusive" is not ok.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxnn
from jaxnn.verify import check_gradients, locate_fault, taylor_test
from tests import corpus_honest
from tests.helpers import sample

TOOLS = {
    "full": lambda g, c, p, *a: check_gradients(g, c, p, *a),
    "directional": lambda g, c, p, *a: check_gradients(g, c, p, *a, directions=4),
    "taylor": lambda g, c, p, *a: taylor_test(g, c, p, *a),
}


def quadratic(w):
    return 0.5 * jnp.sum(w**2) + jnp.sum(jnp.sin(w))


def quadratic_grad(w):
    return w + jnp.cos(w)


W3 = np.array([0.3, -1.2, 0.7])
HONEST = {case.name: case for case in corpus_honest.CASES}


@functools.cache
def honest_report(tool, name):
    """``tool``'s report on the honest corpus's case ``name``, computed once: a test below
    that makes the same check (the same cost, gradient and point) reads it from here."""
    case = HONEST[name]
    return TOOLS[tool](case.grad, case.cost, case.params, *case.args)


# --- NaN and Inf ------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("tool", TOOLS)
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_a_nan_or_inf_in_the_hand_gradient_fails_naming_the_entry(tool, bad):
    # quadratic_grad(w).at[1].set(bad), quadratic, at W3
    report = honest_report(tool, f"{'nan' if bad != bad else 'inf'} in the hand gradient")
    assert not report.ok and report.status == "fail", str(report)
    assert ("nan" if bad != bad else "inf") in str(report) and "(1,)" in str(report)


@pytest.mark.slow
@pytest.mark.parametrize("tool", TOOLS)
def test_a_cost_that_is_infinite_at_the_point_fails(tool):
    # -sum(log w) at w = (0.5, 0, 2), the hand gradient -1/w where w != 0
    report = honest_report(tool, "cost inf at the point (-log 0)")
    assert not report.ok and report.status == "fail", str(report)
    assert "C(p)" in str(report)


def test_an_inf_in_the_reference_fails_the_leaf():
    # sum(sqrt w) at w = (0, 1, 4): d/dw sqrt at 0 is inf
    report = honest_report("full", "reference inf (sqrt at 0)")
    assert not report.ok and "reference" in str(report) and "(0,)" in str(report)


def test_taylor_skips_steps_where_the_cost_is_nan_and_still_judges():
    # -sum(log w) at w = (1e-3, 0.5, 2): large steps leave the domain, C = nan there;
    # the hand gradients -1/w and -1.3/w
    right = honest_report("taylor", "log, steps leave the domain, right")
    wrong = honest_report("taylor", "log, steps leave the domain, 30% wrong")
    assert right.ok, str(right)
    assert not wrong.ok and wrong.status == "fail", str(wrong)
    assert "nan .. nan" not in str(right)


# --- every leaf moved ---------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("seed", sample(range(6), 3))
def test_a_scalar_parameter_with_the_wrong_sign_fails_at_every_seed(seed):
    cost = lambda w: jnp.sum(jnp.sin(w) + w**2)
    for w in (np.float64(0.4), np.array([0.4])):
        right = taylor_test(lambda w: jnp.cos(w) + 2 * w, cost, w, seed=seed)
        wrong = taylor_test(lambda w: -(jnp.cos(w) + 2 * w), cost, w, seed=seed)
        assert right.ok, str(right)
        assert not wrong.ok and wrong.status == "fail", str(wrong)
        directional = check_gradients(
            lambda w: -(jnp.cos(w) + 2 * w), cost, w, directions=2, seed=seed
        )
        assert not directional.ok


# --- nothing checked ----------------------------------------------------------------------


@pytest.mark.parametrize("tool", TOOLS)
@pytest.mark.parametrize(
    "params", [{}, {"n": np.arange(3)}, {"w": np.zeros((0, 3))}], ids=["empty", "int", "size0"]
)
def test_nothing_to_check_is_inconclusive_never_ok(tool, params):
    cost = lambda p: sum(jnp.sum(x) for x in jax.tree.leaves(p)) * 1.0
    grad = lambda p: jax.tree.map(lambda x: jnp.ones_like(x, jnp.float64), p)
    report = TOOLS[tool](grad, cost, params)
    assert report.status == "inconclusive" and not report.ok, str(report)
    assert "inconclusive" in str(report).lower() and "nothing" in str(report).lower()


# --- kinks: only where the cost has one ---------------------------------------------------


def tanh_regression_cost(w, x, y):
    return 0.5 * jnp.mean((jnp.tanh(x @ w) - y) ** 2)


@functools.cache
def large_inputs(dtype):
    """``(w, x, y)`` with inputs ~3e3, and the right gradient's report (once per dtype)."""
    rng = np.random.default_rng(0)
    x = (3e3 * rng.normal(size=(20, 4))).astype(dtype)
    y = rng.uniform(-1, 1, 20).astype(dtype)
    w = (rng.normal(size=4) * 1e-4).astype(dtype)
    return (w, x, y), check_gradients(jax.grad(tanh_regression_cost), tanh_regression_cost, w, x, y)


@pytest.mark.slow
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("error", [1.3, -1.0])
def test_a_smooth_cost_with_large_inputs_is_no_kink(dtype, error):
    point, right = large_inputs(dtype)
    grad = jax.grad(tanh_regression_cost)
    wrong = lambda w, x, y: grad(w, x, y).at[0].multiply(error)
    report = check_gradients(wrong, tanh_regression_cost, *point)
    assert not report.ok and report.kinks == 0, str(report)
    assert right.ok, str(right)


@pytest.mark.slow
@pytest.mark.parametrize("tool", TOOLS)
def test_a_tie_of_a_max_takes_only_a_subgradient(tool):
    cost = lambda w: jnp.maximum(w[0], w[1]) + 0.1 * jnp.sum(w**2)
    w = np.array([0.5, 0.5])
    # the honest corpus's cases: 0.2 w + (1, 1), (1, 0), (0.25, 0.75)
    not_sub = honest_report(tool, "max tie, (1, 1) no subgradient")
    assert not not_sub.ok, str(not_sub)
    for name in ("max tie, (1, 0)", "max tie, (0.25, 0.75)"):
        report = honest_report(tool, name)
        assert report.ok, str(report)
    report = TOOLS[tool](lambda w: 0.2 * w + jnp.array([0.0, 1.0]), cost, w)
    assert report.ok, str(report)


@pytest.mark.slow
def test_relu_conventions_at_a_kink_still_pass():
    cost = lambda w: jnp.sum(jax.nn.relu(w)) + jnp.sum(w**2)
    w = np.array([0.0, 0.0, 0.3])
    for slope in (0.0, 0.5, 1.0):
        report = check_gradients(lambda w, s=slope: jnp.where(w > 0, 1.0, s) + 2 * w, cost, w)
        assert report.ok, str(report)
    assert not check_gradients(lambda w: jnp.where(w > 0, 1.0, 1.5) + 2 * w, cost, w).ok


# --- exact zeros, per-leaf tolerances, dtype hints ----------------------------------------


@pytest.mark.slow
def test_an_exact_zero_gradient_is_no_false_alarm():
    """A bias before a normalisation and a shift of a softmax's input: true gradient 0."""
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(8, 5)), rng.normal(size=(8, 5))

    def cost(p, x, y):
        z = x @ p["W"] + p["b"]
        z = (z - z.mean(axis=0, keepdims=True)) / z.std(axis=0, keepdims=True)
        logits = z + p["shift"]
        return jnp.mean((jax.nn.log_softmax(logits) - y) ** 2)

    def hand(p, x, y):
        g = jax.grad(cost)(p, x, y)
        return {"W": g["W"], "b": jnp.zeros_like(p["b"]), "shift": jnp.zeros_like(p["shift"])}

    p = {"W": rng.normal(size=(5, 5)), "b": rng.normal(size=(1, 5)), "shift": np.array(0.7)}
    report = check_gradients(hand, cost, p, x, y)
    assert report.ok, str(report)
    assert "atol" in str(report)
    wrong = lambda p, x, y: {**hand(p, x, y), "b": jnp.full((1, 5), 1e-3)}
    assert not check_gradients(wrong, cost, p, x, y).ok


@pytest.mark.slow
def test_one_float32_leaf_does_not_loosen_the_float64_ones():
    # sin(a) + b^2, a float64 and b float32; the hand da is 1e-5 off, db right
    report = honest_report("full", "float32 leaf beside float64, 1e-5 wrong in float64")
    assert not report.ok and [leaf.ok for leaf in report.leaves] == [False, True], str(report)
    assert [leaf.rtol for leaf in report.leaves] == [1e-8, 1e-4]


def test_a_float32_hand_gradient_for_float64_params_gets_a_hint():
    p = np.linspace(0.1, 1.0, 4)
    report = check_gradients(lambda w: quadratic_grad(w).astype(jnp.float32), quadratic, p)
    assert not report.ok and "float32" in str(report) and "float64" in str(report)


def test_extra_leaves_in_the_hand_gradient_are_an_error():
    p = {"w": W3}
    with pytest.raises(ValueError, match=r"\['extra'\]"):
        check_gradients(
            lambda p: {"w": quadratic_grad(p["w"]), "extra": 1.0}, lambda p: quadratic(p["w"]), p
        )


# --- taylor in low precision --------------------------------------------------------------


def test_taylor_below_rounding_is_inconclusive_and_suggests_float64():
    report = taylor_test(lambda w: jnp.ones(3), lambda w: jnp.sum(w), np.zeros(3))
    assert report.status == "inconclusive" and not report.ok, str(report)
    assert "float64" in str(report)


def logistic_cost(w, x, y):
    return jnp.mean(jnp.logaddexp(0.0, -y * (x @ w)))


@functools.cache
def logistic_taylor(dtype, factor):
    """taylor_test of ``factor`` times the logistic cost's gradient at the honest corpus's
    point (seed 2) in ``dtype``, once: the corpus's report where it has the case."""
    name = jnp.dtype(dtype).name
    case = f"logistic, right, {name}" if factor == 1 else f"logistic, x{factor:g}, {name}"
    if case in HONEST:
        return honest_report("taylor", case)
    rng = np.random.default_rng(2)
    x = rng.normal(size=(30, 4)).astype(dtype)
    y = rng.choice([-1.0, 1.0], 30).astype(dtype)
    w = rng.normal(size=4).astype(dtype)
    grad = jax.grad(logistic_cost)
    return taylor_test(lambda w, x, y: factor * grad(w, x, y), logistic_cost, w, x, y)


@pytest.mark.slow
@pytest.mark.parametrize("dtype", [np.float32, jnp.bfloat16])
@pytest.mark.parametrize("factor", sample([1.01, 1.1, 1.5, -1.0], 2))
def test_taylor_in_low_precision_sees_errors_of_one_percent(dtype, factor):
    right, wrong = logistic_taylor(dtype, 1), logistic_taylor(dtype, factor)
    if dtype == np.float32:
        assert right.ok, str(right)
    else:  # bfloat16 gradients are right only to 1e-2: not ok unless seen as ok honestly
        assert right.status in ("ok", "inconclusive"), str(right)
    if abs(factor - 1) >= (0.01 if dtype == np.float32 else 0.1):
        assert not wrong.ok, str(wrong)


# --- the directional mode -----------------------------------------------------------------


def test_directional_mode_without_finite_differences_and_on_custom_vjp():
    @jax.custom_vjp
    def f(w):
        return jnp.sum(jnp.sin(w))

    f.defvjp(lambda w: (f(w), w), lambda w, g: (g * jnp.cos(w),))
    w = W3
    report = check_gradients(lambda w: jnp.cos(w), f, w, directions=3)
    assert report.ok and report.reference == "grad", str(report)
    assert not check_gradients(lambda w: jnp.sin(w), f, w, directions=3).ok
    plain = check_gradients(quadratic_grad, quadratic, W3, directions=3, finite_differences=False)
    assert plain.ok and plain.h is None and plain.leaves[0].fd is None


@pytest.mark.slow
@pytest.mark.parametrize(
    "cost, grad, w",
    [
        (lambda w: jnp.sum(jnp.sin(1e4 * w)), lambda w: 1e4 * jnp.cos(1e4 * w), W3),
        (lambda w: -jnp.sum(jnp.log(w)), lambda w: -1 / w, np.array([1e-6, 0.3, 2.0])),
    ],
    ids=["high-frequency", "log-boundary"],
)
def test_directional_mode_raises_no_false_alarm_where_differences_cannot_resolve(cost, grad, w):
    report = check_gradients(grad, cost, w, directions=4)
    assert report.ok, str(report)
    wrong = check_gradients(lambda w: 1.1 * grad(w), cost, w, directions=4)
    assert not wrong.ok


@pytest.mark.parametrize("tool", TOOLS)
@pytest.mark.parametrize(
    "cost, what",
    [(lambda w: w * 2.0, "scalar"), (lambda w: jnp.sum(w > 0), "float")],
    ids=["vector", "integer"],
)
def test_a_non_scalar_or_integer_cost_is_a_clear_error(tool, cost, what):
    with pytest.raises(ValueError, match=what):
        TOOLS[tool](lambda w: w, cost, W3)


# --- locate_fault -------------------------------------------------------------------------


def _net_point():
    net = jaxnn.Network((3, 5, 2), ("tanh", "softmax"), "cross_entropy")
    params = jaxnn.init_params(jax.random.key(0), net)
    rng = np.random.default_rng(0)
    X, Y = rng.normal(size=(3, 6)), np.eye(2)[:, rng.integers(0, 2, 6)]
    return net, params, X, Y


@pytest.mark.slow
@pytest.mark.parametrize(
    "name, change, equation",
    [
        ("b", lambda g: g["b"].reshape(-1), "BP3"),
        ("W", lambda g: g["W"].T, "BP4"),
    ],
)
def test_locate_fault_checks_every_gradient_shape_first(name, change, equation):
    net, params, X, Y = _net_point()

    def backward(params, cache, Y, net, fused=True):
        result = jaxnn.backward(params, cache, Y, net, fused=fused)
        grads = [dict(g) for g in result.grads]
        grads[0][name] = change(grads[0])
        return jaxnn.Backward(grads, result.deltas)

    with pytest.raises(ValueError, match=f"layer 1.*{equation}"):
        locate_fault(params, X, Y, net, backward)


# --- jaxnn verify ------------------------------------------------------------------------


@pytest.mark.slow
def test_the_verify_matrix_fails_a_clipped_binary_cross_entropy(monkeypatch):
    from jaxnn import losses
    from jaxnn.verify import matrix_program, run_matrix

    def clipped(A, Y):
        a = jnp.clip(A, 1e-6, 1 - 1e-6)
        return -Y / a + (1 - Y) / (1 - a)

    bce = losses.LOSSES["binary_cross_entropy"]
    monkeypatch.setitem(losses.LOSSES, "binary_cross_entropy", bce._replace(grad=clipped))
    monkeypatch.setattr(matrix_program, "_COMPILED", {})
    rows = run_matrix(hidden_activations=("tanh",), depths=(1,))
    unfused = [r for r in rows if r["loss"] == "binary_cross_entropy" and not r["fused"]]
    assert unfused and not any(r["ok"] for r in unfused)
    others = [r for r in rows if r["loss"] != "binary_cross_entropy" or r["fused"]]
    assert all(r["ok"] for r in others)


# --- the corpus of issue 23 ---------------------------------------------------------------


@pytest.mark.slow
def test_locate_fault_takes_biases_held_as_vectors():
    """Flax's and Equinox's (n,) biases: a right backward pass is clean, and a wrong db at
    layer 2 is found there (BP3)."""
    net = jaxnn.Network((3, 5, 2), ("tanh", "softmax"), "cross_entropy")
    rng = np.random.default_rng(0)
    params = [
        {"W": rng.normal(size=(5, 3)), "b": rng.normal(size=(5,))},
        {"W": rng.normal(size=(2, 5)), "b": rng.normal(size=(2,))},
    ]
    X, Y = rng.normal(size=(3, 7)), np.eye(2)[:, rng.integers(0, 2, 7)]
    assert locate_fault(params, X, Y, net).ok

    def wrong_db(params, cache, Y, net, fused=True):
        grads, deltas, *_ = jaxnn.backward(params, cache, Y, net, fused=fused)
        grads = [dict(g) for g in grads]
        grads[1]["b"] = 2 * grads[1]["b"]
        return grads, deltas

    report = locate_fault(params, X, Y, net, wrong_db)
    assert not report.ok and report.fault == (2, "b", "BP3")


@pytest.mark.slow
def test_locate_fault_allows_rounding_at_an_exact_zero():
    """Inputs that are all 0 make dW^[1] exactly 0; a hand value off by rounding there
    (1e-14 of db^[1]'s largest entry) is within the natural atol, and an atol of 0 would
    call it a fault."""
    net = jaxnn.Network((3, 4, 2), ("tanh", "softmax"), "cross_entropy")
    rng = np.random.default_rng(1)
    params = [
        {"W": rng.normal(size=(n, k)), "b": rng.normal(size=(n, 1))} for n, k in [(4, 3), (2, 4)]
    ]
    X, Y = rng.normal(size=(3, 6)), np.eye(2)[:, rng.integers(0, 2, 6)]
    X[:] = 0.0

    def rounded(params, cache, Y, net, fused=True):
        grads, deltas, *_ = jaxnn.backward(params, cache, Y, net, fused=fused)
        grads = [dict(g) for g in grads]
        scale = float(jnp.max(jnp.abs(grads[0]["b"])))
        grads[0]["W"] = grads[0]["W"] + 1e-14 * scale
        return grads, deltas

    report = locate_fault(params, X, Y, net, rounded)
    assert report.ok and report.atol > 0
    assert not locate_fault(params, X, Y, net, rounded, atol=0.0).ok


@pytest.mark.parametrize("tool", TOOLS)
@pytest.mark.parametrize("case", sample(corpus_honest.CASES, 23), ids=lambda c: c.name)
def test_no_false_pass_and_no_false_alarm_on_the_honest_corpus(tool, case):
    report = honest_report(tool, case.name)
    expect = case.expected(tool)
    if expect == "ok":
        assert report.ok, str(report)
    else:
        assert not report.ok, str(report)
    if expect == "inconclusive":
        assert report.status == "inconclusive", str(report)
