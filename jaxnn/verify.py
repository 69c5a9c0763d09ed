"""Verifying gradients: ``check_gradients``, ``locate_fault``, and the verify matrix.

Three tools, from the most general to the most specific:

* ``check_gradients(grad_fn, cost_fn, params, *args)`` compares any hand-written
  gradient with ``jax.grad(cost_fn)`` (and, optionally, central finite
  differences), leaf by leaf;
* ``locate_fault(params, X, Y, net, backward_fn)`` compares every layer's
  delta^[l] = dC/dZ^[l] of a jaxnn-style backward pass with ``jax.vjp`` of the
  network cut at Z^[l], and names the layer where a wrong formula enters;
* ``run_matrix()`` runs jaxnn's own backprop over every (hidden activation,
  output and loss, depth, fused) configuration at test points chosen to be hard
  (kinks, saturation), in float64 and float32; ``format_table`` renders it.

Error measures, used throughout (``a`` the value checked, ``e`` the reference):
  * absolute: max_i |a_i - e_i| over a leaf;
  * relative: max_i |a_i - e_i| / max_i |e_i|, relative to the leaf's largest
    reference entry, not elementwise: an entry whose true value is 1e-22 (a
    saturated unit) and which rounding makes 0 is not an error of 100%;
  * ulp: the absolute error in units of ``numpy.spacing(max_i |e_i|)``, the
    spacing of floats at the leaf's scale, in the leaf's dtype.
A leaf passes when max_i |a_i - e_i| <= atol + rtol * max_i |e_i|.

This module never prints; ``jaxnn.cli`` prints what it returns.
"""

import dataclasses
import functools
import itertools
import math
import textwrap
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from jaxnn import activations, losses
from jaxnn.backprop import backprop, backward
from jaxnn.network import Cache, Network, _forward, check_inputs, cost, output_cost

# ---------------------------------------------------------------------------
# Error measures


class Errors(NamedTuple):
    """Errors of one leaf: absolute, relative to the leaf's scale, and in ulps of that scale."""

    max_abs: float
    max_rel: float
    ulp: float
    scale: float  # max_i |e_i|


def errors(actual, expected) -> Errors:
    """``Errors`` of ``actual`` against ``expected`` (see the module docstring)."""
    e_dtype = np.asarray(expected).dtype
    a = np.asarray(actual, dtype=np.float64)
    e = np.asarray(expected, dtype=np.float64)
    max_abs = float(np.max(np.abs(a - e), initial=0.0)) if a.size else 0.0
    if a.size and not np.all(np.isfinite(a - e)):
        max_abs = math.nan if np.isnan(a - e).any() else math.inf
    scale = float(np.max(np.abs(e), initial=0.0))
    if max_abs == 0.0:
        return Errors(0.0, 0.0, 0.0, scale)
    if scale == 0.0 or not math.isfinite(scale):
        return Errors(max_abs, math.inf, math.inf, scale)
    spacing = float(np.spacing(np.asarray(scale, dtype=e_dtype)))
    return Errors(max_abs, max_abs / scale, max_abs / spacing, scale)


def default_rtol(dtype) -> float:
    """rtol for hand vs ``jax.grad``: 1e-8 (float64), 1e-4 (float32), 1e-2 (16-bit)."""
    bits = jnp.finfo(dtype).bits
    return {64: 1e-8, 32: 1e-4}.get(bits, 1e-2)


def _passes(err: Errors, rtol, atol) -> bool:
    return err.max_abs <= atol + rtol * err.scale  # False for nan


def _lowest_precision(tree):
    dtypes = [jnp.result_type(x) for x in jax.tree.leaves(tree)]
    dtypes = [d for d in dtypes if jnp.issubdtype(d, jnp.inexact)] or [jnp.zeros(()).dtype]
    return max(dtypes, key=lambda d: float(jnp.finfo(d).eps))


def _fmt(x) -> str:
    if x is None:
        return "-"
    if isinstance(x, str):
        return x
    return f"{x:.1e}" if x == x else "nan"


# ---------------------------------------------------------------------------
# check_gradients


class LeafCheck(NamedTuple):
    """One leaf of a gradient: its errors against jax.grad and, optionally, finite differences."""

    path: str
    shape: tuple
    grad: Errors
    ok: bool
    fd: Errors | None = None
    fd_ok: bool | None = None


