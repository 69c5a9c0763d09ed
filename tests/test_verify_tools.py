"""Where and how much, kinks, directions, the Taylor test, any pytree, weak checks.

Each test compares the reports with an independent computation: numpy for
the worst entry, jax.grad and hand arithmetic for kinks, known orders for the
Taylor test.
"""

import json
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxnn
from jaxnn import verify
from jaxnn.verify import WeakCheckWarning, check_gradients, locate_fault, taylor_test
from tests import corpus


def logistic_cost(w, x, y):
    return jnp.mean(jnp.logaddexp(0.0, -y * (x @ w)))


def logistic_grad(w, x, y):
    return -(x.T @ (y * jax.nn.sigmoid(-y * (x @ w)))) / x.shape[0]


def logistic_data(dtype=np.float64, n=12, d=4, seed=1):
    rng = np.random.default_rng(seed)
    w, x = rng.normal(size=d).astype(dtype), rng.normal(size=(n, d)).astype(dtype)
    return w, x, rng.choice([-1.0, 1.0], n).astype(dtype)


# --- where and how much ----------------------------------------------------------------


def test_every_leaf_names_its_worst_entry_with_both_values():
    case = next(c for c in corpus.BUGS if c.name == "BP3 mean for sum")
    params, X, Y = corpus.make_point(case)
    report = check_gradients(corpus.grad_fn(case), corpus.cost_fn(case.net), params, X, Y)
    hand = corpus.grad_fn(case)(params, X, Y)
    ref = jax.grad(corpus.cost_fn(case.net))(params, X, Y)
    for leaf, (a, e) in zip(
        report.leaves,
        [(h[k], r[k]) for h, r in zip(hand, ref, strict=True) for k in ("W", "b")],
        strict=True,
    ):
        a, e = np.asarray(a), np.asarray(e)
        index = np.unravel_index(np.argmax(np.abs(a - e)), a.shape)
        worst = leaf.grad.worst
        assert worst.index == tuple(int(i) for i in index)
        assert worst.hand == a[index] and worst.reference == e[index]
        assert worst.difference == pytest.approx(a[index] - e[index])
    bad = report.leaves[-1]  # db^[3]: the mean over m = 6 columns for the sum
    assert not bad.ok and bad.grad.worst.hand == pytest.approx(bad.grad.worst.reference / 6)
    w = bad.grad.worst
    assert f"at ({w.index[0]}, 0): hand {w.hand:.1e}, ref {w.reference:.1e}" in str(report)


@pytest.mark.slow
def test_reports_render_as_html_and_convert_to_json():
    case = next(c for c in corpus.BUGS if c.name == "tanh' = 1 - tanh (square missing)")
    params, X, Y = corpus.make_point(case)
    reports = [
        check_gradients(corpus.grad_fn(case), corpus.cost_fn(case.net), params, X, Y),
        locate_fault(params, X, Y, case.net, corpus.jitted_backward(case)),
        taylor_test(corpus.grad_fn(case), corpus.cost_fn(case.net), params, X, Y),
    ]
    for report in reports:
        html = report._repr_html_()
        assert html.count("<tr>") == len(str(report).split("\n-")[0].splitlines()[-1:]) + (
            len(getattr(report, "leaves", getattr(report, "layers", ())))
            + isinstance(report, verify.TaylorReport)
        )
        assert "FAIL" in html or "DIFFERS" in html
        data = json.loads(json.dumps(report.as_dict(), allow_nan=False))
        assert data["ok"] is False
    grad, fault, taylor = (r.as_dict() for r in reports)
    assert fault["fault"] == [2, "delta", "BP2"]
    assert grad["leaves"][2]["grad"]["worst"]["index"] == list(
        reports[0].leaves[2].grad.worst.index
    )
    assert taylor["leaves"][2]["ok"] is False and taylor["leaves"][-1]["ok"] is True
    worst = reports[1].layers[1].delta.worst  # layer 2's delta
    assert f"worst at ({worst.index[0]}, {worst.index[1]})" in str(reports[1])


