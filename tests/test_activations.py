"""Activations (A1)-(A11), their derivatives, the softmax Jacobian (S1) and its product (S2).

The references are jax.nn's functions differentiated by jax.grad, NumPy transcriptions of
the seeds' formulas, and, at saturation, the derivative's symmetric form
sigma'(z) = e^-|z| / (1 + e^-|z|)^2, which is exact in floating point for every z.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxnn import activations
from tests.helpers import max_relative_error

# jax.nn's own functions: independent of jaxnn's, differentiated by jax.grad.
JAX_NN = {
    "sigmoid": jax.nn.sigmoid,
    "tanh": jnp.tanh,
    "relu": jax.nn.relu,
    "leaky_relu": jax.nn.leaky_relu,  # negative_slope = 0.01 by default
    "linear": lambda z: z,
}
NUMPY = {  # (A1), (A3), (A5), (A7), (A9)
    "sigmoid": lambda z: 1 / (1 + np.exp(-z)),
    "tanh": np.tanh,
    "relu": lambda z: np.maximum(z, 0),
    "leaky_relu": lambda z: np.where(z >= 0, z, 0.01 * z),
    "linear": lambda z: z,
}
ELEMENTWISE = tuple(JAX_NN)


def moderate_Z(seed=0, shape=(4, 6)):
    """|z| <= 6, with exact zeros (the kinks) in the first column."""
    Z = np.random.default_rng(seed).uniform(-6, 6, shape)
    Z[:, 0] = 0.0
    return jnp.asarray(Z)


def elementwise_grad(f, Z):
    """d f(z) / dz at every entry of Z: vmap of jax.grad of the scalar function."""
    return jax.vmap(jax.grad(f))(Z.ravel()).reshape(Z.shape)


@pytest.mark.parametrize("name", ELEMENTWISE)
def test_activation_values(name):
    """(A1), (A3), (A5), (A7), (A9) against NumPy, with jaxnn's shapes and dtypes."""
    act = activations.get(name)
    Z = moderate_Z()
    assert max_relative_error(act.fn(Z), NUMPY[name](np.asarray(Z))) <= 1e-15
    np.testing.assert_allclose(act.fn(Z), JAX_NN[name](Z), rtol=1e-15, atol=0)
    Z32 = Z.astype(jnp.float32)
    assert act.fn(Z32).dtype == jnp.float32 and act.fn(Z32).shape == Z.shape


@pytest.mark.parametrize("dtype", [jnp.float64, jnp.float32])
@pytest.mark.parametrize("name", ELEMENTWISE)
def test_derivative_equals_jax_grad(name, dtype):
    """(A2), (A4), (A6), (A8), (A10) against jax.grad of jax.nn's function and of
    jaxnn's own sigma, entry by entry, including z = 0 exactly.

    The tolerance allows 4 ulps of 1 absolute: jax differentiates the sigmoid as
    a (1 - a) and tanh as 1 - tanh^2, and jaxnn tanh the same way; a difference of one
    ulp in a or tanh(z) near 1 becomes an absolute ~eps in 1 - a (a relative 1e-11 where
    the derivative is 3e-5). jaxnn's sigma(z) sigma(-z) is checked against exact
    values below."""
    act = activations.get(name)
    Z = moderate_Z().astype(dtype)
    got = act.deriv(Z)
    assert got.dtype == dtype and got.shape == Z.shape
    rtol = 1e-13 if dtype == jnp.float64 else 1e-5
    atol = 4 * float(jnp.finfo(dtype).eps)
    np.testing.assert_allclose(got, elementwise_grad(JAX_NN[name], Z), rtol=rtol, atol=atol)
    np.testing.assert_allclose(got, elementwise_grad(act.fn, Z), rtol=rtol, atol=atol)


