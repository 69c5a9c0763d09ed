"""Benchmark of jaxnn.curvature: hvp against one backprop and jax.jvp(jax.grad(cost)),
diag_ggn against BackPACK's DiagGGNExact, and the memory each plans.

On 784-512-512-10 (relu, softmax with cross-entropy), batch 256, float32, on the CPU,
each contender is compiled once (JAX) or built once (PyTorch), run once to warm up,
then timed for ``--rounds`` rounds of every contender in turn (interleaved, so a slow
moment of the machine touches all alike); the figure is the median per contender:

* ``backprop``: one ``jaxnn.backprop``, the yardstick;
* ``hvp``, ``ggn_vp``, ``diag_ggn``, ``diag_hessian``, ``kflr``, ``sum_grad_squared``,
  ``variance``: jaxnn.curvature's hand-derived functions;
* ``hvp (jax.jvp(jax.grad))``: the autodiff Hessian-vector product (forward over reverse);
* ``torch forward+backward``, ``BackPACK DiagGGNExact``: PyTorch's plain gradient and
  BackPACK's exact GGN diagonal (with the gradient) on the same stack, float32.

Memory: XLA's compiled plan (``memory_analysis()``: temporaries plus outputs, what a
call allocates beyond its inputs) for hidden widths 256, 512 and 1024, beside the size
of the parameters: it grows with the parameters, not with their square.

Usage: ``python scripts/bench_curvature.py [--rounds 15] [--batch 256] [--no-torch]``;
prints Markdown tables and the load average before and after. Results in BENCHMARKS.md,
"Curvature".
"""

import argparse
import itertools
import os
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import jaxnn
from jaxnn.curvature import (
    diag_ggn,
    diag_hessian,
    ggn_vp,
    hvp,
    kflr,
    sum_grad_squared,
    variance,
)

SIZES = (784, 512, 512, 10)


def network(sizes):
    return jaxnn.Network(tuple(sizes), ("relu",) * (len(sizes) - 2) + ("softmax",), "cross_entropy")


def autodiff_hvp(params, X, Y, net, V):
    """H V by forward over reverse: jax.jvp of jax.grad of the cost."""
    return jax.jvp(lambda p: jax.grad(jaxnn.cost)(p, X, Y, net), (params,), (V,))[1]


FUNCTIONS = {
    "backprop": lambda p, X, Y, V, net: jaxnn.backprop(p, X, Y, net),
    "hvp": lambda p, X, Y, V, net: hvp(p, X, Y, net, V),
    "hvp (jax.jvp(jax.grad))": lambda p, X, Y, V, net: autodiff_hvp(p, X, Y, net, V),
    "ggn_vp": lambda p, X, Y, V, net: ggn_vp(p, X, Y, net, V),
    "diag_ggn": lambda p, X, Y, V, net: diag_ggn(p, X, Y, net),
    "diag_hessian": lambda p, X, Y, V, net: diag_hessian(p, X, Y, net),
    "kflr": lambda p, X, Y, V, net: kflr(p, X, Y, net),
    "sum_grad_squared": lambda p, X, Y, V, net: sum_grad_squared(p, X, Y, net),
    "variance": lambda p, X, Y, V, net: variance(p, X, Y, net),
}


def problem(sizes, batch, dtype=jnp.float32):
    net = network(sizes)
    params = jaxnn.init_params(jax.random.key(0), net, dtype=dtype)
    rng = np.random.default_rng(0)
    X = jnp.asarray(rng.standard_normal((sizes[0], batch)), dtype)
    labels = rng.integers(0, sizes[-1], batch)
    Y = jnp.asarray(np.eye(sizes[-1])[:, labels], dtype)
    V = jax.tree.map(lambda p: jnp.asarray(rng.standard_normal(p.shape), dtype), params)
    return net, params, X, Y, labels, V


def compile_all(sizes, batch):
    """``({name: (compiled, args)}, {name: peak MB})`` for ``FUNCTIONS``."""
    net, params, X, Y, _, V = problem(sizes, batch)
    compiled, peak = {}, {}
    for name, fn in FUNCTIONS.items():
        c = jax.jit(fn, static_argnums=4).lower(params, X, Y, V, net).compile()
        memory = c.memory_analysis()
        peak[name] = (memory.temp_size_in_bytes + memory.output_size_in_bytes) / 2**20
        compiled[name] = (c, (params, X, Y, V))
    return compiled, peak


