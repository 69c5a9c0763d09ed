"""The step and the epoch: what ``jaxnn.train`` and ``jaxnn.parallel`` both compile.

A step is one optimizer update on one batch; an epoch is the step over
``floor(m / B)`` full batches of a fresh permutation in one ``lax.scan`` (see
``jaxnn.train`` for the choice of minibatches). ``step_fn`` and ``epoch_fn`` are
the plain functions; ``make_step`` and ``make_epoch`` jit them on one device,
``jaxnn.parallel`` with shardings over a mesh.
"""

import functools
from collections.abc import Callable

import jax
import optax
from jax import lax

from jaxnn.backpropagation import value_and_backprop
from jaxnn.network import Network, cost
from jaxnn.validation import check_batch_size

GRADIENTS = ("hand", "autodiff")


def value_and_grad_fn(net: Network, gradients: str):
    """``(params, X, Y) -> (cost, grads)`` by hand backprop or by ``jax.value_and_grad``."""
    if gradients == "hand":
        return lambda params, X, Y: value_and_backprop(params, X, Y, net)
    if gradients == "autodiff":
        return lambda params, X, Y: jax.value_and_grad(cost)(params, X, Y, net)
    valid = ", ".join(GRADIENTS)
    raise ValueError(f"unknown gradients {gradients!r}; valid: {valid}")


def step_fn(net: Network, optimizer: optax.GradientTransformation, gradients: str = "hand"):
    """``step(params, opt_state, X, Y) -> (params, opt_state, cost)``, not jitted.

    See ``make_step``, which jits it.
    """
    value_and_grad = value_and_grad_fn(net, gradients)

    def step(params, opt_state, X, Y):
        c, grads = value_and_grad(params, X, Y)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, c

    return step


def make_step(
    net: Network, optimizer: optax.GradientTransformation, gradients: str = "hand"
) -> Callable:
    """A jitted ``step(params, opt_state, X, Y) -> (params, opt_state, cost)``.

    One optimizer update on the batch ``(X, Y)`` (columns are examples); ``cost``
    is the batch's cost before the update.

    Args:
      net: the ``Network``.
      optimizer: an ``optax.GradientTransformation``, e.g. ``jaxnn.optim.adam(1e-3)``.
      gradients: ``"hand"``: ``jaxnn.value_and_backprop`` (BP1-BP4);
        ``"autodiff"``: ``jax.value_and_grad(jaxnn.cost)``, for comparison.

    Example:
      >>> step = make_step(net, jaxnn.optim.sgd(0.1))
      >>> params, opt_state, c = step(params, opt_state, X, Y)
    """
    return jax.jit(step_fn(net, optimizer, gradients))


def epoch_batches(key, m: int, batch_size: int) -> jax.Array:
    """The example indices of one epoch, shape ``(floor(m / B), B)``.

    Row k is batch k: B consecutive entries of ``jax.random.permutation(key, m)``;
    the last ``m mod B`` entries of the permutation are left out.
    """
    check_batch_size(batch_size, m)
    n_batches = m // batch_size
    return jax.random.permutation(key, m)[: n_batches * batch_size].reshape(n_batches, batch_size)


def make_epoch(
    net: Network,
    optimizer: optax.GradientTransformation,
    batch_size: int,
    gradients: str = "hand",
) -> Callable:
    """A jitted ``epoch(params, opt_state, X, Y, key) -> (params, opt_state, costs)``.

    Runs the step over the ``epoch_batches(key, m, batch_size)`` in one
    ``lax.scan``, so a whole epoch is one compiled call, compiled once for all
    epochs of the same shapes. ``costs`` has one entry per batch.

    Cached: the same (net, optimizer object, batch_size, gradients) gives the
    same jitted function, so repeated ``fit`` calls do not recompile.
    """
    try:
        return _make_epoch_cached(net, optimizer, batch_size, gradients)
    except TypeError:  # an unhashable optimizer: build it afresh
        return _make_epoch(net, optimizer, batch_size, gradients)


def epoch_fn(net, optimizer, batch_size, gradients="hand", constrain=None, *, examples=None):
    """The epoch of ``make_epoch``, not jitted. ``constrain`` maps each batch array
    before its step (``jaxnn.parallel`` uses it to shard the batch over devices).
    ``examples``: the number m of real examples, the first m columns of X and Y;
    any columns after them are padding that no batch draws (``jaxnn.sharded``
    pads the training set to a multiple of the devices). Default: all columns."""
    step = step_fn(net, optimizer, gradients)
    constrain = constrain or (lambda B: B)

    def epoch(params, opt_state, X, Y, key):
        m = X.shape[1] if examples is None else examples
        batches = epoch_batches(key, m, batch_size)
        # Gather each batch as rows of X^T, whole contiguous examples, and turn it
        # back into columns: faster than gathering scattered columns of X.
        X_rows, Y_rows = X.T, Y.T

        def body(carry, idx):
            params, opt_state = carry
            Xb, Yb = constrain(X_rows[idx].T), constrain(Y_rows[idx].T)
            params, opt_state, c = step(params, opt_state, Xb, Yb)
            return (params, opt_state), c

        (params, opt_state), costs = lax.scan(body, (params, opt_state), batches)
        return params, opt_state, costs

    return epoch


def _make_epoch(net, optimizer, batch_size, gradients):
    return jax.jit(epoch_fn(net, optimizer, batch_size, gradients))


_make_epoch_cached = functools.lru_cache(maxsize=16)(_make_epoch)