@dataclasses.dataclass(frozen=True)
class GradientReport:
    """What ``check_gradients`` found: one ``LeafCheck`` per leaf and the tolerances used."""

    leaves: tuple
    rtol: float
    atol: float
    h: float | None = None
    fd_rtol: float | None = None
    fd_atol: float | None = None

    @property
    def ok(self) -> bool:
        return all(leaf.ok and leaf.fd_ok is not False for leaf in self.leaves)

    def __str__(self):
        fd = self.h is not None
        head = ["leaf", "shape", "max abs", "max rel", "ulp", "ok"]
        if fd:
            head += ["FD max abs", "FD max rel", "FD ok"]
        rows = []
        for leaf in self.leaves:
            row = [leaf.path or "(root)", str(leaf.shape), _fmt(leaf.grad.max_abs)]
            row += [_fmt(leaf.grad.max_rel), _fmt(leaf.grad.ulp), "ok" if leaf.ok else "FAIL"]
            if fd:
                row += [_fmt(leaf.fd.max_abs), _fmt(leaf.fd.max_rel)]
                row += ["ok" if leaf.fd_ok else "FAIL"]
            rows.append(row)
        lines = [
            f"hand gradient vs jax.grad: rtol={self.rtol:.0e}, atol={self.atol:.0e}, "
            "rel = max|a - e| / max|e| per leaf"
        ]
        if fd:
            lines.append(
                f"hand gradient vs central differences: h={self.h:.1e}, "
                f"rtol={self.fd_rtol:.0e}, atol={self.fd_atol:.1e}"
            )
        lines.append(_table(head, rows))
        lines.append("OK" if self.ok else "FAILED")
        return "\n".join(lines)


def _table(head, rows) -> str:
    widths = [max(len(str(r[i])) for r in [head, *rows]) for i in range(len(head))]
    fmt = lambda r: "  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
    return "\n".join([fmt(head), fmt(["-" * w for w in widths]), *map(fmt, rows)])


def finite_difference_gradient(cost_fn, params, *args, h):
    """Central differences (C(p + h e_i) - C(p - h e_i)) / 2h for every entry i of params.

    All 2N evaluations of ``cost_fn`` run in one jitted, batched computation
    (``jax.lax.map`` over the N basis directions). Error: about
    (h^2 / 6) |C'''| + eps |C| / h per entry.
    """
    flat, unravel = ravel_pytree(params)
    n = flat.shape[0]
    f = lambda theta: cost_fn(unravel(theta), *args)

    @jax.jit
    def all_entries(flat):
        def one(i):
            step = jnp.zeros_like(flat).at[i].set(h)
            return (f(flat + step) - f(flat - step)) / (2 * h)

        return jax.lax.map(one, jnp.arange(n), batch_size=min(n, 256))

    return unravel(all_entries(flat))


def check_gradients(
    grad_fn,
    cost_fn,
    params,
    *args,
    rtol=None,
    atol=0.0,
    finite_differences=False,
    h=None,
    fd_rtol=None,
    fd_atol=None,
) -> GradientReport:
    """Compare a hand-written gradient with ``jax.grad(cost_fn)``, leaf by leaf.

    Each leaf passes when max|a - e| <= atol + rtol * max|e|, with ``a`` from
    ``grad_fn(params, *args)`` and ``e`` from ``jax.grad(cost_fn)(params, *args)``.
    With ``finite_differences=True`` the hand gradient is also compared with
    central differences of ``cost_fn`` in every entry (2N cost evaluations).

    Args:
      grad_fn: ``grad_fn(params, *args)``, returning a pytree shaped like params.
      cost_fn: ``cost_fn(params, *args)``, a scalar; it must be JAX-traceable.
      params: the pytree to differentiate with respect to.
      *args: the other arguments of both functions (data, a ``Network``, ...).
      rtol: default by the params' least precise float dtype: 1e-8 (float64),
        1e-4 (float32), 1e-2 (16-bit).
      atol: absolute tolerance, 0 by default: a leaf that is exactly zero in
        ``jax.grad`` must be exactly zero in the hand gradient too.
      finite_differences: also compare with central differences.
      h: the finite-difference step; default eps^(1/3) of the dtype (6.1e-6
        in float64), which balances truncation h^2 |C'''| / 6 against
        rounding eps |C| / h.
      fd_rtol: default 1e-6 (float64), 1e-2 otherwise.
      fd_atol: default 10 eps max(|C|, 1) / h, the rounding floor of the quotient.

    Returns:
      A ``GradientReport``: ``.ok``, ``.leaves`` (path, shape, errors), and a table as ``str``.

    Example:
      >>> report = jaxnn.check_gradients(my_grad, my_cost, w, x)
      >>> print(report)
    """
    dtype = _lowest_precision(params)
    eps = float(jnp.finfo(dtype).eps)
    rtol = default_rtol(dtype) if rtol is None else rtol
    hand = grad_fn(params, *args)
    ref = jax.grad(cost_fn)(params, *args)
    hand_leaves = _leaves_like(hand, ref, "grad_fn's result")
    fd_leaves = None
    if finite_differences:
        h = eps ** (1 / 3) if h is None else h
        fd_rtol = (1e-6 if eps < 1e-15 else 1e-2) if fd_rtol is None else fd_rtol
        if fd_atol is None:
            value = float(cost_fn(params, *args))
            fd_atol = 10 * eps * max(abs(value), 1.0) / h
        fd_leaves = jax.tree.leaves(finite_difference_gradient(cost_fn, params, *args, h=h))
    leaves = []
    for i, (path, e) in enumerate(jax.tree_util.tree_leaves_with_path(ref)):
        err = errors(hand_leaves[i], e)
        check = LeafCheck(
            jax.tree_util.keystr(path), tuple(np.shape(e)), err, _passes(err, rtol, atol)
        )
        if fd_leaves is not None:
            fd_err = errors(hand_leaves[i], fd_leaves[i])
            check = check._replace(fd=fd_err, fd_ok=_passes(fd_err, fd_rtol, fd_atol))
        leaves.append(check)
    if not finite_differences:
        h = fd_rtol = fd_atol = None
    return GradientReport(tuple(leaves), rtol, atol, h, fd_rtol, fd_atol)


