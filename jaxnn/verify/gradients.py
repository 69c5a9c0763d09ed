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

from jaxnn.verify import trees
from jaxnn.verify.directional import directional, directions, one_sided_directional
from jaxnn.verify.gradient_report import GradientReport as GradientReport
from jaxnn.verify.gradient_report import LeafCheck as LeafCheck
from jaxnn.verify.kinks import kink_entries, one_sided_partials
from jaxnn.verify.measures import default_rtol, errors, lowest_precision

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
    atol=0.0,
    finite_differences=False,
    h=None,
    fd_rtol=None,
    fd_atol=None,
    directions=None,
    seed=0,
    kinks=True,
    **kwargs,
) -> GradientReport:
    """Compare a hand-written gradient with ``jax.grad(cost_fn)``, leaf by leaf.

    Each leaf passes when max|a - e| <= atol + rtol * max|e|, with ``a`` from
    ``grad_fn(params, *args, **kwargs)`` and ``e`` from ``jax.grad(cost_fn)``.
    Only the float-array leaves of ``params`` are checked; any other leaf (a
    function, an int: Equinox-style modules hold them) is held fixed and listed
    in the report's ``fixed``. ``grad_fn`` may return the params' structure or
    ``None`` at the fixed leaves (as ``equinox.filter_grad`` does).

    **Kinks.** Where ``a`` and ``e`` disagree, each disagreeing entry i is
    examined (up to ``KINK_LIMIT``): its one-sided partial derivatives d_-, d_+
    (``kinks.one_sided_partials``: reverse-mode gradients just beside p,
    extrapolated). If they differ, C has a kink in p_i there; if ``a_i`` lies
    between them (within the leaf's tolerance plus their error bound), the
    entry is "at a kink", counted and located, and not a failure. A value
    outside is a failure, as is any disagreement where d_- = d_+.

    **Directions.** With ``directions=k`` the full comparison is replaced by
    k random unit directions per leaf: ``<a, v>`` against ``jax.jvp`` and central
    differences, one jitted call, tolerance ``atol + rtol ||a||_2`` per direction
    (``jaxnn.verify.directional`` derives it). Use it where N is large.

    Args:
      grad_fn: ``grad_fn(params, *args, **kwargs)``, the hand gradient.
      cost_fn: ``cost_fn(params, *args, **kwargs)``, a JAX-traceable scalar.
      params: the pytree to differentiate with respect to.
      *args, **kwargs: the other arguments of both functions (data, a
        ``Network``, ...); keywords must not be named like the options here.
      rtol: default by the least precise float dtype of params: 1e-8 (float64),
        1e-4 (float32), 1e-2 (16-bit). An explicit rtol below 10 eps of a
        float32 or 16-bit dtype warns (``WeakCheckWarning``).
      atol: absolute tolerance, 0 by default.
      finite_differences: also compare with central differences in every entry (2N
        cost evaluations); always on with ``directions``.
      h: the finite-difference step; default eps^(1/3) of the dtype.
      fd_rtol: default 1e-6 (float64), 1e-2 otherwise.
      fd_atol: default 10 eps max(|C|, 1) / h, the rounding floor of the quotient.
      directions: k, for the directional check; None for the full one.
      seed: the directions' random seed.
      kinks: examine disagreements for kinks (True) or report them as failures.

    Returns:
      A ``GradientReport``: ``.ok``, ``.kinks``, ``.leaves`` (path, shape,
      errors with the worst entry, kink entries), a table as ``str``, HTML in
      a notebook, ``.as_dict()`` for JSON.

    Example:
      >>> report = jaxnn.check_gradients(my_grad, my_cost, w, x, y=y)
      >>> print(report)
    """
    parts = trees.split(params)
    dtype = lowest_precision(parts.leaves)
    weak_check_warnings(dtype, parts.leaves, rtol=rtol, fd_rtol=fd_rtol, h=h)
    rtol = default_rtol(dtype) if rtol is None else rtol
    f = lambda leaves: cost_fn(parts.rebuild(leaves), *args, **kwargs)
    one_sided = _one_sided(cost_fn, parts, args, kwargs, dtype)
    hand = trees.hand_leaves(grad_fn(params, *args, **kwargs), parts)
    fd = finite_differences or directions is not None
    h, fd_rtol, fd_atol = _difference_settings(
        fd, dtype, h, fd_rtol, fd_atol, lambda: f(parts.leaves)
    )
    tol = dict(rtol=rtol, atol=atol, fd_rtol=fd_rtol, fd_atol=fd_atol)
    if directions is None:
        leaves = _full(f, parts.leaves, hand, h, kinks and one_sided, tol)
    else:
        leaves = _directional(
            f, parts.leaves, hand, (directions, seed), h, kinks and one_sided, dtype, tol
        )
    named = [c._replace(path=p) for c, p in zip(leaves, parts.paths, strict=True)]
    return GradientReport(
        tuple(named), rtol, atol, h, fd_rtol, fd_atol, directions, tuple(parts.fixed)
    )


