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


class Directional(NamedTuple):
    """Per leaf, arrays of shape (k,): hand, jvp and fd values along each direction."""

    hand: list
    jvp: list
    fd: list
    norms: list  # ||a_i||_2 of each hand leaf


def _directions(key, leaves, k):
    """k unit directions per leaf, standard normal and normalised, in the leaf's dtype."""
    keys = jax.random.split(key, len(leaves))
    out = []
    for key_i, leaf in zip(keys, leaves, strict=True):
        v = jax.random.normal(key_i, (k, *jnp.shape(leaf)), jnp.result_type(leaf))
        norm = jnp.sqrt(jnp.sum(v * v, axis=tuple(range(1, v.ndim)), keepdims=True))
        out.append(v / norm)
    return out


def _along(leaves, i, v):
    """The parameters moved along v in leaf i only."""
    return [leaf + v if j == i else leaf for j, leaf in enumerate(leaves)]


def directional(f, leaves, hand, k: int, key, h: float) -> Directional:
    """hand, jvp and central-difference values of k random directions per leaf of ``leaves``.

    ``f(leaves)`` is the scalar cost of the list of float leaves (everything
    else closed over). One jitted call; the directions come from ``key``.
    """

    @jax.jit
    def run(leaves, hand, key):
        dirs = _directions(key, leaves, k)
        _, f_jvp = jax.linearize(f, leaves)
        hand_dots, jvps, fds = [], [], []
        for i, V in enumerate(dirs):
            zeros = [jnp.zeros_like(x) for x in leaves]
            tangent = lambda v, i=i, zeros=zeros: [v if j == i else z for j, z in enumerate(zeros)]
            hand_dots.append(jnp.tensordot(V, hand[i], axes=hand[i].ndim))
            jvps.append(jax.vmap(lambda v, tangent=tangent: f_jvp(tangent(v)))(V))
            central = lambda v, i=i: f(_along(leaves, i, h * v)) - f(_along(leaves, i, -h * v))
            fds.append(jax.lax.map(central, V) / (2 * h))
        norms = [jnp.sqrt(jnp.sum(jnp.square(a))) for a in hand]
        return hand_dots, jvps, fds, norms

    out = run(
        leaves, [jnp.asarray(a, jnp.result_type(x)) for a, x in zip(hand, leaves, strict=True)], key
    )
    to_np = lambda xs: [np.asarray(x, np.float64) for x in xs]
    return Directional(*map(to_np, out[:3]), [float(n) for n in out[3]])


def one_sided_directional(f, leaves, pairs, k: int, key, dtype):
    """Right and left derivatives of f along the directions ``pairs`` [(leaf i, direction j)].

    As ``kinks.one_sided_partials``, along v: jvp at p + s v for s = t, 2t, -t,
    -2t with t = sqrt(eps) max(max|p_i|, 1), Richardson-extrapolated; returns
    numpy arrays ``(right, left, error)`` in the order of ``pairs``.
    """
    eps = float(jnp.finfo(dtype).eps)

    @jax.jit
    def run(leaves, key):
        dirs = _directions(key, leaves, k)
        out = []
        for i, j in pairs:
            v = dirs[i][j]
            t = jnp.sqrt(eps) * jnp.maximum(jnp.max(jnp.abs(leaves[i])), 1.0)
            tangent = [v if n == i else jnp.zeros_like(x) for n, x in enumerate(leaves)]
            d = lambda s, i=i, v=v, tangent=tangent: jax.jvp(
                f, (_along(leaves, i, s * v),), (tangent,)
            )[1]
            r1, r2, l1, l2 = d(t), d(2 * t), d(-t), d(-2 * t)
            err = jnp.maximum(jnp.abs(r1 - r2), jnp.abs(l1 - l2))
            out.append(jnp.stack([2 * r1 - r2, 2 * l1 - l2, err]))
        return jnp.stack(out)

    result = np.asarray(run(leaves, key), np.float64)
    return result[:, 0], result[:, 1], result[:, 2]