def _leaves_like(tree, ref, what):
    if jax.tree.structure(tree) != jax.tree.structure(ref):
        raise ValueError(
            f"{what} has tree structure {jax.tree.structure(tree)}, but the gradient of "
            f"cost_fn has {jax.tree.structure(ref)}: return one array per parameter leaf"
        )
    leaves = jax.tree.leaves(tree)
    for (path, e), a in zip(jax.tree_util.tree_leaves_with_path(ref), leaves, strict=True):
        if np.shape(a) != np.shape(e):
            raise ValueError(
                f"{what}{jax.tree_util.keystr(path)} has shape {np.shape(a)}, the "
                f"parameter has shape {np.shape(e)}"
            )
    return leaves


# ---------------------------------------------------------------------------
# locate_fault: which layer of a backward pass is wrong


class LayerCheck(NamedTuple):
    """Layer l (1-based, as in the math): delta^[l], dC/dW^[l] and dC/db^[l] against references."""

    layer: int
    delta: Errors
    W: Errors
    b: Errors
    delta_ok: bool
    W_ok: bool
    b_ok: bool


_EQUATION = {"W": "BP4", "b": "BP3"}


@dataclasses.dataclass(frozen=True)
class FaultReport:
    """What ``locate_fault`` found: a ``LayerCheck`` per layer (``layers[0]`` is layer 1)."""

    layers: tuple
    rtol: float
    atol: float

    @property
    def ok(self) -> bool:
        return self.fault is None

    @property
    def fault(self):
        """``(layer, quantity, equation)`` of the first disagreement in backprop's order, or None.

        Backprop computes delta^[L], dW^[L], db^[L], then delta^[L-1], and so on
        down to layer 1. An error entering at one of these steps spreads to every
        later step (BP2 carries a wrong delta^[l] into all layers below) but never
        to an earlier one, so the first disagreement in that order is where the
        fault enters; the disagreements after it may be its consequences.
        """
        L = len(self.layers)
        for check in reversed(self.layers):
            l = check.layer
            if not check.delta_ok:
                return l, "delta", "BP1" if l == L else "BP2"
            for name in ("W", "b"):
                if not getattr(check, f"{name}_ok"):
                    return l, name, _EQUATION[name]
        return None

    @property
    def first_bad_layer(self):
        """The layer (1-based) of ``fault``, or None when every layer agrees."""
        return None if self.fault is None else self.fault[0]

    def __str__(self):
        head = ["layer", "delta abs", "delta rel", "delta ulp", "dW rel", "db rel", "status"]
        rows = []
        for check in reversed(self.layers):
            bad = [n for n in ("delta", "W", "b") if not getattr(check, f"{n}_ok")]
            rows.append(
                [
                    str(check.layer),
                    _fmt(check.delta.max_abs),
                    _fmt(check.delta.max_rel),
                    _fmt(check.delta.ulp),
                    _fmt(check.W.max_rel),
                    _fmt(check.b.max_rel),
                    "ok" if not bad else "DIFFERS: " + ", ".join(bad),
                ]
            )
        lines = [
            "delta^[l] = dC/dZ^[l] vs jax.vjp of the network cut at Z^[l]; dW, db vs "
            f"jax.grad(jaxnn.cost); rtol={self.rtol:.0e}, atol={self.atol:.0e}",
            _table(head, rows),
        ]
        if self.fault is None:
            lines.append("every layer agrees")
        else:
            l, name, eq = self.fault
            what = {"delta": f"delta^[{l}]", "W": f"dC/dW^[{l}]", "b": f"dC/db^[{l}]"}[name]
            check = self.layers[l - 1]
            err = getattr(check, name)
            lines.append(
                f"first disagreement, from the output back: layer {l}, {what} ({eq}): "
                f"max abs {_fmt(err.max_abs)}, rel {_fmt(err.max_rel)}, {_fmt(err.ulp)} ulp"
            )
        return "\n".join(lines)


def _tail_cost(Z, params, Y, net: Network, l: int):
    """The cost as a function of Z^[l+1] (0-based l): the network cut at that layer."""
    A = activations.get(net.activations[l]).fn(Z)  # (F-A)
    for k in range(l + 1, net.L):
        Z = params[k]["W"] @ A + params[k]["b"]  # (F-Z)
        A = activations.get(net.activations[k]).fn(Z)  # (F-A)
    return output_cost(Cache([Z], [A]), Y, net)


