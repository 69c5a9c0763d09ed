"""``check_gradients``: any hand-written gradient against ``jax.grad`` and finite differences.

Errors are measured per leaf as ``jaxnn.verify.measures`` defines them; kinks
are handled as ``jaxnn.verify.kinks`` describes; the directional check is
``jaxnn.verify.directional``; the report is ``jaxnn.verify.gradient_report``.
"""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from jaxnn.verify import trees, verdicts
from jaxnn.verify.gradient_directional import judge_directions
from jaxnn.verify.gradient_report import GradientReport as GradientReport
from jaxnn.verify.gradient_report import LeafCheck as LeafCheck
from jaxnn.verify.kinks import kink_entries, one_sided_partials, sided
from jaxnn.verify.measures import default_rtol, errors, lowest_precision, natural_atol

__all__ = [
    "KINK_LIMIT",
    "GradientReport",
    "LeafCheck",
    "WeakCheckWarning",
    "check_gradients",
    "finite_difference_gradient",
]

KINK_LIMIT = 512  # at most this many disagreeing entries are examined for kinks


class WeakCheckWarning(UserWarning):
    """A check whose verdict the dtype cannot support (see ``check_gradients``)."""


def finite_difference_gradient(cost_fn, params, *args, h, **kwargs):
    """Central differences (C(p + h e_i) - C(p - h e_i)) / 2h for every entry i of params.

    All 2N evaluations of ``cost_fn`` run in one jitted, batched computation
    (``jax.lax.map`` over the N basis directions). Error: about
    (h^2 / 6) |C'''| + eps |C| / h per entry.
    """
    flat, unravel = ravel_pytree(params)
    n = flat.shape[0]
    f = lambda theta: cost_fn(unravel(theta), *args, **kwargs)

    @jax.jit
    def all_entries(flat):
        def one(i):
            step = jnp.zeros_like(flat).at[i].set(h)
            return (f(flat + step) - f(flat - step)) / (2 * h)

        return jax.lax.map(one, jnp.arange(n), batch_size=min(n, 256))

    return unravel(all_entries(flat))


def weak_check_warnings(dtype, leaves, *, rtol, fd_rtol, h) -> None:
    """Warn (``WeakCheckWarning``) where an explicit tolerance or step is finer than the dtype.

    Given only for values the caller set (None: the dtype's default): rtol below
    10 eps asks a correct float32 or 16-bit gradient to agree past its own
    rounding; fd_rtol below eps^(2/3) asks central differences for more than
    they can resolve; a step h below the spacing of the largest parameter is
    lost (p + h == p: the difference is exactly 0).
    """
    eps = float(jnp.finfo(dtype).eps)
    name = jnp.dtype(dtype).name
    if rtol is not None and eps > 1e-10 and rtol < 10 * eps:
        warnings.warn(
            f"rtol={rtol:.0e} is below {name}'s resolution (10 eps = {10 * eps:.1e}): a correct "
            f"gradient can fail by rounding alone, so a failure says little; use the default "
            f"({default_rtol(dtype):.0e}) or check in float64",
            WeakCheckWarning,
            stacklevel=3,
        )
    if fd_rtol is not None and eps > 1e-10 and fd_rtol < eps ** (2 / 3):
        warnings.warn(
            f"fd_rtol={fd_rtol:.0e}: central differences in {name} resolve a gradient only to "
            f"about eps^(2/3) = {eps ** (2 / 3):.1e} of its size; check in float64",
            WeakCheckWarning,
            stacklevel=3,
        )
    if h is not None:
        biggest = max((float(np.max(np.abs(x), initial=0.0)) for x in leaves), default=0.0)
        spacing = float(np.spacing(np.asarray(biggest, dtype=dtype)))
        if h < spacing:
            warnings.warn(
                f"h={h:.1e} is below the spacing of {name} at |p| = {biggest:.2g} "
                f"({spacing:.1e}): p + h == p and the difference is 0; leave h at its default",
                WeakCheckWarning,
                stacklevel=3,
            )


