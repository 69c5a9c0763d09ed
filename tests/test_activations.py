"""Activations (A1)-(A19), their derivatives, the softmax Jacobian (S1) and its product (S2).

The references are jax.nn's functions differentiated by jax.grad, NumPy transcriptions of
the seeds' formulas, and, at saturation, the derivative's symmetric form
sigma'(z) = e^-|z| / (1 + e^-|z|)^2, which is exact in floating point for every z. The
smooth activations (gelu, gelu_tanh, silu, softplus) are also checked at |z| up to 800
against mpmath's derivative of their definitions at 50 digits, and against PyTorch.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxnn
from jaxnn import activations
from tests.helpers import assert_trees_close, fast_jit, max_relative_error, sample

# jax.nn's own functions: independent of jaxnn's, differentiated by jax.grad.
JAX_NN = {
    "sigmoid": jax.nn.sigmoid,
    "tanh": jnp.tanh,
    "relu": jax.nn.relu,
    "leaky_relu": jax.nn.leaky_relu,  # negative_slope = 0.01 by default
    "linear": lambda z: z,
    "gelu": lambda z: jax.nn.gelu(z, approximate=False),  # jax.nn.gelu's default is tanh
    "gelu_tanh": lambda z: jax.nn.gelu(z, approximate=True),
    "silu": jax.nn.silu,
    "softplus": jax.nn.softplus,
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


def autodiff_scale(name, Z):
    """The factor by which autodiff's own rounding grows, entry by entry: 1, but for
    gelu_tanh 1 + |z| u'(z), since jax.grad (and PyTorch) differentiate 1 + tanh u into
    (z / 2)(1 - tanh^2 u) u', whose 1 - tanh^2 u is off by ~eps."""
    if name != "gelu_tanh":
        return 1.0
    z = np.abs(np.asarray(Z, np.float64))
    return 1 + z * np.sqrt(2 / np.pi) * (1 + 3 * 0.044715 * z**2)


def assert_close(actual, expected, rtol, atol):
    """|a - e| <= atol + rtol |e| entry by entry; atol may be an array."""
    a, e = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    bad = np.abs(a - e) > atol + rtol * np.abs(e)
    assert not bad.any(), f"{a[bad]} != {e[bad]} (|diff| {np.abs(a - e)[bad]})"


@pytest.mark.parametrize("name", tuple(NUMPY))
def test_activation_values(name):
    """(A1), (A3), (A5), (A7), (A9) against NumPy, with jaxnn's shapes and dtypes."""
    act = activations.get(name)
    Z = moderate_Z()
    assert max_relative_error(act.fn(Z), NUMPY[name](np.asarray(Z))) <= 1e-15
    np.testing.assert_allclose(act.fn(Z), JAX_NN[name](Z), rtol=1e-15, atol=0)
    Z32 = Z.astype(jnp.float32)
    assert act.fn(Z32).dtype == jnp.float32 and act.fn(Z32).shape == Z.shape


DTYPES = {"float64": jnp.float64, "float32": jnp.float32}


def _derivatives(Z):
    """name -> (sigma'(Z), jax.grad of jax.nn's sigma, jax.grad of jaxnn's sigma)."""
    return {
        name: (
            activations.get(name).deriv(Z),
            elementwise_grad(JAX_NN[name], Z),
            elementwise_grad(activations.get(name).fn, Z),
        )
        for name in ELEMENTWISE
    }


def _vjps(Z, G):
    """name -> (jaxnn's vjp(Z, A, G), jax.vjp of jax.nn's function)."""
    out = {}
    for name in [*ELEMENTWISE, "softmax"]:
        act = activations.get(name)
        fn = JAX_NN.get(name, lambda z: jax.nn.softmax(z, axis=0))
        out[name] = (act.vjp(Z, act.fn(Z), G), jax.vjp(fn, Z)[1](G)[0])
    return out