def reference_deltas(params, X, Y, net: Network):
    """delta^[l] = dC/dZ^[l] for l = 1..L by ``jax.vjp`` of the network cut at Z^[l]."""
    X, Y = check_inputs(params, X, net, Y)
    cache = _forward(params, X, net)
    deltas = []
    for l in range(net.L):
        value, vjp = jax.vjp(lambda Z, l=l: _tail_cost(Z, params, Y, net, l), cache.Z[l])
        deltas.append(vjp(jnp.ones_like(value))[0])
    return deltas


@functools.partial(jax.jit, static_argnums=3)
def _references(params, X, Y, net):
    return reference_deltas(params, X, Y, net), jax.grad(cost)(params, X, Y, net)


def locate_fault(
    params, X, Y, net: Network, backward_fn=backward, *, fused=True, rtol=None, atol=0.0
) -> FaultReport:
    """Find the first layer at which a backward pass disagrees with automatic differentiation.

    Runs ``backward_fn(params, cache, Y, net, fused)`` (signature of
    ``jaxnn.backward``; it returns ``Backward(grads, deltas)`` or a
    ``(grads, deltas)`` pair, deltas[l] = dC/dZ^[l+1] for the mean cost) on the
    forward cache, and compares, layer by layer from the output back:

      delta^[l]  with ``jax.vjp`` of Z^[l] -> C, the remaining layers and the cost;
      dW^[l], db^[l]  with ``jax.grad(jaxnn.cost)``.

    Args:
      params, X, Y, net: as for ``jaxnn.backprop``.
      backward_fn: the backward pass under test, ``jaxnn.backward`` by default.
      fused: passed to ``backward_fn``.
      rtol: default 1e-8 (float64), 1e-4 (float32).
      atol: absolute tolerance, 0 by default.

    Returns:
      A ``FaultReport``: ``.ok``, ``.first_bad_layer``, ``.fault`` (layer,
      quantity, equation), ``.layers``, and a table as ``str``.
    """
    X, Y = check_inputs(params, X, net, Y)
    rtol = default_rtol(_lowest_precision(params)) if rtol is None else rtol
    cache = _forward(params, X, net)
    result = backward_fn(params, cache, Y, net, fused)
    grads, deltas = (result.grads, result.deltas) if hasattr(result, "deltas") else result
    if len(deltas) != net.L or len(grads) != net.L:
        raise ValueError(
            f"backward_fn returned {len(grads)} gradients and {len(deltas)} deltas for "
            f"a network of {net.L} layers"
        )
    ref_deltas, ref_grads = _references(params, X, Y, net)
    layers = []
    for l in range(net.L):
        err = {
            "delta": errors(deltas[l], ref_deltas[l]),
            "W": errors(grads[l]["W"], ref_grads[l]["W"]),
            "b": errors(grads[l]["b"], ref_grads[l]["b"]),
        }
        ok = {k: _passes(v, rtol, atol) for k, v in err.items()}
        layers.append(
            LayerCheck(l + 1, err["delta"], err["W"], err["b"], ok["delta"], ok["W"], ok["b"])
        )
    return FaultReport(tuple(layers), rtol, atol)


# ---------------------------------------------------------------------------
# The verify matrix

HIDDEN_ACTIVATIONS = ("sigmoid", "tanh", "relu", "leaky_relu", "linear")
OUTPUT_LOSSES = (
    ("softmax", "cross_entropy"),
    ("sigmoid", "binary_cross_entropy"),
    ("linear", "mse"),
    ("sigmoid", "mse"),
    ("tanh", "mse"),
    ("softmax", "mse"),
)
DEPTHS = (1, 2, 3)  # hidden layers
# Test points: (how, size) rescales W^[L] and b^[L] so that max|Z^[L]| or rms(Z^[L]) is size.
POINTS = {
    "random": ("rms", 1.0),
    "kink": ("rms", 1.0),
    "logit<=10": ("max", 10.0),
    "logit~50": ("rms", 50.0),
    "logit~2000": ("rms", 2000.0),
}
GRAD_RTOL = {"float64": 1e-10, "float32": 1e-4}
FD_STEP = 1e-5
FD_RTOL = 1e-6
FD_DIRECTIONS = 4
NOTES = {
    "saturated": "the output is saturated past the dtype's resolution, 1 - |a| < 10 eps / tol: "
    "the derivative through it is formed from 1 - a, which a rounded a gives only to "
    "eps / (1 - a) relative, in jax.grad (sigma' = a (1 - a), tanh' = (1 + a)(1 - a), the "
    "softmax product) or in BP1 (grad_a C's 1 / (1 - a), the Jacobian product (S2)); "
    "at 1 - a = 0 BP1's grad_a C is inf and 0 * inf = nan",
    "underflow": "a probability below the smallest normal float: BP1's -y / a overflows",
    "fd-resolution": "|grad C| below what central differences resolve: "
    "FD_RTOL |g| < eps max(|C|, 1) / h",
    "no-point": "no test point where this check applies: the configuration is unverified",
    "fd-kink": "FD at the kink point along directions that keep every kinked pre-activation "
    "at 0 (the kinked units' incoming weights and biases held fixed): across a kink FD "
    "gives the mean of the one-sided slopes, while jax.grad and jaxnn both take "
    "relu'(0) = 0, leaky_relu'(0) = 1 and are compared there",
}
_WIDTHS = (4, 6, 5, 6)  # n_x, then the hidden widths
_N_OUT = 3
_M = 8
_PIECEWISE = ("relu", "leaky_relu")
_CLOSED_FORM = {
    ("softmax", "cross_entropy"): "F1",
    ("sigmoid", "binary_cross_entropy"): "F2",
    ("linear", "mse"): "F3",
}


