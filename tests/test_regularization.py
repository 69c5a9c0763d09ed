"""Weight decay (C-L2), (BP4-L2) and early stopping on a validation set."""

import functools
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxnn import optim, regularization, steps, train, value_and_backprop
from tests.helpers import fast_jit
from tests.test_train import HEADS, toy

LAMBDA = 0.7


def rel_err(a, b) -> float:
    """In NumPy: eager jnp operations would each compile."""
    leaves = zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
    return max(
        float(np.max(np.abs(np.subtract(x, y))) / max(np.max(np.abs(y)), 1e-300)) for x, y in leaves
    )


@functools.partial(fast_jit, static_argnums=3)
def penalised_gradients(params, X, Y, net):
    """(BP4-L2) by hand, jax.value_and_grad of (C-L2), the hand gradient without decay, and
    the hand gradient in float32: one compiled program per network instead of every op
    dispatched (and compiled) one by one."""
    p32, X32, Y32 = (jax.tree.map(lambda x: x.astype(jnp.float32), t) for t in (params, X, Y))
    return (
        regularization.value_and_backprop_l2(params, X, Y, net, LAMBDA),
        jax.value_and_grad(regularization.penalised_cost)(params, X, Y, net, LAMBDA),
        regularization.value_and_backprop_l2(params, X, Y, net, 0.0)[1],
        regularization.value_and_backprop_l2(p32, X32, Y32, net, LAMBDA)[1],
    )


@pytest.mark.slow
@pytest.mark.parametrize("head", sorted(HEADS))
def test_hand_weight_decay_equals_jax_grad_of_the_penalised_cost(head):
    """(BP4-L2) against jax.grad of (C-L2): 1e-12 in float64, 1e-5 in float32 (the
    float32 rounding of the sums over examples, relative to the largest entry)."""
    net, X, Y, params = toy(head)
    (c, grads), (c_ref, ref), plain, g32 = penalised_gradients(params, X, Y, net)
    assert abs(float(c) - float(c_ref)) < 1e-12 * abs(float(c_ref))
    assert rel_err(grads, ref) < 1e-12
    # the penalty is really there: the weights' gradients moved by lambda W / m, biases not
    m = X.shape[1]
    for g, p, q in zip(grads, plain, params, strict=True):
        np.testing.assert_allclose(g["W"] - p["W"], LAMBDA / m * q["W"], rtol=1e-10, atol=1e-14)
        np.testing.assert_array_equal(g["b"], p["b"])
    assert jax.tree.leaves(g32)[0].dtype == jnp.float32
    assert rel_err(g32, ref) < 1e-5


def assert_same(a, b):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(x, y)


@pytest.mark.slow
def test_zero_weight_decay_is_plain_backprop_bit_for_bit():
    net, X, Y, params = toy("softmax")
    c0, g0 = regularization.value_and_backprop_l2(params, X, Y, net, 0.0)
    c1, g1 = value_and_backprop(params, X, Y, net)
    assert float(c0) == float(c1)
    assert_same(g0, g1)


@functools.cache
def decay_steps():
    """Per head: one adam step from the toy params with weight decay LAMBDA, by hand and
    by autodiff, and one by hand without decay; every head in one compiled program."""
    opt = optim.adam(0.01)
    nets = {head: toy(head)[0] for head in HEADS}

    @jax.jit
    def run(data):
        out = {}
        for head, (X, Y, params) in data.items():
            net, state = nets[head], opt.init(params)
            out[head] = [
                steps.make_step(net, opt, *how)(params, state, X, Y)
                for how in (("hand", LAMBDA), ("autodiff", LAMBDA), ("hand",))
            ]
        return out

    return jax.device_get(run({head: toy(head)[1:] for head in HEADS}))


@pytest.mark.slow
@pytest.mark.parametrize("head", sorted(HEADS))
def test_a_step_with_weight_decay_hand_equals_autodiff(head):
    hand, auto, plain = decay_steps()[head]
    assert abs(float(hand[2]) - float(auto[2])) < 1e-12 * abs(float(auto[2]))
    assert rel_err(hand[0], auto[0]) < 1e-10
    assert rel_err(hand[0], plain[0]) > 1e-6  # the decay changed the step


def val_data(head="softmax", m=60, seed=0):
    net, X, Y, _ = toy(head, m=m + 30, seed=seed)
    parts = {"train": slice(0, m), "test": slice(m, m + 15), "val": slice(m + 15, None)}
    fields = {f"{v}_{k}": a[:, s] for k, s in parts.items() for v, a in (("X", X), ("Y", Y))}
    return net, types.SimpleNamespace(**fields)


