"""Benchmark: the hand-derived training step beside its peers, in one process.

Contenders, for one network and several batch sizes, all float32 with Adam:
  * ``hand``: ``jaxnn.train.make_step`` with hand backprop and ``jaxnn.optim.adam``;
  * ``autodiff``: ``jax.value_and_grad(jaxnn.cost)`` with ``optax.adam``;
  * ``torch``: PyTorch eager, ``torch.nn`` + ``torch.optim.Adam`` (skipped with a
    note when torch is not installed; it is no dependency of jaxnn);
  * ``numpy``: a plain NumPy transcription of BP1-BP4 and the seed's Adam;
  * ``epoch``: ``jaxnn.train.make_epoch``, a whole epoch of hand steps in one
    ``lax.scan``, reported per step;
and the machine's best float32 matrix-multiply rate over a few square sizes, as
the practical limit. Contenders run interleaved (A B C ... A B C ...) so that
drift hits all alike; each figure is the median over rounds.

FLOPs count the matrix products only (forward W A, BP4's delta A^T, BP2's
W^T delta), which are all but a few percent of the work.
"""

import argparse
import itertools
import json
import os
import platform
import re
import time
import tracemalloc

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxnn import optim, train
from jaxnn.backpropagation import value_and_backprop
from jaxnn.network import Network, cost, init_params

SIZES = (784, 512, 512, 10)
BATCH_SIZES = (32, 256, 2048)
LEARNING_RATE = 1e-3
EPOCH_BATCHES = 16


def network(sizes=SIZES) -> Network:
    L = len(sizes) - 1
    return Network(sizes, ("relu",) * (L - 1) + ("softmax",), "cross_entropy")


def step_flops(sizes, m: int) -> int:
    """Matmul FLOPs of one training step: forward, BP4 for every layer, BP2 above layer 1."""
    pairs = [a * b for a, b in itertools.pairwise(sizes)]
    return 2 * m * (2 * sum(pairs) + sum(pairs[1:]))