# --- kinks ----------------------------------------------------------------------------


def test_jax_conventions_at_the_kinks_are_as_documented():
    assert jax.grad(jax.nn.relu)(0.0) == 0.0
    assert jax.grad(jax.nn.leaky_relu)(0.0) == 1.0
    assert verify.KINKS["relu"].jax_value == 0.0 and verify.KINKS["leaky_relu"].jax_value == 1.0
    assert set(verify.KINKS) == {"relu", "leaky_relu"}  # sigmoid, tanh, softmax, linear: smooth


def corpus_case(name):
    """The corpus's case ``name``: its programs compiled once, for tests/test_corpus.py too."""
    return next(c for c in corpus.CASES if c.name == name)


# relu'(0) = 1 in every layer of corpus.RELU_CE, at the kink point: correct
RELU_KINK_1 = "kink, relu'(0) = 1 (z >= 0)"


def test_check_gradients_reports_a_kink_between_the_one_sided_derivatives():
    case = corpus_case(RELU_KINK_1)
    params, X, Y = corpus.make_point(case)
    cost = corpus.cost_fn(case.net)
    report = check_gradients(corpus.grad_fn(case), cost, params, X, Y)
    assert report.ok and report.kinks > 0
    ref = jax.grad(cost)(params, X, Y)
    hand = corpus.grad_fn(case)(params, X, Y)
    pairs = [(l, k) for l in range(3) for k in ("W", "b")]
    for leaf, (l, k) in zip(report.leaves, pairs, strict=True):
        differs = np.argwhere(np.abs(np.asarray(hand[l][k]) - np.asarray(ref[l][k])) > 1e-12)
        located = leaf.kinks.index if leaf.kinks else ()
        assert {tuple(ix) for ix in differs} == set(located), leaf.path
        for a, lo, hi in zip(*(leaf.kinks[1:] if leaf.kinks else ((),) * 4)[1:], strict=True):
            assert min(lo, hi) - 1e-9 <= a <= max(lo, hi) + 1e-9
    assert report.leaves[1].kinks.count >= 1  # b^[1]: unit j at z = 0 in example 0
    assert "at a kink" in str(report)
    # the same pass without the kink analysis fails
    assert not check_gradients(corpus.grad_fn(case), cost, params, X, Y, kinks=False).ok


def test_a_genuine_error_at_a_kink_still_fails():
    case = corpus_case("kink only: relu'(0) = 2")  # in layer 1 only
    params, X, Y = corpus.make_point(case)
    report = check_gradients(corpus.grad_fn(case), corpus.cost_fn(case.net), params, X, Y)
    assert not report.ok and not report.leaves[1].ok and report.kinks == 0
    fault = locate_fault(params, X, Y, case.net, corpus.jitted_backward(case))
    assert fault.fault == (1, "delta", "BP2") and fault.kinks == 0


def test_locate_fault_counts_and_locates_kinks():
    case = corpus_case(RELU_KINK_1)
    params, X, Y = corpus.make_point(case)
    report = locate_fault(params, X, Y, case.net, corpus.jitted_backward(case))
    assert report.ok
    cache = jaxnn.forward(params, X, case.net)
    # layer 2: unit 0 sits at z = 0 in every example; layer 1: every unit in example 0
    assert {ix[0] for ix in report.layers[1].kinks.index} == {0}
    assert {ix[1] for ix in report.layers[0].kinks.index} == {0}
    zeros = sum(int(np.sum(np.asarray(Z) == 0)) for Z in cache.Z[:2])
    assert 0 < report.kinks <= zeros
    assert "delta entries at a kink (z = 0)" in str(report)


@pytest.mark.slow
def test_directional_check_at_a_kink():
    case = corpus_case("kink, relu output, relu'(0) = 1")
    params, X, Y = corpus.make_point(case)
    report = check_gradients(
        corpus.grad_fn(case), corpus.cost_fn(case.net), params, X, Y, directions=6
    )
    assert report.ok and report.kinks > 0, str(report)