def _sizes(depth):
    return (*_WIDTHS[: depth + 1], _N_OUT)


def _target_kind(output, loss):
    return loss if loss != "mse" else f"mse_{output}"


def _make_points(depth, seed):
    """Parameters, inputs, targets and FD directions for every point, stacked, float64."""
    rng = np.random.default_rng([seed, depth])
    sizes = _sizes(depth)
    P, m, n = len(POINTS), _M, _N_OUT
    params = [
        {
            "W": rng.normal(0.0, 1.0 / math.sqrt(n_in), (P, n_out, n_in)),
            "b": rng.normal(0.0, 0.5, (P, n_out, 1)),
        }
        for n_in, n_out in itertools.pairwise(sizes)
    ]
    X = rng.normal(0.0, 1.0, (P, sizes[0], m))
    # The kink point: Z^[1] = 0 in column 0 (X's column 0 and b^[1] are zero), and
    # in every later hidden layer unit 0 has no weights and no bias: Z = 0 in row 0.
    k = list(POINTS).index("kink")
    X[k, :, 0] = 0.0
    params[0]["b"][k] = 0.0
    for layer in params[1:depth]:
        layer["W"][k, 0, :] = 0.0
        layer["b"][k, 0] = 0.0
    one_hot = np.eye(n)[:, rng.integers(0, n, (P, m))].transpose(1, 0, 2)
    soft = rng.dirichlet(np.ones(n), (P, m)).transpose(0, 2, 1)
    probabilities = np.where(np.arange(m) % 2 == 0, one_hot, soft)
    binary = rng.integers(0, 2, (P, n, m)).astype(np.float64)
    Ys = {
        "cross_entropy": probabilities,
        "binary_cross_entropy": np.where(
            np.arange(m) % 2 == 0, binary, rng.uniform(0.0, 1.0, (P, n, m))
        ),
        "mse_linear": rng.normal(0.0, 1.0, (P, n, m)),
        "mse_sigmoid": rng.uniform(0.0, 1.0, (P, n, m)),
        "mse_tanh": rng.uniform(-1.0, 1.0, (P, n, m)),
        "mse_softmax": probabilities,
    }
    shapes = [{"W": np.ones((o, i)), "b": np.ones((o, 1))} for i, o in itertools.pairwise(sizes)]
    V = rng.normal(0.0, 1.0, (P, FD_DIRECTIONS, ravel_pytree(shapes)[0].shape[0]))
    # At the kink point FD must not move a pre-activation that sits at z = 0: the
    # kinked units' incoming weights and biases are held fixed (masked out of V).
    shapes[0]["b"][:] = 0.0
    for layer in shapes[1:depth]:
        layer["W"][0, :] = 0.0
        layer["b"][0] = 0.0
    V_kink = V.copy()
    V_kink[k] *= np.asarray(ravel_pytree(shapes)[0])
    V /= np.linalg.norm(V, axis=-1, keepdims=True)
    V_kink /= np.linalg.norm(V_kink, axis=-1, keepdims=True)
    scales = np.array([[how == "max", size] for how, size in POINTS.values()])
    return params, X, Ys, V, V_kink, scales


def _scale_output_layer(params, X, hidden, depth, scale):
    """W^[L], b^[L] rescaled so that max|Z^[L]| (scale[0] = 1) or rms(Z^[L]) is scale[1]."""
    net = Network(_sizes(depth), (hidden,) * depth + ("linear",), "mse")
    Z = _forward(params, X, net).Z[-1]
    size = jnp.where(scale[0] > 0, jnp.max(jnp.abs(Z)), jnp.sqrt(jnp.mean(Z**2)))
    s = scale[1] / size
    return [*params[:-1], {"W": params[-1]["W"] * s, "b": params[-1]["b"] * s}]