def test_kink_conventions_are_jax_nn_conventions():
    """relu'(0) = 0 and leaky_relu'(0) = 1, as jax.grad of jax.nn's functions gives."""
    zero = jnp.zeros((1, 1))
    assert activations.relu_deriv(zero)[0, 0] == jax.grad(jax.nn.relu)(0.0) == 0.0
    assert activations.leaky_relu_deriv(zero)[0, 0] == jax.grad(jax.nn.leaky_relu)(0.0) == 1.0
    assert activations.LEAKY_SLOPE == 0.01
    tiny = jnp.array([[-1e-300, 1e-300]])
    np.testing.assert_array_equal(activations.relu_deriv(tiny), [[0.0, 1.0]])
    np.testing.assert_array_equal(activations.leaky_relu_deriv(tiny), [[0.01, 1.0]])


def test_sigmoid_derivative_equals_the_seed_form_at_moderate_z():
    """(A2): sigma(z) sigma(-z) equals the seed's e^-z / (1 + e^-z)^2 for |z| <= 30."""
    z = np.linspace(-30, 30, 121)
    seed_form = np.exp(-z) / (1 + np.exp(-z)) ** 2
    got = activations.sigmoid_deriv(jnp.asarray(z)[None, :])[0]
    assert max_relative_error(got, seed_form) <= 1e-14
    got32 = activations.sigmoid_deriv(jnp.asarray(z, jnp.float32)[None, :])[0]
    assert got32.dtype == jnp.float32 and max_relative_error(got32, seed_form) <= 1e-6


EXTREMES = np.array([-700.0, -40.0, 40.0, 700.0])


def test_sigmoid_derivative_stays_accurate_at_saturation():
    """At |z| = 40 and 700, sigma(z) sigma(-z) keeps full relative precision, where
    both naive forms fail: the seed's e^-z / (1 + e^-z)^2 overflows to inf / inf for
    z = -700 (giving 0), and sigma(z)(1 - sigma(z)) gives 1 - 1 = 0 for z >= 37. The
    latter is also what jax.grad(jax.nn.sigmoid) computes: 0 at z = 40."""
    exact = np.exp(-np.abs(EXTREMES)) / (1 + np.exp(-np.abs(EXTREMES))) ** 2  # symmetric
    assert np.all(exact > 0) and exact[0] == pytest.approx(np.exp(-700.0), rel=1e-15)
    got = activations.sigmoid_deriv(jnp.asarray(EXTREMES)[None, :])[0]
    assert max_relative_error(got, exact) <= 1e-14

    z = jnp.asarray(EXTREMES)
    seed_form = jnp.exp(-z) / (1 + jnp.exp(-z)) ** 2
    assert seed_form[0] == 0.0  # e^700 / inf: relative error 1
    s = jax.nn.sigmoid(z)
    one_minus = s * (1 - s)
    assert one_minus[2] == 0.0 and one_minus[3] == 0.0  # 1 - 1 = 0 at z = 40, 700
    assert jax.grad(jax.nn.sigmoid)(40.0) == 0.0
    # in float32 the same form holds down to its own underflow (e^-87)
    z32 = jnp.array([[-80.0, -40.0, 40.0, 80.0]], jnp.float32)
    exact32 = np.exp(-np.abs(np.asarray(z32, np.float64)))
    exact32 = exact32 / (1 + exact32) ** 2
    assert max_relative_error(activations.sigmoid_deriv(z32), exact32) <= 1e-6


def test_tanh_derivative_at_saturation():
    """(A4) 1 - tanh^2 is accurate in absolute terms (8 eps) but not relative near
    saturation: XLA's float64 tanh returns 0.9999999999999992 for |z| in ~[18, 19.5] (the
    true value rounds to 1), so 1 - tanh^2 = 1.6e-15 where sech^2(19) = 1.3e-16, and from
    |z| = 20 on tanh is exactly 1 and the derivative 0. jax.grad(jnp.tanh) computes the
    same 1 - tanh^2, so hand and automatic gradients still agree."""
    z = jnp.array([[-40.0, -20.0, -19.0, -18.0, 0.5, 18.0, 19.0, 20.0, 40.0]])
    got = np.asarray(activations.tanh_deriv(z))
    e = np.exp(-2 * np.abs(np.asarray(z)))
    sech2 = 4 * e / (1 + e) ** 2  # exact, without cancellation
    assert np.max(np.abs(got - sech2)) <= 8 * np.finfo(np.float64).eps
    np.testing.assert_allclose(got, elementwise_grad(jnp.tanh, z), rtol=0, atol=1e-30)
    assert got[0, 0] == got[0, -1] == 0.0


