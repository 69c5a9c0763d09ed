"""Error measures shared by ``check_gradients``, ``locate_fault`` and the verify matrix.

For a value ``a`` checked against a reference ``e``, per leaf of a pytree:
  * absolute: max_i |a_i - e_i| over the leaf;
  * relative: max_i |a_i - e_i| / max_i |e_i|, relative to the leaf's largest
    reference entry, not elementwise: an entry whose true value is 1e-22 (a
    saturated unit) and which rounding makes 0 is not an error of 100%;
  * ulp: the absolute error in units of ``numpy.spacing(max_i |e_i|)``, the
    spacing of floats at the leaf's scale, in the leaf's dtype.
A leaf passes when max_i |a_i - e_i| <= atol + rtol * max_i |e_i|.

Also the two text helpers the reports share. This module imports nothing from
jaxnn, so ``gradients``, ``faults`` and ``matrix`` can all build on it.
"""

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "Errors",
    "Worst",
    "default_rtol",
    "errors",
    "first_nonfinite",
    "format_error",
    "format_worst",
    "is_float_array",
    "lowest_precision",
    "natural_atol",
    "passes",
    "text_table",
]


class Worst(NamedTuple):
    """The entry of a leaf where |a - e| is largest: its index and both values.

    ``hand`` is the value under test (a hand-written gradient or delta),
    ``reference`` the value it is checked against, ``difference`` is
    ``hand - reference``. A nan difference wins over any number.
    """

    index: tuple
    hand: float
    reference: float
    difference: float


class Errors(NamedTuple):
    """Errors of one leaf: absolute, relative to the leaf's scale, ulps of it, the worst entry."""

    max_abs: float
    max_rel: float
    ulp: float
    scale: float  # max_i |e_i|
    worst: Worst | None = None  # None only for an empty leaf


def _worst_entry(actual, expected) -> Worst | None:
    """The ``Worst`` entry of ``actual`` against ``expected`` (None for an empty leaf)."""
    a = np.asarray(actual, dtype=np.float64)
    e = np.asarray(expected, dtype=np.float64)
    if not a.size:
        return None
    diff = np.abs(a - e)
    flat = int(np.argmax(np.where(np.isnan(diff), np.inf, diff)))
    index = tuple(int(i) for i in np.unravel_index(flat, a.shape))
    hand, ref = float(a.reshape(-1)[flat]), float(e.reshape(-1)[flat])
    return Worst(index, hand, ref, hand - ref)


def errors(actual, expected, scale=None) -> Errors:
    """``Errors`` of ``actual`` against ``expected`` (see the module docstring).

    ``scale`` replaces max_i |e_i| as the leaf's scale where another is meant
    (the directional checks use the 2-norm of the hand gradient's leaf).
    """
    e_dtype = np.asarray(expected).dtype
    a = np.asarray(actual, dtype=np.float64)
    e = np.asarray(expected, dtype=np.float64)
    worst = _worst_entry(a, e)
    max_abs = float(np.max(np.abs(a - e), initial=0.0)) if a.size else 0.0
    if a.size and not np.all(np.isfinite(a - e)):
        max_abs = math.nan if np.isnan(a - e).any() else math.inf
    scale = float(np.max(np.abs(e), initial=0.0)) if scale is None else float(scale)
    if max_abs == 0.0:
        return Errors(0.0, 0.0, 0.0, scale, worst)
    if scale == 0.0 or not math.isfinite(scale):
        return Errors(max_abs, math.inf, math.inf, scale, worst)
    spacing = float(np.spacing(np.asarray(scale, dtype=e_dtype)))
    return Errors(max_abs, max_abs / scale, max_abs / spacing, scale, worst)


def default_rtol(dtype) -> float:
    """rtol for hand vs ``jax.grad``: 1e-8 (float64), 1e-4 (float32), 1e-2 (16-bit)."""
    bits = jnp.finfo(dtype).bits
    return {64: 1e-8, 32: 1e-4}.get(bits, 1e-2)


def passes(err: Errors, rtol, atol) -> bool:
    """max|a - e| <= atol + rtol * max|e|; False for nan, and for an infinite scale
    (an inf in the reference would make any difference pass)."""
    if not (math.isfinite(err.max_abs) and math.isfinite(err.scale)):
        return False
    return err.max_abs <= atol + rtol * err.scale


def natural_atol(rtol: float, dtype, scale: float) -> float:
    """The absolute tolerance of a leaf: min(rtol, 1000 eps) times the gradient's natural scale.

    An entry whose true value is exactly 0 (a bias before a normalisation, a
    shift of a softmax's input) is computed as a sum of terms of the size of the
    other entries that cancel, so rounding leaves a few eps of ``scale`` (the
    largest reference entry over every leaf, or |C| / max(|p|, 1)): a relative
    tolerance alone would call a correct zero wrong.
    """
    eps = float(jnp.finfo(dtype).eps)
    return min(rtol, 1000 * eps) * float(scale) if math.isfinite(scale) else 0.0


def first_nonfinite(x):
    """``(index, value)`` of the first nan or inf entry of ``x``, or None when all are finite."""
    a = np.asarray(x, dtype=np.float64)
    bad = np.argwhere(~np.isfinite(a))
    if not len(bad):
        return None
    index = tuple(int(i) for i in bad[0])
    return index, float(a[index])


def is_float_array(x) -> bool:
    """True for an array (or scalar) of a floating or complex dtype: a leaf to differentiate.

    Pytrees built like Equinox modules also hold functions, strings, integers and
    other objects as leaves; gradient checks hold those fixed and check the rest.
    """
    if not isinstance(x, (jax.Array, np.ndarray, np.generic, float, complex)):
        return False
    return bool(jnp.issubdtype(jnp.result_type(x), jnp.inexact))


def lowest_precision(tree):
    """The least precise float dtype among the leaves of ``tree`` (the default float if none).

    Leaves that are not float arrays (functions, strings, integers) are ignored.
    """
    dtypes = [jnp.result_type(x) for x in jax.tree.leaves(tree) if is_float_array(x)]
    dtypes = [d for d in dtypes if jnp.issubdtype(d, jnp.inexact)] or [jnp.zeros(()).dtype]
    return max(dtypes, key=lambda d: float(jnp.finfo(d).eps))


def format_worst(worst: Worst | None) -> str:
    """``at (2, 0): hand 1.5e-01, ref -1.5e-01, diff 3.0e-01``; ``-`` for None."""
    if worst is None:
        return "-"
    index = ", ".join(map(str, worst.index))
    return (
        f"at ({index}): hand {format_error(worst.hand)}, ref {format_error(worst.reference)}, "
        f"diff {format_error(worst.difference)}"
    )


def format_error(x) -> str:
    """An error as ``1.2e-08``; ``-`` for None, ``nan``, and strings as they are."""
    if x is None:
        return "-"
    if isinstance(x, str):
        return x
    return f"{x:.1e}" if x == x else "nan"


def text_table(head, rows) -> str:
    """Left-aligned columns under a header and a rule of dashes."""
    widths = [max(len(str(r[i])) for r in [head, *rows]) for i in range(len(head))]
    fmt = lambda r: "  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
    return "\n".join([fmt(head), fmt(["-" * w for w in widths]), *map(fmt, rows)])
