"""Training: hand vs autodiff steps, the epoch scan, no recompilation, evaluate, fit."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.metrics import mean_squared_error, r2_score

import jaxnn
from jaxnn import data, metrics, optim, steps, train
from tests.helpers import assert_trees_close

HEADS = {
    # name: (output activation, loss, n_y)
    "softmax": ("softmax", "cross_entropy", 3),
    "sigmoid": ("sigmoid", "binary_cross_entropy", 1),
    "linear": ("linear", "mse", 2),
}


def toy(head, m=24, n_x=5, hidden=(6, 4), seed=0):
    """A small network of this head, params and matching data, float64 (x64 is on).

    Drawn with NumPy: eager jax.random ops would each compile, and dominate the
    run time of these tests.
    """
    act, loss, n_y = HEADS[head]
    net = jaxnn.Network((n_x, *hidden, n_y), ("tanh",) * len(hidden) + (act,), loss)
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n_x, m))
    if head == "softmax":
        Y = np.eye(n_y)[:, rng.integers(0, n_y, m)]
    elif head == "sigmoid":
        Y = (rng.uniform(size=(n_y, m)) > 0.5).astype(np.float64)
    else:
        Y = rng.normal(size=(n_y, m))
    params = [
        {"W": rng.normal(size=(n_out, n_in)) / np.sqrt(n_in), "b": rng.normal(size=(n_out, 1))}
        for n_in, n_out in zip(net.sizes[:-1], net.sizes[1:], strict=True)
    ]
    return net, jnp.asarray(X), jnp.asarray(Y), jax.tree.map(jnp.asarray, params)


def numpy_output(params, X, net):
    """A^[L] by a NumPy transcription of (F-Z), (F-A) for tanh hidden layers."""
    A = np.asarray(X)
    for layer, act in zip(params, net.activations, strict=True):
        Z = np.asarray(layer["W"]) @ A + np.asarray(layer["b"])
        if act == "tanh":
            A = np.tanh(Z)
        elif act == "softmax":
            E = np.exp(Z - Z.max(axis=0))
            A = E / E.sum(axis=0)
        elif act == "sigmoid":
            A = 1 / (1 + np.exp(-Z))
        else:
            A = Z
    return A


def toy_data(head, m=40, seed=0):
    net, X, Y, params = toy(head, m=m + 10, seed=seed)
    ds = data.Dataset(X[:, :m], Y[:, :m], X[:, m:], Y[:, m:], "", *HEADS[head][:2])
    return net, ds, params


@functools.cache
def steps_of_every_head():
    """Per head: one adam step by hand and by autodiff from the same state, the cost,
    and the toy params; for softmax also an sgd step and the reference
    params - 0.1 jax.grad C. All heads in one compiled program (cached)."""
    adam, sgd = optim.adam(0.01), optim.sgd(0.1)
    problems = {head: toy(head) for head in sorted(HEADS)}

    @jax.jit
    def run(data):
        out = {}
        for head, (X, Y, params) in data.items():
            net = problems[head][0]
            state = adam.init(params)
            out[head] = {
                "hand": steps.make_step(net, adam, "hand")(params, state, X, Y),
                "auto": steps.make_step(net, adam, "autodiff")(params, state, X, Y),
                "cost": jaxnn.cost(params, X, Y, net),
            }
        X, Y, params = data["softmax"]
        net = problems["softmax"][0]
        grads = jax.grad(jaxnn.cost)(params, X, Y, net)
        out["sgd"] = {
            "got": steps.make_step(net, sgd)(params, sgd.init(params), X, Y)[0],
            "expected": jax.tree.map(lambda p, g: p - 0.1 * g, params, grads),
        }
        return out

    data = {head: (X, Y, params) for head, (_, X, Y, params) in problems.items()}
    return jax.device_get(run(data)), {head: p[3] for head, p in problems.items()}


@pytest.mark.slow
@pytest.mark.parametrize("head", sorted(HEADS))
def test_step_hand_matches_autodiff(head):
    """One adam step in float64: same cost, and params within rounding of each other."""
    out, initial = steps_of_every_head()
    (p_hand, s_hand, c_hand), (p_auto, s_auto, c_auto) = out[head]["hand"], out[head]["auto"]
    params = jax.device_get(initial[head])
    assert c_hand.dtype == jnp.float64
    np.testing.assert_allclose(c_hand, c_auto, rtol=1e-13)
    np.testing.assert_allclose(c_hand, out[head]["cost"], rtol=1e-13)
    # Updates are steps of size ~a; compare the change of each leaf, not the leaf.
    delta = lambda p: jax.tree.map(np.subtract, p, params)
    assert_trees_close(delta(p_hand), delta(p_auto), rtol=1e-9, what="update")
    assert_trees_close(s_hand, s_auto, rtol=1e-9, what="opt_state")


def test_step_matches_reference():
    """An sgd step is params - a grad C, with the gradient from jax.grad."""
    sgd = steps_of_every_head()[0]["sgd"]
    assert_trees_close(sgd["got"], sgd["expected"], rtol=1e-12, what="params")


def test_unknown_gradients():
    net, *_ = toy("linear")
    with pytest.raises(ValueError, match="unknown gradients 'numeric'; valid: hand, autodiff"):
        steps.make_step(net, optim.sgd(0.1), "numeric")


def test_epoch_batches():
    key = jax.random.key(3)
    batches = np.asarray(steps.epoch_batches(key, 23, 5))
    assert batches.shape == (4, 5)  # floor(23 / 5) full batches; 3 examples left out
    assert len(np.unique(batches)) == 20 and batches.min() >= 0 and batches.max() < 23
    np.testing.assert_array_equal(batches, steps.epoch_batches(key, 23, 5))
    other = np.asarray(steps.epoch_batches(jax.random.fold_in(key, 1), 23, 5))
    assert not np.array_equal(batches, other)
    assert steps.epoch_batches(key, 23, 23).shape == (1, 23)


@pytest.mark.parametrize(
    ("batch_size", "message"),
    [
        (0, "batch size must be an integer >= 1, got 0"),
        (41, r"batch size 41 is larger than the training set \(40 examples\); use at most 40"),
        (2.0, "batch size must be an integer"),
    ],
)
def test_bad_batch_size(batch_size, message):
    net, ds, _ = toy_data("softmax")
    with pytest.raises(ValueError, match=message):
        train.fit(net, optim.sgd(0.1), ds, 1, batch_size, jax.random.key(0))


@pytest.mark.slow
def test_epoch_scan_equals_python_loop(gradients="hand"):
    net, X, Y, params = toy("softmax", m=23)
    opt = optim.adam(0.01)
    key = jax.random.key(7)
    p_scan, s_scan, costs = steps.make_epoch(net, opt, 5, gradients)(
        params, opt.init(params), X, Y, key
    )
    step = steps.make_step(net, opt, gradients)
    p, s, loop_costs = params, opt.init(params), []
    for idx in np.asarray(steps.epoch_batches(key, 23, 5)):
        p, s, c = step(p, s, X[:, idx], Y[:, idx])
        loop_costs.append(c)
    assert costs.shape == (4,)
    np.testing.assert_allclose(costs, loop_costs, rtol=1e-12)
    assert_trees_close(p_scan, p, rtol=1e-12, what="params")
    assert_trees_close(s_scan, s, rtol=1e-12, what="opt_state")


def counting(fn):
    """fn, counting its calls: under jit, a call happens only while tracing."""

    def wrapper(*args, **kwargs):
        wrapper.calls += 1
        return fn(*args, **kwargs)

    wrapper.calls = 0
    return wrapper


@pytest.mark.slow
def test_no_recompilation_across_epochs(monkeypatch):
    spy = counting(steps.backward)
    monkeypatch.setattr(steps, "backward", spy)
    net, ds, _ = toy_data("softmax")
    seen = []
    train.fit(
        net, optim.adam(0.01), ds, 4, 8, jax.random.key(0), callback=lambda e, *_: seen.append(e)
    )
    assert seen == [1, 2, 3, 4]
    assert spy.calls == 1  # traced for the first epoch only

    step = steps.make_step(net, optim.sgd(0.1))
    params = jaxnn.init_params(jax.random.key(1), net)
    state = optim.sgd(0.1).init(params)
    for _ in range(3):
        params, state, _ = step(params, state, ds.X_train, ds.Y_train)
    assert spy.calls == 2  # one more trace, for the step


def test_evaluate_classification():
    for head in ("softmax", "sigmoid"):
        net, X, Y, params = toy(head, m=50)
        metrics = train.evaluate(params, X, Y, net)
        A = numpy_output(params, X, net)
        if head == "softmax":
            accuracy = np.mean(A.argmax(axis=0) == np.asarray(Y).argmax(axis=0))
        else:
            accuracy = np.mean((A > 0.5) == (np.asarray(Y) == 1))
        assert set(metrics) == {"cost", "accuracy"}
        assert metrics["accuracy"] == pytest.approx(accuracy, abs=1e-15)
        y = np.asarray(Y)
        if head == "softmax":
            cost = -np.mean(np.sum(y * np.log(A), axis=0))
        else:
            cost = -np.mean(y * np.log(A) + (1 - y) * np.log(1 - A))
        assert metrics["cost"] == pytest.approx(cost, rel=1e-12)


def test_evaluate_regression():
    net, X, Y, params = toy("linear", m=50)
    metrics = train.evaluate(params, X, Y, net)
    A = numpy_output(params, X, net)
    assert set(metrics) == {"cost", "r2", "mse"}
    assert metrics["r2"] == pytest.approx(r2_score(np.asarray(Y).T, A.T), rel=1e-12)
    assert metrics["mse"] == pytest.approx(mean_squared_error(np.asarray(Y).T, A.T), rel=1e-12)
    perfect = train.evaluate(params, X, jnp.asarray(A), net)
    assert perfect["r2"] == pytest.approx(1.0) and perfect["mse"] == pytest.approx(0.0, abs=1e-20)
    # A constant target: scikit-learn's convention, R^2 = 0 for an imperfect fit.
    constant = np.ones_like(A)
    metrics = train.evaluate(params, X, jnp.asarray(constant), net)
    assert metrics["r2"] == r2_score(constant.T, A.T) == 0.0


@pytest.mark.slow
def test_fit_history_and_resume_bitwise():
    net, ds, _ = toy_data("sigmoid")
    opt = optim.momentum(0.1)
    key = jax.random.key(5)
    full = train.fit(net, opt, ds, 4, 8, key)
    assert [r["epoch"] for r in full.history] == [1, 2, 3, 4]
    assert set(full.history[0]) == {"epoch", "train_cost", "test_cost", "test_accuracy"}
    half = train.fit(net, opt, ds, 2, 8, key)
    resumed = train.fit(
        net,
        opt,
        ds,
        4,
        8,
        key,
        params=half.params,
        opt_state=half.opt_state,
        start_epoch=2,
        history=half.history,
    )
    for a, b in zip(jax.tree.leaves(full[:2]), jax.tree.leaves(resumed[:2]), strict=True):
        np.testing.assert_array_equal(a, b)
    assert resumed.history == full.history


# fit casting data to the params' dtype, with x64 on and off, values included:
# tests/test_float32.py.


def test_fit_rejects_mismatched_data():
    net, ds, _ = toy_data("softmax")
    with pytest.raises(ValueError, match=r"X has shape \(4, 40\), the network expects \(5, m\)"):
        train.fit(net, optim.sgd(0.1), ds._replace(X_train=ds.X_train[:4]), 1, 8, jax.random.key(0))


# Each bundled dataset, trained briefly (seed 0), clears a floor set below the
# worst of 8 seeds (digits 0.94, breast_cancer 0.947, diabetes R^2 0.43).
FLOORS = {
    # name: (hidden, learning rate, batch size, epochs, metric, floor)
    "digits": ((32,), 3e-3, 32, 6, "test_accuracy", 0.9),
    "breast_cancer": ((16,), 3e-3, 32, 5, "test_accuracy", 0.9),
    "diabetes": ((16,), 3e-3, 32, 30, "test_r2", 0.3),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(FLOORS))
def test_bundled_dataset_trains(name):
    hidden, learning_rate, batch_size, epochs, metric, floor = FLOORS[name]
    ds = data.load(name)
    net = ds.network(hidden, "relu")
    result = train.fit(net, optim.adam(learning_rate), ds, epochs, batch_size, jax.random.key(0))
    assert result.history[-1][metric] >= floor
    assert metrics.task_of(net) == ds.task


# --- bad data and divergence ---------------------------------------------------------------


def poisoned(ds, name, *cells, value=np.nan):
    array = np.array(getattr(ds, name))
    for cell in cells:
        array[cell] = value
    return ds._replace(**{name: array})


BAD_DATA = {
    # name: (change to the toy softmax data, message)
    "nan-x": (
        lambda ds: poisoned(ds, "X_train", (3, 17), (1, 20), (0, 30)),
        r"X_train has 3 non-finite values \(NaN or Inf\), first at feature 3, example 17",
    ),
    "inf-y-test": (
        lambda ds: poisoned(ds, "Y_test", (2, 4), value=-np.inf),
        r"Y_test has 1 non-finite values \(NaN or Inf\), first at output 2, example 4",
    ),
    "lengths": (
        lambda ds: ds._replace(Y_train=ds.Y_train[:, :39]),
        r"X_train has 40 examples \(columns\) but Y_train has 39",
    ),
    "empty-train": (
        lambda ds: ds._replace(X_train=ds.X_train[:, :0], Y_train=ds.Y_train[:, :0]),
        r"the train set is empty: X_train has shape \(5, 0\)",
    ),
    "empty-test": (
        lambda ds: ds._replace(X_test=ds.X_test[:, :0], Y_test=ds.Y_test[:, :0]),
        r"the test set is empty",
    ),
    "labels-not-one-hot": (
        lambda ds: ds._replace(Y_train=np.zeros(40)),
        r"Y_train has shape \(40,\); expected 2-D .*jaxnn\.data\.one_hot",
    ),
    "strings": (
        lambda ds: ds._replace(X_test=np.full((5, 10), "a")),
        r"X_test has dtype <U1; expected real numbers",
    ),
    "missing": (lambda ds: ds[:3], "data lacks X_train, Y_train, X_test, Y_test"),
}


@pytest.mark.parametrize("case", sorted(BAD_DATA))
def test_fit_rejects_bad_data(case):
    change, message = BAD_DATA[case]
    net, ds, _ = toy_data("softmax")
    calls = []
    with pytest.raises(ValueError, match=message):
        train.fit(net, optim.sgd(0.1), change(ds), 1, 8, jax.random.key(0), callback=calls.append)
    assert calls == []


def test_fit_rejects_values_too_large_for_float32():
    net, ds, params = toy_data("linear")
    params32 = jax.tree.map(lambda x: x.astype(jnp.float32), params)
    big = poisoned(ds, "X_train", (1, 6), value=1e300)  # finite in float64
    with pytest.raises(ValueError, match="after conversion to float32, first at feature 1, ex"):
        train.fit(net, optim.sgd(0.1), big, 1, 8, jax.random.key(0), params=params32)


def first_nonfinite_step(net, optimizer, ds, batch_size, key):
    """(epoch, step) of the first non-finite batch cost, by a Python loop of single steps."""
    return first_nonfinite_cost(net, optimizer, ds, batch_size, key)[:2]


def first_nonfinite_cost(net, optimizer, ds, batch_size, key):
    """(epoch, step, cost) of the first non-finite batch cost, as ``fit`` would meet it."""
    step = steps.make_step(net, optimizer)
    _, shuffle_key = jax.random.split(key)
    params = train.fit(net, optimizer, ds, 0, batch_size, key).params  # the initial params
    state = optimizer.init(params)
    X, Y = jnp.asarray(ds.X_train), jnp.asarray(ds.Y_train)
    for e in range(100):
        batches = steps.epoch_batches(jax.random.fold_in(shuffle_key, e), X.shape[1], batch_size)
        for k, idx in enumerate(np.asarray(batches)):
            params, state, c = step(params, state, X[:, idx], Y[:, idx])
            if not np.isfinite(c):
                return e + 1, k + 1, float(c)
    raise AssertionError("no divergence")


@pytest.mark.slow
def test_divergence_names_epoch_and_step():
    """sgd at a = 100 on a linear head overflows; fit stops at the first bad batch, before
    the callback sees that epoch."""
    net, ds, _ = toy_data("linear")
    opt, key = optim.sgd(100.0), jax.random.key(0)
    seen = []
    with pytest.raises(train.NonFiniteCostError) as e:
        train.fit(net, opt, ds, 50, 8, key, callback=lambda epoch, *_: seen.append(epoch))
    epoch, step = first_nonfinite_step(net, opt, ds, 8, key)
    assert (e.value.epoch, e.value.step, e.value.steps) == (epoch, step, 5)
    assert epoch > 2 and seen == list(range(1, epoch))  # the bad epoch is never reported
    assert str(e.value).startswith(f"the cost became inf at step {step} of 5 in epoch {epoch}")
    assert isinstance(e.value, ValueError)


@pytest.mark.slow
def test_poisoned_params_stop_at_the_first_step():
    net, ds, params = toy_data("softmax")
    params[1]["W"] = params[1]["W"].at[0, 0].set(jnp.nan)
    with pytest.raises(train.NonFiniteCostError, match="the cost became nan at step 1 of 5 in"):
        train.fit(net, optim.sgd(0.1), ds, 2, 8, jax.random.key(0), params=params)


@pytest.mark.slow
def test_callback_can_stop_training():
    net, ds, _ = toy_data("sigmoid")
    result = train.fit(
        net, optim.sgd(0.1), ds, 10, 8, jax.random.key(0), callback=lambda epoch, *_: epoch == 3
    )
    assert [r["epoch"] for r in result.history] == [1, 2, 3]


@pytest.mark.slow
def test_fit_takes_integer_class_labels_as_one_hot():
    """Integer labels of shape (m,) train exactly as their one-hot columns do; a label
    out of range, or labels for a head other than softmax + cross-entropy, is refused."""
    net, ds, _ = toy_data("softmax")
    labels = lambda Y: np.argmax(Y, axis=0).astype(np.int32)
    with_labels = ds._replace(Y_train=labels(ds.Y_train), Y_test=labels(ds.Y_test))
    one = train.fit(net, optim.adam(0.01), ds, 2, 8, jax.random.key(0)).history
    two = train.fit(net, optim.adam(0.01), with_labels, 2, 8, jax.random.key(0)).history
    assert one == two
    bad = with_labels._replace(Y_test=np.full(ds.Y_test.shape[1], net.sizes[-1], np.int32))
    with pytest.raises(ValueError, match=r"Y_test: labels must be from 0 to"):
        train.fit(net, optim.adam(0.01), bad, 1, 8, jax.random.key(0))
    net_bce, ds_bce, _ = toy_data("sigmoid")
    bce = ds_bce._replace(Y_train=np.zeros(ds_bce.Y_train.shape[1], np.int32))
    with pytest.raises(ValueError, match="Y_train holds integer class labels, which need"):
        train.fit(net_bce, optim.adam(0.01), bce, 1, 8, jax.random.key(0))