def _program(params, X, Ys, V, scales, *, hidden, depth):
    """Every configuration of one hidden activation and depth, vmapped over the points.

    Per (output, loss): jax.grad in float64 and float32, the FD quotients along
    V, the cost, Z^[L] and A^[L]; per (output, loss, fused): jaxnn.backprop in
    both dtypes (fused=False only where a closed form exists: elsewhere both run BP1).
    """
    h = FD_STEP

    def at_point(params, X, Ys, V, scale):
        params = _scale_output_layer(params, X, hidden, depth, scale)
        p32 = jax.tree.map(lambda x: x.astype(jnp.float32), params)
        X32 = X.astype(jnp.float32)
        flat, unravel = ravel_pytree(params)
        hidden_net = Network(_sizes(depth), (hidden,) * depth + ("linear",), "mse")
        zeros = sum(jnp.sum(Z == 0) for Z in _forward(params, X, hidden_net).Z[:-1])
        results = {}
        for output, loss in OUTPUT_LOSSES:
            net = Network(_sizes(depth), (hidden,) * depth + (output,), loss)
            Y = Ys[_target_kind(output, loss)]
            Y32 = Y.astype(jnp.float32)
            f = lambda theta, net=net, Y=Y: cost(unravel(theta), X, Y, net)
            quotient = lambda v, f=f: (f(flat + h * v) - f(flat - h * v)) / (2 * h)
            cache = _forward(params, X, net)
            r = {
                "ref64": jax.grad(cost)(params, X, Y, net),
                "ref32": jax.grad(cost)(p32, X32, Y32, net),
                "fd64": jax.vmap(quotient)(V),
                "cost64": output_cost(cache, Y, net),
                "Z64": cache.Z[-1],
                "A64": cache.A[-1],
                "A32": _forward(p32, X32, net).A[-1],
            }
            for fused in (True, False) if (output, loss) in losses.FUSED else (True,):
                r[f"hand64_{fused}"] = backprop(params, X, Y, net, fused=fused)
                r[f"hand32_{fused}"] = backprop(p32, X32, Y32, net, fused=fused)
            results[output, loss] = r
        return zeros, results

    return jax.vmap(at_point)(params, X, Ys, V, scales)


def _depth_program(params, X, Ys, V, V_kink, scales, *, depth, hidden_activations):
    return {
        hidden: _program(
            params,
            X,
            Ys,
            V_kink if hidden in _PIECEWISE else V,
            scales,
            hidden=hidden,
            depth=depth,
        )
        for hidden in hidden_activations
    }


# Compiled once per process. XLA's CPU backend optimisations cost these small
# programs more time than they save; they change how code is generated, not
# its floating-point semantics.
_CPU_COMPILER_OPTIONS = {
    "xla_backend_optimization_level": 0,
    "xla_llvm_disable_expensive_passes": True,
    "xla_cpu_use_fusion_emitters": False,
}
_COMPILED = {}


def _compile(lowered, platform):
    if platform == "cpu":
        try:
            return lowered.compile(_CPU_COMPILER_OPTIONS)
        except jax.errors.JaxRuntimeError:  # an XLA without one of these options
            pass
    return lowered.compile()


def _evaluate(seed, hidden_activations, depths):
    """One program per depth; each compiles in a worker thread while the next one traces."""
    out = {}
    with (
        jax.enable_x64(True),
        jax.default_matmul_precision("highest"),
        ThreadPoolExecutor(max_workers=2) as pool,
    ):
        inputs = {depth: _make_points(depth, seed) for depth in depths}
        for depth in depths:
            key = (depth, hidden_activations)
            if key not in _COMPILED:
                program = functools.partial(
                    _depth_program, depth=depth, hidden_activations=hidden_activations
                )
                lowered = jax.jit(program).trace(*inputs[depth]).lower()
                _COMPILED[key] = pool.submit(_compile, lowered, jax.default_backend())
        for depth in depths:
            compiled = _COMPILED[depth, hidden_activations].result()
            out[depth] = jax.tree.map(np.asarray, compiled(*inputs[depth])), inputs[depth]
    return out


def _worst(values):
    """The largest value, nan winning; 0 for none."""
    worst = 0.0
    for v in values:
        if not v <= worst:
            worst = v
    return worst


def _tree_rel(actual, expected) -> float:
    pairs = zip(jax.tree.leaves(actual), jax.tree.leaves(expected), strict=True)
    return _worst(errors(a, e).max_rel for a, e in pairs)


def _json_float(x):
    return float(x) if math.isfinite(x) else str(x)


def _not_applicable(loss, A, dtype):
    """Why BP1 through a saturating output cannot be compared at this point, or None."""
    eps, tiny = float(np.finfo(dtype).eps), float(np.finfo(dtype).tiny)
    if np.min(1 - np.abs(A)) < 10 * eps / GRAD_RTOL[dtype]:
        return "saturated"
    if loss != "mse" and np.min(A) < tiny:
        return "underflow"
    return None


