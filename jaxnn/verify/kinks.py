"""Kinks: points where the cost is not differentiable, and the one-sided derivatives there.

Of jaxnn's activations two have a kink, both at z = 0: relu (slopes 0 left, 1
right) and leaky_relu (0.01 left, 1 right). sigmoid, tanh, softmax, linear, gelu,
gelu_tanh, silu and softplus are smooth everywhere. At a kink there is no
derivative to be right about: any value between the one-sided derivatives is a
valid choice (a subgradient, for these convex pieces), and JAX picks one by
convention:

* ``jax.nn.relu`` is a ``custom_jvp`` whose rule is ``select(x > 0, g, 0)``:
  relu'(0) = 0 (jax/_src/nn/functions.py, citing Bertoin et al. 2021,
  "Numerical influence of ReLU'(0) on backpropagation");
* ``jax.nn.leaky_relu`` is ``where(x >= 0, x, slope x)``: leaky_relu'(0) = 1.

PyTorch also takes relu'(0) = 0; a hand derivation that writes ``z >= 0`` takes 1.
So a hand gradient may differ from ``jax.grad`` at a kink and still be right;
the checks accept it when the difference is confined to kink entries and lies
between the one-sided derivatives, and report it as "at a kink".

``KINKS`` serves ``locate_fault``, which knows the network and finds kinks
exactly (pre-activations equal to 0). ``one_sided_partials`` serves
``check_gradients`` on an arbitrary function, where kinks are found by
looking: see its docstring.
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from jaxnn.activations import LEAKY_SLOPE

__all__ = [
    "KINKS",
    "Kink",
    "KinkEntries",
    "kink_entries",
    "one_sided_partials",
    "sided",
]


class Kink(NamedTuple):
    """An activation's kink: where it is, its one-sided slopes, and JAX's value there."""

    at: float
    left: float
    right: float
    jax_value: float


KINKS = {
    "relu": Kink(0.0, 0.0, 1.0, 0.0),
    "leaky_relu": Kink(0.0, LEAKY_SLOPE, 1.0, 1.0),
}


class KinkEntries(NamedTuple):
    """Entries of a leaf accepted as "at a kink": where, the hand value, the one-sided values."""

    count: int
    index: tuple  # up to ``_SHOWN`` indices, each a tuple
    hand: tuple
    left: tuple
    right: tuple


_SHOWN = 8


def kink_entries(indices, hand, left, right) -> KinkEntries:
    """``KinkEntries`` of the given entries (the first ``_SHOWN`` kept in full)."""
    take = lambda xs: tuple(float(x) for x in xs[:_SHOWN])
    return KinkEntries(
        len(indices),
        tuple(tuple(int(i) for i in ix) for ix in indices[:_SHOWN]),
        take(hand),
        take(left),
        take(right),
    )


STEPS = 3  # one-sided derivatives at s = t, t / RATIO, t / RATIO^2 on each side
RATIO = 8.0
PERSIST = 0.25  # a kink's jump changes by less than this fraction between the two finest steps


def sided(d, t):
    """``(right, left, error, kink)`` of a derivative ``d(s)`` beside s = 0, from steps of ``t``.

    ``d`` is evaluated at s = +-t RATIO^-n (n < STEPS). Past a kink at 0,
    ``d(s) = d_+ + s C'' + O(s^2)`` for s > 0: the extrapolation
    ``(RATIO d(s) - d(RATIO s)) / (RATIO - 1)`` at the finest step is d_+ (and
    likewise d_-), ``|d(s) - d(RATIO s)|`` its error bound. The jump
    ``J(s) = d(s) - d(-s)`` of a real kink stays (J -> d_+ - d_-) as s shrinks;
    a smooth cost's shrinks with s (J = 2 s C''), whatever its scale: ``kink``
    is True only when J at the two finest steps agrees to ``PERSIST``, so a
    cost that varies fast (large inputs, small parameters) is never called kinked.
    """
    s = t * RATIO ** -jnp.arange(STEPS, dtype=jnp.result_type(t))
    right, left = jax.vmap(d)(s), jax.vmap(d)(-s)
    extrapolate = lambda x: (RATIO * x[-1] - x[-2]) / (RATIO - 1)
    error = jnp.maximum(jnp.abs(right[-1] - right[-2]), jnp.abs(left[-1] - left[-2]))
    jump = right - left
    kink = jnp.abs(jump[-1] - jump[-2]) <= PERSIST * jnp.abs(jump[-1])
    return extrapolate(right), extrapolate(left), error, kink


_PROGRAMS = {}  # compiled one-sided programs, by (cost function, static structure, dtype)


def one_sided_partials(f, leaves, arrays, entries, dtype, key=None):
    """Right and left partial derivatives of ``f(leaves, arrays)`` in each of ``entries``.

    ``entries`` index the leaves raveled into one vector. For entry i,
    ``d(s) = df/dp_i`` at ``p + s e_i`` (a reverse-mode gradient, where f is
    smooth), judged by ``sided`` with t = sqrt(eps) max(|p_i|, 1).

    This finds a kink that the steps along e_i cross, and assumes no second kink
    within t. The program is compiled once per ``key`` (a hashable description
    of f; None: not reused). Returns numpy arrays ``(right, left, error, kink)``.
    """
    eps = float(jnp.finfo(dtype).eps)
    cache_key = None if key is None else (key, jnp.dtype(dtype).name)
    program = _PROGRAMS.get(cache_key) if cache_key else None
    if program is None:

        @jax.jit
        def program(leaves, arrays, entries):
            flat, unravel = ravel_pytree(leaves)
            grad = jax.grad(lambda theta: f(unravel(theta), arrays))

            def one(i):
                t = jnp.sqrt(eps) * jnp.maximum(jnp.abs(flat[i]), 1.0)
                d = lambda s: grad(flat.at[i].add(s.astype(flat.dtype)))[i]
                return sided(d, t)

            return jax.lax.map(one, entries)

        if cache_key:
            if len(_PROGRAMS) >= 64:
                _PROGRAMS.pop(next(iter(_PROGRAMS)))
            _PROGRAMS[cache_key] = program
    n = len(entries)
    padded = np.zeros(max(16, 1 << (n - 1).bit_length()), np.int64)  # few distinct shapes
    padded[:n] = entries
    right, left, error, kink = program(list(leaves), list(arrays), jnp.asarray(padded))
    take = lambda x: np.asarray(x, np.float64)[:n]
    return take(right), take(left), take(error), np.asarray(kink, bool)[:n]
