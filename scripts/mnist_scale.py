"""MNIST scale: ``jaxnn train``'s time per epoch beside the bare compiled epoch.

Writes a synthetic MNIST-shaped ``mnist.npz`` (60,000 + 10,000 images of 28 x 28
uint8: ten noisy class prototypes, so that accuracy means something), then times

* the bare epoch: ``jaxnn.steps.make_epoch`` for 784-256-128-10, batch 128,
  Adam 1e-3, called on device arrays, median over epochs (no test evaluation);
* the command line: ``jaxnn train --dataset mnist`` for E1 and E2 epochs in two
  processes sharing a warm compilation cache; its time per epoch is
  (seconds(E2) - seconds(E1)) / (E2 - E1) from metrics.json, so it holds
  everything an epoch costs there: the test evaluation, the transfer, the
  progress bar, the checkpoint policy.

Usage: python scripts/mnist_scale.py [--json out.json] [--epochs 2 6]
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np


def write_synthetic_mnist(path: str, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    prototypes = rng.uniform(0, 255, (10, 28, 28))

    def part(m):
        labels = rng.integers(0, 10, m).astype(np.uint8)
        images = prototypes[labels] + rng.normal(0, 90, (m, 28, 28))
        return np.clip(images, 0, 255).astype(np.uint8), labels

    x_train, y_train = part(60_000)
    x_test, y_test = part(10_000)
    np.savez(path, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)


def bare_epoch_seconds(data_dir: str, epochs: int = 5) -> float:
    import jax

    from jaxnn import data, optim, steps, train

    ds = data.load("mnist", data_dir)
    net = ds.network((256, 128))
    opt = optim.adam(1e-3)
    params, state = train.make_init(net, opt)(jax.random.key(0))
    X, Y = jax.device_put(ds.X_train), jax.device_put(ds.Y_train)
    epoch = steps.make_epoch(net, opt, 128)
    key = jax.random.key(1)
    params, state, costs = epoch(params, state, X, Y, key)  # compile
    jax.block_until_ready(costs)
    times = []
    for _ in range(epochs):
        t0 = time.perf_counter()
        params, state, costs = epoch(params, state, X, Y, key)
        jax.block_until_ready(costs)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def cli_seconds(data_dir: str, epochs: int, work: str, env: dict) -> dict:
    out = os.path.join(work, f"run-{epochs}")
    argv = [sys.executable, "-m", "jaxnn", "train", "--dataset", "mnist", "--data", data_dir]
    argv += ["--hidden", "256", "128", "--batch-size", "128", "--epochs", str(epochs)]
    subprocess.run([*argv, "--out", out], check=True, env=env, capture_output=True)
    with open(os.path.join(out, "metrics.json")) as f:
        return json.load(f)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--json", help="write the figures here")
    p.add_argument("--epochs", type=int, nargs=2, default=[2, 6], metavar=("E1", "E2"))
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as work:
        write_synthetic_mnist(os.path.join(work, "mnist.npz"))
        env = {**os.environ, "JAX_COMPILATION_CACHE_DIR": os.path.join(work, "cache")}
        cli_seconds(work, 1, work, env)  # fills the compilation cache
        e1, e2 = args.epochs
        short, long = cli_seconds(work, e1, work, env), cli_seconds(work, e2, work, env)
        bare = bare_epoch_seconds(work)
    per_epoch = (long["seconds"] - short["seconds"]) / (e2 - e1)
    result = {
        "bare_epoch_s": bare,
        "cli_epoch_s": per_epoch,
        "cli_over_bare": per_epoch / bare,
        "test_accuracy": long["test_accuracy"],
        "epochs": [e1, e2],
        "load_average": list(os.getloadavg()),
    }
    print(json.dumps(result, indent=2))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
