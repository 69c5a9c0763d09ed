"""A corpus of hand backward passes, seeded bugs and correct ones, to measure gradient checkers.

Each ``Case`` is a backward pass with the signature of ``jaxnn.backward``
(``backward(params, cache, Y, net, fused)`` -> ``Backward(grads, deltas)``), a
network and a test point. ``hand_backward(**hooks)`` is BP1-BP4 written out as
the seeds write them; each bug replaces one formula (a hook) by a mistake
researchers make. ``expect`` is ``(layer, quantity, equation)`` where the bug
enters (what ``locate_fault`` must name), None for a correct pass.

Test points: ``random`` (weights N(0, 1/n_in), biases N(0, 0.5), X ~ N(0, 1)) and
``kink``: X's column 0 and b^[1] are zero, so Z^[1] is exactly 0 in column 0;
in a second hidden layer, unit 0 has zero weights and bias, so its row of Z^[2]
is exactly 0. Both kinks are crossed in one direction only by each
coordinate: b^[1]_j moves Z^[1]_j0 alone, and W^[2]_0k moves Z^[2]_0x by
t A^[1]_kx >= 0 (the layer below is a relu).

``scripts/gradient_checkers.py`` runs every checker over this corpus;
``tests/test_corpus.py`` asserts that jaxnn's checks catch every bug, raise no
false alarm and name the right layer and equation.
"""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

import jaxnn
from jaxnn import activations, losses
from tests.helpers import fast_jit


def hand_backward(*, out_grad=None, out_delta=None, deriv=None, bp2=None, bp3=None, bp4=None):
    """BP1-BP4 with hooks: each replaces one formula.

    out_grad(A, Y): grad_a C; out_delta(Z, A, Y, m): delta^[L] (default: the
    output activation's vjp of grad_a C, over m); deriv(l, Z): sigma' of math
    layer l; bp2(l, params, delta, sigma_prime, cache): delta^[l] (l: the loop's
    0-based index, params[l] is math layer l + 1); bp3(delta); bp4(delta, cache, l):
    dW^[l] of math layer l.
    """

    def backward(params, cache, Y, net, fused=True):
        del fused
        L = net.L
        out = activations.get(net.activations[-1])
        A, Z = cache.A[-1], cache.Z[-1]
        m = A.shape[1]
        if out_delta is not None:
            delta = out_delta(Z, A, Y, m)
        else:
            grad_a = (out_grad or losses.get(net.loss).grad)(A, Y)
            delta = out.vjp(Z, A, grad_a) / m  # (BP1)
        grads, deltas = [None] * L, [None] * L
        for l in reversed(range(L)):  # params[l] is math layer l + 1
            deltas[l] = delta
            db = bp3(delta) if bp3 else jnp.sum(delta, axis=1, keepdims=True)  # (BP3)
            dW = bp4(delta, cache, l + 1) if bp4 else delta @ cache.A[l].T  # (BP4)
            grads[l] = {"W": dW, "b": db}
            if l > 0:
                own = activations.get(net.activations[l - 1]).deriv
                sp = deriv(l, cache.Z[l - 1]) if deriv else own(cache.Z[l - 1])
                if bp2:
                    delta = bp2(l, params, delta, sp, cache)
                else:
                    delta = (params[l]["W"].T @ delta) * sp  # (BP2)
        return jaxnn.Backward(grads, deltas)

    return backward


@dataclasses.dataclass(frozen=True)
class Case:
    """One backward pass to check, and where its bug enters (None: it is correct)."""

    name: str
    net: jaxnn.Network
    backward: object
    expect: tuple | None
    point: str = "random"
    dtype: str = "float64"
    m: int = 6

    @property
    def bug(self) -> bool:
        return self.expect is not None


def make_point(case: Case, seed: int = 0):
    """``(params, X, Y)`` of the case's test point, in its dtype."""
    net = case.net
    rng = np.random.default_rng(seed)
    params = [
        {"W": rng.normal(0, 1 / np.sqrt(n_in), (n_out, n_in)), "b": rng.normal(0, 0.5, (n_out, 1))}
        for n_in, n_out in zip(net.sizes[:-1], net.sizes[1:], strict=True)
    ]
    X = rng.normal(size=(net.sizes[0], case.m))
    if case.point == "kink":
        X[:, 0] = 0.0
        params[0]["b"][:] = 0.0
        if net.L > 2:
            params[1]["W"][0] = 0.0
            params[1]["b"][0] = 0.0
    n = net.sizes[-1]
    if net.loss == "cross_entropy":
        Y = np.eye(n)[:, rng.integers(0, n, case.m)]
    elif net.loss == "binary_cross_entropy":
        Y = rng.integers(0, 2, (n, case.m)).astype(float)
    elif net.activations[-1] in ("sigmoid", "softmax"):
        Y = rng.uniform(0, 1, (n, case.m))
    else:
        Y = rng.normal(size=(n, case.m))
    cast = lambda x: jnp.asarray(x, case.dtype)
    return jax.tree.map(cast, params), cast(X), cast(Y)


