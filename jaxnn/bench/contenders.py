"""The step benchmark's contenders: the hand step beside its peers, for one network.

Each contender ``name(net, m)`` builds its state for batch size m and returns
``(run, peak_bytes)``: ``run(inner)`` does ``inner`` steps and blocks until
they are done; ``peak_bytes`` is its peak memory for one step, -1 if unknown.

* ``hand``: ``jaxnn.steps.make_step`` with hand backprop and ``jaxnn.optim.adam``;
* ``autodiff``: ``jax.value_and_grad(jaxnn.cost)`` with ``optax.adam``;
* ``epoch``: ``jaxnn.steps.make_epoch``, a whole epoch of hand steps in one
  ``lax.scan``, reported per step;
* ``torch``: PyTorch eager, ``torch.nn`` + ``torch.optim.Adam`` (skipped with a
  note when torch is not installed; it is no dependency of jaxnn);
* ``numpy``: a plain NumPy transcription of BP1-BP4 and the seed's Adam.

FLOPs count the matrix products only (forward W A, BP4's delta A^T, BP2's
W^T delta), which are all but a few percent of the work.
"""

import itertools
import tracemalloc

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxnn import optim, steps
from jaxnn.network import Network, init_params

__all__ = [
    "BATCH_SIZES",
    "CONTENDERS",
    "EPOCH_BATCHES",
    "LEARNING_RATE",
    "SIZES",
    "autodiff",
    "data",
    "epoch",
    "hand",
    "network",
    "numpy_hand",
    "numpy_step",
    "step_flops",
    "torch_eager",
]

SIZES = (784, 512, 512, 10)
BATCH_SIZES = (32, 256, 2048)
LEARNING_RATE = 1e-3
EPOCH_BATCHES = 16


def network(sizes=SIZES) -> Network:
    """The benchmark's network: relu hidden layers, softmax + cross-entropy."""
    L = len(sizes) - 1
    return Network(sizes, ("relu",) * (L - 1) + ("softmax",), "cross_entropy")


def step_flops(sizes, m: int) -> int:
    """Matmul FLOPs of one training step: forward, BP4 for every layer, BP2 above layer 1."""
    pairs = [a * b for a, b in itertools.pairwise(sizes)]
    return 2 * m * (2 * sum(pairs) + sum(pairs[1:]))


def data(m: int, sizes, seed=0):
    """Random float32 inputs X (n_x, m), one-hot Y and the labels, for a benchmark step."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((sizes[0], m)).astype(np.float32)
    labels = rng.integers(0, sizes[-1], m)
    Y = np.eye(sizes[-1], dtype=np.float32)[:, labels]
    return X, Y, labels


def _xla_peak(jitted, *args) -> int:
    """XLA's buffer assignment for one call: temporaries, arguments and outputs, in bytes."""
    mem = jitted.lower(*args).compile().memory_analysis()
    if mem is None:
        return -1
    return int(mem.temp_size_in_bytes + mem.argument_size_in_bytes + mem.output_size_in_bytes)


def _jax_step(net, optimizer, gradients, m):
    X, Y, _ = data(m, net.sizes)
    X, Y = jnp.asarray(X), jnp.asarray(Y)
    params = init_params(jax.random.PRNGKey(0), net, dtype=jnp.float32)
    state = optimizer.init(params)
    step = steps.make_step(net, optimizer, gradients)
    peak = _xla_peak(step, params, state, X, Y)
    carry = [params, state]

    def run(inner):
        p, s = carry
        for _ in range(inner):
            p, s, c = step(p, s, X, Y)
        jax.block_until_ready(c)
        carry[:] = [p, s]

    return run, peak


def hand(net, m):
    """The hand step, ``jaxnn.steps.make_step`` with ``jaxnn.optim.adam``: ``(run, peak)``."""
    return _jax_step(net, optim.adam(LEARNING_RATE), "hand", m)


def autodiff(net, m):
    """``jax.value_and_grad(jaxnn.cost)`` with ``optax.adam``: ``(run, peak)``."""
    return _jax_step(net, optax.adam(LEARNING_RATE), "autodiff", m)