@functools.cache
def derivatives_and_vjps():
    """Every activation's derivative in both dtypes and its vjp, with their jax.grad and
    jax.vjp references, from one compiled program (NumPy results): one program compiles
    faster than the eager primitives of each test one by one."""
    Z = moderate_Z()
    Zv, G = moderate_Z(2, (5, 4)), jnp.asarray(np.random.default_rng(4).normal(size=(5, 4)))
    program = fast_jit(
        lambda Zs, Zv, G: ({k: _derivatives(z) for k, z in Zs.items()}, _vjps(Zv, G))
    )
    Zs = {k: Z.astype(dtype) for k, dtype in DTYPES.items()}
    return jax.device_get(program(Zs, Zv, G)), Zs, Zv, G


@pytest.mark.parametrize("dtype", sorted(DTYPES))
@pytest.mark.parametrize("name", ELEMENTWISE)
def test_derivative_equals_jax_grad(name, dtype):
    """(A2), (A4), (A6), (A8), (A10), (A13), (A15), (A17), (A19) against jax.grad of
    jax.nn's function and of jaxnn's own sigma, entry by entry, including z = 0 exactly.

    The tolerance allows 4 ulps of 1 absolute: jax differentiates the sigmoid as
    a (1 - a) and tanh as 1 - tanh^2, and jaxnn tanh the same way; a difference of one
    ulp in a or tanh(z) near 1 becomes an absolute ~eps in 1 - a (a relative 1e-11 where
    the derivative is 3e-5). jaxnn's sigma(z) sigma(-z) is checked against exact
    values below. jax.grad of jax.nn.gelu(approximate=True) forms 1 + tanh u and
    1 - tanh^2 u from a rounded tanh u, and multiplies the second by z u' / 2: its
    absolute error is ~eps (1 + |z| u'), 6.7e-15 at z = -5.6, so for gelu_tanh the 4 ulps
    are of (1 + |z| u'); (A15)'s own form is checked against exact values below."""
    (derivs, _), Zs, _, _ = derivatives_and_vjps()
    Z, (got, of_jax_nn, of_jaxnn) = Zs[dtype], derivs[dtype][name]
    assert got.dtype == DTYPES[dtype] and got.shape == Z.shape
    rtol = 1e-13 if dtype == "float64" else 1e-5
    atol = 4 * float(jnp.finfo(DTYPES[dtype]).eps) * autodiff_scale(name, Z)
    assert_close(got, of_jax_nn, rtol, atol)
    assert_close(got, of_jaxnn, rtol, atol)


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
# The smooth activations (A12)-(A19) at large |z|, and against PyTorch.

SMOOTH = ("gelu", "gelu_tanh", "silu", "softplus")
LARGE = (-800.0, -100.0, -30.0, -10.0, -5.0, 0.0, 5.0, 10.0, 30.0, 100.0, 800.0)
# The derivatives are ill-conditioned where they are exponentially small: at z = -10,
# gelu_tanh'(z) ~ e^{-2u} with 2u = -87, so one rounding of u (an ulp, or float32's
# rounded constants) moves it by ~90 ulps. Measured: at most 3.0e-15 in float64 and
# 5.9e-7 in float32 (gelu_tanh at z = -10 and -5); jax.grad of jax.nn.gelu(approximate=
# True) gives 0 at z = -10, where the derivative is -2.8e-36.
RTOL_LARGE = {np.float64: 1e-14, np.float32: 5e-6}


def mpmath_definitions(mp):
    """Each smooth sigma written from its definition in mpmath, for mp.diff. gelu_tanh's
    (1 + tanh u) / 2 is written as 1 / (1 + e^-2u), equal, so that 50 digits do not
    cancel to 0 where u << 0."""
    c, k = mp.sqrt(2 / mp.pi), mp.mpf("0.044715")
    return {
        "gelu": lambda z: z * mp.ncdf(z),
        "gelu_tanh": lambda z: z / (1 + mp.exp(-2 * c * (z + k * z**3))),
        "silu": lambda z: z / (1 + mp.exp(-z)),
        "softplus": lambda z: mp.log(1 + mp.exp(z)),
    }