def torch_contenders(sizes, batch):
    """``{name: run}`` for PyTorch's gradient and BackPACK's DiagGGNExact, float32, on the
    same weights and data; {} where PyTorch or BackPACK does not import."""
    try:
        import torch
        from backpack import backpack, extend
        from backpack.extensions import DiagGGNExact
    except ImportError:
        return {}
    _, params, X, _, labels, _ = problem(sizes, batch)
    layers = []
    for l, layer in enumerate(params):
        linear = torch.nn.Linear(*layer["W"].shape[::-1])
        with torch.no_grad():
            linear.weight.copy_(torch.as_tensor(np.asarray(layer["W"])))
            linear.bias.copy_(torch.as_tensor(np.asarray(layer["b"]).reshape(-1)))
        layers += [linear] if l == len(params) - 1 else [linear, torch.nn.ReLU()]
    model = extend(torch.nn.Sequential(*layers))
    loss_function = extend(torch.nn.CrossEntropyLoss())
    inputs = torch.as_tensor(np.asarray(X).T.copy())
    targets = torch.as_tensor(labels)

    def plain():
        model.zero_grad()
        loss_function(model(inputs), targets).backward()

    def diag_ggn_exact():
        model.zero_grad()
        loss = loss_function(model(inputs), targets)
        with backpack(DiagGGNExact()):
            loss.backward()
        return [p.diag_ggn_exact for p in model.parameters()]

    return {"torch forward+backward": plain, "BackPACK DiagGGNExact": diag_ggn_exact}


def bench(sizes=SIZES, batch=256, rounds=15, with_torch=True) -> dict[str, dict[str, float]]:
    """``{name: {"median_ms", "time_ratio", "peak_mb"}}``; ratios to ``backprop``."""
    compiled, peak = compile_all(sizes, batch)
    runs = {
        name: (lambda c=c, a=a: jax.block_until_ready(c(*a))) for name, (c, a) in compiled.items()
    }
    if with_torch:
        runs.update(torch_contenders(sizes, batch))
    for run in runs.values():
        run()  # warm up
    times = {name: [] for name in runs}
    for _ in range(rounds):
        for name, run in runs.items():
            t0 = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - t0)
    median = {name: float(np.median(t)) * 1e3 for name, t in times.items()}
    return {
        name: {
            "median_ms": median[name],
            "time_ratio": median[name] / median["backprop"],
            "peak_mb": peak.get(name, float("nan")),
        }
        for name in runs
    }


def memory_by_width(widths=(256, 512, 1024), batch=256) -> dict[int, dict[str, float]]:
    """``{width: {"params_mb", name: peak MB}}`` for 784-w-w-10: compiled plans only."""
    out = {}
    for w in widths:
        sizes = (784, w, w, 10)
        n_params = sum(a * b + b for a, b in itertools.pairwise(sizes))
        _, peak = compile_all(sizes, batch)
        out[w] = {"params_mb": 4 * n_params / 2**20, **peak}
    return out


def markdown(results) -> str:
    lines = ["| contender | median ms | x backprop | peak MB (XLA plan) |", "|---|---|---|---|"]
    for name, r in results.items():
        mb = "-" if np.isnan(r["peak_mb"]) else f"{r['peak_mb']:.1f}"
        lines.append(f"| {name} | {r['median_ms']:.2f} | {r['time_ratio']:.2f} | {mb} |")
    return "\n".join(lines) + "\n"


def memory_markdown(by_width) -> str:
    names = [n for n in FUNCTIONS if n != "hvp (jax.jvp(jax.grad))"]
    lines = [
        "| width | params MB | " + " | ".join(names) + " |",
        "|---" * (len(names) + 2) + "|",
    ]
    for w, row in by_width.items():
        cells = " | ".join(f"{row[n]:.1f}" for n in names)
        lines.append(f"| {w} | {row['params_mb']:.1f} | {cells} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--no-torch", action="store_true", help="leave PyTorch and BackPACK out")
    args = parser.parse_args(argv)
    print(f"load average before: {os.getloadavg()}, {os.cpu_count()} CPUs, {jax.devices()[0]}")
    results = bench(batch=args.batch, rounds=args.rounds, with_torch=not args.no_torch)
    print(markdown(results))
    print(memory_markdown(memory_by_width(batch=args.batch)))
    print(f"load average after: {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