@functools.cache
def cost_fn(net):
    """``cost(params, X, Y)`` of the network, jitted."""
    return jax.jit(lambda params, X, Y: jaxnn.cost(params, X, Y, net))


# The forward pass, compiled once per network and dtype for every case.
_FORWARD = fast_jit(jaxnn.forward_unchecked, static_argnums=2)


@functools.cache
def grad_fn(case: Case):
    """``grad(params, X, Y)`` by the case's backward pass: the shared forward pass, then
    ``jitted_backward(case)``, so that a case compiles its backward pass once for both
    ``check_gradients`` and ``locate_fault``."""
    backward = jitted_backward(case)

    def grad(params, X, Y):
        cache = _FORWARD(params, X, case.net)
        return list(backward(params, cache, Y, case.net, fused=True).grads)

    return grad


@functools.cache
def jitted_backward(case: Case):
    """The case's backward pass compiled once (``locate_fault`` calls it on a cache)."""
    return fast_jit(case.backward, static_argnums=3, static_argnames="fused")


def _net(sizes, acts, loss):
    return jaxnn.Network(sizes, acts, loss)


RELU_CE = _net((4, 5, 5, 3), ("relu", "relu", "softmax"), "cross_entropy")
TANH_BCE = _net((5, 5, 5, 3), ("tanh", "tanh", "sigmoid"), "binary_cross_entropy")
SIG_MSE = _net((4, 5, 5, 2), ("sigmoid", "sigmoid", "linear"), "mse")
LEAKY_MSE = _net((4, 5, 5, 2), ("leaky_relu", "leaky_relu", "tanh"), "mse")
SOFT_MSE = _net((3, 4, 3), ("tanh", "softmax"), "mse")
RELU_OUT = _net((3, 4, 2), ("tanh", "relu"), "mse")
RELU_OUT_KINK = _net((3, 2), ("relu",), "mse")


def _bp2(l, params, delta, sp):
    return (params[l]["W"].T @ delta) * sp  # (BP2)


def _no_transpose(l, params, delta, sp, cache):  # delta^[1] from W^[2] delta^[2], W^[2] square
    return (params[l]["W"] @ delta) * sp if l == 1 else _bp2(l, params, delta, sp)


def _wrong_layer_weights(l, params, delta, sp, cache):  # delta^[1] from W^[1], not W^[2]
    return (params[0]["W"].T @ delta) * sp if l == 1 else _bp2(l, params, delta, sp)


def _no_sigma_prime(l, params, delta, sp, cache):
    return params[l]["W"].T @ delta


def _wrong_z(l, params, delta, sp, cache):  # delta^[1] with tanh'(Z^[2]) for tanh'(Z^[1])
    if l == 1:
        return (params[l]["W"].T @ delta) * activations.tanh_deriv(cache.Z[1])
    return _bp2(l, params, delta, sp)


def _kink_deriv(value, name, only=None):
    """sigma' of ``name`` with sigma'(0) = value (in math layer ``only``, or every layer)."""
    own = activations.get(name).deriv

    def deriv(l, Z):
        at = jnp.where(Z == 0, value, own(Z)).astype(Z.dtype)
        return at if only in (None, l) else own(Z)

    return deriv


def _relu_out_delta(value):
    def out_delta(Z, A, Y, m):
        return (A - Y) * jnp.where(Z == 0, value, (Z > 0).astype(Z.dtype)) / m  # (BP1)

    return out_delta


