"""Timing the step contenders: interleaved rounds, medians, the matmul limit, the machine.

Contenders run interleaved (A B C ... A B C ...) so that drift hits all alike;
each figure is the median over rounds. ``dot_report`` shows how XLA compiles the
hand and the autodiff gradients' products (the evidence behind BP2's transpose).
"""

import importlib.metadata
import os
import platform
import re
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from jaxnn.backpropagation import value_and_backprop
from jaxnn.bench.contenders import (
    BATCH_SIZES,
    CONTENDERS,
    EPOCH_BATCHES,
    LEARNING_RATE,
    SIZES,
    network,
    step_flops,
)
from jaxnn.network import cost, init_params

__all__ = [
    "dot_report",
    "machine",
    "matmul_peak",
    "run_benchmark",
]


def matmul_peak(sizes=(512, 1024, 2048), rounds=7) -> dict:
    """Best float32 GFLOP/s of ``jnp.dot`` on n x n matrices, and the per-size medians."""
    dot = jax.jit(jnp.dot)
    rates = {}
    for n in sizes:
        a = jnp.asarray(np.random.default_rng(0).standard_normal((n, n)), jnp.float32)
        jax.block_until_ready(dot(a, a))
        times = []
        for _ in range(rounds):
            t0 = time.perf_counter()
            jax.block_until_ready(dot(a, a))
            times.append(time.perf_counter() - t0)
        rates[n] = 2 * n**3 / float(np.median(times)) / 1e9
    return {"best_gflops": max(rates.values()), "by_size": rates}


def dot_report(m: int = 256, sizes=SIZES) -> dict:
    """How XLA compiles the matrix products of the hand and the autodiff gradient.

    For each, the compiled HLO's products: those handed to the CPU backend's
    fast matmul library (YNNPACK fusions, ``ynn_fusion``) and the plain ``dot``
    instructions left to the generic path, with their contracting dimensions.
    This is the evidence behind the (BP2) transpose in ``jaxnn.backpropagation``.
    """
    net = network(sizes)
    params = init_params(jax.random.PRNGKey(0), net, dtype=jnp.float32)
    X = jnp.zeros((sizes[0], m), jnp.float32)
    Y = jnp.zeros((sizes[-1], m), jnp.float32)
    fns = {
        "hand": lambda p, X, Y: value_and_backprop(p, X, Y, net),
        "autodiff": lambda p, X, Y: jax.value_and_grad(cost)(p, X, Y, net),
    }
    report = {}
    for name, fn in fns.items():
        text = jax.jit(fn).lower(params, X, Y).compile().as_text()
        lines = text[text.index("ENTRY") :].splitlines()
        report[name] = {
            "library_fusions": sum("kind=kCustom" in ln and "ynn" in ln for ln in lines),
            "plain_dots": [
                " ".join(re.findall(r"[lr]hs_contracting_dims=\{[\d,]*\}", ln))
                for ln in lines
                if re.search(r" dot\(", ln)
            ],
        }
    return report


def run_benchmark(
    batch_sizes=BATCH_SIZES,
    contenders=tuple(CONTENDERS),
    rounds=9,
    target_s=0.05,
    sizes=SIZES,
    matmul_sizes=(512, 1024, 2048),
    settle_s=0.1,
    xla_products=False,
):
    """Interleaved medians per (batch size, contender); returns a JSON-able dict.

    With ``xla_products``, the report also says how XLA compiles the hand and
    autodiff gradients' products (``dot_report``).

    PyTorch's OpenMP threads spin after each parallel region by default; in a
    process that also runs XLA's thread pool (or on a busy machine), the spinning
    threads take the cores the next contender needs and PyTorch itself slows
    down 8-10x. ``OMP_WAIT_POLICY=PASSIVE``, set before torch is imported, makes
    them sleep instead, as a mixed process should. That is the process's business:
    ``jaxnn bench`` sets it for its own (unless already set); this function leaves
    the environment as it is, and ``machine()`` reports what it was.
    """
    net = network(sizes)
    limit = matmul_peak(matmul_sizes)
    results, notes = [], []
    for m in batch_sizes:
        runs, skipped = _build(net, m, contenders)
        notes += skipped
        inner = {name: _inner_count(name, run, target_s) for name, (run, _) in runs.items()}
        times = _interleaved(runs, inner, rounds, settle_s)
        results += _rows(net, m, runs, inner, times, limit, rounds)
    return {
        "network": {
            "sizes": list(net.sizes),
            "activations": list(net.activations),
            "loss": net.loss,
        },
        "dtype": "float32",
        "optimizer": f"adam(learning_rate={LEARNING_RATE})",
        "machine": machine(),
        "matmul_limit": limit,
        "results": results,
        "xla_products": dot_report(sizes=sizes) if xla_products else {},
        "notes": notes,
    }