def _one_sided(cost_fn, parts, args, kwargs, dtype):
    """``entries -> (right, left, err)``: ``kinks.one_sided_partials`` of the cost in the
    float leaves, with the array arguments traced (one compiled program per static rest)."""
    arrays, build, static = trees.partition_args(args, kwargs)

    def f_data(leaves, arrays):
        args_, kwargs_ = build(arrays)
        return cost_fn(parts.rebuild(leaves), *args_, **kwargs_)

    key = None if None in (parts.key, static) else (cost_fn, parts.key, static)
    return lambda entries: one_sided_partials(f_data, parts.leaves, arrays, entries, dtype, key)


def _difference_settings(fd, dtype, h, fd_rtol, fd_atol, cost):
    """``(h, fd_rtol, fd_atol)`` with the dtype's defaults where None, or all None without
    finite differences; ``cost()``, C at p, is evaluated only for the default fd_atol."""
    if not fd:
        return None, None, None
    eps = float(jnp.finfo(dtype).eps)
    h = eps ** (1 / 3) if h is None else h
    fd_rtol = (1e-6 if eps < 1e-15 else 1e-2) if fd_rtol is None else fd_rtol
    if fd_atol is None:
        fd_atol = 10 * eps * max(abs(float(cost())), 1.0) / h
    return h, fd_rtol, fd_atol


def _bad(err_abs, scale, rtol, atol):
    return ~(err_abs <= atol + rtol * scale)  # nan is bad


def _full(f, leaves, hand, h, one_sided, tol):
    """Every entry against jax.grad (and central differences), kinks examined."""
    ref = [np.asarray(e) for e in jax.grad(f)(leaves)]
    fd = None
    if h is not None:
        fd = finite_difference_gradient(lambda p: f(list(p)), tuple(leaves), h=h)
    a = [np.asarray(x, np.float64) for x in hand]
    scales = [float(np.max(np.abs(np.asarray(e, np.float64)), initial=0.0)) for e in ref]
    bad_g = [
        _bad(np.abs(x - e), s, tol["rtol"], tol["atol"])
        for x, e, s in zip(a, ref, scales, strict=True)
    ]
    bad_f = [np.zeros(x.shape, bool) for x in a]
    if fd is not None:
        fd = [np.asarray(e, np.float64) for e in fd]
        bad_f = [
            _bad(np.abs(x - e), np.max(np.abs(e), initial=0.0), tol["fd_rtol"], tol["fd_atol"])
            for x, e in zip(a, fd, strict=True)
        ]
    accepted = _kinks_full(one_sided, leaves, a, bad_g, bad_f, scales, tol) if one_sided else None
    out = []
    for i, (x, e) in enumerate(zip(a, ref, strict=True)):
        ok_here, kink = _judge(bad_g[i], bad_f[i], accepted[i] if accepted else None)
        err = errors(x, e)
        check = LeafCheck("", tuple(np.shape(e)), err, ok_here[0], kinks=kink)
        if fd is not None:
            check = check._replace(fd=errors(x, fd[i]), fd_ok=ok_here[1])
        out.append(check)
    return out


def _judge(bad_g, bad_f, accepted):
    """(grad ok, fd ok) of a leaf, and its ``KinkEntries`` (None if none)."""
    if accepted is None:
        return (not bad_g.any(), not bad_f.any()), None
    mask, info = accepted
    kink = kink_entries(*info) if info[0] else None
    return (not (bad_g & ~mask).any(), not (bad_f & ~mask).any()), kink


def _kinks_full(one_sided, leaves, a, bad_g, bad_f, scales, tol):
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
    right, left, err = one_sided(entries)
    out, k = [], 0
    for i, c in enumerate(candidates):
        mask, info = empty(a[i])
        for ix in c:
            r, l, e = right[k], left[k], err[k]
            k += 1
            margin = tol["atol"] + tol["rtol"] * scales[i] + e
            value = a[i][tuple(ix)]
            if abs(r - l) > margin and min(r, l) - margin <= value <= max(r, l) + margin:
                mask[tuple(ix)] = True
                for lst, v in zip(info, (tuple(ix), value, l, r), strict=True):
                    lst.append(v)
        out.append((mask, info))
    return out