# ---------------------------------------------------------------------------
# Softmax: (A11), (S1), (S2).


def test_softmax_values_are_stable():
    """(A11) against NumPy per column, and finite for logits in the thousands."""
    Z = moderate_Z(1)
    e = np.exp(np.asarray(Z))
    assert max_relative_error(activations.softmax(Z), e / e.sum(axis=0)) <= 1e-14
    big = jnp.array([[1e4, -1e4], [1e4 - 1, 0.0], [-1e4, 1e4]])
    A = activations.softmax(big)
    assert np.all(np.isfinite(A))
    np.testing.assert_allclose(A[:, 0], [1 / (1 + np.exp(-1)), 1 / (1 + np.exp(1)), 0], rtol=1e-15)
    np.testing.assert_array_equal(A[:, 1], [0.0, 0.0, 1.0])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_softmax_jacobian_equals_jax_jacobian(seed):
    """(S1) J[i, j] = da_j/dz_i. jax.jacobian indexes [output j, input i], so J is its
    transpose; J is symmetric, so the transpose also equals it."""
    z = jnp.asarray(np.random.default_rng(seed).normal(0, 2, 5))
    J = activations.softmax_jacobian(z)
    jac = jax.jacobian(jax.nn.softmax)(z)  # jac[j, i] = da_j / dz_i
    assert J.shape == (5, 5)
    np.testing.assert_allclose(J, jac.T, rtol=1e-13, atol=1e-16)
    np.testing.assert_array_equal(J, J.T)
    a = np.asarray(jax.nn.softmax(z))
    np.testing.assert_allclose(np.diag(J), a * (1 - a), rtol=1e-14)


def test_softmax_vjp_equals_jacobian_product():
    """(S2): dC/dz_i = sum_j J[i, j] g_j = a_i (g_i - sum_j a_j g_j), column by column,
    and equal to jax.vjp of jax.nn.softmax."""
    rng = np.random.default_rng(3)
    Z, G = jnp.asarray(rng.normal(0, 2, (5, 4))), jnp.asarray(rng.normal(size=(5, 4)))
    A = activations.softmax(Z)
    got = activations.softmax_vjp(Z, A, G)
    for k in range(Z.shape[1]):
        want = activations.softmax_jacobian(Z[:, k]) @ G[:, k]
        assert max_relative_error(got[:, k], want) <= 1e-12
    _, pullback = jax.vjp(lambda z: jax.nn.softmax(z, axis=0), Z)
    np.testing.assert_allclose(got, pullback(G)[0], rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(np.sum(got, axis=0), 0, atol=1e-15)  # a softmax's 1 is fixed


@pytest.mark.parametrize("name", [*ELEMENTWISE, "softmax"])
def test_vjp_equals_jax_vjp(name):
    """Every activation's vjp(Z, A, G), what BP1 and BP2 call, against jax.vjp of
    jax.nn's function: G (.) sigma'(Z) element-wise, J^T G for softmax."""
    rng = np.random.default_rng(4)
    Z, G = moderate_Z(2, (5, 4)), jnp.asarray(rng.normal(size=(5, 4)))
    act = activations.get(name)
    fn = JAX_NN.get(name, lambda z: jax.nn.softmax(z, axis=0))
    _, pullback = jax.vjp(fn, Z)
    got = act.vjp(Z, act.fn(Z), G)
    np.testing.assert_allclose(got, pullback(G)[0], rtol=1e-13, atol=1e-16)


def test_unknown_activation_lists_valid_names():
    valid = "'sigmoid', 'tanh', 'relu', 'leaky_relu', 'linear', 'softmax'"
    with pytest.raises(ValueError, match=f"unknown activation 'gelu'; valid names: {valid}"):
        activations.get("gelu")
    with pytest.raises(ValueError, match=r"unknown activation \['relu'\]"):
        activations.get(["relu"])
    assert activations.get("softmax").deriv is None  # not element-wise: only its vjp