def check_gradients(
    grad_fn,
    cost_fn,
    params,
    *args,
    rtol=None,
    atol=None,
    finite_differences=None,
    h=None,
    fd_rtol=None,
    fd_atol=None,
    directions=None,
    seed=0,
    kinks=True,
    reference="auto",
    **kwargs,
) -> GradientReport:
    """Compare a hand-written gradient with ``jax.grad(cost_fn)``, leaf by leaf.

    Each leaf passes when max|a - e| <= atol + rtol * max|e|, with ``a`` from
    ``grad_fn(params, *args, **kwargs)`` and ``e`` from ``jax.grad(cost_fn)``,
    and every entry of a, e and the cost C(p) is finite. Only the float-array
    leaves of ``params`` are checked; any other leaf (a function, an int:
    Equinox-style modules hold them) is held fixed and listed in the report's
    ``fixed``. ``grad_fn`` may return the params' structure or ``None`` at the
    fixed leaves (as ``equinox.filter_grad`` does); a leaf the params do not
    have is an error.

    **Verdicts.** ``report.status`` is ok only when every float entry was
    tested and agreed; a nan or inf in a, e or C(p) fails, naming the leaf and
    entry; no float entries at all is inconclusive (``ok`` is False).

    **Kinks.** Where ``a`` and ``e`` disagree, each disagreeing entry i is
    examined (up to ``KINK_LIMIT``): its one-sided partial derivatives d_-, d_+
    (``kinks.one_sided_partials``: reverse-mode gradients just beside p, at
    shrinking steps). Only a jump that persists as the step shrinks is a kink
    (a smooth cost's shrinks with the step, however fast the cost varies); if
    ``a_i`` lies between the one-sided values (within the leaf's tolerance plus
    their error bound) the entry is "at a kink", counted and located, and not a
    failure. The accepted entries are then judged together along their
    difference a - e: where the cost is smooth along it (a tie of a max moved
    on both sides at once), <a, v> must equal the derivative there, so a value
    that is no subgradient (1, 1 at a tie of max(w0, w1)) fails.

    **Directions.** With ``directions=k`` the full comparison is replaced by
    k random unit directions per leaf: ``<a, v>`` against ``jax.jvp`` (or, with
    ``reference="grad"`` or a cost jvp cannot trace, ``<jax.grad(C), v>``) and,
    unless ``finite_differences=False``, central differences, whose own error
    widens their tolerance (``jaxnn.verify.directional``). Use it where N is large.

    Args:
      grad_fn: ``grad_fn(params, *args, **kwargs)``, the hand gradient.
      cost_fn: ``cost_fn(params, *args, **kwargs)``, a JAX-traceable float scalar
        (anything else is a ValueError before any work).
      params: the pytree to differentiate with respect to.
      *args, **kwargs: the other arguments of both functions (data, a
        ``Network``, ...); keywords must not be named like the options here.
      rtol: default per leaf, by the leaf's own dtype: 1e-8 (float64), 1e-4
        (float32), 1e-2 (16-bit). An explicit rtol below 10 eps of a float32 or
        16-bit dtype warns (``WeakCheckWarning``).
      atol: absolute tolerance; default per leaf min(rtol, 1000 eps) times the
        gradient's natural scale (its largest entry over all leaves, or
        |C| / max(|p|, 1)), so that a correct exact zero passes; stated in the report.
      finite_differences: also compare with central differences in every entry
        (2N cost evaluations); default off in the full check, on with ``directions``.
      h: the finite-difference step; default eps^(1/3) of the dtype.
      fd_rtol: default 1e-6 (float64), 1e-2 otherwise.
      fd_atol: default 10 eps max(|C|, 1) / h, the rounding floor of the quotient.
      directions: k, for the directional check; None for the full one.
      seed: the directions' random seed.
      kinks: examine disagreements for kinks (True) or report them as failures.
      reference: the directional check's reference: "auto" (jvp, or reverse
        mode where jvp cannot trace the cost), "jvp" or "grad".

    Returns:
      A ``GradientReport``: ``.status`` (ok, fail, inconclusive), ``.ok``,
      ``.kinks``, ``.leaves`` (path, shape, errors with the worst entry, kink
      entries, notes), a table as ``str``, HTML in a notebook, ``.as_dict()`` for JSON.

    Example:
      >>> report = jaxnn.check_gradients(my_grad, my_cost, w, x, y=y)
      >>> print(report)
    """
    if reference not in ("auto", "jvp", "grad"):
        raise ValueError(f"reference={reference!r}; valid choices: 'auto', 'jvp', 'grad'")
    whole = trees.split(params)
    parts, empty = trees.drop_empty(whole)
    dtype = lowest_precision(parts.leaves)
    weak_check_warnings(dtype, parts.leaves, rtol=rtol, fd_rtol=fd_rtol, h=h)
    fd = finite_differences if finite_differences is not None else directions is not None
    report = dict(
        rtol=default_rtol(dtype) if rtol is None else rtol,
        atol=0.0 if atol is None else atol,
        directions=directions,
        fixed=tuple(whole.fixed),
        empty=tuple(empty),
    )
    if not parts.leaves:
        trees.hand_leaves(grad_fn(params, *args, **kwargs), whole)
        note = verdicts.nothing_to_check(whole.fixed, empty)
        return GradientReport((), problems=(note,), problem_status="inconclusive", **report)
    f = lambda leaves: cost_fn(parts.rebuild(leaves), *args, **kwargs)
    verdicts.check_cost(f, parts.leaves)
    hand_all = trees.hand_leaves(grad_fn(params, *args, **kwargs), whole)
    hand = [a for a, x in zip(hand_all, whole.leaves, strict=True) if np.size(x)]
    c0 = float(f(parts.leaves))
    h, fd_rtol, fd_atol = _difference_settings(fd, dtype, h, fd_rtol, fd_atol, c0)
    report.update(h=h, fd_rtol=fd_rtol, fd_atol=fd_atol)
    one_sided = _one_sided(cost_fn, parts, args, kwargs, dtype) if kinks else None
    ref = None if directions is not None else _arrays(jax.grad(f)(parts.leaves))
    scale = _natural_scale(ref if ref is not None else hand, parts.leaves, c0)
    tols = _tolerances(parts.leaves, rtol, atol, scale)
    if directions is None:
        leaves = _full(f, parts.leaves, hand, ref, h, one_sided, tols, (fd_rtol, fd_atol))
    else:
        k_seed = (directions, seed)
        leaves, used = judge_directions(
            f,
            parts.leaves,
            hand,
            k_seed,
            h,
            one_sided,
            dtype,
            tols,
            (fd_rtol, fd_atol),
            reference,
            _full,
            c0,
        )
        report["reference"] = used
    leaves = _notes(leaves, parts, hand, tols)
    named = tuple(c._replace(path=p) for c, p in zip(leaves, parts.paths, strict=True))
    problems, status = (), None
    if not np.isfinite(c0):
        problems, status = (f"fail: the cost C(p) is {c0} at the point",), "fail"
    atol_scale = scale if atol is None else None
    return GradientReport(
        named, problems=problems, problem_status=status, atol_scale=atol_scale, **report
    )


