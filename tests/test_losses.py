"""Costs (C1)-(C3), their gradients grad_a C (G1)-(G3), and the fused output errors (F1)-(F3).

References: NumPy transcriptions of the seeds' formulas, jax.grad of each loss's value,
and stable forms written here (logaddexp, logsumexp).
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxnn import activations, losses
from tests.helpers import assert_trees_close, fast_jit, max_relative_error

N, M = 4, 6
RNG_SEED = 11


def targets(loss, kind, rng, n=N, m=M):
    if kind == "one-hot":
        return np.eye(n)[:, rng.integers(0, n, m)]
    if kind == "soft":  # each column sums to 1
        return rng.dirichlet(np.ones(n), m).T
    if kind == "unnormalised":  # columns sum to 0.7 and to 2: see (F1) and erratum 5
        Y = rng.dirichlet(np.ones(n), m).T
        return Y * np.where(np.arange(m) % 2 == 0, 0.7, 2.0)
    if kind == "binary":
        return rng.integers(0, 2, (n, m)).astype(np.float64)
    if kind == "fractional":
        return rng.uniform(0, 1, (n, m))
    return rng.normal(size=(n, m))  # real-valued, for MSE


CASES = [  # (loss, output activation, target kind)
    ("mse", "linear", "real"),
    ("mse", "sigmoid", "fractional"),
    ("mse", "softmax", "soft"),
    ("binary_cross_entropy", "sigmoid", "binary"),
    ("binary_cross_entropy", "sigmoid", "fractional"),
    ("cross_entropy", "softmax", "one-hot"),
    ("cross_entropy", "softmax", "soft"),
    ("cross_entropy", "softmax", "unnormalised"),
]
CASE_IDS = [f"{loss}-{out}-{kind}" for loss, out, kind in CASES]


def case_inputs(kind, loss, seed=RNG_SEED, scale=2.0):
    """Z and Y of a case, NumPy."""
    rng = np.random.default_rng(seed)
    Z = rng.normal(0, scale, (N, M))
    return Z, targets(loss, kind, rng)


def case_data(out, kind, loss, seed=RNG_SEED, scale=2.0):
    Z, Y = case_inputs(kind, loss, seed, scale)
    return jnp.asarray(Z), activations.get(out).fn(jnp.asarray(Z)), jnp.asarray(Y)


NUMPY_COSTS = {  # the seeds' formulas, per example
    "mse": lambda A, Y: 0.5 * np.sum((Y - A) ** 2, axis=0),  # (C1)
    "binary_cross_entropy": lambda A, Y: (
        -np.sum(  # (C2), with the minus sign (erratum 1)
            np.where(Y > 0, Y * np.log(A), 0) + np.where(Y < 1, (1 - Y) * np.log(1 - A), 0), axis=0
        )
    ),
    "cross_entropy": lambda A, Y: -np.sum(np.where(Y > 0, Y * np.log(A), 0), axis=0),  # (C3)
}
NUMPY_GRADS = {  # the seed's table of grad_a C
    "mse": lambda A, Y: A - Y,  # (G1)
    "binary_cross_entropy": lambda A, Y: -Y / A + (1 - Y) / (1 - A),  # (G2)
    "cross_entropy": lambda A, Y: -Y / A,  # (G3), the first seed's dE/da_j
}


def _case_values(Z, Y, out, loss):
    """Every value the CASES tests compare, for one case (traced in ``case_values``)."""
    spec = losses.get(loss)
    A = activations.get(out).fn(Z)
    return {
        "A": A,
        "value": spec.value(A, Y),
        "grad": spec.grad(A, Y),
        "jax_grad": jax.grad(lambda A: jnp.sum(spec.value(A, Y)))(A),
        "stable_value": spec.stable_value(Z, A, Y),
    }


def _fused_values(Z, Y, out, loss):
    """(F1)-(F3), jax.grad through the activation, and BP1's product, for one case."""
    act, spec = activations.get(out), losses.get(loss)
    A = act.fn(Z)
    return {
        "fused": losses.head(out, loss).fused(A, Y),
        "jax_grad": jax.grad(lambda Z: jnp.sum(spec.value(act.fn(Z), Y)))(Z),
        "unfused": act.vjp(Z, A, spec.grad(A, Y)),
    }


def _all_values(inputs, fused_inputs):
    return (
        [
            _case_values(Z, Y, out, loss)
            for (loss, out, _), (Z, Y) in zip(CASES, inputs, strict=True)
        ],
        [
            _fused_values(Z, Y, out, loss)
            for (out, loss, _), (Z, Y) in zip(FUSED_CASES, fused_inputs, strict=True)
        ],
    )


@functools.cache
def case_values():
    """CASE_IDS -> values and FUSED_CASES -> values, NumPy, from one compiled program
    for every case (one program compiles faster than each case's eager primitives)."""
    inputs = [case_inputs(kind, loss) for loss, _, kind in CASES]
    fused_inputs = [case_inputs(kind, loss) for _, loss, kind in FUSED_CASES]
    values, fused = jax.device_get(fast_jit(_all_values)(inputs, fused_inputs))
    return dict(zip(CASE_IDS, values, strict=True)), dict(zip(FUSED_CASES, fused, strict=True))