@pytest.mark.slow
@pytest.mark.parametrize("name", SMOOTH)
def test_smooth_derivatives_at_large_z(name):
    """(A13), (A15), (A17), (A19) at z = 0, +-5, +-10, +-30, +-100, +-800 against the derivative
    of the definition taken by mpmath at 50 digits, rounded to the dtype: within RTOL_LARGE.
    Every value is finite; where the exact value is below the dtype's normal range, the
    result is too (XLA's CPU flushes subnormals to 0)."""
    mp = pytest.importorskip("mpmath")
    mp.mp.dps = 50
    f = mpmath_definitions(mp)[name]
    exact = [mp.diff(f, mp.mpf(z)) for z in LARGE]
    act = activations.get(name)
    for dtype, rtol in RTOL_LARGE.items():
        want = np.array([float(e) for e in exact]).astype(dtype)
        got = np.asarray(act.deriv(jnp.asarray([LARGE], dtype)))[0]
        assert got.dtype == dtype and np.all(np.isfinite(got))
        assert np.all(np.isfinite(np.asarray(act.fn(jnp.asarray([LARGE], dtype)))))
        normal = np.abs(want) >= np.finfo(dtype).tiny
        assert max_relative_error(got[normal], want[normal]) <= rtol, (dtype, got, want)
        assert np.all(np.abs(got[~normal]) < np.finfo(dtype).tiny), (dtype, got, want)


def test_gelu_tanh_derivative_keeps_digits_that_autodiff_loses():
    """(A15) as s + 2 z s sigmoid(-2u) u', s = sigmoid(2u): where u << 0, jax.grad of
    jax.nn.gelu(approximate=True) forms 1 + tanh u, which cancels: at z = -5 (u = -8.4) it
    is off by 1e-9 relative in float64 and by ~40% in float32 (or 0), where the hand form
    keeps float32's own precision."""
    mp = pytest.importorskip("mpmath")
    mp.mp.dps = 50
    z = np.array([-5.0, -4.0])
    exact = np.array([float(mp.diff(mpmath_definitions(mp)["gelu_tanh"], zi)) for zi in z])
    grad32 = elementwise_grad(JAX_NN["gelu_tanh"], jnp.asarray(z, jnp.float32))
    hand32 = activations.gelu_tanh_deriv(jnp.asarray(z, jnp.float32))
    assert max_relative_error(hand32, exact) <= 1e-5
    assert max_relative_error(grad32, exact) >= 1e-2


TORCH = {  # torch.nn's modules with their defaults, but GELU's approximate named
    "gelu": lambda nn: nn.GELU(approximate="none"),
    "gelu_tanh": lambda nn: nn.GELU(approximate="tanh"),
    "silu": lambda nn: nn.SiLU(),
    "softplus": lambda nn: nn.Softplus(),  # beta 1, threshold 20
}