right = hand_backward()
BUGS = [
    Case(
        "bce sign (seed's C as written)",
        TANH_BCE,
        hand_backward(out_grad=lambda A, Y: Y / A - (1 - Y) / (1 - A)),
        (3, "delta", "BP1"),
    ),
    Case(
        "mse gradient sign y - a",
        SIG_MSE,
        hand_backward(out_grad=lambda A, Y: Y - A),
        (3, "delta", "BP1"),
    ),
    Case(
        "missing 1/m",
        RELU_CE,
        hand_backward(out_delta=lambda Z, A, Y, m: A - Y),
        (3, "delta", "BP1"),
    ),
    Case(
        "1/m twice",
        TANH_BCE,
        hand_backward(out_delta=lambda Z, A, Y, m: (A - Y) / m**2),
        (3, "delta", "BP1"),
    ),
    Case(
        "ce gradient -1/a (y dropped)",
        RELU_CE,
        hand_backward(out_grad=lambda A, Y: -1 / A),
        (3, "delta", "BP1"),
    ),
    Case(
        "softmax as elementwise a(1-a)",
        SOFT_MSE,
        hand_backward(out_delta=lambda Z, A, Y, m: (A - Y) * A * (1 - A) / m),
        (2, "delta", "BP1"),
    ),
    Case(
        "softmax + MSE given CE's closed form p - y",
        SOFT_MSE,
        hand_backward(out_delta=lambda Z, A, Y, m: (A - Y) / m),
        (2, "delta", "BP1"),
    ),
    Case(
        "F2 (a - y) used for sigmoid + MSE",
        _net((4, 5, 2), ("tanh", "sigmoid"), "mse"),
        hand_backward(out_delta=lambda Z, A, Y, m: (A - Y) / m),
        (2, "delta", "BP1"),
    ),
    Case(
        "tanh' = 1 - tanh (square missing)",
        TANH_BCE,
        hand_backward(deriv=lambda l, Z: 1 - jnp.tanh(Z)),
        (2, "delta", "BP2"),
    ),
    Case(
        "sigmoid' = s(z)(1 - z)",
        SIG_MSE,
        hand_backward(deriv=lambda l, Z: jax.nn.sigmoid(Z) * (1 - Z)),
        (2, "delta", "BP2"),
    ),
    Case(
        "relu' = (z < 0)",
        RELU_CE,
        hand_backward(deriv=lambda l, Z: (Z < 0).astype(Z.dtype)),
        (2, "delta", "BP2"),
    ),
    Case(
        "leaky slope 0.1 for 0.01",
        LEAKY_MSE,
        hand_backward(deriv=lambda l, Z: jnp.where(Z >= 0, 1.0, 0.1).astype(Z.dtype)),
        (2, "delta", "BP2"),
    ),
    Case(
        "BP2 transpose missing (square W)",
        RELU_CE,
        hand_backward(bp2=_no_transpose),
        (1, "delta", "BP2"),
    ),
    Case(
        "BP2 wrong layer's weights",
        TANH_BCE,
        hand_backward(bp2=_wrong_layer_weights),
        (1, "delta", "BP2"),
    ),
    Case("BP2 sigma' missing", SIG_MSE, hand_backward(bp2=_no_sigma_prime), (2, "delta", "BP2")),
    Case(
        "BP2 sigma' of the layer above", TANH_BCE, hand_backward(bp2=_wrong_z), (1, "delta", "BP2")
    ),
    Case(
        "BP3 mean for sum",
        RELU_CE,
        hand_backward(bp3=lambda d: jnp.mean(d, axis=1, keepdims=True)),
        (3, "b", "BP3"),
    ),
    Case("BP3 first example only", SIG_MSE, hand_backward(bp3=lambda d: d[:, :1]), (3, "b", "BP3")),
    Case(
        "BP4 transposed (square W)",
        TANH_BCE,
        hand_backward(bp4=lambda d, c, l: c.A[l - 1] @ d.T if l == 2 else d @ c.A[l - 1].T),
        (2, "W", "BP4"),
    ),
    Case(
        "BP4 uses A^[l] for A^[l-1]",
        LEAKY_MSE,
        hand_backward(bp4=lambda d, c, l: d @ c.A[l if l == 2 else l - 1].T),
        (2, "W", "BP4"),
    ),
    Case(
        "BP4 uses Z^[l-1] for A^[l-1]",
        TANH_BCE,
        hand_backward(bp4=lambda d, c, l: d @ (c.Z[l - 2] if l == 2 else c.A[l - 1]).T),
        (2, "W", "BP4"),
    ),
    Case(
        "BP4 extra 1/m",
        RELU_CE,
        hand_backward(bp4=lambda d, c, l: d @ c.A[l - 1].T / d.shape[1]),
        (3, "W", "BP4"),
    ),
    Case(
        "kink only: relu'(0) = 2",
        RELU_CE,
        hand_backward(deriv=_kink_deriv(2.0, "relu", only=1)),
        (1, "delta", "BP2"),
        point="kink",
    ),
    Case(
        "kink only: relu'(0) = -1, layer 2",
        RELU_CE,
        hand_backward(deriv=_kink_deriv(-1.0, "relu")),
        (2, "delta", "BP2"),
        point="kink",
    ),
    Case(
        "kink only: leaky'(0) = 0",
        LEAKY_MSE,
        hand_backward(deriv=_kink_deriv(0.0, "leaky_relu", only=1)),
        (1, "delta", "BP2"),
        point="kink",
    ),
    Case(
        "kink only: relu output, relu'(0) = 3",
        RELU_OUT_KINK,
        hand_backward(out_delta=_relu_out_delta(3.0)),
        (1, "delta", "BP1"),
        point="kink",
    ),
    Case(
        "tanh' square missing, float32",
        TANH_BCE,
        hand_backward(deriv=lambda l, Z: 1 - jnp.tanh(Z)),
        (2, "delta", "BP2"),
        dtype="float32",
    ),
    Case(
        "missing 1/m, float32",
        SIG_MSE,
        hand_backward(out_delta=lambda Z, A, Y, m: A - Y),
        (3, "delta", "BP1"),
        dtype="float32",
    ),
]


