"""The weighted mean cost (C-W) and its hand gradient (BP1-W), with weight decay (C-L2).

References: ``jax.grad`` of ``weighted_cost`` (float64: 1e-12; float32: 1e-5 relative to
the largest entry, the rounding of float32 sums over the examples), the unweighted
``value_and_backprop`` (all weights 1), the set with a column removed (weight 0) and the
set with a column repeated (weight 2).

Every head's values come from one jitted program (``results``), shared by the tests:
compiling is most of their time, and one program compiles faster than its eager
primitives one by one.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxnn import regularization, value_and_backprop
from jaxnn.weighted import check_weights, value_and_backprop_weighted, weighted_cost
from tests.helpers import fast_jit
from tests.test_train import HEADS, toy

LAMBDA = 0.3
DECAYS = (0.0, LAMBDA)


def rel_err(a, b) -> float:
    """max over leaves of max |a - b| / max |b|, in NumPy (eager jnp would compile)."""
    return max(
        float(np.max(np.abs(x - y)) / max(float(np.max(np.abs(y))), 1e-300))
        for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
    )


def weights(m: int) -> np.ndarray:
    w = np.random.default_rng(5).uniform(0.2, 3.0, m)
    w[[1, 4]] = 0.0  # two columns out, as padding and a partial batch are
    return w


def repeat_weights(m: int) -> tuple[np.ndarray, list[int]]:
    """Weight 0 on column 3 and 2 on column 7; and the columns that set stands for."""
    w = np.ones(m)
    w[3], w[7] = 0.0, 2.0
    return w, [i for i in range(m) if i != 3] + [7]  # column 3 out, column 7 twice


def _head_values(params, X, Y, net):
    """Every value the tests compare, for one head (traced inside ``results``' program)."""
    m = X.shape[1]
    w = jnp.asarray(weights(m))
    p32 = jax.tree.map(lambda x: x.astype(jnp.float32), params)
    X32, Y32, w32 = X.astype(jnp.float32), Y.astype(jnp.float32), w.astype(jnp.float32)
    out = {}
    for decay in DECAYS:
        out[f"hand_{decay}"] = value_and_backprop_weighted(params, X, Y, w, net, decay)
        out[f"jax_grad_{decay}"] = jax.value_and_grad(weighted_cost)(params, X, Y, w, net, decay)
        out[f"float32_{decay}"] = value_and_backprop_weighted(p32, X32, Y32, w32, net, decay)
    ones = jnp.ones(m)
    out["ones"] = value_and_backprop_weighted(params, X, Y, ones, net)
    out["mean"] = value_and_backprop(params, X, Y, net)
    out["ones_decay"] = value_and_backprop_weighted(params, X, Y, ones, net, LAMBDA)
    out["mean_decay"] = regularization.value_and_backprop_l2(params, X, Y, net, LAMBDA)
    w_repeat, keep = repeat_weights(m)
    out["repeat"] = value_and_backprop_weighted(params, X, Y, w_repeat, net, LAMBDA)
    out["columns"] = regularization.value_and_backprop_l2(
        params, X[:, keep], Y[:, keep], net, LAMBDA
    )
    return out


def _values(problems, nets):
    return [_head_values(*problem, net) for problem, net in zip(problems, nets, strict=True)]


_program = fast_jit(_values, static_argnums=1)


@functools.cache
def results() -> dict:
    """head -> {name: (cost, grads)}, NumPy, from one compiled program for every head."""
    toys = [toy(head) for head in sorted(HEADS)]
    problems = [(params, X, Y) for _, X, Y, params in toys]
    nets = tuple(net for net, *_ in toys)
    return dict(zip(sorted(HEADS), jax.device_get(_program(problems, nets)), strict=True))


@pytest.mark.slow
@pytest.mark.parametrize("decay", DECAYS)
@pytest.mark.parametrize("head", sorted(HEADS))
def test_hand_weighted_gradient_equals_jax_grad(head, decay):
    r = results()[head]
    c, grads = r[f"hand_{decay}"]
    c_ref, ref = r[f"jax_grad_{decay}"]
    assert abs(float(c) - float(c_ref)) <= 1e-12 * abs(float(c_ref))
    assert rel_err(grads, ref) < 1e-12
    _, g32 = r[f"float32_{decay}"]
    assert all(g.dtype == np.float32 for g in jax.tree.leaves(g32))
    assert rel_err(g32, ref) < 1e-5


@pytest.mark.slow
@pytest.mark.parametrize("head", sorted(HEADS))
def test_unit_weights_are_the_mean_cost_and_its_decay(head):
    """w = 1: (C-W) is (C-M) and (BP1-W) is (BP1); with lambda, (C-L2) and (BP4-L2)."""
    r = results()[head]
    for ours, theirs in (("ones", "mean"), ("ones_decay", "mean_decay")):
        (c, grads), (c_ref, ref) = r[ours], r[theirs]
        assert abs(float(c - c_ref)) < 1e-14 and rel_err(grads, ref) < 1e-13, ours


@pytest.mark.slow
@pytest.mark.parametrize("head", sorted(HEADS))
def test_weight_0_removes_a_column_and_weight_2_repeats_it(head):
    r = results()[head]
    (c, grads), (c_ref, ref) = r["repeat"], r["columns"]
    assert abs(float(c - c_ref)) < 1e-13 and rel_err(grads, ref) < 1e-12


def test_weights_of_the_wrong_shape_are_named():
    net, X, Y, params = toy("softmax")
    with pytest.raises(ValueError, match=r"weights has shape \(3,\); expected \(24,\)"):
        value_and_backprop_weighted(params, X, Y, np.ones(3), net)
    with pytest.raises(ValueError, match="weights has shape"):
        check_weights(np.ones((24, 1)), 24)
