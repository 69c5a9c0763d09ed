"""The cost and the task's metrics on a set of examples: one function for every case.

``metrics`` weighs each example (column) by 0 or 1 and divides every sum by the
number m of real examples, so the same function serves one device, a mesh, and a
set padded to a multiple of the devices and split over several processes (the
padding weighted 0): each metric is a sum over examples, which XLA all-reduces.
``jaxnn.train.evaluate`` and ``fit``'s per-epoch report both call it.
"""

import jax
import jax.numpy as jnp

from jaxnn import losses
from jaxnn.network import Network, Params, forward_unchecked

__all__ = [
    "REPORT_HEAD",
    "SECTIONS",
    "epoch_report",
    "main_metric",
    "metric_names",
    "metrics",
    "report_names",
    "task_of",
]


def task_of(net: Network) -> str:
    """``"classification"`` or ``"regression"``: the task of the network's output head
    (``jaxnn.losses.HEADS``)."""
    return losses.head(net.activations[-1], net.loss).task


def main_metric(task: str) -> str:
    """The metric the history and the CLI report for a task: ``"accuracy"`` or ``"r2"``."""
    return next(h.metric for h in losses.HEADS if h.task == task)


def metric_names(net: Network) -> tuple[str, ...]:
    """The names ``metrics`` returns for this network, in order."""
    return ("cost", "accuracy") if task_of(net) == "classification" else ("cost", "r2", "mse")


def metrics(
    params: Params, X: jax.Array, Y: jax.Array, weights: jax.Array, net: Network, m: int
) -> dict:
    """The cost and the task's metrics over the columns of weight 1, as sums over m.

    ``X`` ``(n_x, m_pad)`` and ``Y`` ``(n_L, m_pad)``; ``weights`` ``(1, m_pad)``: 1
    for the m real examples, 0 for padding. Every metric is a sum over examples
    divided by m:

    * every task: ``"cost"``, the network's cost (C-M);
    * classification: ``"accuracy"``, the fraction of examples whose class is
      right: argmax over the outputs for softmax; for sigmoid outputs, ``a > 0.5``
      against ``y > 0.5`` per output unit (with one unit, per example);
    * regression: ``"r2"``, 1 - SS_res / SS_tot per output row, averaged over the
      rows (scikit-learn's ``r2_score``; a constant row scores 1 if fitted exactly,
      else 0), and ``"mse"``, the mean of (a - y)^2 over all entries (no 1/2).
    """
    cache = forward_unchecked(params, X, net)
    Z, A = cache.Z[-1], cache.A[-1]
    w = weights[0]
    out = {"cost": jnp.sum(w * losses.get(net.loss).stable_value(Z, A, Y)) / m}  # (C-M)
    n_out = A.shape[0]
    if task_of(net) == "classification":
        if net.activations[-1] == "softmax":
            correct = (jnp.argmax(A, axis=0) == jnp.argmax(Y, axis=0)).astype(A.dtype)
            out["accuracy"] = jnp.sum(w * correct) / m
        else:  # sigmoid: predict 1 where a > 0.5, i.e. z > 0; per output unit
            correct = ((A > 0.5) == (Y > 0.5)).astype(A.dtype)
            out["accuracy"] = jnp.sum(weights * correct) / (m * n_out)
    else:
        mean = jnp.sum(weights * Y, axis=1, keepdims=True) / m
        residual = jnp.sum(weights * (Y - A) ** 2, axis=1)
        total = jnp.sum(weights * (Y - mean) ** 2, axis=1)
        r2 = jnp.where(
            total > 0, 1 - residual / jnp.where(total > 0, total, 1), 1.0 * (residual == 0)
        )
        out["r2"] = jnp.mean(r2)
        out["mse"] = jnp.sum(weights * (A - Y) ** 2) / (m * n_out)
    return out


# What the compiled epoch reports, in this order, in one vector (one transfer):
# the mean batch cost, the first non-finite batch (from 0; -1 if none) and its cost,
# whether every parameter is finite (1 or 0), then ``report_names(net, sections)``.
REPORT_HEAD = ("train_cost", "first_bad_step", "first_bad_cost", "params_finite")

# The sets an epoch may evaluate after its steps: the test set always, the training
# set (its task metrics; its cost is the mean of the batch costs, ``train_cost``) and
# a validation set when asked.
SECTIONS = ("test", "train", "val")


def report_names(net: Network, sections: tuple[str, ...] = ("test",)) -> tuple[str, ...]:
    """The history's names of the metrics an epoch reports on ``sections``, in order:
    ``test_cost``, ``test_accuracy``, ... (``train_``: the task metrics only)."""
    names = []
    for section in sections:
        kept = metric_names(net)[1:] if section == "train" else metric_names(net)
        names += [f"{section}_{name}" for name in kept]
    return tuple(names)


def epoch_report(params: Params, costs: jax.Array, evaluated: dict, net: Network) -> jax.Array:
    """The epoch's report as one vector (``REPORT_HEAD``, then ``report_names``),
    computed on the device.

    ``costs``: the epoch's batch costs; ``evaluated``: ``{section: metrics(...)}``
    for the sections evaluated, in ``SECTIONS``' order.
    """
    bad = ~jnp.isfinite(costs)
    first = jnp.argmax(bad)  # the first True; 0 if none
    finite = jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(params)]))
    values = [jnp.mean(costs), jnp.where(bad[first], first, -1), costs[first], finite]
    for section, metrics_ in evaluated.items():
        kept = metric_names(net)[1:] if section == "train" else metric_names(net)
        values += [metrics_[name] for name in kept]
    return jnp.stack([jnp.asarray(v, costs.dtype) for v in values])