@pytest.mark.slow
@pytest.mark.parametrize("name", sample(SMOOTH, 3))
def test_smooth_activations_equal_pytorch(name, torch):
    """sigma and sigma' against torch.nn's module and its autograd, float64, |z| <= 6: the
    same functions. PyTorch computes gelu as (z / 2)(1 + erf) or (z / 2)(1 + tanh u), which
    cancel where z << 0, so its values are compared to 4 ulps of 1 + |z| absolute, and its
    derivatives as jax.grad's are (autodiff_scale). PyTorch's Softplus returns z for
    z > 20 (its threshold), so there it differs from log(1 + e^z) by e^-z and its
    derivative is exactly 1."""
    z = np.asarray(moderate_Z(5, (1, 40))[0])
    t = torch.tensor(z, dtype=torch.float64, requires_grad=True)
    y = TORCH[name](torch.nn)(t)
    (dy,) = torch.autograd.grad(y.sum(), t)
    act = activations.get(name)
    eps = np.finfo(np.float64).eps
    assert_close(act.fn(jnp.asarray(z)), y.detach().numpy(), 1e-14, 4 * eps * (1 + np.abs(z)))
    assert_close(act.deriv(jnp.asarray(z)), dy.numpy(), 1e-13, 4 * eps * autodiff_scale(name, z))
    if name == "softplus":
        big = np.array([21.0, 25.0])
        t = torch.tensor(big, dtype=torch.float64, requires_grad=True)
        y = torch.nn.Softplus()(t)
        (dy,) = torch.autograd.grad(y.sum(), t)
        np.testing.assert_array_equal(y.detach().numpy(), big)  # the threshold: z itself
        np.testing.assert_array_equal(dy.numpy(), [1.0, 1.0])
        ours = np.asarray(activations.softplus(jnp.asarray(big)))
        assert np.all(np.abs(ours - big - np.exp(-big)) <= np.spacing(big))  # not z itself
        assert np.all(ours > big)


@pytest.mark.slow
@pytest.mark.parametrize("hidden", [("gelu", "silu"), ("gelu_tanh", "softplus")])
def test_smooth_activations_in_rows_per_example_and_blocks(hidden):
    """The activations need nothing of their own elsewhere: jaxnn.rows (units on axis 1),
    jaxnn.per_example_grads and network_with_hand_gradients's VJP, through two hidden
    layers of them, each equal autodiff in float64 (one compiled program)."""
    net = jaxnn.Network((4, 5, 5, 3), (*hidden, "softmax"), "cross_entropy")
    params = jaxnn.init_params(jax.random.key(0), net, method="pytorch")
    rng = np.random.default_rng(7)
    X = jnp.asarray(rng.normal(0.0, 2.0, (6, 4)))  # one example per row
    Y = jnp.asarray(np.eye(3)[rng.integers(0, 3, 6)])
    G = jnp.asarray(rng.normal(size=(3, 6)))

    def everything(params, X, Y, G):
        one = lambda p, x, y: jaxnn.cost(p, x[:, None], y[:, None], net)
        predict = lambda p, x: jaxnn.predict(p, x, net)
        block = jaxnn.network_with_hand_gradients(net)
        return (
            (jaxnn.rows.backprop(params, X, Y, net), jax.grad(jaxnn.rows.cost)(params, X, Y, net)),
            (
                jaxnn.per_example_grads(params, X.T, Y.T, net),
                jax.vmap(jax.grad(one), in_axes=(None, 0, 0))(params, X, Y),
            ),
            (jax.vjp(block, params, X.T)[1](G), jax.vjp(predict, params, X.T)[1](G)),
        )

    results = fast_jit(everything)(params, X, Y, G)
    for (hand, auto), what in zip(results, ("rows", "per-example", "block"), strict=True):
        assert_trees_close(hand, auto, 1e-10, what)


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


@pytest.mark.slow
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
    (_, vjps), _, Z, G = derivatives_and_vjps()
    got, want = vjps[name]
    atol = 1e-16 if name != "gelu_tanh" else 4e-16 * autodiff_scale(name, Z) * np.abs(G)
    assert_close(got, want, 1e-13, atol)


def test_unknown_activation_lists_valid_names():
    valid = (
        "'sigmoid', 'tanh', 'relu', 'leaky_relu', 'linear', 'softmax', 'gelu', 'gelu_tanh', "
        "'silu', 'softplus'"
    )
    with pytest.raises(ValueError, match=f"unknown activation 'swish'; valid names: {valid}"):
        activations.get("swish")
    with pytest.raises(ValueError, match=r"unknown activation \['relu'\]"):
        activations.get(["relu"])
    assert activations.get("softmax").deriv is None  # not element-wise: only its vjp
