"""The seeds' errata: each one shown by a test, next to the correct version jaxnn builds.

Numbering follows docs/derivations.md, section "Errata".
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxnn
from jaxnn import activations, losses
from tests.helpers import assert_trees_close, max_relative_error
from tests.test_network import random_params

RNG = np.random.default_rng(2024)
A_BCE = jnp.asarray(RNG.uniform(0.02, 0.98, (3, 5)))
Y_FRACTIONAL = jnp.asarray(RNG.uniform(0, 1, (3, 5)))
Y_BINARY = jnp.asarray(RNG.integers(0, 2, (3, 5)).astype(np.float64))


# 1. BCE without its minus sign -------------------------------------------------------


def seed_bce_as_written(A, Y):
    """The seed's table, literally: y log a + (1 - y) log(1 - a), summed over outputs."""
    return jnp.sum(Y * jnp.log(A) + (1 - Y) * jnp.log(1 - A))


def seed_bce_listed_gradient(A, Y):
    """The gradient the seed lists beside it: -y/a + (1 - y)/(1 - a)."""
    return -Y / A + (1 - Y) / (1 - A)


@pytest.mark.parametrize("Y", [Y_BINARY, Y_FRACTIONAL], ids=["binary", "fractional"])
def test_erratum_1_bce_sign(Y):
    """The listed gradient is minus the gradient of the formula as written; it is the
    gradient of the negated formula, which is jaxnn's (C2)."""
    listed = seed_bce_listed_gradient(A_BCE, Y)
    as_written = jax.grad(seed_bce_as_written)(A_BCE, Y)
    assert_trees_close(as_written, -listed, 1e-14, "as written")
    jaxnn_form = jax.grad(lambda A: jnp.sum(losses.binary_cross_entropy(A, Y)))(A_BCE)
    assert_trees_close(jaxnn_form, listed, 1e-14, "jaxnn")
    assert_trees_close(losses.binary_cross_entropy_grad(A_BCE, Y), listed, 1e-14, "(G2)")
    assert (
        max_relative_error(
            losses.binary_cross_entropy(A_BCE, Y),
            -jnp.sum(Y * jnp.log(A_BCE) + (1 - Y) * jnp.log(1 - A_BCE), axis=0),
        )
        <= 1e-15
    )


def test_erratum_1_bce_as_written_is_maximised():
    """As written it is <= 0 everywhere, with its maximum at a = y: there it is -H(y), 0
    only for binary y, negative for fractional y. A log-likelihood to maximise, not a
    cost. Gradient descent on it drives a away from the target."""
    grid = np.linspace(0.01, 0.99, 99)
    for y in (0.0, 1.0, 0.3):
        values = y * np.log(grid) + (1 - y) * np.log(1 - grid)  # the seed's formula
        assert np.all(values <= 0)
        assert np.argmax(values) == np.argmin(np.abs(grid - y))  # its maximum is at a = y
    entropy = -(0.3 * np.log(0.3) + 0.7 * np.log(0.7))  # H(0.3), in nats
    values = 0.3 * np.log(grid) + 0.7 * np.log(1 - grid)
    assert np.max(values) == pytest.approx(-entropy, rel=1e-12) and -0.62 < -entropy < -0.61
    a, y = jnp.array(0.6), jnp.array(1.0)
    step = a - 0.01 * jax.grad(seed_bce_as_written)(a, y)
    assert step < a  # descent moves a away from y = 1


# 2. The softmax derivative with a spurious sum ---------------------------------------


Z_SOFTMAX = jnp.asarray(RNG.normal(0, 1.5, 5))


def test_erratum_2_summed_softmax_derivative_is_zero():
    """sum_j a_j (delta_ij - a_i) = a_i - a_i sum_j a_j = 0 for every i."""
    a = np.asarray(jax.nn.softmax(Z_SOFTMAX))
    delta = np.eye(5)
    summed = np.array([sum(a[j] * (delta[i, j] - a[i]) for j in range(5)) for i in range(5)])
    np.testing.assert_allclose(summed, 0.0, atol=1e-16)
    jac = jax.jacobian(jax.nn.softmax)(Z_SOFTMAX)
    assert np.min(np.abs(jac)) > 1e-3  # the derivative it claims to be is not zero


