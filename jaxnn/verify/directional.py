"""Directional checks: the hand gradient along k random directions per leaf, in one jitted call.

For leaf i and a unit direction v (a standard normal draw, normalised, zero in
every other leaf), three numbers are compared:

  hand   <g_i, v>                                   (the hand gradient's leaf i)
  jvp    jax.jvp(C)(p; v), forward mode             (independent of reverse mode)
         or <jax.grad(C)(p), v>, reverse mode       (``reference="grad"``: a cost with a
                                                     ``jax.custom_vjp``, which jvp cannot trace)
  fd     (C(p + h v) - C(p - h v)) / 2h             (independent of JAX's rules; optional)

**When differences cannot resolve the cost** (a high-frequency cost, a step that
leaves the domain of a log, float32 rounding), they are no evidence: the
quotient is also taken at 2h, and its own error, |fd(2h) - fd(h)| (the
truncation error at 2h is 4 times that at h), widens its tolerance; a quotient
that is nan or inf is unusable and left out (``fd_usable``). The autodiff
reference alone then decides.

Cost: one linearisation and 2 cost evaluations per direction, whatever the
number of parameters: for a 784-512-512-10 network (670k parameters) 6 leaves
x 8 directions is 48 tangents, against 1.3 million evaluations for full
central differences.

**Tolerance, per direction.** A correct hand gradient differs from the true one
by rounding, a vector r with ||r||_2 <= rtol ||g_i||_2 (the relative error of a
correct computation holds for the 2-norm as it does for the largest entry). By
Cauchy-Schwarz |<r, v>| <= ||r||_2 ||v||_2 = ||r||_2, so a direction passes when

  |<a_i, v> - jvp| <= atol + rtol ||a_i||_2                        (jvp)
  |<a_i, v> - fd|  <= fd_atol + fd_rtol ||a_i||_2                  (fd)

with a_i the hand leaf. The bound does not grow with the number of entries or
outputs, unlike a tolerance on the sum of N per-entry errors; a wrong leaf
moves <a_i, v> by about ||a_i - g_i||_2 / sqrt(n_i), far above rtol ||a_i||_2
unless the error is a tiny fraction of the leaf (a full check finds those).
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxnn.verify.kinks import sided

__all__ = ["Directional", "directional", "directions", "one_sided_directional"]


class Directional(NamedTuple):
    """Per leaf, arrays of shape (k,): hand, reference, fd values along each direction."""

    hand: list
    jvp: list  # the autodiff reference: jax.jvp, or <jax.grad, v> (``reference="grad"``)
    fd: list | None  # None without finite differences
    norms: list  # ||a_i||_2 of each hand leaf
    fd_error: list | None = None  # |fd(2h) - fd(h)|, the quotient's own error
    reference: str = "jvp"


def directions(seed: int, leaves, k: int) -> list:
    """k unit directions per leaf (standard normal, normalised), drawn on the host with numpy.

    Drawn outside the compiled program: ``jax.random.normal`` inside it costs
    seconds of compilation on CPU, more than the checks themselves. A leaf of one
    entry gets +-1: a direction never vanishes.
    """
    rng = np.random.default_rng(seed)
    out = []
    for leaf in leaves:
        V = rng.standard_normal((k, *np.shape(leaf)))
        norm = np.sqrt(np.sum(V * V, axis=tuple(range(1, V.ndim)), keepdims=True))
        V /= np.where(norm > 0, norm, 1.0)
        out.append(jnp.asarray(V, jnp.result_type(leaf)))
    return out


def _pair_tangents(dirs, rows, cols):
    """Tangent trees stacked over pairs p: leaf rows[p] holds direction cols[p], others 0."""
    return [
        V[cols] * (rows == i).reshape((-1,) + (1,) * (V.ndim - 1)).astype(V.dtype)
        for i, V in enumerate(dirs)
    ]


def directional(
    f, leaves, hand, dirs, h, reference: str = "auto", both_steps: bool = True
) -> Directional:
    """hand, reference and central-difference values of k random directions per leaf.

    ``f(leaves)`` is the scalar cost of the list of float leaves (everything
    else closed over); ``dirs[i]`` holds leaf i's k directions (``directions``);
    ``h``: each leaf's step (a sequence), or None: no differences.
    ``reference``: ``"jvp"`` (forward mode),
    ``"grad"`` (reverse mode, <jax.grad(f), v>), or ``"auto"``: jvp, and reverse
    mode where jvp cannot trace the cost (a ``jax.custom_vjp``). ``both_steps``:
    also the quotient at 2h (its error estimate; else ``fd_error`` is 0). One jitted call.
    """
    if reference == "auto":
        try:
            return directional(f, leaves, hand, dirs, h, "jvp", both_steps)
        except TypeError as e:
            if "custom_vjp" not in str(e) and "jvp" not in str(e):
                raise
            return directional(f, leaves, hand, dirs, h, "grad", both_steps)
    k = int(dirs[0].shape[0])
    n = len(leaves)
    rows, cols = np.repeat(np.arange(n), k), np.tile(np.arange(k), n)

    @jax.jit
    def run(leaves, hand, dirs):
        tangents = _pair_tangents(dirs, rows, cols)  # one cost in the program, not n
        if reference == "jvp":
            _, f_jvp = jax.linearize(f, leaves)
            refs = list(jax.vmap(f_jvp)(tangents).reshape(n, k))
        else:
            g = jax.grad(f)(leaves)
            refs = [jnp.tensordot(V, x, axes=x.ndim) for V, x in zip(dirs, g, strict=True)]
        hand_dots = [jnp.tensordot(V, a, axes=a.ndim) for V, a in zip(dirs, hand, strict=True)]
        norms = [jnp.sqrt(jnp.sum(jnp.square(a))) for a in hand]
        if h is None:
            return hand_dots, refs, None, norms, None

        def central(tangent_h):
            tangent, h = tangent_h
            at = lambda s: f(
                [x + (s * v).astype(x.dtype) for x, v in zip(leaves, tangent, strict=True)]
            )
            one = (at(h) - at(-h)) / (2 * h)
            two = (at(2 * h) - at(-2 * h)) / (4 * h) if both_steps else one
            return jnp.stack([one, two])

        steps = jnp.asarray(h, jnp.float64 if jax.config.jax_enable_x64 else jnp.float32)[rows]
        both = jax.lax.map(central, (tangents, steps), batch_size=min(n * k, 16)).reshape(n, k, 2)
        return (
            hand_dots,
            refs,
            list(both[..., 0]),
            norms,
            list(jnp.abs(both[..., 1] - both[..., 0])),
        )

    out = run(
        leaves,
        [jnp.asarray(a, jnp.result_type(x)) for a, x in zip(hand, leaves, strict=True)],
        dirs,
    )
    to_np = lambda xs: None if xs is None else [np.asarray(x, np.float64) for x in xs]
    hand_dots, refs, fd, norms, fd_error = out
    return Directional(
        to_np(hand_dots),
        to_np(refs),
        to_np(fd),
        [float(x) for x in norms],
        to_np(fd_error),
        reference,
    )


def one_sided_directional(f, leaves, pairs, dirs, dtype):
    """Right and left derivatives of f along the directions ``pairs`` [(leaf i, direction j)].

    As ``kinks.one_sided_partials``, along v: ``<jax.grad(f)(p + s v), v>``
    (reverse mode, so a ``jax.custom_vjp`` cost works) judged by ``kinks.sided``
    with t = sqrt(eps) max(max|p_i|, 1); returns numpy arrays
    ``(right, left, error, kink)`` in the order of ``pairs``.
    """
    eps = float(jnp.finfo(dtype).eps)
    rows = np.asarray([i for i, _ in pairs])
    cols = np.asarray([j for _, j in pairs])

    @jax.jit
    def run(leaves, dirs):
        tangents = _pair_tangents(dirs, rows, cols)
        size = jnp.stack([jnp.maximum(jnp.max(jnp.abs(x)), 1.0) for x in leaves])
        t = jnp.sqrt(eps) * size[rows]
        grad = jax.grad(f)

        def one(tangent, t):
            def d(s):
                moved = [x + s.astype(x.dtype) * v for x, v in zip(leaves, tangent, strict=True)]
                g = grad(moved)
                return sum(jnp.vdot(a, v) for a, v in zip(g, tangent, strict=True))

            return sided(d, t)

        return jax.vmap(one)(tangents, t)

    right, left, error, kink = run(leaves, dirs)
    as64 = lambda x: np.asarray(x, np.float64)
    return as64(right), as64(left), as64(error), np.asarray(kink, bool)