# --- directional ------------------------------------------------------------------------


@pytest.mark.slow
def test_directional_mode_names_the_wrong_leaf_with_a_per_direction_tolerance():
    case = next(c for c in corpus.BUGS if c.name == "BP4 extra 1/m")
    params, X, Y = corpus.make_point(case)
    cost = corpus.cost_fn(case.net)
    report = check_gradients(corpus.grad_fn(case), cost, params, X, Y, directions=5)
    assert report.directions == 5 and report.h is not None
    assert [leaf.ok for leaf in report.leaves] == [False, True, False, True, False, True]
    hand = corpus.grad_fn(case)(params, X, Y)
    for leaf, a in zip(report.leaves, [g[k] for g in hand for k in ("W", "b")], strict=True):
        assert leaf.grad.scale == pytest.approx(float(np.linalg.norm(np.asarray(a))))
        assert leaf.grad.worst.index[0] in range(5)
    right = check_gradients(jax.jit(jax.grad(cost)), cost, params, X, Y, directions=5)
    assert right.ok and all(leaf.grad.max_rel < 1e-13 for leaf in right.leaves)


@pytest.mark.slow
def test_directional_tolerance_does_not_grow_with_the_number_of_entries():
    """A correct gradient of 200 000 entries passes at rtol 1e-8; a 1% error in one
    tenth of them fails, though per entry it is 1e-2 of the leaf's scale."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=200_000)
    cost = lambda w: 0.5 * jnp.sum((w - x) ** 2 * (1 + jnp.cos(w)))
    grad = jax.jit(jax.grad(cost))
    w = rng.normal(size=200_000)
    assert check_gradients(grad, cost, w, directions=4).ok

    def wrong(w):
        return grad(w).at[:20_000].multiply(1.01)

    report = check_gradients(wrong, cost, w, directions=4)
    assert not report.ok


# --- Taylor -------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_taylor_order_is_two_when_right_and_one_when_wrong(dtype):
    w, x, y = logistic_data(dtype)
    right = taylor_test(logistic_grad, logistic_cost, w, x, y)
    assert right.ok and right.order == pytest.approx(2.0, abs=0.2)
    # float32 resolves an error of a few percent along v, float64 of 1e-7 (taylor's docstring)
    factor = 1.01 if dtype == np.float64 else 1.1
    wrong = taylor_test(lambda w, x, y: factor * logistic_grad(w, x, y), logistic_cost, w, x, y)
    assert not wrong.ok and wrong.order == pytest.approx(1.0, abs=0.2)
    assert right.dtype == np.dtype(dtype).name


@pytest.mark.slow
def test_taylor_per_leaf_and_linear_costs():
    case = next(c for c in corpus.BUGS if c.name == "BP3 mean for sum")
    params, X, Y = corpus.make_point(case)
    report = taylor_test(corpus.grad_fn(case), corpus.cost_fn(case.net), params, X, Y)
    assert [leaf.ok for leaf in report.leaves] == [True, False] * 3  # every db is a mean
    assert all(leaf.order == pytest.approx(1.0, abs=0.2) for leaf in report.leaves[1::2])
    assert all(leaf.order == pytest.approx(2.0, abs=0.2) for leaf in report.leaves[::2])
    linear = taylor_test(lambda w: jnp.ones(3), lambda w: jnp.sum(w), np.zeros(3))
    assert linear.status == "inconclusive" and linear.order is None  # never "ok" (issue 23)
    assert not taylor_test(lambda w: 2 * jnp.ones(3), lambda w: jnp.sum(w), np.zeros(3)).ok


# --- any function ----------------------------------------------------------------------


@jax.tree_util.register_pytree_with_keys_class
class Model:
    """Equinox-style: every field is a child, the activation function included."""

    def __init__(self, weight, bias, activation, name):
        self.weight, self.bias, self.activation, self.name = weight, bias, activation, name

    def tree_flatten_with_keys(self):
        keys = ("weight", "bias", "activation", "name")
        return [(jax.tree_util.GetAttrKey(k), getattr(self, k)) for k in keys], None

    @classmethod
    def tree_unflatten(cls, aux, children):
        return cls(*children)


def model_cost(model, x, *, y):
    return jnp.mean((model.activation(x @ model.weight + model.bias) - y) ** 2)


def model_grad(model, x, *, y):
    z = x @ model.weight + model.bias
    d = 2 * (jnp.tanh(z) - y) * (1 - jnp.tanh(z) ** 2) / y.size  # tanh' = 1 - tanh^2
    return Model(x.T @ d, jnp.sum(d), None, None)


@pytest.mark.slow
def test_any_pytree_with_non_array_leaves_and_keyword_data():
    rng = np.random.default_rng(0)
    model = Model(rng.normal(size=3), np.float64(0.1), jax.nn.tanh, "tiny")
    x, y = rng.normal(size=(8, 3)), rng.normal(size=8)
    report = check_gradients(model_grad, model_cost, model, x, y=y, finite_differences=True)
    assert report.ok, str(report)
    assert [leaf.path for leaf in report.leaves] == [".weight", ".bias"]
    assert report.fixed == (".activation", ".name")
    assert "held fixed (not float arrays): .activation, .name" in str(report)
    assert check_gradients(model_grad, model_cost, model, x, y=y, directions=3).ok
    taylor = taylor_test(model_grad, model_cost, model, x, y=y)
    assert taylor.ok and taylor.fixed == (".activation", ".name")

    def missing_square(model, x, *, y):
        g = model_grad(model, x, y=y)
        return Model(g.weight, 1.5 * g.bias, None, None)

    bad = check_gradients(missing_square, model_cost, model, x, y=y)
    assert [leaf.ok for leaf in bad.leaves] == [True, False]


# --- weak checks, and silence ----------------------------------------------------------------


@pytest.mark.slow
def test_a_float64_sized_tolerance_on_float32_warns():
    w, x, y = logistic_data(np.float32)
    with pytest.warns(WeakCheckWarning, match=r"rtol=1e-08 is below float32's resolution"):
        check_gradients(logistic_grad, logistic_cost, w, x, y, rtol=1e-8)
    with pytest.warns(WeakCheckWarning, match="central differences in float32"):
        check_gradients(
            logistic_grad, logistic_cost, w, x, y, finite_differences=True, fd_rtol=1e-8
        )
    wb = jnp.asarray(w * 100, jnp.bfloat16)
    with pytest.warns(WeakCheckWarning, match=r"p \+ h == p"):
        check_gradients(
            logistic_grad,
            logistic_cost,
            wb,
            x.astype(jnp.bfloat16),
            y.astype(jnp.bfloat16),
            finite_differences=True,
            h=1e-3,
            rtol=0.5,
        )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_gradients(logistic_grad, logistic_cost, w, x, y)  # the defaults: no warning
        w64, x64, y64 = logistic_data()
        check_gradients(logistic_grad, logistic_cost, w64, x64, y64, rtol=1e-8)


def test_nothing_in_verify_prints(capsys):
    case = corpus.BUGS[0]
    params, X, Y = corpus.make_point(case)
    check_gradients(corpus.grad_fn(case), corpus.cost_fn(case.net), params, X, Y)
    locate_fault(params, X, Y, case.net, corpus.jitted_backward(case))
    taylor_test(corpus.grad_fn(case), corpus.cost_fn(case.net), params, X, Y)
    out, err = capsys.readouterr()
    assert out == "" and err == ""


def test_taylor_test_is_exported_at_top_level():
    assert jaxnn.taylor_test is verify.taylor.taylor_test
    assert "taylor_test" in jaxnn.__all__ and "taylor_test" in verify.__all__