def test_erratum_2_without_the_sum_it_is_the_jacobian():
    """a_j (delta_ij - a_i), entry (i, j), is da_j/dz_i: jax.jacobian transposed (its rows
    are outputs). The seed's "i < j" case, a_j (0 - a_i), holds for i > j as well: the
    Jacobian is symmetric, so "i < j" means "i != j"."""
    a = np.asarray(jax.nn.softmax(Z_SOFTMAX))
    n = len(a)
    seed = np.array(
        [[a[j] * ((1.0 if i == j else 0.0) - a[i]) for j in range(n)] for i in range(n)]
    )
    jac_T = np.asarray(jax.jacobian(jax.nn.softmax)(Z_SOFTMAX)).T  # [i, j] = da_j/dz_i
    np.testing.assert_allclose(seed, jac_T, rtol=1e-13, atol=1e-17)
    np.testing.assert_allclose(activations.softmax_jacobian(Z_SOFTMAX), jac_T, rtol=1e-13)
    lower = [(i, j) for i in range(n) for j in range(n) if i > j]
    for i, j in lower:  # the i < j formula, applied with i > j
        assert jac_T[i, j] == pytest.approx(a[j] * (0 - a[i]), rel=1e-13)
    np.testing.assert_allclose(jac_T, jac_T.T, rtol=1e-13)
    np.testing.assert_allclose(np.diag(jac_T), a * (1 - a), rtol=1e-13)  # the i = j case


def test_first_seed_chain_rule_needs_the_full_jacobian_for_softmax():
    """The first seed's dE/dz_j = da_j/dz_j * dE/da_j, with dE/da_j = -y_j/a_j (G3), holds
    for an element-wise sigma; for softmax it takes the matrix product the seed then
    writes, sum_j (da_j/dz_i) dE/da_j, and with it gives a - y for one-hot y (F1)."""
    a = jax.nn.softmax(Z_SOFTMAX)
    y = jnp.zeros(5).at[2].set(1.0)
    dE_da = -y / a  # the first seed's dE/da_j
    assert_trees_close(losses.cross_entropy_grad(a[:, None], y[:, None])[:, 0], dE_da, 1e-15)
    true = jax.grad(lambda z: -jnp.sum(y * jax.nn.log_softmax(z)))(Z_SOFTMAX)
    diagonal_only = a * (1 - a) * dE_da
    assert max_relative_error(diagonal_only, true) > 0.1
    matrix = activations.softmax_jacobian(Z_SOFTMAX) @ dE_da
    assert_trees_close(matrix, true, 1e-13, "J dE/da")
    assert_trees_close(a - y, true, 1e-13, "p - y")


# 3. Y is n_y x m, not n_x x m ---------------------------------------------------------


def test_erratum_3_Y_has_n_L_rows():
    """A network with n_x = 4 inputs and n_L = 2 outputs takes Y of shape (2, m) and
    rejects (4, m), the seed's n_x x m, with a message that says what it expects."""
    net = jaxnn.Network((4, 3, 2), ("tanh", "softmax"), "cross_entropy")
    params = random_params(net.sizes, 0)
    X = jnp.asarray(RNG.normal(size=(4, 5)))
    Y = jnp.asarray(np.eye(2)[:, [0, 1, 1, 0, 1]])
    value = jaxnn.cost(params, X, Y, net)
    assert np.isfinite(value) and value > 0
    Y_nx = jnp.asarray(np.eye(4)[:, [0, 1, 2, 3, 1]])
    with pytest.raises(ValueError, match=r"Y has shape \(4, 5\), the network expects \(2, m\)"):
        jaxnn.cost(params, X, Y_nx, net)
    with pytest.raises(ValueError, match=r"n_L x m"):
        jaxnn.backprop(params, X, Y_nx, net)


# 4. delta^l = dC/dZ^l, not dC/dA^l -----------------------------------------------------


NET4 = jaxnn.Network((3, 4, 5, 2), ("tanh", "sigmoid", "sigmoid"), "binary_cross_entropy")


def costs_from_layer(l, params, X, Y):
    """Two functions running the rest of the network: C(Z^[l+1]) and C(A^[l+1])
    (0-based l, as in params[l] and deltas[l])."""
    acts = [activations.get(name).fn for name in NET4.activations]

    def rest(A, start):
        for layer, act in zip(params[start:], acts[start:], strict=True):
            A = act(layer["W"] @ A + layer["b"])
        return jnp.mean(losses.binary_cross_entropy(A, Y))

    return (lambda Z: rest(acts[l](Z), l + 1)), (lambda A: rest(A, l + 1))


