"""jaxnn.verify: check_gradients, locate_fault, and the verify matrix.

The fault-localisation tests inject real mistakes into an otherwise faithful
transcription of BP1-BP4 (``backward_with``) and check that the report names
the layer and equation where each one enters.

The gradients under test run jitted (``BACKPROP``, ``COST``): one compilation
per network is quicker than dispatching every small op. The matrix tests share
one reduced matrix (every output and loss, both ``fused``, a smooth and a
piecewise hidden activation, one and two hidden layers); the full default
matrix, ~50 s of CPU, runs with ``JAXNN_FULL_MATRIX=1`` (or ``jaxnn verify``).
"""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxnn
from jaxnn import activations, verify
from jaxnn.verify import check_gradients, locate_fault, matrix_program, measures
from jaxnn.verify import matrix as vm
from tests.helpers import VERIFY_CONFIGURATIONS, VERIFY_DEPTHS, VERIFY_HIDDEN, fast_jit

BACKPROP = fast_jit(jaxnn.backprop, static_argnums=3, static_argnames="fused")
# check_gradients differentiates cost_fn, and JAX takes compiler options only at
# the top level, so the cost is jitted plainly.
COST = jax.jit(jaxnn.cost, static_argnums=3)


def params_for(net, seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    return [
        {
            "W": jnp.asarray(rng.normal(0, 1 / np.sqrt(n_in), (n_out, n_in)), dtype),
            "b": jnp.asarray(rng.normal(0, 0.5, (n_out, 1)), dtype),
        }
        for n_in, n_out in zip(net.sizes[:-1], net.sizes[1:], strict=True)
    ]


def data_for(net, m=7, seed=0):
    rng = np.random.default_rng(seed + 100)
    X = jnp.asarray(rng.normal(size=(net.sizes[0], m)))
    n = net.sizes[-1]
    if net.loss == "cross_entropy":
        Y = np.eye(n)[:, rng.integers(0, n, m)]
    elif net.loss == "binary_cross_entropy":
        Y = rng.integers(0, 2, (n, m)).astype(np.float64)
    else:
        Y = rng.normal(size=(n, m))
    return X, jnp.asarray(Y)


# ---------------------------------------------------------------------------
# check_gradients


def test_check_gradients_passes_jaxnn_backprop_and_names_every_leaf():
    net = jaxnn.Network((4, 5, 3), ("tanh", "softmax"), "cross_entropy")
    params, (X, Y) = params_for(net), data_for(net)
    report = check_gradients(BACKPROP, COST, params, X, Y, net)
    assert report.ok
    assert report.rtol == 1e-8 and report.atol == 0.0
    assert [leaf.path for leaf in report.leaves] == ["[0]['W']", "[0]['b']", "[1]['W']", "[1]['b']"]
    assert all(leaf.grad.max_rel < 1e-14 for leaf in report.leaves)
    text = str(report)
    assert "[1]['b']" in text and "OK" in text and "FAIL" not in text


def test_check_gradients_on_any_function_with_finite_differences():
    """A researcher's own derivation: logistic regression, three lines."""

    def cost(w, x, y):
        return jnp.mean(jnp.logaddexp(0.0, -y * (x @ w)))

    def grad(w, x, y):
        return -(x.T @ (y * jax.nn.sigmoid(-y * (x @ w)))) / x.shape[0]

    rng = np.random.default_rng(1)
    w, x, y = rng.normal(size=3), rng.normal(size=(10, 3)), rng.choice([-1.0, 1.0], 10)
    report = check_gradients(grad, cost, w, x, y, finite_differences=True)
    assert report.ok, str(report)
    assert report.h == pytest.approx(np.finfo(np.float64).eps ** (1 / 3))
    assert report.leaves[0].path == "" and report.leaves[0].fd.max_rel < 1e-8
    assert "central differences" in str(report)


@pytest.mark.slow
def test_check_gradients_flags_the_wrong_leaf():
    net = jaxnn.Network((3, 4, 2), ("relu", "linear"), "mse")
    params, (X, Y) = params_for(net), data_for(net)

    def bias_twice(params, X, Y, net):
        grads = BACKPROP(params, X, Y, net)
        grads[0]["b"] = 2 * grads[0]["b"]
        return grads

    report = check_gradients(bias_twice, COST, params, X, Y, net, finite_differences=True)
    assert not report.ok
    bad = {leaf.path for leaf in report.leaves if not leaf.ok}
    assert bad == {"[0]['b']"}
    assert {leaf.path for leaf in report.leaves if not leaf.fd_ok} == {"[0]['b']"}
    assert report.leaves[1].grad.max_rel == pytest.approx(1.0)
    assert "FAIL" in str(report) and str(report).endswith("FAILED")


@pytest.mark.slow
def test_check_gradients_tolerances_follow_the_dtype():
    net = jaxnn.Network((3, 4, 2), ("sigmoid", "sigmoid"), "binary_cross_entropy")
    params = params_for(net, dtype=np.float32)
    X, Y = (a.astype(jnp.float32) for a in data_for(net))
    report = check_gradients(BACKPROP, COST, params, X, Y, net)
    assert report.rtol == 1e-4 and report.ok
    assert measures.default_rtol(jnp.bfloat16) == 1e-2


def test_check_gradients_rejects_a_mismatched_structure():
    net = jaxnn.Network((3, 4, 2), ("relu", "linear"), "mse")  # compiled for the test above
    params, (X, Y) = params_for(net), data_for(net)
    with pytest.raises(ValueError, match=r"has no array at \[1\]\[.W.\]"):
        check_gradients(lambda *a: BACKPROP(*a)[:1], COST, params, X, Y, net)
    with pytest.raises(ValueError, match=r"\[0\]\['W'\] has shape \(3, 4\)"):
        check_gradients(
            lambda p, *a: [{"W": g["W"].T, "b": g["b"]} for g in BACKPROP(p, *a)],
            COST,
            params,
            X,
            Y,
            net,
        )


def test_errors_definitions():
    e = np.array([1.0, -4.0, 0.0])
    err = verify.errors(e + np.array([0.0, 3 * np.spacing(4.0), 0.0]), e)
    assert err.max_abs == 3 * np.spacing(4.0)
    assert err.max_rel == pytest.approx(3 * np.spacing(4.0) / 4.0)
    assert err.ulp == pytest.approx(3.0)
    assert verify.errors(np.zeros(3), np.zeros(3))[:4] == (0.0, 0.0, 0.0, 0.0)
    assert verify.errors(np.ones(2), np.zeros(2)).max_rel == np.inf
    assert np.isnan(verify.errors(np.array([np.nan, 1.0]), np.ones(2)).max_abs)
    # float32 ulps are counted in float32's spacing
    e32 = np.float32([2.0])
    assert verify.errors(e32 + np.spacing(np.float32(2.0)), e32).ulp == pytest.approx(1.0)


# ---------------------------------------------------------------------------
# locate_fault


def backward_with(*, output_grad=None, deriv=None, bias=None):
    """BP1-BP4 as the seeds write them, with one formula replaceable to inject a fault.

    output_grad(A, Y): grad_a C for BP1 (default: jaxnn's); deriv(l, Z): sigma'
    of math layer l for BP2 (default: jaxnn's); bias(delta): BP3 (default: sum).
    """

    def backward(params, cache, Y, net, fused):
        del fused
        L = net.L
        out = activations.get(net.activations[-1])
        A, Z = cache.A[-1], cache.Z[-1]
        grad_a = (output_grad or jaxnn.losses.get(net.loss).grad)(A, Y)
        delta = out.vjp(Z, A, grad_a) / A.shape[1]  # (BP1) for the mean cost
        grads, deltas = [None] * L, [None] * L
        for l in reversed(range(L)):
            deltas[l] = delta
            db = bias(delta) if bias else jnp.sum(delta, axis=1, keepdims=True)
            grads[l] = {"W": delta @ cache.A[l].T, "b": db}  # (BP4), (BP3)
            if l > 0:
                sigma_prime = (
                    deriv or (lambda k, Z: activations.get(net.activations[k - 1]).deriv(Z))
                )(l, cache.Z[l - 1])
                delta = (params[l]["W"].T @ delta) * sigma_prime  # (BP2)
        return jaxnn.Backward(grads, deltas)

    return backward


def jitted(backward_fn):
    """``backward_fn(params, cache, Y, net, fused=...)`` compiled once instead of run op by op."""
    return fast_jit(backward_fn, static_argnums=3, static_argnames="fused")


def seed_bce_as_written(A, Y):
    """grad_a of the seed's C = y log a + (1 - y) log(1 - a): the minus sign is missing."""
    return Y / A - (1 - Y) / (1 - A)


BCE_NET = jaxnn.Network((4, 6, 5, 3), ("tanh", "relu", "sigmoid"), "binary_cross_entropy")


@pytest.mark.slow
@pytest.mark.parametrize(
    "net, fused, backward_fn",
    [
        (BCE_NET, True, None),  # the default backward_fn, jaxnn.backward, op by op
        (
            jaxnn.Network((4, 5, 3), ("leaky_relu", "softmax"), "cross_entropy"),
            False,
            jitted(jaxnn.backward),
        ),
        (
            jaxnn.Network((4, 5, 6, 2), ("sigmoid", "softmax", "tanh"), "mse"),
            True,
            jitted(jaxnn.backward),
        ),
    ],
    ids=["bce-fused", "ce-bp1", "mse"],
)
def test_locate_fault_finds_nothing_in_jaxnn_backward(net, fused, backward_fn):
    params, (X, Y) = params_for(net), data_for(net)
    given = {} if backward_fn is None else {"backward_fn": backward_fn}
    report = locate_fault(params, X, Y, net, fused=fused, **given)
    assert report.ok and report.fault is None and report.first_bad_layer is None
    assert all(check.delta.ulp < 64 for check in report.layers)
    assert "every layer agrees" in str(report)


@pytest.mark.slow
def test_locate_fault_names_layer_L_for_the_seeds_bce_sign():
    params, (X, Y) = params_for(BCE_NET), data_for(BCE_NET)
    report = locate_fault(params, X, Y, BCE_NET, backward_with(output_grad=seed_bce_as_written))
    assert not report.ok
    assert report.fault == (3, "delta", "BP1")
    assert report.first_bad_layer == BCE_NET.L
    # The wrong sign flips delta^[3] exactly: |a - e| = 2 |e|.
    assert report.layers[2].delta.max_rel == pytest.approx(2.0)
    assert not any(check.delta_ok for check in report.layers)  # it spreads down through BP2
    assert "first disagreement, from the output back: layer 3, delta^[3] (BP1)" in str(report)


@pytest.mark.slow
def test_locate_fault_names_the_hidden_layer_with_a_wrong_derivative():
    net = jaxnn.Network((4, 6, 5, 4, 3), ("tanh", "tanh", "tanh", "softmax"), "cross_entropy")
    params, (X, Y) = params_for(net), data_for(net)

    def deriv(l, Z):  # layer 2 writes tanh' = 1 - tanh(z): the square is missing
        return 1 - jnp.tanh(Z) if l == 2 else activations.tanh_deriv(Z)

    report = locate_fault(params, X, Y, net, jitted(backward_with(deriv=deriv)))
    assert report.fault == (2, "delta", "BP2")
    assert [c.delta_ok for c in report.layers] == [False, False, True, True]
    assert report.layers[3].W_ok and report.layers[2].W_ok and not report.layers[1].W_ok


def test_locate_fault_names_a_bias_gradient_fault():
    net = jaxnn.Network((4, 5, 3), ("relu", "softmax"), "cross_entropy")
    params, (X, Y) = params_for(net), data_for(net)
    mean_not_sum = backward_with(bias=lambda d: jnp.mean(d, axis=1, keepdims=True))
    report = locate_fault(params, X, Y, net, jitted(mean_not_sum))
    assert report.fault == (2, "b", "BP3")
    assert all(c.delta_ok and c.W_ok for c in report.layers)


@pytest.mark.slow
def test_reference_deltas_are_jax_vjp_of_the_cut_network():
    net = jaxnn.Network((4, 5, 3), ("sigmoid", "softmax"), "cross_entropy")
    params, (X, Y) = params_for(net), data_for(net)
    deltas = fast_jit(verify.reference_deltas, static_argnums=3)(params, X, Y, net)
    # delta^[1] W-gradient identity: dC/dW^[1] = delta^[1] X^T (BP4), against jax.grad
    grads = jax.grad(COST)(params, X, Y, net)
    np.testing.assert_allclose(deltas[0] @ X.T, grads[0]["W"], rtol=1e-12)
    np.testing.assert_allclose(
        deltas[1] @ jax.nn.sigmoid(params[0]["W"] @ X + params[0]["b"]).T, grads[1]["W"], rtol=1e-12
    )


# ---------------------------------------------------------------------------
# The verify matrix


# Most checks need only each kind of row, not every one: every output and loss
# and both values of fused, a smooth and a piecewise hidden activation, one and
# two hidden layers (BP2 between hidden layers, kinks below the first).
REDUCED = {"hidden_activations": ("tanh", "relu"), "depths": (1, 2)}


@pytest.fixture(scope="module")
def matrix_run():
    """The reduced matrix, run with float64 disabled (run_matrix must enable it itself)."""
    with jax.enable_x64(False):
        rows = verify.run_matrix(**REDUCED)
        return rows, jax.config.x64_enabled


@pytest.fixture
def matrix(matrix_run):
    return matrix_run[0]


def configurations(rows):
    return [(r["depth"], r["hidden"], r["output"], r["loss"], r["fused"]) for r in rows]


@pytest.mark.slow
def test_matrix_covers_every_configuration_and_passes(matrix):
    """Every configuration of the tests' own table (tests/helpers.py, not the library's
    OUTPUT_LOSSES) for the reduced hidden activations and depths, once each."""
    expected = {
        c
        for c in VERIFY_CONFIGURATIONS
        if c[0] in REDUCED["depths"] and c[1] in REDUCED["hidden_activations"]
    }
    assert len(expected) == 2 * 6 * 2 * 2
    got = configurations(matrix)
    assert len(got) == len(set(got)), "a configuration repeats"
    assert set(got) == expected, {"dropped": expected - set(got), "unknown": set(got) - expected}
    failed = [r for r in matrix if not r["ok"]]
    assert not failed, verify.format_table(failed)
    for r in matrix:
        assert r["grad_rel_float64"] <= 1e-10 and r["grad_rel_float32"] <= 1e-4
        assert r["fd_rel_float64"] <= 1e-6


def test_the_default_matrix_runs_the_tests_hidden_activations_and_depths():
    """With the reduced run above (every output and loss), the default matrix is the tests'
    whole table; .ci/run's ``jaxnn verify --expect`` counts it (tests/test_cli_surface.py)."""
    assert set(vm.HIDDEN_ACTIVATIONS) == set(VERIFY_HIDDEN)
    assert len(vm.HIDDEN_ACTIVATIONS) == len(VERIFY_HIDDEN)
    assert tuple(vm.DEPTHS) == VERIFY_DEPTHS


@pytest.mark.skipif(
    not os.environ.get("JAXNN_FULL_MATRIX"),
    reason="the full default matrix takes ~50 s of CPU: set JAXNN_FULL_MATRIX=1 to run it",
)
def test_full_default_matrix_covers_every_configuration_and_passes():
    rows = verify.run_matrix()
    got = configurations(rows)
    assert len(got) == len(set(got)) and set(got) == VERIFY_CONFIGURATIONS
    failed = [r for r in rows if not r["ok"]]
    assert not failed, verify.format_table(failed)
    assert (
        verify.format_table(rows).splitlines()[-1] == f"{len(rows)}/{len(rows)} configurations pass"
    )


@pytest.mark.slow
def test_matrix_rows_are_json(matrix):
    rows = json.loads(json.dumps(matrix, allow_nan=False))
    assert rows == matrix
    assert {
        "ok",
        "hidden",
        "output",
        "loss",
        "depth",
        "fused",
        "grad_rel_float64",
        "grad_rel_float32",
        "fd_rel_float64",
        "not_applicable",
        "points",
    } <= set(rows[0])


@pytest.mark.slow
def test_matrix_points_hit_kinks_and_saturation(matrix):
    for r in matrix:
        points = r["points"]
        assert points["kink"]["zero_preactivations"] >= 6  # a whole column of Z^[1]
        assert points["random"]["zero_preactivations"] == 0
        assert points["logit<=10"]["max_abs_logit"] == pytest.approx(10.0)
        assert points["logit~50"]["max_abs_logit"] > 50
        assert points["logit~2000"]["max_abs_logit"] > 2000


@pytest.mark.slow
def test_matrix_exclusions_are_where_the_numerics_say(matrix):
    for r in matrix:
        na = {(x["point"], x["check"]) for x in r["not_applicable"]}
        if r["delta_L"] != "BP1" or r["output"] == "linear":
            # closed forms (F1-F3) and linear outputs are checked everywhere
            assert not na, r
            assert r["points"]["logit~2000"]["float64"]["status"] == "ok"
        else:
            # BP1 through a sigmoid, softmax or tanh at |z| ~ 2000: 1 - a is 0
            assert ("logit~2000", "float64") in na and ("random", "float64") not in na
        if r["hidden"] in ("relu", "leaky_relu"):
            assert "fd-kink" in r["notes"]


@pytest.mark.slow
def test_matrix_table(matrix):
    text = verify.format_table(matrix)
    lines = text.splitlines()
    assert sum(line.startswith(("1 ", "2 ", "3 ")) for line in lines) == len(matrix)
    assert "grad f64 1e-10" in text and "grad f32 1e-04" in text and "h = 1e-05" in text
    assert lines[-1] == f"{len(matrix)}/{len(matrix)} configurations pass"
    bad = dict(matrix[0], ok=False, grad_rel_float64="nan")
    assert "FAIL" in verify.format_table([bad]) and "0/1" in verify.format_table([bad])


@pytest.mark.slow
def test_matrix_summary_fits_one_screen(matrix):
    text = verify.format_summary(matrix, more="MORE")
    lines = text.splitlines()
    assert max(map(len, lines)) <= 100 and len(lines) <= 40
    assert lines[-2:] == ["MORE", f"{len(matrix)}/{len(matrix)} configurations pass"]
    assert f"configurations: {len(matrix)} = 2 hidden activations x 6 output + loss" in text
    for name in ("softmax + CE", "sigmoid + BCE", "linear + MSE", "softmax + MSE"):
        rows = [line for line in lines if line.startswith(name + " ")]  # fused True, False
        assert len(rows) == 2 and all(" 4/4 " in line for line in rows), rows
    worst64 = max(r["grad_rel_float64"] for r in matrix)
    assert f"grad f64  {worst64:.1e} (tol 1e-10)" in text
    assert "FAIL" not in text


@pytest.mark.slow
def test_matrix_summary_shows_every_failure(matrix):
    bad = [
        dict(r, ok=False, grad_rel_float64="nan") if i in (3, 7) else r
        for i, r in enumerate(matrix)
    ]
    text = verify.format_summary(bad)
    lines = text.splitlines()
    assert max(map(len, lines)) <= 100
    assert lines[-1] == f"{len(matrix) - 2}/{len(matrix)} configurations pass"
    fails = [line for line in lines if line.startswith("FAIL ")]
    assert len(fails) == 2
    for r, line in zip((matrix[3], matrix[7]), fails, strict=True):
        assert line.startswith(f"FAIL depth {r['depth']}, {r['hidden']}, ")
        assert f"fused {r['fused']} ({r['delta_L']})" in line
    assert "grad f64 nan (tol 1e-10)" in text
    for point in vm.POINTS:  # point by point
        assert sum(line.startswith(f"  {point} ") for line in lines) == 2
    many = [dict(r, ok=False) for r in matrix]
    lines = verify.format_summary(many).splitlines()
    assert sum(line.startswith("FAIL ") for line in lines) == 20
    assert f"... and {len(matrix) - 20} more failing configurations" in lines
    assert verify.format_summary([]) == "jaxnn verify: no configuration ran: nothing was verified"


@pytest.mark.slow
def test_matrix_enables_float64_itself(matrix_run):
    rows, x64_enabled_after = matrix_run  # run under jax.enable_x64(False)
    assert not x64_enabled_after
    assert all(r["ok"] for r in rows)
    assert all(r["grad_rel_float64"] < 1e-12 for r in rows)  # float32 would give ~1e-7


@pytest.mark.slow
def test_matrix_catches_a_wrong_derivative(monkeypatch):
    """tanh' written as 1 - tanh(z): every tanh row fails, against jax.grad and FD."""
    wrong = activations.ACTIVATIONS["tanh"]._replace(
        deriv=lambda Z: 1 - jnp.tanh(Z), vjp=lambda Z, A, G: G * (1 - jnp.tanh(Z))
    )
    monkeypatch.setitem(activations.ACTIVATIONS, "tanh", wrong)
    monkeypatch.setattr(matrix_program, "_COMPILED", {})
    rows = verify.run_matrix(hidden_activations=("tanh",), depths=(1,))
    assert not any(r["ok"] for r in rows)
    assert all(r["grad_rel_float64"] > 1e-3 and r["fd_rel_float64"] > 1e-3 for r in rows)


def test_exported_at_top_level():
    assert jaxnn.check_gradients is verify.check_gradients
    assert jaxnn.locate_fault is verify.locate_fault


def test_the_verify_package_exports_what_its_all_lists():
    """``jaxnn.verify.__all__`` is its public API; every name resolves, and the top-level
    names are the same objects."""
    for name in verify.__all__:
        assert getattr(verify, name) is not None, name
    assert jaxnn.locate_fault is verify.faults.locate_fault
    assert jaxnn.check_gradients is verify.gradients.check_gradients
