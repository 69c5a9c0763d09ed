"""``check_gradients(directions=k)``: judging k random directions per leaf.

The numbers come from ``jaxnn.verify.directional``; this module turns them
into a ``LeafCheck`` per leaf: a direction passes when
|<a, v> - ref| <= atol + rtol ||a||_2 (ref: jvp, or <jax.grad, v>) and, where
central differences are used and usable, |<a, v> - fd| <= fd_atol + fd_rtol
||a||_2 + 2 |fd(2h) - fd(h)|. A nan or inf in the reference fails the leaf; a
difference quotient that is nan or inf is unusable (no evidence either way)
and noted. Kinks along a direction are examined as ``_kinks_along`` describes.
"""

import numpy as np

from jaxnn.verify.directional import directional, directions, one_sided_directional
from jaxnn.verify.gradient_report import LeafCheck
from jaxnn.verify.kinks import kink_entries
from jaxnn.verify.measures import errors

__all__ = ["KINK_LIMIT", "fd_steps", "judge_directions"]

KINK_LIMIT = 512


def _bad(err_abs, scale, rtol, atol):
    return ~(err_abs <= atol + rtol * scale)  # nan is bad


def _differences_disagree(d, tols, fd_tol, h, steps) -> bool:
    """Whether any direction's quotient is unusable or outside its tolerance at h alone."""
    for x, e, n, s in zip(d.hand, d.fd, d.norms, steps, strict=True):
        if (~np.isfinite(e)).any() or _bad(np.abs(x - e), n, fd_tol[0], fd_tol[1] * h / s).any():
            return True
    return False


def fd_steps(h, hand, c0):
    """Each leaf's difference step: h, shortened to h max(|C|, 1) / ||a_i||_2 where the cost
    changes faster than that (a high-frequency cost, inputs ~1e3, a log near its
    boundary): a step must stay where C is close to linear along v."""
    size = max(abs(c0), 1.0) if np.isfinite(c0) else 1.0
    out = []
    for a in hand:
        norm = float(np.sqrt(np.sum(np.square(np.asarray(a, np.float64)))))
        out.append(h * min(1.0, size / norm) if np.isfinite(norm) and norm > 0 else h)
    return out


def judge_directions(
    f, leaves, hand, k_seed, h, one_sided, dtype, tols, fd_tol, reference, full, c0=1.0
):
    """``(LeafCheck per leaf, the reference used)`` of the directional check.

    ``tols`` holds each leaf's (rtol, atol), ``fd_tol`` (fd_rtol, fd_atol);
    ``one_sided`` is None to skip kinks; ``full`` is ``gradients._full``, the
    entry-wise check a direction that crosses several kinks falls back on.
    """
    k, seed = k_seed
    dirs = directions(seed, leaves, k)
    steps = None if h is None else fd_steps(h, hand, c0)
    d = directional(f, leaves, hand, dirs, steps, reference, both_steps=False)
    if steps is not None and _differences_disagree(d, tols, fd_tol, h, steps):
        # only then is the quotient's own error needed: the quotient at 2h as well
        d = directional(f, leaves, hand, dirs, steps, d.reference, both_steps=True)
    bad_g = [
        _bad(np.abs(x - e), n, r, t)
        for x, e, n, (r, t) in zip(d.hand, d.jvp, d.norms, tols, strict=True)
    ]
    usable = [np.ones(k, bool) for _ in leaves]
    bad_f = [np.zeros(k, bool) for _ in leaves]
    if d.fd is not None:
        usable = [np.isfinite(x) & np.isfinite(e) for x, e in zip(d.fd, d.fd_error, strict=True)]
        bad_f = [
            _bad(np.abs(x - e), n, fd_tol[0], fd_tol[1] * h / s + 2 * np.nan_to_num(er)) & u
            for x, e, n, er, u, s in zip(
                d.hand, d.fd, d.norms, d.fd_error, usable, steps, strict=True
            )
        ]
    masks = [(np.zeros(k, bool), np.zeros(k, bool)) for _ in leaves]
    infos = [([], [], [], []) for _ in leaves]
    pairs = [(i, j) for i in range(len(leaves)) for j in range(k) if bad_g[i][j] or bad_f[i][j]]
    if one_sided and 0 < len(pairs) <= KINK_LIMIT:
        undecided = _kinks_along(
            f, leaves, dirs, dtype, d, pairs, bad_g, tols, fd_tol, masks, infos
        )
        if undecided:
            entrywise = full(f, leaves, hand, None, None, one_sided, tols, fd_tol)
            _accept_entrywise(entrywise, undecided, masks, infos)
    out = []
    for i, leaf in enumerate(leaves):
        mask_g, mask_f = masks[i]
        ok_g, ok_f = not (bad_g[i] & ~mask_g).any(), not (bad_f[i] & ~mask_f).any()
        kink = kink_entries(*infos[i]) if infos[i][0] else None
        notes = []
        ref_bad = np.argwhere(~np.isfinite(d.jvp[i]))
        if len(ref_bad):
            j = int(ref_bad[0][0])
            notes.append(f"the reference ({d.reference}) is {d.jvp[i][j]} along direction {j}")
            ok_g = False
        if d.fd is not None and not usable[i].all():
            skipped = ", ".join(str(j) for j in np.flatnonzero(~usable[i]))
            notes.append(f"central differences nan or inf along direction(s) {skipped}: not used")
        fd_err = None if d.fd is None else errors(d.hand[i], d.fd[i], scale=d.norms[i])
        check = LeafCheck(
            "",
            tuple(np.shape(leaf)),
            errors(d.hand[i], d.jvp[i], scale=d.norms[i]),
            ok_g,
            fd_err,
            None if d.fd is None else ok_f,
            kink,
        )
        status = "ok" if ok_g and (d.fd is None or ok_f) else "fail"
        out.append(check._replace(status=status, note="; ".join(notes)))
    return out, d.reference


def _kinks_along(f, leaves, dirs, dtype, d, pairs, bad_g, tols, fd_tol, masks, infos):
    """Examine the disagreeing (leaf i, direction j) ``pairs`` for a kink along v_j.

    Marks in place the directions accepted at a kink (``masks[i]``: reference,
    fd) and their (j, hand, left, right) (``infos[i]``); returns the pairs that
    cross a kink with the hand outside the one-sided values, (i, j, hand, left,
    right), for ``_accept_entrywise`` to decide.
    """
    undecided = []
    right, left, err, kinked = one_sided_directional(f, leaves, pairs, dirs, dtype)
    for (i, j), r, l, e, kink in zip(pairs, right, left, err, kinked, strict=True):
        rtol, atol = tols[i]
        margin = atol + rtol * d.norms[i] + e
        if not (kink and abs(r - l) > margin):
            continue  # smooth along v: a disagreement is a failure
        a = d.hand[i][j]
        between = min(r, l) - margin <= a <= max(r, l) + margin
        # Across a kink a central difference measures the mean of the one-sided
        # derivatives: it vouches for the cost, and the hand is judged by the reference or range.
        mean = False
        if d.fd is not None:
            fd_margin = fd_tol[1] + fd_tol[0] * d.norms[i] + e
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
