"""Verdicts: ok, fail or inconclusive, and the checks every tool makes before any math.

A check is **ok** only when every float entry was tested and agreed. A nan or
an inf in the hand gradient, the reference or the cost at the point is a
**fail**, naming the leaf and the entry. When no test was possible (no float
entries, remainders below rounding, nothing a difference could resolve) the
verdict is **inconclusive**, which is not ok, and says what to change.

This module imports nothing from jaxnn but ``measures`` and never prints.
"""

import jax
import jax.numpy as jnp
import numpy as np

from jaxnn.verify.measures import first_nonfinite

__all__ = [
    "FAIL",
    "INCONCLUSIVE",
    "OK",
    "STATUSES",
    "check_cost",
    "combine",
    "dtype_hint",
    "nonfinite_note",
    "nothing_to_check",
]

OK, FAIL, INCONCLUSIVE = "ok", "fail", "inconclusive"
STATUSES = (OK, FAIL, INCONCLUSIVE)


def combine(statuses) -> str:
    """fail if any is, else inconclusive if any is (or there are none), else ok."""
    statuses = list(statuses)
    if FAIL in statuses:
        return FAIL
    if not statuses or INCONCLUSIVE in statuses:
        return INCONCLUSIVE
    return OK


def check_cost(f, leaves, what: str = "cost_fn") -> None:
    """Raise ValueError unless ``f(leaves)`` is a float scalar (traced only: no work done)."""
    out = jax.eval_shape(f, leaves)
    shape, dtype = getattr(out, "shape", None), getattr(out, "dtype", None)
    if shape != ():
        raise ValueError(
            f"{what} must return a scalar; it returned shape {shape}: reduce it "
            "(jnp.sum, jnp.mean) to the cost you differentiate"
        )
    if not jnp.issubdtype(dtype, jnp.floating):
        raise ValueError(
            f"{what} must return a float scalar; it returned {jnp.dtype(dtype).name}, which has "
            "no gradient (a count or a comparison?): return the float cost"
        )


def nothing_to_check(fixed, empty) -> str:
    """The reason a check with no float entries is inconclusive, and what to change."""
    held = f"; held fixed (not float arrays): {', '.join(fixed)}" if fixed else ""
    sized = f"; empty leaves: {', '.join(p or '(root)' for p in empty)}" if empty else ""
    return (
        f"inconclusive: nothing to check, the parameters have no float entries{held}{sized}; "
        "pass float arrays (jnp.asarray(x, float)) to differentiate with respect to"
    )


def nonfinite_note(x, what: str):
    """``"hand gradient is nan at (1,)"`` for the first nan/inf entry of ``x``, or None."""
    found = first_nonfinite(x)
    if found is None:
        return None
    index, value = found
    return f"{what} is {value} at {index}"


def dtype_hint(hand, param):
    """A hint where the hand gradient's dtype differs from its parameter's, or None."""
    a, p = jnp.result_type(hand), jnp.result_type(param)
    if a == p or not jnp.issubdtype(a, jnp.inexact):
        return None
    return (
        f"the hand gradient is {np.dtype(a).name}, the parameter {np.dtype(p).name}: computed "
        f"in {np.dtype(a).name}, it carries that precision's rounding; compute it in "
        f"{np.dtype(p).name}"
    )
