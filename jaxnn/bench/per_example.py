"""Benchmark: per-example gradients, norms and clipped means by hand, beside ``vmap(grad)``.

``bench_per_example()`` compiles, on one network and batch (by default
784-512-512-10 relu/softmax, batch 256, float32), each of

* ``backprop``: one ``jaxnn.backprop``, the yardstick;
* ``norms (hand)``: ``jaxnn.per_example_grad_norms`` (PE-N);
* ``clipped mean (hand)``: ``jaxnn.clipped_mean_grads`` (PE-C);
* ``per-example grads (hand)``: ``jaxnn.per_example_grads`` (PE-G);
* ``norms (vmap grad)``, ``clipped mean (vmap grad)``, ``per-example grads
  (vmap grad)``: the same from ``jax.vmap(jax.grad(cost of one example))``,
  the usual JAX way, which forms every example's gradient;

then times each compiled call (``rounds`` rounds of every function in turn,
interleaved so that a slow moment of the machine touches all alike; the
median per function) and reads its peak memory from XLA's compiled memory
plan (``memory_analysis()``: temporaries plus outputs, the bytes the call
allocates beyond its inputs). Ratios are to ``backprop``. Run it with
``python scripts/bench_per_example.py``.
"""

import time

import jax
import jax.numpy as jnp
import numpy as np

from jaxnn.backpropagation import backprop
from jaxnn.network import Network, cost, init_params
from jaxnn.per_example import clipped_mean_grads, per_example_grad_norms, per_example_grads

__all__ = [
    "FUNCTIONS",
    "MAX_NORM",
    "SIZES",
    "bench_per_example",
    "markdown",
]

SIZES = (784, 512, 512, 10)
MAX_NORM = 1.0


def _vmap_grads(params, X, Y, net):
    one = lambda p, x, y: cost(p, x[:, None], y[:, None], net)
    return jax.vmap(jax.grad(one), in_axes=(None, 1, 1))(params, X, Y)


def _flat_norms(per_example):
    m = jax.tree.leaves(per_example)[0].shape[0]
    return jnp.sqrt(
        sum(jnp.sum(g.reshape(m, -1) ** 2, axis=1) for g in jax.tree.leaves(per_example))
    )


def _vmap_norms(params, X, Y, net):
    return _flat_norms(_vmap_grads(params, X, Y, net))


def _vmap_clipped(params, X, Y, net):
    per_example = _vmap_grads(params, X, Y, net)
    norms = _flat_norms(per_example)
    scale = jnp.minimum(1.0, MAX_NORM / norms)
    return jax.tree.map(
        lambda g: jnp.mean(g * scale.reshape((-1,) + (1,) * (g.ndim - 1)), axis=0), per_example
    )


FUNCTIONS = {
    "backprop": lambda p, X, Y, net: backprop(p, X, Y, net),
    "norms (hand)": lambda p, X, Y, net: per_example_grad_norms(p, X, Y, net),
    "clipped mean (hand)": lambda p, X, Y, net: clipped_mean_grads(p, X, Y, net, MAX_NORM),
    "per-example grads (hand)": lambda p, X, Y, net: per_example_grads(p, X, Y, net),
    "norms (vmap grad)": _vmap_norms,
    "clipped mean (vmap grad)": _vmap_clipped,
    "per-example grads (vmap grad)": _vmap_grads,
}


def bench_per_example(
    sizes: tuple[int, ...] = SIZES, batch: int = 256, rounds: int = 30, dtype=jnp.float32
) -> dict[str, dict[str, float]]:
    """``{name: {"median_ms", "peak_mb", "time_ratio", "memory_ratio"}}`` for ``FUNCTIONS``.

    Ratios are to ``backprop`` on the same network and batch.
    """
    net = Network(tuple(sizes), ("relu",) * (len(sizes) - 2) + ("softmax",), "cross_entropy")
    params = init_params(jax.random.key(0), net, dtype=dtype)
    rng = np.random.default_rng(0)
    X = jnp.asarray(rng.standard_normal((sizes[0], batch)), dtype)
    Y = jnp.asarray(np.eye(sizes[-1])[:, rng.integers(0, sizes[-1], batch)], dtype)
    compiled, peak = {}, {}
    for name, fn in FUNCTIONS.items():
        compiled[name] = jax.jit(fn, static_argnums=3).lower(params, X, Y, net).compile()
        memory = compiled[name].memory_analysis()
        peak[name] = (memory.temp_size_in_bytes + memory.output_size_in_bytes) / 2**20
        jax.block_until_ready(compiled[name](params, X, Y))  # warm up
    times = {name: [] for name in FUNCTIONS}
    for _ in range(rounds):
        for name, fn in compiled.items():
            t0 = time.perf_counter()
            jax.block_until_ready(fn(params, X, Y))
            times[name].append(time.perf_counter() - t0)
    median = {name: float(np.median(t)) * 1e3 for name, t in times.items()}
    return {
        name: {
            "median_ms": median[name],
            "peak_mb": peak[name],
            "time_ratio": median[name] / median["backprop"],
            "memory_ratio": peak[name] / peak["backprop"],
        }
        for name in FUNCTIONS
    }


def markdown(results: dict[str, dict[str, float]]) -> str:
    """The results as a Markdown table."""
    lines = [
        "| function | median ms | x backprop | peak MB | x backprop |",
        "|---|---|---|---|---|",
    ]
    for name, r in results.items():
        lines.append(
            f"| {name} | {r['median_ms']:.2f} | {r['time_ratio']:.2f} | "
            f"{r['peak_mb']:.1f} | {r['memory_ratio']:.2f} |"
        )
    return "\n".join(lines) + "\n"
