"""The step and the epoch: what ``jaxnn.train`` and ``jaxnn.parallel`` both compile.

A step is one optimizer update on one batch; an epoch is the step over
``floor(m / B)`` full batches of a fresh permutation in one ``lax.scan`` (see
``jaxnn.train`` for the choice of minibatches). ``step_fn`` and ``epoch_fn`` are
the plain functions; ``make_step`` and ``make_epoch`` jit them on one device,
``jaxnn.parallel`` with shardings over a mesh, ``jaxnn.programs`` for ``fit``.

A step may also return a function of its batch's output A^[L] (``output``, e.g.
``jaxnn.metrics.task_sums`` for ``fit``'s running training metrics), taken from the
forward pass its cost and gradients come from: no second forward pass.
"""

import functools
from collections.abc import Callable

import jax
import optax
from jax import lax

from jaxnn.backpropagation import backward
from jaxnn.network import Network, check_inputs, forward_unchecked, output_cost
from jaxnn.regularization import l2_grads, l2_penalty
from jaxnn.validation import check_batch_size

__all__ = [
    "GRADIENTS",
    "epoch_batches",
    "epoch_fn",
    "epoch_key",
    "make_epoch",
    "make_step",
    "memoized",
    "step_fn",
    "value_and_grad_fn",
]

GRADIENTS = ("hand", "autodiff")


def memoized(build: Callable) -> Callable:
    """``build`` with its results kept for its 16 latest hashable arguments, so the same
    arguments give the same jitted function (and JAX's in-memory caches serve it).

    Arguments that cannot be hashed (an optimizer holding a list, say) build afresh;
    an error raised by ``build`` itself propagates, never retried.
    """
    cached = functools.lru_cache(maxsize=16)(build)

    @functools.wraps(build)
    def get(*args):
        try:
            hash(args)
        except TypeError:
            return build(*args)
        return cached(*args)

    return get


def value_and_grad_fn(
    net: Network, gradients: str, weight_decay: float = 0.0, output: Callable | None = None
) -> Callable:
    """``(params, X, Y) -> (cost, grads)`` by hand backprop or by ``jax.value_and_grad``.

    ``weight_decay`` lambda > 0: the penalised cost (C-L2) and its gradient (BP4-L2),
    ``jaxnn.regularization``. ``output(A, Y)``: a function of the batch's output
    A^[L] and its targets (as ``check_inputs`` gives them); then ``(params, X, Y) ->
    ((cost, output(A, Y)), grads)``, A^[L] from the same forward pass as the cost.

    Hand: one forward pass (F-Z), (F-A), its cost (C-M) and BP1-BP4 on its cache, as
    ``jaxnn.regularization.value_and_backprop_l2``, no ``jax.grad``. Autodiff:
    ``jax.value_and_grad`` of the same forward and cost, A^[L] as its ``aux``.
    """
    if gradients not in GRADIENTS:
        valid = ", ".join(GRADIENTS)
        raise ValueError(f"unknown gradients {gradients!r}; valid: {valid}")
    # As value_and_backprop_l2: a weight decay of 0 adds nothing (no term of 0 * W).
    decayed = not (isinstance(weight_decay, (int, float)) and weight_decay == 0)

    def forward_cost(params, X, Y):
        X, Y = check_inputs(params, X, net, Y)
        cache = forward_unchecked(params, X, net)  # (F-Z), (F-A)
        c = output_cost(cache, Y, net)  # (C-M)
        if decayed:
            c = c + l2_penalty(params, X.shape[1], weight_decay)  # (C-L2)
        return c, (cache, X.shape[1], Y)

    def with_output(c, grads, A, Y):
        return (c, grads) if output is None else ((c, output(A, Y)), grads)

    if gradients == "hand":

        def hand(params, X, Y):
            c, (cache, m, Y) = forward_cost(params, X, Y)
            grads = backward(params, cache, Y, net).grads  # (BP1)-(BP4)
            if decayed:
                grads = l2_grads(grads, params, m, weight_decay)  # (BP4-L2)
            return with_output(c, grads, cache.A[-1], Y)

        return hand

    def cost_and_output(params, X, Y):
        c, (cache, _, Y) = forward_cost(params, X, Y)
        return c, (cache.A[-1], Y)

    def autodiff(params, X, Y):
        (c, (A, Y)), grads = jax.value_and_grad(cost_and_output, has_aux=True)(params, X, Y)
        return with_output(c, grads, A, Y)

    return autodiff