def epoch(net, m):
    """``jaxnn.steps.make_epoch``, EPOCH_BATCHES hand steps in one ``lax.scan``: ``(run, peak)``,
    ``run`` counting steps."""
    X, Y, _ = data(m * EPOCH_BATCHES, net.sizes)
    X, Y = jnp.asarray(X), jnp.asarray(Y)
    params = init_params(jax.random.PRNGKey(0), net, dtype=jnp.float32)
    optimizer = optim.adam(LEARNING_RATE)
    state = optimizer.init(params)
    run_epoch = steps.make_epoch(net, optimizer, m)
    key = jax.random.PRNGKey(1)
    peak = _xla_peak(run_epoch, params, state, X, Y, key)
    carry = [params, state]

    def run(inner):  # inner counts steps; an epoch is EPOCH_BATCHES of them
        p, s = carry
        for _ in range(max(1, inner // EPOCH_BATCHES)):
            p, s, costs = run_epoch(p, s, X, Y, key)
        jax.block_until_ready(costs)
        carry[:] = [p, s]

    return run, peak


def torch_eager(net, m):
    """PyTorch eager, ``torch.nn`` + ``torch.optim.Adam`` (seeded): ``(run, -1)``."""
    import torch

    layers = []
    with torch.random.fork_rng(devices=[]):  # seeded, leaving the caller's torch RNG as it was
        torch.manual_seed(0)
        for l in range(net.L):
            layers.append(torch.nn.Linear(net.sizes[l], net.sizes[l + 1]))
            if l < net.L - 1:
                layers.append(torch.nn.ReLU())
    model = torch.nn.Sequential(*layers)
    opt = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE)
    loss_fn = torch.nn.CrossEntropyLoss()
    X, _, labels = data(m, net.sizes)
    Xt, yt = torch.from_numpy(np.ascontiguousarray(X.T)), torch.from_numpy(labels)

    def run(inner):
        for _ in range(inner):
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(Xt), yt)
            loss.backward()
            opt.step()

    return run, -1


def numpy_step(params, V, S, t, X, Y, learning_rate=LEARNING_RATE, b1=0.9, b2=0.999, eps=1e-8):
    """One step of BP1-BP4 (relu hidden, softmax + cross-entropy, one-hot Y) and
    the seed's Adam, transcribed into NumPy; updates params, V and S in place.
    ``t`` is the number of this update, from 1."""
    m = X.shape[1]
    As, Zs = [X], []
    for layer in params:
        Z = layer["W"] @ As[-1] + layer["b"]  # (F-Z)
        Zs.append(Z)
        As.append(np.maximum(Z, 0))  # (A5)
    Z = Zs[-1]
    P = np.exp(Z - Z.max(axis=0))
    P /= P.sum(axis=0)  # (A11)
    delta = (P - Y) / m  # (F1) for one-hot labels, (C-M)
    for l in reversed(range(len(params))):
        grads = {"W": delta @ As[l].T, "b": delta.sum(axis=1, keepdims=True)}  # (BP4), (BP3)
        if l > 0:
            delta = (params[l]["W"].T @ delta) * (Zs[l - 1] > 0)  # (BP2), before W^[l+1] moves
        for k, g in grads.items():
            V[l][k] = b1 * V[l][k] + (1 - b1) * g  # (OPT-A1)
            S[l][k] = b2 * S[l][k] + (1 - b2) * g * g  # (OPT-A2)
            vc = V[l][k] / (1 - b1**t)  # (OPT-A3)
            sc = S[l][k] / (1 - b2**t)
            params[l][k] -= learning_rate * vc / (np.sqrt(sc) + eps)  # (OPT-A4)


def numpy_hand(net, m):
    """``numpy_step`` on float32 arrays."""
    X, Y, _ = data(m, net.sizes)
    params = [
        {k: np.array(v) for k, v in layer.items()}
        for layer in init_params(jax.random.PRNGKey(0), net, dtype=jnp.float32)
    ]
    V = [{k: np.zeros_like(v) for k, v in layer.items()} for layer in params]
    S = [{k: np.zeros_like(v) for k, v in layer.items()} for layer in params]
    t = [0]

    def one_step():
        t[0] += 1
        numpy_step(params, V, S, t[0], X, Y)

    if tracemalloc.is_tracing():  # the caller's own tracing: not stopped, no peak
        one_step()
        peak = -1
    else:
        tracemalloc.start()
        one_step()
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()

    def run(inner):
        for _ in range(inner):
            one_step()

    return run, peak


CONTENDERS = {
    "hand": hand,
    "autodiff": autodiff,
    "epoch": epoch,
    "torch": torch_eager,
    "numpy": numpy_hand,
}
