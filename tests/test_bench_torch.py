"""The benchmark's PyTorch peer (``jaxnn.bench.contenders.torch_eager``) trains as jaxnn.

The peer runs in float32, as the benchmark times it; the reference is jaxnn's hand step
with ``jaxnn.optim.adam`` in float64 from the same initial parameters and batch.
"""

import jax
import numpy as np
import pytest

from jaxnn import optim, steps
from jaxnn.bench import contenders as bench
from tests.helpers import assert_trees_close

SIZES, M, STEPS = (6, 5, 4, 3), 8, 3


@pytest.mark.slow
def test_torch_eager_makes_jaxnn_adam_steps(torch, monkeypatch):
    """3 steps of the peer equal 3 jaxnn steps: the changes of the parameters within 1e-4
    of their scale, where up to 1e-5 was seen (float32 against float64; each Adam step
    moves an entry by up to the learning rate, 1e-3)."""
    made = []

    class SpyAdam(torch.optim.Adam):
        def __init__(self, params, *args, **kwargs):
            params = list(params)
            super().__init__(params, *args, **kwargs)
            made.append(params)

    monkeypatch.setattr(torch.optim, "Adam", SpyAdam)
    net = bench.network(SIZES)
    run, peak = bench.torch_eager(net, M)
    assert peak == -1  # no memory figure for PyTorch
    [tensors] = made  # nn.Linear: weight (n_out, n_in), then bias (n_out,), per layer

    def as_params():
        arrays = [t.detach().numpy().astype(np.float64) for t in tensors]
        return [{"W": W, "b": b[:, None]} for W, b in zip(arrays[::2], arrays[1::2], strict=True)]

    start = as_params()
    assert [p["W"].shape for p in start] == [(5, 6), (4, 5), (3, 4)]
    run(STEPS)
    peer = as_params()

    X, Y, labels = bench.data(M, SIZES)
    assert np.array_equal(Y.argmax(axis=0), labels)
    optimizer = optim.adam(bench.LEARNING_RATE)
    step = steps.make_step(net, optimizer)
    params, state = start, optimizer.init(start)
    for _ in range(STEPS):
        params, state, _ = step(params, state, X.astype(np.float64), Y.astype(np.float64))
    change = lambda p: jax.tree.map(np.subtract, p, start)
    assert_trees_close(change(peer), jax.tree.map(np.asarray, change(params)), 1e-4, "change")
    moved = max(float(np.max(np.abs(leaf))) for leaf in jax.tree.leaves(change(peer)))
    assert 0.5 * STEPS * bench.LEARNING_RATE < moved <= 1.01 * STEPS * bench.LEARNING_RATE