def _jaxnn(fixed):
    """jaxnn.backward with ``fused`` fixed, whatever the caller passes."""
    return lambda params, cache, Y, net, fused=True: jaxnn.backward(
        params, cache, Y, net, fused=fixed
    )


CORRECT = [
    Case("jaxnn relu + softmax/CE, F1", RELU_CE, _jaxnn(True), None),
    Case("jaxnn relu + softmax/CE, BP1", RELU_CE, _jaxnn(False), None),
    Case("jaxnn tanh + sigmoid/BCE, F2", TANH_BCE, _jaxnn(True), None),
    Case("jaxnn tanh + sigmoid/BCE, BP1", TANH_BCE, _jaxnn(False), None),
    Case("jaxnn sigmoid + linear/MSE", SIG_MSE, _jaxnn(True), None),
    Case("jaxnn leaky + tanh/MSE", LEAKY_MSE, _jaxnn(True), None),
    Case("jaxnn tanh + softmax/MSE", SOFT_MSE, _jaxnn(True), None),
    Case("jaxnn tanh + relu/MSE", RELU_OUT, _jaxnn(True), None),
    Case("seed transcription relu + softmax/CE", RELU_CE, right, None),
    Case("seed transcription tanh + sigmoid/BCE", TANH_BCE, right, None),
    Case("seed transcription sigmoid + linear/MSE", SIG_MSE, right, None),
    Case("seed transcription leaky + tanh/MSE", LEAKY_MSE, right, None),
    Case("kink, jax's relu'(0) = 0", RELU_CE, right, None, point="kink"),
    Case(
        "kink, relu'(0) = 1 (z >= 0)",
        RELU_CE,
        hand_backward(deriv=_kink_deriv(1.0, "relu")),
        None,
        point="kink",
    ),
    Case(
        "kink, relu'(0) = 1/2",
        RELU_CE,
        hand_backward(deriv=_kink_deriv(0.5, "relu")),
        None,
        point="kink",
    ),
    Case("kink, jax's leaky'(0) = 1", LEAKY_MSE, right, None, point="kink"),
    Case(
        "kink, leaky'(0) = 0.01 (left)",
        LEAKY_MSE,
        hand_backward(deriv=_kink_deriv(0.01, "leaky_relu")),
        None,
        point="kink",
    ),
    Case(
        "kink, relu output, relu'(0) = 1",
        RELU_OUT_KINK,
        hand_backward(out_delta=_relu_out_delta(1.0)),
        None,
        point="kink",
    ),
    Case("jaxnn relu + softmax/CE, float32", RELU_CE, _jaxnn(True), None, dtype="float32"),
    Case("seed transcription tanh + sigmoid/BCE, float32", TANH_BCE, right, None, dtype="float32"),
    Case(
        "kink, relu'(0) = 1, float32",
        RELU_CE,
        hand_backward(deriv=_kink_deriv(1.0, "relu")),
        None,
        point="kink",
        dtype="float32",
    ),
    Case("jaxnn sigmoid + linear/MSE, float32", SIG_MSE, _jaxnn(True), None, dtype="float32"),
]

CASES = BUGS + CORRECT
