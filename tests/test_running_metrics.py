"""fit's training metrics are running ones: ``train_accuracy``, ``train_r2`` and
``train_mse`` over the examples of the epoch's batches, each batch with the params
before its update (as ``train_cost``), from the steps' own forward passes."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.metrics import mean_squared_error, r2_score

from jaxnn import metrics, optim, steps, train
from jaxnn.network import forward
from tests.test_train import HEADS, counting, numpy_output, toy, toy_data

EPOCHS, BATCH = 3, 8


def replayed(net, ds, params, optimizer, key):
    """Per epoch, the outputs A^[L] and targets of every batch ``fit`` runs, side by
    side as columns: the batches of ``epoch_batches(epoch_key(key, e), m, B)``, each
    output by a NumPy transcription of the forward pass with the params before that
    batch's update (the updates by ``make_step``), float64."""
    step, state = steps.make_step(net, optimizer), optimizer.init(params)
    X, Y = jnp.asarray(ds.X_train), jnp.asarray(ds.Y_train)
    epochs = []
    for e in range(EPOCHS):
        outputs, targets = [], []
        for idx in np.asarray(steps.epoch_batches(steps.epoch_key(key, e), X.shape[1], BATCH)):
            outputs.append(numpy_output(params, X[:, idx], net))
            targets.append(np.asarray(Y[:, idx]))
            params, state, _ = step(params, state, X[:, idx], Y[:, idx])
        epochs.append((np.concatenate(outputs, axis=1), np.concatenate(targets, axis=1)))
    return epochs


def expected_metrics(head, A, Y):
    """The task's metrics of outputs A against targets Y, by NumPy and scikit-learn."""
    if head == "softmax":
        return {"train_accuracy": np.mean(A.argmax(axis=0) == Y.argmax(axis=0))}
    if head == "sigmoid":
        return {"train_accuracy": np.mean((A > 0.5) == (Y == 1))}
    return {"train_r2": r2_score(Y.T, A.T), "train_mse": mean_squared_error(Y.T, A.T)}


@pytest.mark.slow
@pytest.mark.parametrize("head", sorted(HEADS))
def test_train_metrics_run_over_the_epochs_batches_before_each_update(head):
    """43 examples in batches of 8: 5 batches, 40 examples seen, 3 left out each epoch."""
    net, ds, params = toy_data(head, m=43)
    optimizer, key = optim.adam(0.05), jax.random.key(4)
    got = train.fit(net, optimizer, ds, EPOCHS, BATCH, key, params=params, train_metrics=True)
    for record, (A, Y) in zip(got.history, replayed(net, ds, params, optimizer, key), strict=True):
        assert A.shape[1] == 40
        want = expected_metrics(head, A, Y)
        assert set(want) == {k for k in record if k.startswith("train_") and k != "train_cost"}
        for name, value in want.items():
            assert record[name] == pytest.approx(value, rel=1e-10, abs=1e-14), (name, record)
    # Not the params' metrics after the epoch: those are evaluate's (the model moved).
    after = train.evaluate(got.params, ds.X_train, ds.Y_train, net)
    name = "r2" if head == "linear" else "accuracy"
    assert got.history[-1][f"train_{name}"] != after[name]


@pytest.mark.slow
@pytest.mark.parametrize("head", sorted(HEADS))
def test_hand_and_autodiff_report_the_same_train_metrics(head):
    net, ds, params = toy_data(head, m=43)
    fit = lambda gradients: train.fit(net, optim.adam(0.05), ds, EPOCHS, BATCH,
                                      jax.random.key(4), params=params, gradients=gradients,
                                      train_metrics=True).history  # fmt: skip
    hand, autodiff = fit("hand"), fit("autodiff")
    for a, b in zip(hand, autodiff, strict=True):
        assert a.keys() == b.keys()
        for name in a:
            assert a[name] == pytest.approx(b[name], rel=1e-10, abs=1e-14), (name, a, b)
        if head != "linear":
            assert a["train_accuracy"] == b["train_accuracy"]  # counts, not roundings