def _directional(f, leaves, hand, k_seed, h, one_sided, dtype, tol):
    """k directions per leaf against jax.jvp and central differences, kinks examined.

    A direction that crosses a kink (one-sided derivatives differ) with <a, v>
    outside them (several kinks of opposite curvature along v: the hand's
    convention is then no combination of one-sided values along v) is judged
    entry-wise: the leaf against jax.grad with ``kinks.one_sided_partials`` at the
    disagreeing entries (``_full`` without differences). Accepted at a kink when
    that leaf passes.
    """
    k, seed = k_seed
    dirs = directions(seed, leaves, k)
    d = directional(f, leaves, hand, dirs, h)
    bad_g = [
        _bad(np.abs(x - e), n, tol["rtol"], tol["atol"])
        for x, e, n in zip(d.hand, d.jvp, d.norms, strict=True)
    ]
    bad_f = [
        _bad(np.abs(x - e), n, tol["fd_rtol"], tol["fd_atol"])
        for x, e, n in zip(d.hand, d.fd, d.norms, strict=True)
    ]
    masks = [(np.zeros(k, bool), np.zeros(k, bool)) for _ in leaves]
    infos = [([], [], [], []) for _ in leaves]
    pairs = [(i, j) for i in range(len(leaves)) for j in range(k) if bad_g[i][j] or bad_f[i][j]]
    if one_sided and 0 < len(pairs) <= KINK_LIMIT:
        undecided = _kinks_along(f, leaves, dirs, dtype, d, pairs, bad_g, tol, masks, infos)
        if undecided:
            entrywise = _full(f, leaves, hand, None, one_sided, tol)
            _accept_entrywise(entrywise, undecided, masks, infos)
    out = []
    for i, leaf in enumerate(leaves):
        mask_g, mask_f = masks[i]
        ok_g, ok_f = not (bad_g[i] & ~mask_g).any(), not (bad_f[i] & ~mask_f).any()
        kink = kink_entries(*infos[i]) if infos[i][0] else None
        out.append(
            LeafCheck(
                "",
                tuple(np.shape(leaf)),
                errors(d.hand[i], d.jvp[i], scale=d.norms[i]),
                ok_g,
                errors(d.hand[i], d.fd[i], scale=d.norms[i]),
                ok_f,
                kink,
            )
        )
    return out


def _kinks_along(f, leaves, dirs, dtype, d, pairs, bad_g, tol, masks, infos):
    """Examine the disagreeing (leaf i, direction j) ``pairs`` for a kink along v_j.

    Marks in place the directions accepted at a kink (``masks[i]``: jvp, fd) and
    their (j, hand, left, right) (``infos[i]``); returns the pairs that cross a
    kink with the hand outside the one-sided values, (i, j, hand, left, right),
    for ``_accept_entrywise`` to decide.
    """
    undecided = []
    right, left, err = one_sided_directional(f, leaves, pairs, dirs, dtype)
    for (i, j), r, l, e in zip(pairs, right, left, err, strict=True):
        margin = tol["atol"] + tol["rtol"] * d.norms[i] + e
        if not abs(r - l) > margin:
            continue  # smooth along v: a disagreement is a failure
        a = d.hand[i][j]
        between = min(r, l) - margin <= a <= max(r, l) + margin
        # Across a kink a central difference measures the mean of the one-sided
        # derivatives: it vouches for the cost, and the hand is judged by jvp or range.
        fd_margin = tol["fd_atol"] + tol["fd_rtol"] * d.norms[i] + e
        mean = abs(d.fd[i][j] - (r + l) / 2) <= fd_margin
        masks[i][0][j] = between
        masks[i][1][j] = between or (mean and not bad_g[i][j])
        if not between:
            undecided.append((i, j, a, l, r))
        if between or masks[i][1][j]:
            for lst, v in zip(infos[i], ((j,), a, l, r), strict=True):
                lst.append(v)
    return undecided


def _accept_entrywise(entrywise, undecided, masks, infos):
    """Accept each undecided direction at a kink where its leaf passes entry-wise
    (``entrywise``, ``_full`` without differences); marks ``masks`` and ``infos``."""
    for i, j, a, l, r in undecided:
        if entrywise[i].ok:
            masks[i][0][j] = masks[i][1][j] = True
            if j not in [ix[0] for ix in infos[i][0]]:
                for lst, v in zip(infos[i], ((j,), a, l, r), strict=True):
                    lst.append(v)
