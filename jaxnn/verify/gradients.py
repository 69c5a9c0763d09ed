"""``check_gradients``: any hand-written gradient against ``jax.grad`` and finite differences.

Errors are measured per leaf as ``jaxnn.verify.measures`` defines them.
"""

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from jaxnn.verify.measures import (
    Errors,
    default_rtol,
    errors,
    format_error,
    lowest_precision,
    passes,
    text_table,
)


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
            row = [leaf.path or "(root)", str(leaf.shape), format_error(leaf.grad.max_abs)]
            row += [
                format_error(leaf.grad.max_rel),
                format_error(leaf.grad.ulp),
                "ok" if leaf.ok else "FAIL",
            ]
            if fd:
                row += [format_error(leaf.fd.max_abs), format_error(leaf.fd.max_rel)]
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
        lines.append(text_table(head, rows))
        lines.append("OK" if self.ok else "FAILED")
        return "\n".join(lines)


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
    dtype = lowest_precision(params)
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
            jax.tree_util.keystr(path), tuple(np.shape(e)), err, passes(err, rtol, atol)
        )
        if fd_leaves is not None:
            fd_err = errors(hand_leaves[i], fd_leaves[i])
            check = check._replace(fd=fd_err, fd_ok=passes(fd_err, fd_rtol, fd_atol))
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