@pytest.mark.parametrize(("loss", "out", "kind"), CASES, ids=CASE_IDS)
def test_value_equals_seed_formula(loss, out, kind):
    """(C1)-(C3): per-example costs of shape (m,), equal to NumPy's."""
    v = case_values()[0][f"{loss}-{out}-{kind}"]
    assert v["value"].shape == (M,)
    Y = case_inputs(kind, loss)[1]
    assert max_relative_error(v["value"], NUMPY_COSTS[loss](v["A"], Y)) <= 1e-14


@pytest.mark.parametrize(("loss", "out", "kind"), CASES, ids=CASE_IDS)
def test_grad_equals_jax_grad_of_value(loss, out, kind):
    """(G1)-(G3): grad_a C equals jax.grad of the summed per-example cost, and the seed's
    table in NumPy."""
    v = case_values()[0][f"{loss}-{out}-{kind}"]
    assert_trees_close(v["grad"], v["jax_grad"], 1e-13, loss)
    Y = case_inputs(kind, loss)[1]
    assert max_relative_error(v["grad"], NUMPY_GRADS[loss](v["A"], Y)) <= 1e-14


@pytest.mark.parametrize(("loss", "out", "kind"), CASES, ids=CASE_IDS)
def test_stable_value_equals_value_at_moderate_values(loss, out, kind):
    """The costs from Z (log-softmax, log-sigmoid) equal the seeds' log(A) forms."""
    v = case_values()[0][f"{loss}-{out}-{kind}"]
    assert max_relative_error(v["stable_value"], v["value"]) <= 1e-13


@pytest.mark.parametrize("scale", [1e3, 1e4])
def test_stable_value_at_extreme_logits(scale):
    """|z| ~ 1e3-1e4: the literal log(A) forms are infinite, the stable forms are finite
    and equal NumPy's logaddexp / logsumexp forms."""
    rng = np.random.default_rng(5)
    Z = rng.normal(0, scale, (N, M))
    Y_bce, Y_ce = rng.uniform(0, 1, (N, M)), rng.dirichlet(np.ones(N), M).T
    bce, ce = losses.get("binary_cross_entropy"), losses.get("cross_entropy")
    A_bce, A_ce = activations.sigmoid(jnp.asarray(Z)), activations.softmax(jnp.asarray(Z))
    want_bce = np.sum(np.logaddexp(0, Z) - Y_bce * Z, axis=0)  # -y log s(z) - (1-y) log s(-z)
    logsumexp = Z.max(axis=0) + np.log(np.sum(np.exp(Z - Z.max(axis=0)), axis=0))
    want_ce = -np.sum(Y_ce * (Z - logsumexp), axis=0)
    got_bce = bce.stable_value(jnp.asarray(Z), A_bce, jnp.asarray(Y_bce))
    got_ce = ce.stable_value(jnp.asarray(Z), A_ce, jnp.asarray(Y_ce))
    assert max_relative_error(got_bce, want_bce) <= 1e-14
    assert max_relative_error(got_ce, want_ce) <= 1e-14
    # log(A) is -inf wherever A rounds to exactly 0 (or 1 - A does) under a target > 0
    saturated_bce = np.any((A_bce == 0) | (A_bce == 1), axis=0)
    saturated_ce = np.any(A_ce == 0, axis=0)
    assert saturated_bce.any() and saturated_ce.any()
    literal_bce = np.asarray(bce.value(A_bce, jnp.asarray(Y_bce)))
    literal_ce = np.asarray(ce.value(A_ce, jnp.asarray(Y_ce)))
    np.testing.assert_array_equal(np.isinf(literal_bce), saturated_bce)
    np.testing.assert_array_equal(np.isinf(literal_ce), saturated_ce)


def test_zero_targets_contribute_zero_at_the_boundary():
    """0 log 0 = 0 (its limit) in (C2), (C3), and a term of (G2), (G3) whose target factor
    is 0 is 0, not 0/0: at a = 0 with y = 0, (G2) is 0 + 1/(1 - 0) = 1; at a = 1 with
    y = 1 it is -1/1 + 0 = -1."""
    A = jnp.array([[0.0, 1.0, 0.5]])
    Y = jnp.array([[0.0, 1.0, 0.0]])
    bce, ce = losses.get("binary_cross_entropy"), losses.get("cross_entropy")
    np.testing.assert_array_equal(bce.value(A, Y), [0.0, 0.0, np.log(2)])
    np.testing.assert_array_equal(bce.grad(A, Y), [[1.0, -1.0, 2.0]])
    np.testing.assert_array_equal(ce.value(A, Y), [0.0, 0.0, 0.0])
    np.testing.assert_array_equal(ce.grad(A, Y), [[0.0, -1.0, 0.0]])