def _data(m: int, sizes, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((sizes[0], m)).astype(np.float32)
    labels = rng.integers(0, sizes[-1], m)
    Y = np.eye(sizes[-1], dtype=np.float32)[:, labels]
    return X, Y, labels


# ---- contenders: each returns (run, peak_bytes); run() does `inner` steps and blocks.


def _xla_peak(jitted, *args) -> int:
    mem = jitted.lower(*args).compile().memory_analysis()
    if mem is None:
        return -1
    return int(mem.temp_size_in_bytes + mem.argument_size_in_bytes + mem.output_size_in_bytes)


def _jax_step(net, optimizer, gradients, m):
    X, Y, _ = _data(m, net.sizes)
    X, Y = jnp.asarray(X), jnp.asarray(Y)
    params = init_params(jax.random.PRNGKey(0), net, dtype=jnp.float32)
    state = optimizer.init(params)
    step = train.make_step(net, optimizer, gradients)
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
    return _jax_step(net, optim.adam(LEARNING_RATE), "hand", m)


def autodiff(net, m):
    return _jax_step(net, optax.adam(LEARNING_RATE), "autodiff", m)


def epoch(net, m):
    X, Y, _ = _data(m * EPOCH_BATCHES, net.sizes)
    X, Y = jnp.asarray(X), jnp.asarray(Y)
    params = init_params(jax.random.PRNGKey(0), net, dtype=jnp.float32)
    optimizer = optim.adam(LEARNING_RATE)
    state = optimizer.init(params)
    run_epoch = train.make_epoch(net, optimizer, m)
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
    import torch

    torch.manual_seed(0)
    layers = []
    for l in range(net.L):
        layers.append(torch.nn.Linear(net.sizes[l], net.sizes[l + 1]))
        if l < net.L - 1:
            layers.append(torch.nn.ReLU())
    model = torch.nn.Sequential(*layers)
    opt = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE)
    loss_fn = torch.nn.CrossEntropyLoss()
    X, _, labels = _data(m, net.sizes)
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
    X, Y, _ = _data(m, net.sizes)
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
):
    """Interleaved medians per (batch size, contender); returns a JSON-able dict.

    PyTorch's OpenMP threads spin after each parallel region by default; in a
    process that also runs XLA's thread pool (or on a busy machine), the spinning
    threads take the cores the next contender needs and PyTorch itself slows
    down 8-10x. ``OMP_WAIT_POLICY=PASSIVE`` (set here unless already set, before
    torch is imported) makes them sleep instead, as a mixed process should.
    """
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    net = network(sizes)
    limit = matmul_peak(matmul_sizes)
    results, notes = [], []
    for m in batch_sizes:
        runs = {}
        for name in contenders:
            try:
                runs[name] = CONTENDERS[name](net, m)
            except ImportError as e:
                notes.append(f"{name} skipped at batch {m}: {e}")
        inner = {}
        for name, (run, _) in runs.items():  # warm up (compile), then size the inner loop
            run(EPOCH_BATCHES if name == "epoch" else 1)
            t0 = time.perf_counter()
            run(EPOCH_BATCHES if name == "epoch" else 1)
            per = (time.perf_counter() - t0) / (EPOCH_BATCHES if name == "epoch" else 1)
            n = max(1, int(target_s / max(per, 1e-9)))
            inner[name] = -(-n // EPOCH_BATCHES) * EPOCH_BATCHES if name == "epoch" else n
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
        flops = step_flops(net.sizes, m)
        hand_median = float(np.median(times["hand"])) if "hand" in times else None
        for name, ts in times.items():
            median = float(np.median(ts))
            results.append(
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
        "xla_products": dot_report(sizes=sizes),
        "notes": notes,
    }


def machine() -> dict:
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
    try:
        import torch

        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
        info["OMP_WAIT_POLICY"] = os.environ.get("OMP_WAIT_POLICY")
    except ImportError:
        info["torch"] = None
    return info


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def markdown(report: dict) -> str:
    """The report as a markdown table, one row per (batch, contender)."""
    lim = report["matmul_limit"]
    sizes = ", ".join(f"{n}: {r:.0f}" for n, r in lim["by_size"].items())
    lines = [
        f"Network {'-'.join(map(str, report['network']['sizes']))}, "
        f"{report['network']['activations'][0]} hidden, softmax + cross_entropy, "
        f"{report['dtype']}, {report['optimizer']}.",
        f"Best float32 matmul: {lim['best_gflops']:.0f} GFLOP/s (n x n, GFLOP/s by n: {sizes}).",
        "",
        "| batch | contender | median ms/step | x hand | GFLOP/s | of matmul limit "
        "| examples/s | peak memory |",
        "|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in report["results"]:
        peak = f"{r['peak_bytes'] / 2**20:.1f} MiB" if r["peak_bytes"] >= 0 else "n/a"
        ratio = f"{r['vs_hand']:.2f}" if r["vs_hand"] is not None else "-"
        lines.append(
            f"| {r['batch']} | {r['contender']} | {r['median_ms']:.3f} | {ratio} "
            f"| {r['gflops']:.0f} | {100 * r['fraction_of_matmul']:.0f}% "
            f"| {r['examples_per_s']:,.0f} | {peak} |"
        )
    lines.append("")
    for name, d in report.get("xla_products", {}).items():
        plain = "; ".join(d["plain_dots"]) or "none"
        lines.append(
            f"- XLA, {name} gradient at batch 256: {d['library_fusions']} products in "
            f"YNNPACK fusions, plain dots: {plain}"
        )
    lines += [f"- {n}" for n in report["notes"]]
    return "\n".join(lines) + "\n"


def parser(p=None):
    p = p or argparse.ArgumentParser(prog="jaxnn bench", description=__doc__.splitlines()[0])
    p.add_argument("--batch-sizes", type=int, nargs="+", default=list(BATCH_SIZES))
    p.add_argument("--contenders", nargs="+", default=list(CONTENDERS), choices=list(CONTENDERS))
    p.add_argument("--rounds", type=int, default=9)
    p.add_argument("--json", dest="json_path", help="write the report as JSON here")
    p.add_argument("--markdown", dest="markdown_path", help="write the markdown table here")
    p.add_argument("--force", action="store_true", help="overwrite existing output files")
    return p


def run_from_args(args) -> str:
    """Run with parsed arguments, write the files asked for, return the markdown."""
    for name, v in (("rounds", args.rounds), *(("batch size", b) for b in args.batch_sizes)):
        if v < 1:
            raise ValueError(f"{name} must be >= 1, got {v}")
    for path in (args.json_path, args.markdown_path):
        if path and os.path.exists(path) and not args.force:
            raise ValueError(f"{path} already exists; pass --force to overwrite it")
    report = run_benchmark(tuple(args.batch_sizes), tuple(args.contenders), args.rounds)
    table = markdown(report)
    if args.json_path:
        with open(args.json_path, "w") as f:
            json.dump(report, f, indent=2)
    if args.markdown_path:
        with open(args.markdown_path, "w") as f:
            f.write(table)
    return table