def _finite_difference_error(hand, fd, V, C):
    """max_k |FD_k - <g, v_k>| / |g| over unit directions v_k, or why it is n/a."""
    g = np.asarray(ravel_pytree(hand)[0])
    g_norm = float(np.linalg.norm(g))
    floor = float(np.finfo(np.float64).eps) * max(abs(float(C)), 1.0) / FD_STEP
    if math.isfinite(g_norm) and FD_RTOL * g_norm < floor:
        return None, "fd-resolution"
    err = float(np.max(np.abs(fd - V @ g))) / g_norm
    return (err if math.isfinite(err) else math.nan), None


def _row(hidden, depth, output, loss, fused, data, zeros, V):
    """One configuration at every point; its errors are the worst over the applicable points."""
    closed_form = (output, loss) in losses.FUSED
    delta_L = _CLOSED_FORM.get((output, loss), "closed form") if fused and closed_form else "BP1"
    key = fused or not closed_form  # without a closed form, fused=True is BP1: computed once
    saturates = delta_L == "BP1" and output != "linear"
    worst = {"float64": [], "float32": [], "fd": []}
    per_point, notes = {}, []
    for p, point in enumerate(POINTS):
        take = lambda tree, p=p: jax.tree.map(lambda x: x[p], tree)
        entry = {
            "max_abs_logit": float(np.max(np.abs(data["Z64"][p]))),
            "zero_preactivations": int(zeros[p]),
        }
        for dtype, bits in (("float64", "64"), ("float32", "32")):
            A = np.asarray(data[f"A{bits}"][p], np.float64)
            why = _not_applicable(loss, A, dtype) if saturates else None
            rel = _tree_rel(take(data[f"hand{bits}_{key}"]), take(data[f"ref{bits}"]))
            entry[dtype] = {"grad_rel": _json_float(rel)}
            if why:
                entry[dtype]["status"] = f"n/a ({why})"
                notes.append((why, point, dtype))
            else:
                entry[dtype]["status"] = "ok" if rel <= GRAD_RTOL[dtype] else "FAIL"
                worst[dtype].append(rel)
        if entry["float64"]["status"].startswith("n/a"):
            entry["fd"] = {"status": "n/a (float64 check n/a)"}
        else:
            err, why = _finite_difference_error(
                take(data[f"hand64_{key}"]), data["fd64"][p], V[p], data["cost64"][p]
            )
            if why:
                entry["fd"] = {"status": f"n/a ({why})"}
                notes.append((why, point, "fd"))
            else:
                status = "ok" if err <= FD_RTOL else "FAIL"
                entry["fd"] = {"rel": _json_float(err), "status": status}
                worst["fd"].append(err)
                if point == "kink" and hidden in _PIECEWISE:
                    notes.append(("fd-kink", point, "fd"))
        per_point[point] = entry
    # A check that applies at no point has verified nothing: the row fails.
    for check in ("float64", "float32", "fd"):
        if not worst[check]:
            notes.append(("no-point", "every point", check))
    g64, g32, fd = (_worst(worst[c]) if worst[c] else math.nan for c in worst)
    ok = g64 <= GRAD_RTOL["float64"] and g32 <= GRAD_RTOL["float32"] and fd <= FD_RTOL
    return {
        "depth": depth,
        "hidden": hidden,
        "output": output,
        "loss": loss,
        "fused": fused,
        "delta_L": delta_L,
        "grad_rel_float64": _json_float(g64),
        "grad_rel_float32": _json_float(g32),
        "fd_rel_float64": _json_float(fd),
        "ok": bool(ok),
        "not_applicable": [
            {"point": point, "check": check, "reason": why}
            for why, point, check in notes
            if why != "fd-kink"
        ],
        "notes": sorted({why for why, _, _ in notes}),
        "points": per_point,
        "tolerances": {
            "grad_float64": GRAD_RTOL["float64"],
            "grad_float32": GRAD_RTOL["float32"],
            "fd_float64": FD_RTOL,
            "fd_step": FD_STEP,
            "fd_directions": FD_DIRECTIONS,
        },
    }


