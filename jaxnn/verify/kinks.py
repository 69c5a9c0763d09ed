"""Kinks: points where the cost is not differentiable, and the one-sided derivatives there.

Of jaxnn's activations two have a kink, both at z = 0: relu (slopes 0 left, 1
right) and leaky_relu (0.01 left, 1 right). sigmoid, tanh, softmax and linear
are smooth everywhere. At a kink there is no derivative to be right about:
any value between the one-sided derivatives is a valid choice (a subgradient,
for these convex pieces), and JAX picks one by convention:

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

from jaxnn.activations import LEAKY_SLOPE


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
    index: tuple  # up to ``SHOWN`` indices, each a tuple
    hand: tuple
    left: tuple
    right: tuple


SHOWN = 8


def kink_entries(indices, hand, left, right) -> KinkEntries:
    """``KinkEntries`` of the given entries (the first ``SHOWN`` kept in full)."""
    take = lambda xs: tuple(float(x) for x in xs[:SHOWN])
    return KinkEntries(
        len(indices), tuple(tuple(int(i) for i in ix) for ix in indices[:SHOWN]), take(hand),
        take(left), take(right),
    )  # fmt: skip


def one_sided_partials(f, flat, entries, dtype):
    """Right and left partial derivatives of ``f`` at ``flat`` in each of ``entries``.

    For entry i, ``d(s) = df/dp_i`` at ``p + s e_i`` (a reverse-mode gradient,
    where f is smooth), for s = t, 2t and -t, -2t with t = sqrt(eps) max(|p_i|, 1).
    Past a kink at p, ``d(t) = d_+ + t C'' + O(t^2)``, so Richardson's
    ``2 d(t) - d(2t)`` is the right derivative d_+ to O(t^2) and, likewise,
    the left one; ``|d(t) - d(2t)|`` (the first-order term, larger than the
    remaining error) is returned as each estimate's error bound.

    This finds a kink that a step of 2t along e_i crosses, and assumes no second
    kink within 2t. Returns numpy arrays ``(right, left, error)``.
    """
    eps = float(jnp.finfo(dtype).eps)
    grad = jax.grad(f)

    @jax.jit
    def partials(flat, entries):
        def one(i):
            t = jnp.sqrt(eps) * jnp.maximum(jnp.abs(flat[i]), 1.0)
            d = lambda s: grad(flat.at[i].add(s))[i]
            r1, r2, l1, l2 = d(t), d(2 * t), d(-t), d(-2 * t)
            error = jnp.maximum(jnp.abs(r1 - r2), jnp.abs(l1 - l2))
            return 2 * r1 - r2, 2 * l1 - l2, error

        return jax.lax.map(one, entries)

    right, left, error = partials(flat, jnp.asarray(entries))
    return np.asarray(right, np.float64), np.asarray(left, np.float64), np.asarray(error)
