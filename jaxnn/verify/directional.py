"""Directional checks: the hand gradient along k random directions per leaf, in one jitted call.

For leaf i and a unit direction v (a standard normal draw, normalised, zero in
every other leaf), three numbers are compared:

  hand   <g_i, v>                                   (the hand gradient's leaf i)
  jvp    jax.jvp(C)(p; v), forward mode             (independent of reverse mode)
  fd     (C(p + h v) - C(p - h v)) / 2h             (independent of JAX's rules)

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

__all__ = ["Directional", "directional", "directions", "one_sided_directional"]


class Directional(NamedTuple):
    """Per leaf, arrays of shape (k,): hand, jvp and fd values along each direction."""

    hand: list
    jvp: list
    fd: list
    norms: list  # ||a_i||_2 of each hand leaf


def directions(seed: int, leaves, k: int) -> list:
    """k unit directions per leaf (standard normal, normalised), drawn on the host with numpy.

    Drawn outside the compiled program: ``jax.random.normal`` inside it costs
    seconds of compilation on CPU, more than the checks themselves.
    """
    rng = np.random.default_rng(seed)
    out = []
    for leaf in leaves:
        V = rng.standard_normal((k, *np.shape(leaf)))
        V /= np.sqrt(np.sum(V * V, axis=tuple(range(1, V.ndim)), keepdims=True))
        out.append(jnp.asarray(V, jnp.result_type(leaf)))
    return out


def _pair_tangents(dirs, rows, cols):
    """Tangent trees stacked over pairs p: leaf rows[p] holds direction cols[p], others 0."""
    return [
        V[cols] * (rows == i).reshape((-1,) + (1,) * (V.ndim - 1)).astype(V.dtype)
        for i, V in enumerate(dirs)
    ]


def directional(f, leaves, hand, dirs, h: float) -> Directional:
    """hand, jvp and central-difference values of k random directions per leaf of ``leaves``.

    ``f(leaves)`` is the scalar cost of the list of float leaves (everything
    else closed over); ``dirs[i]`` holds leaf i's k directions (``directions``).
    One jitted call.
    """
    k = int(dirs[0].shape[0])

    n = len(leaves)
    rows, cols = np.repeat(np.arange(n), k), np.tile(np.arange(k), n)

    @jax.jit
    def run(leaves, hand, dirs):
        tangents = _pair_tangents(dirs, rows, cols)  # one cost in the program, not n
        _, f_jvp = jax.linearize(f, leaves)
        jvps = jax.vmap(f_jvp)(tangents).reshape(n, k)

        def central(tangent):
            plus = [x + h * v for x, v in zip(leaves, tangent, strict=True)]
            minus = [x - h * v for x, v in zip(leaves, tangent, strict=True)]
            return (f(plus) - f(minus)) / (2 * h)

        fds = jax.lax.map(central, tangents, batch_size=min(n * k, 16)).reshape(n, k)
        hand_dots = [jnp.tensordot(V, a, axes=a.ndim) for V, a in zip(dirs, hand, strict=True)]
        norms = [jnp.sqrt(jnp.sum(jnp.square(a))) for a in hand]
        return hand_dots, list(jvps), list(fds), norms

    out = run(
        leaves,
        [jnp.asarray(a, jnp.result_type(x)) for a, x in zip(hand, leaves, strict=True)],
        dirs,
    )
    to_np = lambda xs: [np.asarray(x, np.float64) for x in xs]
    return Directional(*map(to_np, out[:3]), [float(n) for n in out[3]])


def one_sided_directional(f, leaves, pairs, dirs, dtype):
    """Right and left derivatives of f along the directions ``pairs`` [(leaf i, direction j)].

    As ``kinks.one_sided_partials``, along v: jvp at p + s v for s = t, 2t, -t,
    -2t with t = sqrt(eps) max(max|p_i|, 1), Richardson-extrapolated; returns
    numpy arrays ``(right, left, error)`` in the order of ``pairs``.
    """
    eps = float(jnp.finfo(dtype).eps)

    rows = np.asarray([i for i, _ in pairs])
    cols = np.asarray([j for _, j in pairs])

    @jax.jit
    def run(leaves, dirs):
        tangents = _pair_tangents(dirs, rows, cols)
        size = jnp.stack([jnp.maximum(jnp.max(jnp.abs(x)), 1.0) for x in leaves])
        t = jnp.sqrt(eps) * size[rows]

        def one(tangent, t):
            def d(s):
                moved = [x + s.astype(x.dtype) * v for x, v in zip(leaves, tangent, strict=True)]
                return jax.jvp(f, (moved,), (tangent,))[1]

            r1, r2, l1, l2 = jax.vmap(d)(jnp.stack([t, 2 * t, -t, -2 * t]))
            err = jnp.maximum(jnp.abs(r1 - r2), jnp.abs(l1 - l2))
            return jnp.stack([2 * r1 - r2, 2 * l1 - l2, err])

        return jax.vmap(one)(tangents, t)

    result = np.asarray(run(leaves, dirs), np.float64)
    return result[:, 0], result[:, 1], result[:, 2]