def _arrays(tree):
    return [np.asarray(x) for x in tree]  # the reference, as computed (nan and inf kept)


def _natural_scale(grads, leaves, c0) -> float:
    """The gradient's natural scale: its largest finite entry over all leaves, or |C| / max|p|."""
    big = [
        np.max(
            np.abs(np.asarray(g, np.float64)),
            initial=0.0,
            where=np.isfinite(np.asarray(g, np.float64)),
        )
        for g in grads
    ]
    size = max(float(np.max(np.abs(np.asarray(x, np.float64)), initial=1.0)) for x in leaves)
    cost = abs(c0) / size if np.isfinite(c0) else 0.0
    return float(max([*big, cost]))


def _tolerances(leaves, rtol, atol, scale):
    """Per leaf ``(rtol, atol)``: by the leaf's own dtype where not given."""
    out = []
    for x in leaves:
        dt = jnp.result_type(x)
        r = default_rtol(dt) if rtol is None else rtol
        out.append((r, natural_atol(r, dt, scale) if atol is None else atol))
    return out


def _notes(leaves, parts, hand, tols):
    """Each leaf's tolerances, and a fail where a hand entry is nan or inf (with a dtype hint)."""
    out = []
    for check, x, a, (r, t) in zip(leaves, parts.leaves, hand, tols, strict=True):
        notes = [check.note] if check.note else []
        bad = verdicts.nonfinite_note(a, "the hand gradient")
        if bad:
            notes.insert(0, bad)
        hint = verdicts.dtype_hint(a, x)
        status = "fail" if bad else check.status
        if hint and status != "ok":
            notes.append(hint)
        out.append(
            check._replace(
                ok=status == "ok",
                status=status,
                note="; ".join(notes),
                rtol=r,
                atol=t,
            )
        )
    return out