@pytest.mark.slow
def test_fit_with_weight_decay_hand_equals_autodiff_and_shrinks_the_weights():
    net, ds = val_data()
    key = jax.random.key(0)
    kw = dict(weight_decay=2.0)
    hand = train.fit(net, optim.adam(1e-2), ds, 5, 10, key, **kw)
    auto = train.fit(net, optim.adam(1e-2), ds, 5, 10, key, gradients="autodiff", **kw)
    assert rel_err(hand.params, auto.params) < 1e-9
    plain = train.fit(net, optim.adam(1e-2), ds, 5, 10, key)
    norm = lambda p: sum(float(jnp.sum(layer["W"] ** 2)) for layer in p)
    assert norm(hand.params) < norm(plain.params)


@pytest.mark.parametrize("bad, words", [
    ({"weight_decay": -1.0}, "weight_decay must be a finite number >= 0, got -1.0"),
    ({"weight_decay": float("nan")}, "weight_decay must be a finite number >= 0"),
    ({"patience": 0}, "patience"),
])  # fmt: skip
def test_bad_hyperparameters_are_named(bad, words):
    net, ds = val_data()
    with pytest.raises(ValueError, match=words):
        train.fit(net, optim.adam(1e-2), ds, 1, 10, jax.random.key(0), **bad)


@pytest.mark.slow
def test_validation_metrics_best_epoch_and_its_params():
    net, ds = val_data()
    key, opt = jax.random.key(1), optim.adam(5e-2)
    result = train.fit(net, opt, ds, 12, 10, key, train_metrics=True)
    costs = [r["val_cost"] for r in result.history]
    assert result.best_epoch == 1 + int(np.argmin(costs)) and not result.stopped_early
    again = train.fit(net, opt, ds, result.best_epoch, 10, key)
    for a, b in zip(
        jax.tree.leaves(result.best_params), jax.tree.leaves(again.params), strict=True
    ):
        np.testing.assert_array_equal(a, b)  # the best epoch's params, bit for bit
    last = result.history[-1]
    on_val = train.evaluate(result.params, ds.X_val, ds.Y_val, net)
    on_train = train.evaluate(result.params, ds.X_train, ds.Y_train, net)
    assert abs(last["val_cost"] - on_val["cost"]) < 1e-12
    # Running, over the epoch's batches before each update: not the params' after the
    # epoch (tests/test_running_metrics.py checks it).
    assert 0 < last["train_accuracy"] <= 1 and last["train_accuracy"] != on_train["accuracy"]
    assert "train_accuracy" not in again.history[-1]  # only when asked


@pytest.mark.slow
def test_patience_stops_early_and_resume_is_bitwise():
    net, ds = val_data(m=40)
    key, opt = jax.random.key(2), optim.adam(0.3)  # fast: overfits soon
    whole = train.fit(net, opt, ds, 60, 10, key, patience=3)
    assert whole.stopped_early
    assert len(whole.history) == whole.best_epoch + 3
    costs = [r["val_cost"] for r in whole.history]
    assert min(costs[whole.best_epoch :]) >= costs[whole.best_epoch - 1]
    # stopped at epoch k, resumed from any earlier epoch: the same history and best params
    saved = {}

    def keep(epoch, params, opt_state, history):
        saved[epoch] = (params, opt_state)

    cut = whole.best_epoch + 1
    first = train.fit(net, opt, ds, cut, 10, key, patience=3, callback=keep)
    best = saved[first.best_epoch][0]
    resumed = train.fit(
        net, opt, ds, 60, 10, key, patience=3, params=first.params, opt_state=first.opt_state,
        start_epoch=cut, history=first.history, best_params=best,
    )  # fmt: skip
    assert resumed.history == whole.history and resumed.best_epoch == whole.best_epoch
    assert_same(resumed.best_params, whole.best_params)


@pytest.mark.slow  # the weight-decay check twice over every head (CI's jaxnn verify runs it too)
def test_verify_checks_weight_decay_for_every_head_and_catches_a_wrong_term(monkeypatch):
    from jaxnn.cli.verify import weight_decay_line
    from jaxnn.verify import check_weight_decay
    from jaxnn.verify.matrix_program import OUTPUT_LOSSES

    rows = check_weight_decay()
    assert len(rows) == 2 * len(OUTPUT_LOSSES) and all(r["ok"] for r in rows)
    assert weight_decay_line(rows).startswith(f"weight decay (C-L2), (BP4-L2) against jax.grad: "
                                              f"{len(rows)}/{len(rows)} ok")  # fmt: skip

    # the seed's slip: lambda / (2 m) in the gradient too, where the 2 cancels
    def half(grads, params, m, lam):
        pairs = zip(grads, params, strict=True)
        return [{"W": g["W"] + lam / (2 * m) * p["W"], "b": g["b"]} for g, p in pairs]

    monkeypatch.setattr(regularization, "l2_grads", half)
    assert not any(r["ok"] for r in check_weight_decay())