def test_erratum_4_delta_is_dC_dZ_not_dC_dA():
    """The seed's "delta^l = delta A^l" reads as dC/dA^l; everywhere else (BP1-BP4) delta
    is dC/dZ^l. jaxnn.backward(...).deltas[l] equals jax.grad of the cost with respect to
    Z^[l+1] and differs from the gradient with respect to A^[l+1] by the factor sigma'."""
    params = random_params(NET4.sizes, 1)
    X = jnp.asarray(RNG.normal(size=(3, 6)))
    Y = jnp.asarray(RNG.uniform(size=(2, 6)))
    cache = jaxnn.forward(params, X, NET4)
    deltas = jaxnn.backward(params, cache, Y, NET4).deltas
    for l in range(NET4.L):
        of_Z, of_A = costs_from_layer(l, params, X, Y)
        dC_dZ = jax.grad(of_Z)(cache.Z[l])
        dC_dA = jax.grad(of_A)(cache.A[l + 1])
        assert_trees_close(deltas[l], dC_dZ, 1e-10, f"deltas[{l}]")
        assert max_relative_error(deltas[l], dC_dA) > 0.5, l
        sigma_prime = activations.get(NET4.activations[l]).deriv(cache.Z[l])
        assert_trees_close(deltas[l], dC_dA * sigma_prime, 1e-10, "dC/dA (.) sigma'")


# 5. p - y needs labels that sum to 1 -----------------------------------------------------


@pytest.mark.parametrize("total", [1.0, 0.7, 2.0])
def test_erratum_5_softmax_cross_entropy_delta_is_p_sum_y_minus_y(total):
    """The derivation's last step uses sum_k y_k = 1. In general dC/dz = p sum(y) - y (F1):
    jax.grad of CE through softmax equals it, and equals p - y only when sum(y) = 1."""
    Z = jnp.asarray(RNG.normal(size=(4, 3)))
    Y = jnp.asarray(RNG.dirichlet(np.ones(4), 3).T) * total
    p = jax.nn.softmax(Z, axis=0)
    want = jax.grad(lambda Z: jnp.sum(-Y * jax.nn.log_softmax(Z, axis=0)))(Z)
    general = p * jnp.sum(Y, axis=0, keepdims=True) - Y
    assert_trees_close(general, want, 1e-14, "p sum(y) - y")
    assert_trees_close(losses.softmax_cross_entropy_delta(p, Y), want, 1e-14, "(F1)")
    if total == 1.0:
        assert_trees_close(p - Y, want, 1e-14, "p - y")
    else:
        assert max_relative_error(p - Y, want) > 0.1
    net = jaxnn.Network((4, 4), ("softmax",), "cross_entropy")
    params = [{"W": jnp.eye(4), "b": jnp.zeros((4, 1))}]  # Z^[1] = X
    grads = jaxnn.backprop(params, Z, Y, net)
    assert_trees_close(grads[0]["b"], jnp.mean(want, axis=1, keepdims=True), 1e-13, "db")


# The per-example formulas versus the mean over m (C-M) --------------------------------


def test_per_example_bp3_bp4_summed_over_examples_with_1_over_m():
    """The seeds state BP3 and BP4 for one example; jaxnn's cost is the mean over m (C-M).
    The batch gradient is (1/m) sum_x of the seed's per-example gradients, each computed
    here from NumPy: delta_x^[L] = a_x - y_x (F2), BP2 back, dW = delta a^T, db = delta."""
    net = jaxnn.Network((3, 4, 2), ("tanh", "sigmoid"), "binary_cross_entropy")
    params = random_params(net.sizes, 2)
    X, Y = RNG.normal(size=(3, 5)), RNG.uniform(size=(2, 5))
    W = [np.asarray(layer["W"]) for layer in params]
    b = [np.asarray(layer["b"])[:, 0] for layer in params]
    sums = [{"W": np.zeros_like(W[l]), "b": np.zeros_like(b[l])} for l in range(2)]
    for x, y in zip(X.T, Y.T, strict=True):
        z1 = W[0] @ x + b[0]
        a1 = np.tanh(z1)
        a2 = 1 / (1 + np.exp(-(W[1] @ a1 + b[1])))
        d2 = a2 - y  # (F2), per example
        d1 = (W[1].T @ d2) * (1 - a1**2)  # (BP2)
        for l, (d, a_in) in enumerate([(d1, x), (d2, a1)]):
            sums[l]["W"] += np.outer(d, a_in)  # (BP4)
            sums[l]["b"] += d  # (BP3)
    grads = jaxnn.backprop(params, jnp.asarray(X), jnp.asarray(Y), net)
    for l in range(2):
        np.testing.assert_allclose(grads[l]["W"], sums[l]["W"] / 5, rtol=1e-13)
        np.testing.assert_allclose(grads[l]["b"][:, 0], sums[l]["b"] / 5, rtol=1e-13)
    # and not the sum: that is the gradient of m times the cost
    assert max_relative_error(grads[0]["W"], sums[0]["W"]) == pytest.approx(0.8)