def _one_sided(cost_fn, parts, args, kwargs, dtype):
    """``entries -> (right, left, err, kink)``: ``kinks.one_sided_partials`` of the cost in
    the float leaves, with the array arguments traced (one compiled program per static rest)."""
    arrays, build, static = trees.partition_args(args, kwargs)

    def f_data(leaves, arrays):
        args_, kwargs_ = build(arrays)
        return cost_fn(parts.rebuild(leaves), *args_, **kwargs_)

    key = None if None in (parts.key, static) else (cost_fn, parts.key, static)
    return lambda entries: one_sided_partials(f_data, parts.leaves, arrays, entries, dtype, key)


def _difference_settings(fd, dtype, h, fd_rtol, fd_atol, c0):
    """``(h, fd_rtol, fd_atol)`` with the dtype's defaults where None, or all None without
    finite differences."""
    if not fd:
        return None, None, None
    eps = float(jnp.finfo(dtype).eps)
    h = eps ** (1 / 3) if h is None else h
    fd_rtol = (1e-6 if eps < 1e-15 else 1e-2) if fd_rtol is None else fd_rtol
    if fd_atol is None:
        fd_atol = 10 * eps * max(abs(c0) if np.isfinite(c0) else 0.0, 1.0) / h
    return h, fd_rtol, fd_atol


def _bad(err_abs, scale, rtol, atol):
    return ~(err_abs <= atol + rtol * scale)  # nan is bad


def _full(f, leaves, hand, ref, h, one_sided, tols, fd_tol):
    """Every entry against jax.grad (and central differences), kinks examined."""
    if ref is None:
        ref = _arrays(jax.grad(f)(leaves))
    fd = None
    if h is not None:
        fd = finite_difference_gradient(lambda p: f(list(p)), tuple(leaves), h=h)
        fd = [np.asarray(e, np.float64) for e in fd]
    a = [np.asarray(x, np.float64) for x in hand]
    e64 = [np.asarray(e, np.float64) for e in ref]
    scales = [float(np.max(np.abs(e), initial=0.0, where=np.isfinite(e))) for e in e64]
    bad_g = [
        _bad(np.abs(x - e), s, r, t) for x, e, s, (r, t) in zip(a, e64, scales, tols, strict=True)
    ]
    bad_f = [np.zeros(x.shape, bool) for x in a]
    if fd is not None:
        bad_f = [
            _bad(np.abs(x - e), np.max(np.abs(e), initial=0.0), fd_tol[0], fd_tol[1])
            for x, e in zip(a, fd, strict=True)
        ]
    accepted = None
    if one_sided:
        accepted = _kinks_full(one_sided, f, leaves, a, e64, bad_g, bad_f, scales, tols)
    out = []
    for i, (x, e) in enumerate(zip(a, ref, strict=True)):
        ok_here, kink = _judge(bad_g[i], bad_f[i], accepted[i] if accepted else None)
        note = verdicts.nonfinite_note(e, "jax.grad's reference")
        check = LeafCheck("", tuple(np.shape(e)), errors(x, e), ok_here[0] and not note, kinks=kink)
        if fd is not None:
            check = check._replace(fd=errors(x, fd[i]), fd_ok=ok_here[1])
        status = "ok" if check.ok and check.fd_ok is not False else "fail"
        out.append(check._replace(status=status, note=note or ""))
    return out