def run_matrix(seed=0, *, hidden_activations=HIDDEN_ACTIVATIONS, depths=DEPTHS) -> list:
    """jaxnn's backprop against jax.grad and finite differences, configuration by configuration.

    Configurations: hidden activation (``HIDDEN_ACTIVATIONS``, every hidden
    layer alike) x output and loss (``OUTPUT_LOSSES``) x number of hidden layers
    (``DEPTHS``) x ``fused``. Each runs at every one of the ``POINTS``, on a
    random network (widths 4-6-5-6 cut to the depth, 3 outputs, 8 examples):

      * ``random``: random weights, non-zero biases, inputs ~ N(0, 1), rms logit 1;
      * ``kink``: pre-activations exactly 0 (column 0 of Z^[1], row 0 of every
        later hidden Z), where relu and leaky_relu have their kinks;
      * ``logit<=10``, ``logit~50``, ``logit~2000``: the output layer rescaled to
        max |logit| 10, or rms |logit| 50 or 2000: probabilities within 5e-5 of 0
        and 1, within 1e-22, or exactly 0 and 1.

    At each point ``jaxnn.backprop`` is compared with ``jax.grad(jaxnn.cost)`` in
    float64 and in float32 (the same point rounded), within ``GRAD_RTOL``; and
    in float64 with central differences along ``FD_DIRECTIONS`` random unit
    directions v: (C(p + h v) - C(p - h v)) / 2h against <g, v>, error relative
    to |g|, h = ``FD_STEP``, within ``FD_RTOL``. Points where a check cannot
    succeed by the numerics of the configuration, decided from the forward pass
    alone (see ``NOTES``), are reported n/a rather than judged. Float64 is
    enabled and matmuls run at "highest" precision for the run, whatever the
    global settings. One program per depth, vmapped over the points, is
    compiled once per process.

    Returns:
      One JSON-serialisable dict per configuration (inf and nan as strings):
      ``depth, hidden, output, loss, fused``; ``delta_L``, the closed form used
      (F1-F3) or ``"BP1"``; the worst ``grad_rel_float64``,
      ``grad_rel_float32`` and ``fd_rel_float64`` over the points where each
      applies; ``ok``; ``not_applicable`` (point, check, reason) and ``notes``
      (reasons, see ``NOTES``); ``points`` (every point's numbers and status,
      n/a ones included); ``tolerances``.
    """
    hidden_activations, depths = tuple(hidden_activations), tuple(depths)
    evaluated = _evaluate(seed, hidden_activations, depths)
    rows = []
    for depth in depths:
        res, inputs = evaluated[depth]
        V, V_kink = inputs[3], inputs[4]
        for hidden in hidden_activations:
            zeros, results = res[hidden]
            for output, loss in OUTPUT_LOSSES:
                for fused in (True, False):
                    directions = V_kink if hidden in _PIECEWISE else V
                    data = results[output, loss]
                    rows.append(_row(hidden, depth, output, loss, fused, data, zeros, directions))
    return rows


_SHORT_LOSS = {"cross_entropy": "CE", "binary_cross_entropy": "BCE", "mse": "MSE"}


def _compact_notes(items) -> str:
    """'saturated: logit~50, logit~2000 [f64 f32]; logit<=10 [f32]' from n/a records."""
    by_reason = {}
    for item in items:
        checks = by_reason.setdefault(item["reason"], {}).setdefault(item["point"], [])
        checks.append(item["check"].replace("float", "f"))
    parts = []
    for reason, points in by_reason.items():
        groups = {}
        for point, checks in points.items():
            groups.setdefault(" ".join(checks), []).append(point)
        parts.append(f"{reason}: " + "; ".join(f"{', '.join(p)} [{c}]" for c, p in groups.items()))
    return "; ".join(parts)


def format_table(rows) -> str:
    """The rows of ``run_matrix`` as a text table, with the tolerances and the notes' legend."""
    head = [
        "depth",
        "hidden",
        "output + loss",
        "fused",
        "delta^L",
        "grad f64",
        "grad f32",
        "FD f64",
        "result",
        "not applicable (point [check]) / notes",
    ]
    body = []
    for r in rows:
        notes = _compact_notes(r["not_applicable"])
        if "fd-kink" in r["notes"]:
            notes = "; ".join(filter(None, [notes, "fd-kink"]))
        body.append(
            [
                str(r["depth"]),
                r["hidden"],
                f"{r['output']} + {_SHORT_LOSS.get(r['loss'], r['loss'])}",
                str(r["fused"]),
                r["delta_L"],
                _fmt(r["grad_rel_float64"]),
                _fmt(r["grad_rel_float32"]),
                _fmt(r["fd_rel_float64"]),
                "ok" if r["ok"] else "FAIL",
                notes,
            ]
        )
    used = {code for r in rows for code in r["notes"]}
    n_ok = sum(r["ok"] for r in rows)
    return "\n".join(
        [
            "jaxnn verify: jaxnn.backprop against jax.grad(jaxnn.cost) and central differences",
            "error: the worst over points and leaves of max|a - e| / max|e| (per leaf, the hand "
            "gradient a, the reference e)",
            f"tolerances: grad f64 {GRAD_RTOL['float64']:.0e}, "
            f"grad f32 {GRAD_RTOL['float32']:.0e}; "
            f"FD f64 {FD_RTOL:.0e} of |g| along {FD_DIRECTIONS} random unit directions, "
            f"h = {FD_STEP:.0e}",
            f"points: {', '.join(POINTS)}; depth: hidden layers; delta^L: the closed form "
            "(F1-F3) or BP1",
            _table(head, body),
            "",
            *(
                textwrap.fill(
                    f"{code}: {text}", width=100, subsequent_indent="  ", break_on_hyphens=False
                )
                for code, text in NOTES.items()
                if code in used
            ),
            f"{n_ok}/{len(rows)} configurations pass",
        ]
    )