@functools.cache
def partition_metrics():
    """Per head: the running metrics of five parts of 6 examples, combined, and the metrics
    of the whole 30 (targets moved by 1e4 for the linear head); one compiled program."""
    problems = {head: toy(head, m=30) for head in HEADS}

    @jax.jit
    def run(data):
        out = {}
        for head, (X, Y, params) in data.items():
            net = problems[head][0]
            A = forward(params, X, net).A[-1]
            parts = [
                metrics.task_sums(A[:, k : k + 6], Y[:, k : k + 6], net) for k in range(0, 30, 6)
            ]
            stacked = jax.tree.map(lambda *x: jnp.stack(x), *parts)
            whole = metrics.metrics(params, X, Y, jnp.ones((1, 30)), net, 30)
            out[head] = (metrics.running_metrics(stacked, net), whole)
        return out

    data = {
        head: (X, np.asarray(Y) + (1e4 if head == "linear" else 0.0), params)
        for head, (_, X, Y, params) in problems.items()
    }
    return {head: p[0] for head, p in problems.items()}, jax.device_get(run(data))


@pytest.mark.parametrize("head", sorted(HEADS))
def test_running_metrics_of_a_partition_are_the_metrics_of_the_whole(head):
    """Sums over parts, added up (``combine_sums``: SS_tot re-centred, within plus
    between), give the metrics of the whole set; the targets are moved far from 0 for
    the linear head, where a difference of large sums would lose digits."""
    nets, out = partition_metrics()
    running, whole = out[head]
    assert set(running) == set(metrics.metric_names(nets[head])[1:])
    for name, value in running.items():
        assert float(value) == pytest.approx(float(whole[name]), rel=1e-12), name


def refuse(*args, **kwargs):
    raise AssertionError("the hand step called JAX's autodiff")


@pytest.mark.slow
@pytest.mark.parametrize("gradients", steps.GRADIENTS)
def test_a_step_with_its_metric_sums_runs_one_forward_pass(monkeypatch, gradients):
    """The metric sums come from the forward pass of the cost and gradients, not a
    second one; the hand step calls no jax.grad, jax.value_and_grad or jax.vjp."""
    net, X, Y, params = toy("softmax")
    spy = counting(steps.forward_unchecked)
    monkeypatch.setattr(steps, "forward_unchecked", spy)
    if gradients == "hand":
        for name in ("grad", "value_and_grad", "vjp"):
            monkeypatch.setattr(jax, name, refuse)
    optimizer = optim.adam(0.01)
    sums = lambda A, Y: metrics.task_sums(A, Y, net)
    step = steps.step_fn(net, optimizer, gradients, output=sums)
    params_, _, c, got = jax.jit(step)(params, optimizer.init(params), X, Y)
    assert spy.calls == 1
    A = numpy_output(params, X, net)
    right = np.sum(A.argmax(axis=0) == np.asarray(Y).argmax(axis=0))
    assert float(got["correct"]) == right and float(got["count"]) == X.shape[1]
    plain = steps.make_step(net, optimizer, gradients)(params, optimizer.init(params), X, Y)
    assert float(c) == float(plain[2])
    for a, b in zip(jax.tree.leaves(params_), jax.tree.leaves(plain[0]), strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.slow
def test_the_epoch_program_has_no_forward_pass_for_the_training_set(monkeypatch):
    """One forward pass per step and one per evaluated set after the steps (the test
    set): asking for the training set's metrics adds none."""
    net, ds, params = toy_data("softmax")
    calls = {}
    for module in (steps, metrics):
        spy = counting(module.forward_unchecked)
        monkeypatch.setattr(module, "forward_unchecked", spy)
        calls[module.__name__] = spy
    for train_metrics in (False, True):
        for spy in calls.values():
            spy.calls = 0
        train.fit(net, optim.adam(0.01), ds, 1, BATCH, jax.random.key(0), params=params,
                  train_metrics=train_metrics)  # fmt: skip
        assert calls["jaxnn.steps"].calls == 1  # the scan traces its step once
        assert calls["jaxnn.metrics"].calls == 1  # the test set's metrics