def _judge(bad_g, bad_f, accepted):
    """(grad ok, fd ok) of a leaf, and its ``KinkEntries`` (None if none)."""
    if accepted is None:
        return (not bad_g.any(), not bad_f.any()), None
    mask, info = accepted
    kink = kink_entries(*info) if info[0] else None
    return (not (bad_g & ~mask).any(), not (bad_f & ~mask).any()), kink


def _kinks_full(one_sided, f, leaves, a, e, bad_g, bad_f, scales, tols):
    """Per leaf: (mask of entries accepted at a kink, (indices, hand, left, right))."""
    candidates = [np.argwhere(g | b) for g, b in zip(bad_g, bad_f, strict=True)]
    total = sum(len(c) for c in candidates)
    empty = lambda x: (np.zeros(x.shape, bool), ([], [], [], []))
    if total == 0 or total > KINK_LIMIT:
        return [empty(x) for x in a]
    sizes = [int(np.size(x)) for x in leaves]
    offsets = np.cumsum([0, *sizes])
    entries = np.concatenate(
        [
            off + np.ravel_multi_index(tuple(c.T), x.shape) if x.ndim else np.full(len(c), off)
            for off, c, x in zip(offsets[:-1], candidates, a, strict=True)
            if len(c)
        ]
    )
    right, left, err, kinked = one_sided(entries)
    out, k = [], 0
    for i, c in enumerate(candidates):
        mask, info = empty(a[i])
        rtol, atol = tols[i]
        for ix in c:
            r, l, er, kink = right[k], left[k], err[k], kinked[k]
            k += 1
            margin = atol + rtol * scales[i] + er
            value = a[i][tuple(ix)]
            if kink and abs(r - l) > margin and min(r, l) - margin <= value <= max(r, l) + margin:
                mask[tuple(ix)] = True
                for lst, v in zip(info, (tuple(ix), value, l, r), strict=True):
                    lst.append(v)
        out.append((mask, info))
    if any(m.any() for m, _ in out) and not _jointly_at_kinks(f, leaves, a, e, out, scales, tols):
        return [empty(x) for x in a]
    return out


def _jointly_at_kinks(f, leaves, a, e, accepted, scales, tols) -> bool:
    """The accepted entries judged together, along v = (a - e) on them (unit length).

    Each entry between its one-sided partials is not enough: at a tie of
    max(w0, w1), (1, 1) is, entry by entry, yet no subgradient. Along v the
    cost either has a kink (then the entries' choices are a convention: accepted)
    or is smooth, and then <a, v> must be its derivative there.
    """
    v = [np.where(m, x - y, 0.0) for (m, _), x, y in zip(accepted, a, e, strict=True)]
    norm = float(np.sqrt(sum(np.sum(x * x) for x in v)))
    if not norm > 0:
        return True
    v = [jnp.asarray(x / norm, jnp.result_type(p)) for x, p in zip(v, leaves, strict=True)]
    r, l, err, kink = _one_sided_along(f, leaves, v)
    margin = err + sum(
        (t + rt * s) * float(np.sum(np.abs(np.asarray(x, np.float64))))
        for (rt, t), s, x in zip(tols, scales, v, strict=True)
    )
    if kink and abs(r - l) > margin:
        return True
    along = sum(float(np.vdot(x, np.asarray(y, np.float64))) for x, y in zip(a, v, strict=True))
    return abs(along - (r + l) / 2) <= margin


def _one_sided_along(f, leaves, v):
    """``kinks.sided`` of f along the tangent ``v`` (a list like ``leaves``), as floats."""
    dtype = lowest_precision(leaves)
    eps = float(jnp.finfo(dtype).eps)

    size = max(float(np.max(np.abs(np.asarray(x, np.float64)), initial=1.0)) for x in leaves)

    @jax.jit
    def run(leaves, v):
        grad = jax.grad(f)

        def d(s):
            g = grad([x + s.astype(x.dtype) * t for x, t in zip(leaves, v, strict=True)])
            return sum(jnp.vdot(x, t) for x, t in zip(g, v, strict=True))

        return sided(d, jnp.sqrt(eps) * size)

    r, l, err, kink = run(list(leaves), v)
    return float(r), float(l), float(err), bool(kink)