FUSED_CASES = [
    ("softmax", "cross_entropy", "one-hot"),
    ("softmax", "cross_entropy", "soft"),
    ("softmax", "cross_entropy", "unnormalised"),
    ("sigmoid", "binary_cross_entropy", "binary"),
    ("sigmoid", "binary_cross_entropy", "fractional"),
    ("linear", "mse", "real"),
]


@pytest.mark.parametrize(("out", "loss", "kind"), FUSED_CASES, ids=lambda x: str(x))
def test_fused_delta_equals_jax_grad_wrt_Z(out, loss, kind):
    """(F1)-(F3): the closed form of dC/dZ for one example equals jax.grad of the cost as a
    function of Z (through the activation, literally), and equals BP1's unfused product
    grad_a C (.) sigma'(Z) or J^T grad_a C: two formulations that must agree."""
    v = case_values()[1][(out, loss, kind)]
    assert_trees_close(v["fused"], v["jax_grad"], 1e-13, f"{out}+{loss}")
    assert_trees_close(v["unfused"], v["fused"], 1e-13, "BP1")


def test_only_three_pairs_have_a_fused_form():
    """The heads with a closed form are exactly those derived in the seeds and docs;
    softmax, sigmoid or tanh with MSE have none and go through BP1."""
    assert {(h.activation, h.loss) for h in losses.HEADS if h.fused} == {
        ("softmax", "cross_entropy"),
        ("sigmoid", "binary_cross_entropy"),
        ("linear", "mse"),
    }


def test_mse_has_the_half_and_other_reduction_conventions():
    """jaxnn's cost is the mean over examples of a per-example sum over outputs, with 1/2
    in MSE (C1). Other libraries' defaults, transcribed from their documentation:
    PyTorch MSELoss (reduction='mean') is mean over all n m elements of (a - y)^2, no 1/2:
    jaxnn = n/2 times it. PyTorch BCELoss is the mean over all n m elements: jaxnn = n
    times it. PyTorch CrossEntropyLoss (probabilities as targets) and Keras
    categorical_crossentropy are the mean over examples: equal to jaxnn. optax.l2_loss
    (with the 1/2), sigmoid_binary_cross_entropy and softmax_cross_entropy, reduced as
    jaxnn reduces them, agree too."""
    rng = np.random.default_rng(8)
    Z = rng.normal(size=(N, M))
    A_sig, A_soft = 1 / (1 + np.exp(-Z)), np.exp(Z) / np.exp(Z).sum(0)
    Y_real, Y_frac, Y_soft = (
        rng.normal(size=(N, M)),
        rng.uniform(size=(N, M)),
        targets("cross_entropy", "soft", rng),
    )
    mean = lambda spec, *args: float(jnp.mean(losses.get(spec).value(*map(jnp.asarray, args))))
    torch_mse = np.mean((A_sig - Y_real) ** 2)
    torch_bce = -np.mean(Y_frac * np.log(A_sig) + (1 - Y_frac) * np.log(1 - A_sig))
    torch_ce = -np.mean(np.sum(Y_soft * np.log(A_soft), axis=0))
    assert mean("mse", A_sig, Y_real) == pytest.approx(N / 2 * torch_mse, rel=1e-14)
    assert mean("binary_cross_entropy", A_sig, Y_frac) == pytest.approx(N * torch_bce, rel=1e-14)
    assert mean("cross_entropy", A_soft, Y_soft) == pytest.approx(torch_ce, rel=1e-14)
    # optax's losses are element-wise or per example, rows = examples (our transpose):
    # jaxnn = mean over examples of the sum over outputs.
    Zt = jnp.asarray(Z.T)
    assert mean("mse", A_sig, Y_real) == pytest.approx(
        float(jnp.mean(jnp.sum(optax.l2_loss(A_sig.T, Y_real.T), axis=1))), rel=1e-14
    )
    assert mean("binary_cross_entropy", A_sig, Y_frac) == pytest.approx(
        float(jnp.mean(jnp.sum(optax.sigmoid_binary_cross_entropy(Zt, Y_frac.T), axis=1))),
        rel=1e-13,
    )
    assert mean("cross_entropy", A_soft, Y_soft) == pytest.approx(
        float(jnp.mean(optax.softmax_cross_entropy(Zt, Y_soft.T))), rel=1e-13
    )
    # the 1/2 makes grad_a C exactly a - y (G1)
    one = jnp.array([[3.0]])
    assert losses.mse(one, jnp.zeros((1, 1)))[0] == 4.5 and losses.mse_grad(one, 0 * one) == 3


def test_unknown_loss_lists_valid_names():
    with pytest.raises(
        ValueError,
        match="unknown loss 'nll'; valid names: 'mse', 'binary_cross_entropy', 'cross_entropy'",
    ):
        losses.get("nll")
    with pytest.raises(ValueError, match="unknown loss"):
        losses.get(None)