def _build(net, m, contenders):
    """Each contender's ``(run, peak bytes)`` at batch size m, and a note for each one
    that cannot run here (its library is not installed)."""
    runs, skipped = {}, []
    for name in contenders:
        try:
            runs[name] = CONTENDERS[name](net, m)
        except ImportError as e:
            skipped.append(f"{name} skipped at batch {m}: {e}")
    return runs, skipped


def _inner_count(name, run, target_s) -> int:
    """Warm ``run`` up (compile), then size its inner loop: the steps (whole epochs for
    ``epoch``) that take about ``target_s``."""
    batches = EPOCH_BATCHES if name == "epoch" else 1
    run(batches)
    t0 = time.perf_counter()
    run(batches)
    per = (time.perf_counter() - t0) / batches
    n = max(1, int(target_s / max(per, 1e-9)))
    return -(-n // EPOCH_BATCHES) * EPOCH_BATCHES if name == "epoch" else n


def _interleaved(runs, inner, rounds, settle_s) -> dict:
    """Seconds per step of each contender, one figure per round, the order rotated."""
    times = {name: [] for name in runs}
    names = list(runs)
    for r in range(rounds):
        # Rotate who goes first, and let the previous contender's worker threads
        # (OpenBLAS, OpenMP and XLA all spin a while after their work) go idle
        # before the clock starts: otherwise whoever runs right after NumPy or
        # PyTorch pays for their spinning threads on a 2-core machine.
        for name in names[r % len(names) :] + names[: r % len(names)]:
            run = runs[name][0]
            time.sleep(settle_s)
            t0 = time.perf_counter()
            run(inner[name])
            times[name].append((time.perf_counter() - t0) / inner[name])
    return times


def _rows(net, m, runs, inner, times, limit, rounds) -> list:
    """One result per contender at batch size m: its median, and the rates it gives."""
    flops = step_flops(net.sizes, m)
    hand_median = float(np.median(times["hand"])) if "hand" in times else None
    rows = []
    for name, ts in times.items():
        median = float(np.median(ts))
        rows.append(
            {
                "batch": m,
                "contender": name,
                "median_ms": median * 1e3,
                "gflops": flops / median / 1e9,
                "fraction_of_matmul": flops / median / 1e9 / limit["best_gflops"],
                "examples_per_s": m / median,
                "peak_bytes": runs[name][1],
                "vs_hand": median / hand_median if hand_median else None,
                "rounds": rounds,
                "inner": inner[name],
            }
        )
    return rows


def machine() -> dict:
    """What the figures were measured on: platform, processor, library versions, cores,
    and PyTorch's threads and wait policy where it ran in this process."""
    info = {
        "platform": platform.platform(),
        "processor": _cpu_name(),
        "jax": jax.__version__,
        "backend": jax.default_backend(),
        "devices": [str(d) for d in jax.devices()],
        "numpy": np.__version__,
    }
    try:
        info["cpus"] = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        pass
    try:  # its version without importing it (seconds, and its runtimes' start)
        info["torch"] = importlib.metadata.version("torch")
    except importlib.metadata.PackageNotFoundError:
        info["torch"] = None
    torch = sys.modules.get("torch")
    if torch is not None:  # it ran in this process: how
        info["torch_threads"] = torch.get_num_threads()
        info["OMP_WAIT_POLICY"] = os.environ.get("OMP_WAIT_POLICY")
    return info


def _cpu_name() -> str:
    """The processor's model name (Linux), else what ``platform`` says."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()
