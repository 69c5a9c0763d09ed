"""Property-based tests (hypothesis): random architectures, batch sizes and values.

Each example draws a network (depth 1-3, widths 1-4, any hidden activations, any valid
(output, loss) pair), m from 1 to 3, fused or not, a scale and a seed for the values.
Examples are derandomized (the same every run) so that the suite's time and outcome are
fixed; every example is a new program to compile, so their number is the hypothesis
profile's (tests/conftest.py): 8 in the inner loop, 20 under CI, 200 with
``JAXNN_HYPOTHESIS_PROFILE=thorough``.
"""

import itertools
import math

import jax
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import jaxnn
from tests.helpers import HIDDEN, PAIRS, leaf_relative_error
from tests.test_network import random_targets, reference_cost

SETTINGS = settings(  # max_examples: the profile's
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)


@st.composite
def problems(draw):
    depth = draw(st.integers(1, 3))
    out, loss = draw(st.sampled_from(PAIRS))
    hidden = draw(st.lists(st.sampled_from(HIDDEN), min_size=depth - 1, max_size=depth - 1))
    n_L = draw(st.integers(2 if out == "softmax" else 1, 4))
    n_x = draw(st.integers(1, 4))
    widths = [draw(st.integers(2 if a == "softmax" else 1, 4)) for a in hidden]  # softmax: 2+
    sizes = [n_x, *widths, n_L]
    net = jaxnn.Network(sizes, [*hidden, out], loss)
    m = draw(st.integers(1, 3))
    soft = draw(st.booleans())
    scale = draw(st.floats(0.1, 2.0))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    params = [
        {
            "W": rng.normal(0, scale / math.sqrt(n_in), (n_out, n_in)),
            "b": rng.normal(0, scale, (n_out, 1)),
        }
        for n_in, n_out in itertools.pairwise(net.sizes)
    ]
    X = rng.normal(0, scale, (net.sizes[0], m))
    Y = random_targets(net.loss, n_L, m, rng, soft)
    return net, params, X, Y, draw(st.booleans())


def _everything(params, X, Y, net, fused):
    """backprop, jax.grad and the reference cost, in float64 and float32 (the params cast):
    one jitted program per example compiles faster than its eager primitives one by one."""
    value, grads = jaxnn.value_and_backprop(params, X, Y, net, fused=fused)
    want = jax.grad(jaxnn.cost)(params, X, Y, net)
    reference = reference_cost(params, X, Y, net)
    p32, X32, Y32 = (jax.tree.map(lambda x: x.astype(np.float32), t) for t in (params, X, Y))
    value32, grads32 = jaxnn.value_and_backprop(p32, X32, Y32, net, fused=fused)
    return value, grads, want, reference, value32, grads32


everything = jax.jit(_everything, static_argnames=("net", "fused"))


@pytest.mark.slow
@SETTINGS
@given(problems())
def test_backprop_properties(problem):
    """Gradients have the params' structure, shapes and dtypes; they equal jax.grad of
    jaxnn.cost to 1e-8 per leaf; the cost is finite, >= 0, and equals the reference cost.
    In float32: float32 gradients, within 1e-3 of the largest entry of each leaf.

    The tolerances are looser than the fixed matrix's (1e-10, 1e-4) because a scale up to
    2 lets |Z| reach ~15, where a softmax can be one-hot to e^-10 and (S2) cancels up to
    4-5 digits (see test_backprop.py::test_float32_limit_of_an_almost_one_hot_hidden_softmax)."""
    net, params, X, Y, fused = problem
    value, grads, want, reference, value32, grads32 = everything(params, X, Y, net, fused)
    assert jax.tree.structure(grads) == jax.tree.structure(params)
    for g, p in zip(jax.tree.leaves(grads), jax.tree.leaves(params), strict=True):
        assert g.shape == p.shape and g.dtype == p.dtype
        assert np.all(np.isfinite(g))
    for g, w in zip(jax.tree.leaves(grads), jax.tree.leaves(want), strict=True):
        assert leaf_relative_error(g, w) <= 1e-8
    assert np.isfinite(value) and value >= 0
    assert abs(value - reference) <= 1e-12 * max(1.0, abs(value))
    assert value32.dtype == np.float32 and np.isfinite(value32) and value32 >= 0
    for g, w in zip(jax.tree.leaves(grads32), jax.tree.leaves(want), strict=True):
        assert g.dtype == np.float32 and np.all(np.isfinite(g))
        assert np.max(np.abs(g - w)) <= 1e-3 * max(1e-3, float(np.max(np.abs(w))))