def step_fn(
    net: Network,
    optimizer: optax.GradientTransformation,
    gradients: str = "hand",
    weight_decay: float = 0.0,
    output: Callable | None = None,
) -> Callable:
    """``step(params, opt_state, X, Y) -> (params, opt_state, cost)``, not jitted.

    See ``make_step``, which jits it. ``output(A, Y)``: a function of the batch's
    output A^[L], from the step's own forward pass (before the update), and its
    targets; then the step returns ``(params, opt_state, cost, output(A, Y))``.
    """
    value_and_grad = value_and_grad_fn(net, gradients, weight_decay, output)

    def step(params, opt_state, X, Y):
        value, grads = value_and_grad(params, X, Y)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        if output is None:
            return params, opt_state, value
        return params, opt_state, *value

    return step


def make_step(
    net: Network,
    optimizer: optax.GradientTransformation,
    gradients: str = "hand",
    weight_decay: float = 0.0,
) -> Callable:
    """A jitted ``step(params, opt_state, X, Y) -> (params, opt_state, cost)``.

    One optimizer update on the batch ``(X, Y)`` (columns are examples); ``cost``
    is the batch's cost before the update.

    Args:
      net: the ``Network``.
      optimizer: an ``optax.GradientTransformation``, e.g. ``jaxnn.optim.adam(1e-3)``.
      gradients: ``"hand"``: ``jaxnn.value_and_backprop`` (BP1-BP4);
        ``"autodiff"``: ``jax.value_and_grad(jaxnn.cost)``, for comparison.
      weight_decay: L2 on the weights, lambda (C-L2): the cost is the batch's
        penalised cost and dC/dW gains lambda W / B (BP4-L2).

    Example:
      >>> step = make_step(net, jaxnn.optim.sgd(0.1))
      >>> params, opt_state, c = step(params, opt_state, X, Y)
    """
    return jax.jit(step_fn(net, optimizer, gradients, weight_decay))


def epoch_batches(key: jax.Array, m: int, batch_size: int) -> jax.Array:
    """The example indices of one epoch, shape ``(floor(m / B), B)``.

    Row k is batch k: B consecutive entries of ``jax.random.permutation(key, m)``;
    the last ``m mod B`` entries of the permutation are left out.
    """
    check_batch_size(batch_size, m)
    n_batches = m // batch_size
    return jax.random.permutation(key, m)[: n_batches * batch_size].reshape(n_batches, batch_size)


@memoized
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

    Memoized (``memoized``): the same (net, optimizer object, batch_size,
    gradients) gives the same jitted function, so repeated calls do not recompile.
    """
    return jax.jit(epoch_fn(net, optimizer, batch_size, gradients))


def epoch_key(key: jax.Array, e: int | jax.Array) -> jax.Array:
    """The key that shuffles epoch ``e`` (from 0) of ``fit(..., key)``: a function of
    (key, e) alone, so a resumed run draws the batches the whole run would have."""
    _, shuffle_key = jax.random.split(key)
    return jax.random.fold_in(shuffle_key, e)


def epoch_fn(
    net: Network,
    optimizer: optax.GradientTransformation,
    batch_size: int,
    gradients: str = "hand",
    take: Callable | None = None,
    *,
    examples: int | None = None,
    weight_decay: float = 0.0,
    output: Callable | None = None,
) -> Callable:
    """The epoch of ``make_epoch``, not jitted.

    ``take(rows, idx)``: the batch ``idx`` of the examples ``rows`` (X^T, one per
    row) as columns, ``rows[idx].T`` by default; ``jaxnn.parallel.take_batch`` also
    splits it over a mesh's devices. ``examples``: the number m of real examples,
    the first m columns of X and Y; any columns after them are padding that no
    batch draws (``jaxnn.sharded`` pads the sets to a multiple of the devices).
    Default: all columns. ``weight_decay``: as ``make_step``'s. ``output``: as
    ``step_fn``'s; then the epoch returns ``(params, opt_state, costs, outputs)``,
    ``outputs`` the step's ``output`` of every batch, stacked (one row per batch)
    as the costs are."""
    step = step_fn(net, optimizer, gradients, weight_decay, output)
    take = take or (lambda rows, idx: rows[idx].T)

    def epoch(params, opt_state, X, Y, key):
        m = X.shape[1] if examples is None else examples
        batches = epoch_batches(key, m, batch_size)
        # Gather each batch as rows of X^T, whole contiguous examples, and turn it
        # back into columns: faster than gathering scattered columns of X.
        X_rows, Y_rows = X.T, Y.T

        def body(carry, idx):
            params, opt_state, *per_batch = step(*carry, take(X_rows, idx), take(Y_rows, idx))
            return (params, opt_state), tuple(per_batch)

        (params, opt_state), per_batch = lax.scan(body, (params, opt_state), batches)
        return params, opt_state, *per_batch

    return epoch
