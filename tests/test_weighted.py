"""The weighted mean cost (C-W) and its hand gradient (BP1-W), with weight decay (C-L2).

References: ``jax.grad`` of ``weighted_cost`` (float64: 1e-12; float32: 1e-5 relative to
the largest entry, the rounding of float32 sums over the examples), the unweighted
``value_and_backprop`` (all weights 1), the set with a column removed (weight 0) and the
set with a column repeated (weight 2).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxnn import regularization, value_and_backprop
from jaxnn.weighted import check_weights, value_and_backprop_weighted, weighted_cost
from tests.test_train import HEADS, toy

LAMBDA = 0.3


def rel_err(a, b) -> float:
    return max(
        float(jnp.max(jnp.abs(x - y)) / jnp.maximum(jnp.max(jnp.abs(y)), 1e-300))
        for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
    )


def weights(m: int) -> np.ndarray:
    w = np.random.default_rng(5).uniform(0.2, 3.0, m)
    w[[1, 4]] = 0.0  # two columns out, as padding and a partial batch are
    return w


@pytest.mark.parametrize("decay", [0.0, LAMBDA])
@pytest.mark.parametrize("head", sorted(HEADS))
def test_hand_weighted_gradient_equals_jax_grad(head, decay):
    net, X, Y, params = toy(head)
    w = weights(X.shape[1])
    c, grads = value_and_backprop_weighted(params, X, Y, w, net, decay)
    c_ref, ref = jax.value_and_grad(weighted_cost)(params, X, Y, w, net, decay)
    assert abs(float(c) - float(c_ref)) <= 1e-12 * abs(float(c_ref))
    assert rel_err(grads, ref) < 1e-12
    p32 = jax.tree.map(lambda x: x.astype(jnp.float32), params)
    X32, Y32, w32 = X.astype(np.float32), Y.astype(np.float32), w.astype(np.float32)
    _, g32 = value_and_backprop_weighted(p32, X32, Y32, w32, net, decay)
    assert all(g.dtype == jnp.float32 for g in jax.tree.leaves(g32))
    assert rel_err(g32, ref) < 1e-5


@pytest.mark.parametrize("head", sorted(HEADS))
def test_unit_weights_are_the_mean_cost_and_its_decay(head):
    """w = 1: (C-W) is (C-M) and (BP1-W) is (BP1); with lambda, (C-L2) and (BP4-L2)."""
    net, X, Y, params = toy(head)
    ones = np.ones(X.shape[1])
    c, grads = value_and_backprop_weighted(params, X, Y, ones, net)
    c_ref, ref = value_and_backprop(params, X, Y, net)
    assert abs(float(c - c_ref)) < 1e-14 and rel_err(grads, ref) < 1e-13
    c, grads = value_and_backprop_weighted(params, X, Y, ones, net, LAMBDA)
    c_ref, ref = regularization.value_and_backprop_l2(params, X, Y, net, LAMBDA)
    assert abs(float(c - c_ref)) < 1e-14 and rel_err(grads, ref) < 1e-13


@pytest.mark.parametrize("head", sorted(HEADS))
def test_weight_0_removes_a_column_and_weight_2_repeats_it(head):
    net, X, Y, params = toy(head)
    m = X.shape[1]
    w = np.ones(m)
    w[3], w[7] = 0.0, 2.0
    c, grads = value_and_backprop_weighted(params, X, Y, w, net, LAMBDA)
    keep = [i for i in range(m) if i != 3] + [7]  # column 3 out, column 7 twice
    c_ref, ref = regularization.value_and_backprop_l2(params, X[:, keep], Y[:, keep], net, LAMBDA)
    assert abs(float(c - c_ref)) < 1e-13 and rel_err(grads, ref) < 1e-12


def test_weights_of_the_wrong_shape_are_named():
    net, X, Y, params = toy("softmax")
    with pytest.raises(ValueError, match=r"weights has shape \(3,\); expected \(24,\)"):
        value_and_backprop_weighted(params, X, Y, np.ones(3), net)
    with pytest.raises(ValueError, match="weights has shape"):
        check_weights(np.ones((24, 1)), 24)
