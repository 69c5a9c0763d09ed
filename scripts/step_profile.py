"""Where a small step's time goes: XLA's own timing of each kernel of the compiled epoch.

Runs ``jaxnn.steps.make_epoch`` for the default network (digits, 64-256-128-10 relu,
softmax + cross-entropy, Adam 1e-3, batch 16) under ``jax.profiler`` and prints,
per step, the microseconds of every kernel (fusion, library matmul, copy) of the
loop body, largest first, with the kind of work each does. The profiler adds about
a microsecond to each kernel, so the sum exceeds the unprofiled step; the shares
are what to read.

Usage: python scripts/step_profile.py [--epochs 5] [--top 25] [--cpu-threads N] [--json out.json]

``--cpu-threads``: XLA's CPU pool (``jaxnn.cli.cpu_threads``); default: ``jaxnn train``'s
rule for this network (one thread).
"""

import argparse
import collections
import glob
import gzip
import json
import tempfile

import jax
import numpy as np

from jaxnn import data, optim, steps, train
from jaxnn.cli import cpu_threads


def profile(epochs: int) -> tuple[dict, int]:
    """``({kernel: microseconds per step}, steps per epoch)`` from one profiled run."""
    ds = data.load("digits", None)
    net = ds.network((256, 128), "relu")
    opt = optim.adam(1e-3)
    key = jax.random.key(0)
    params, opt_state = train.make_init(net, opt)(key)
    X, Y = jax.device_put(np.asarray(ds.X_train, np.float32)), jax.device_put(ds.Y_train)
    Y = Y.astype(X.dtype)
    epoch = steps.make_epoch(net, opt, 16)
    for _ in range(3):  # compiled and warm
        jax.block_until_ready(epoch(params, opt_state, X, Y, key))
    with tempfile.TemporaryDirectory() as trace_dir:
        jax.profiler.start_trace(trace_dir, create_perfetto_trace=True)
        for _ in range(epochs):
            jax.block_until_ready(epoch(params, opt_state, X, Y, key))
        jax.profiler.stop_trace()
        (path,) = glob.glob(f"{trace_dir}/**/*.trace.json.gz", recursive=True)
        with gzip.open(path) as f:
            events = json.load(f)["traceEvents"]
    n_steps = X.shape[1] // 16
    per_step = epochs * n_steps
    totals, counts = collections.Counter(), collections.Counter()
    for e in events:
        if e.get("ph") == "X":
            totals[e["name"]] += e["dur"]
            counts[e["name"]] += 1
    # the loop body's kernels: those that ran once per step (not the "end: ..." markers)
    kernels = {
        k: v / per_step
        for k, v in totals.items()
        if counts[k] == per_step and not k.startswith("end: ")
    }
    return kernels, n_steps


def kind(name: str) -> str:
    if name.startswith("ynn_fusion"):
        return "library matmul (YNNPACK)"
    if name.startswith("multiply_add_fusion"):
        return "element-wise (Adam's V, S or W update, or a bias)"
    if name.startswith("copy"):
        return "copy of a carried array"
    if "transpose" in name:
        return "transpose (W^T for BP2)"
    return "element-wise / reduction"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--top", type=int, default=25)
    p.add_argument("--cpu-threads", type=int, help="default: jaxnn train's rule (one)")
    p.add_argument("--json")
    args = p.parse_args()
    net = data.load("digits", None).network((256, 128), "relu")
    threads = cpu_threads.threads_for(net, 16) if args.cpu_threads is None else args.cpu_threads
    print(f"XLA's CPU pool: {cpu_threads.start_backends(threads)} thread(s)")
    kernels, n_steps = profile(args.epochs)
    total = sum(kernels.values())
    by_kind = collections.Counter()
    for name, us in kernels.items():
        by_kind[kind(name)] += us
    print(f"{len(kernels)} kernels per step, {total:.1f} us per step in all (profiled)")
    print("\n| kernel | us per step | share | work |\n|---|---:|---:|---|")
    for name, us in sorted(kernels.items(), key=lambda kv: -kv[1])[: args.top]:
        print(f"| {name} | {us:.2f} | {us / total:.0%} | {kind(name)} |")
    print("\n| work | us per step | share |\n|---|---:|---:|")
    for k, us in by_kind.most_common():
        print(f"| {k} | {us:.1f} | {us / total:.0%} |")
    if args.json:
        with open(args.json, "x") as f:
            json.dump({"kernels_us_per_step": kernels, "steps_per_epoch": n_steps}, f, indent=1)


if __name__ == "__main__":
    main()
