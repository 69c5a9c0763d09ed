"""The cost and the task's metrics on a set of examples: one function for every case.

``metrics`` weighs each example (column) by 0 or 1 and divides every sum by the
number m of real examples, so the same function serves one device, a mesh, and a
set padded to a multiple of the devices and split over several processes (the
padding weighted 0): each metric is a sum over examples, which XLA all-reduces.
``jaxnn.train.evaluate`` and ``fit``'s per-epoch report on the test and validation
sets both call it.

The task's metrics are made of sums over examples (``task_sums``) and finished by
``task_metrics``, so the rules are written once: ``correct`` (is a prediction
right) and ``r2_score``. ``fit``'s training-set metrics are *running* metrics: the
sums of each batch the epoch trains on, taken from the step's own forward pass
(before that batch's update), added up over the epoch's batches
(``running_metrics``), the Keras convention; no second pass over the training set.
"""

import jax
import jax.numpy as jnp

from jaxnn import losses
from jaxnn.network import Network, Params, forward_unchecked

__all__ = [
    "REPORT_HEAD",
    "SECTIONS",
    "combine_sums",
    "correct",
    "epoch_report",
    "main_metric",
    "metric_names",
    "metrics",
    "r2_score",
    "report_names",
    "running_metrics",
    "task_metrics",
    "task_of",
    "task_sums",
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


def correct(A: jax.Array, Y: jax.Array, net: Network) -> jax.Array:
    """1 where a prediction is right, else 0, in A's dtype: ``(1, m)`` for softmax, the
    argmax over the outputs against Y's; ``(n_L, m)`` for sigmoid outputs, ``a > 0.5``
    (i.e. z > 0) against ``y > 0.5`` per output unit (with one unit, per example)."""
    if net.activations[-1] == "softmax":
        return (jnp.argmax(A, axis=0) == jnp.argmax(Y, axis=0)).astype(A.dtype)[None, :]
    return ((A > 0.5) == (Y > 0.5)).astype(A.dtype)


def r2_score(residual: jax.Array, total: jax.Array) -> jax.Array:
    """1 - SS_res / SS_tot per output row, averaged over the rows (scikit-learn's
    ``r2_score``); a constant row scores 1 if fitted exactly, else 0."""
    safe = jnp.where(total > 0, total, 1)
    return jnp.mean(jnp.where(total > 0, 1 - residual / safe, 1.0 * (residual == 0)))


def task_sums(
    A: jax.Array,
    Y: jax.Array,
    net: Network,
    weights: jax.Array | None = None,
    m: int | None = None,
) -> dict:
    """The sums over examples that the task's metrics are made of (``task_metrics``).

    Over the columns of weight 1 (``weights`` ``(1, m_pad)``, 1 or 0; None: every
    column), m of them (default: every column). Classification: ``"correct"``, the
    number of right predictions (``correct``), and ``"count"``, the number of
    predictions. Regression, per output row: ``"sum_y"``, the sum of y;
    ``"ss_dev"``, the sum of (y - mean)^2 about these examples' own mean;
    ``"ss_res"``, the sum of (y - a)^2; and ``"count"``, m.
    """
    m = A.shape[1] if m is None else m
    weigh = (lambda x: x) if weights is None else (lambda x: weights * x)
    if task_of(net) == "classification":
        right = correct(A, Y, net)
        return {
            "correct": jnp.sum(weigh(right)),
            "count": jnp.asarray(m * right.shape[0], A.dtype),
        }
    sum_y = jnp.sum(weigh(Y), axis=1)
    mean = sum_y[:, None] / m
    return {
        "count": jnp.asarray(m, A.dtype),
        "sum_y": sum_y,
        "ss_dev": jnp.sum(weigh((Y - mean) ** 2), axis=1),
        "ss_res": jnp.sum(weigh((Y - A) ** 2), axis=1),
    }


def combine_sums(stacked: dict) -> dict:
    """One set of ``task_sums`` from several, stacked along a leading axis (an epoch's
    batches): each sum added up, and the squares about the mean re-centred on the
    mean of all, SS_tot = sum_k SS_k + sum_k m_k (mean_k - mean)^2 (within the parts
    plus between them; no difference of large sums)."""
    out = {name: jnp.sum(value, axis=0) for name, value in stacked.items()}
    if "ss_dev" in stacked:
        counts = stacked["count"][:, None]
        mean = (out["sum_y"] / out["count"])[None, :]
        between = counts * (stacked["sum_y"] / counts - mean) ** 2
        out["ss_dev"] = out["ss_dev"] + jnp.sum(between, axis=0)
    return out


def task_metrics(sums: dict, net: Network) -> dict:
    """The task's metrics from its ``task_sums``: classification, ``"accuracy"``, the
    fraction of predictions right; regression, ``"r2"`` (``r2_score``) and ``"mse"``,
    the mean of (a - y)^2 over all entries (no 1/2)."""
    if task_of(net) == "classification":
        return {"accuracy": sums["correct"] / sums["count"]}
    residual = sums["ss_res"]
    return {
        "r2": r2_score(residual, sums["ss_dev"]),
        "mse": jnp.sum(residual) / (sums["count"] * residual.shape[0]),
    }


def running_metrics(stacked: dict, net: Network) -> dict:
    """The task's metrics over an epoch's batches from their ``task_sums`` (stacked,
    one row per batch, each from the batch's forward pass before its update):
    ``fit``'s ``train_accuracy``, or ``train_r2`` and ``train_mse``, the running
    metrics of the examples the epoch trained on (the Keras convention)."""
    return task_metrics(combine_sums(stacked), net)


def metrics(
    params: Params, X: jax.Array, Y: jax.Array, weights: jax.Array, net: Network, m: int
) -> dict:
    """The cost and the task's metrics over the columns of weight 1, as sums over m.

    ``X`` ``(n_x, m_pad)`` and ``Y`` ``(n_L, m_pad)``; ``weights`` ``(1, m_pad)``: 1
    for the m real examples, 0 for padding. Every metric is a sum over examples
    divided by m:

    * every task: ``"cost"``, the network's cost (C-M);
    * classification: ``"accuracy"``, the fraction of examples whose class is
      right (``correct``): argmax over the outputs for softmax; for sigmoid outputs,
      ``a > 0.5`` against ``y > 0.5`` per output unit (with one unit, per example);
    * regression: ``"r2"``, 1 - SS_res / SS_tot per output row, averaged over the
      rows (``r2_score``: scikit-learn's; a constant row scores 1 if fitted exactly,
      else 0), and ``"mse"``, the mean of (a - y)^2 over all entries (no 1/2).
    """
    cache = forward_unchecked(params, X, net)
    Z, A = cache.Z[-1], cache.A[-1]
    out = {"cost": jnp.sum(weights[0] * losses.get(net.loss).stable_value(Z, A, Y)) / m}  # (C-M)
    return out | task_metrics(task_sums(A, Y, net, weights, m), net)


# What the compiled epoch reports, in this order, in one vector (one transfer):
# the mean batch cost, the first non-finite batch (from 0; -1 if none) and its cost,
# whether every parameter is finite (1 or 0), then ``report_names(net, sections)``.
REPORT_HEAD = ("train_cost", "first_bad_step", "first_bad_cost", "params_finite")

# The sets an epoch may report on: the test set always (``metrics`` after the epoch's
# steps), the training set when asked (its task metrics only, running over the epoch's
# batches, each taken before its update, ``running_metrics``; its cost is the mean of
# the batch costs, ``train_cost``, taken the same way) and a validation set when given
# (``metrics`` after the steps).
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

    ``costs``: the epoch's batch costs; ``evaluated``: ``{section: metrics}`` for
    the sections reported, in ``SECTIONS``' order (``metrics(...)``, or for
    ``"train"`` the ``running_metrics``).
    """
    bad = ~jnp.isfinite(costs)
    first = jnp.argmax(bad)  # the first True; 0 if none
    finite = jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(params)]))
    values = [jnp.mean(costs), jnp.where(bad[first], first, -1), costs[first], finite]
    for section, metrics_ in evaluated.items():
        kept = metric_names(net)[1:] if section == "train" else metric_names(net)
        values += [metrics_[name] for name in kept]
    return jnp.stack([jnp.asarray(v, costs.dtype) for v in values])
