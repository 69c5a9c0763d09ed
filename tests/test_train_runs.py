"""``jaxnn train`` as real processes: the compilation cache, and kills at random moments.

Each test runs the command in subprocesses (float32, as users run it), with its
own compilation cache directory.
"""

import json
import os
import random
import re
import signal
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxnn
from jaxnn import checkpoint, data, optim
from jaxnn.cli import cache

SMALL = ["--hidden", "8", "--batch-size", "64"]

# `jaxnn train` with JAX's compilation events counted, reported as JSON on stderr's last line.
COUNTING = """
import json, sys
import jax
from jax import monitoring

counts = {}
def event(name, **kwargs):
    counts[name] = counts.get(name, 0) + 1
def duration(name, seconds, **kwargs):
    counts[name] = counts.get(name, 0) + 1
monitoring.register_event_listener(event)
monitoring.register_event_duration_secs_listener(duration)
from jaxnn.cli import main
status = main(sys.argv[1:])
print(json.dumps(counts), file=sys.stderr)
sys.exit(status)
"""
REQUESTS = "/jax/compilation_cache/compile_requests_use_cache"
HITS = "/jax/compilation_cache/cache_hits"
WRITES = "/jax/compilation_cache/cache_misses"  # JAX's name: a miss, compiled and written
COMPILES = "/jax/core/compile/backend_compile_duration"  # every compilation, cached or not
TRACES = "/jax/core/compile/jaxpr_trace_duration"  # every trace of a jitted function


def env(cache_dir=None, **extra):
    environ = {**os.environ, "JAX_PLATFORMS": "cpu", **extra}
    environ.pop("JAX_COMPILATION_CACHE_DIR", None)
    if cache_dir is not None:
        environ["JAX_COMPILATION_CACHE_DIR"] = str(cache_dir)
    return environ


def train_counting(out, environ, *flags):
    argv = [sys.executable, "-c", COUNTING, "train", "--epochs", "2", *SMALL, *flags]
    result = subprocess.run(
        [*argv, "--out", str(out)], capture_output=True, text=True, timeout=300, env=environ
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stderr.strip().splitlines()[-1])


@pytest.mark.slow
def test_second_identical_run_compiles_nothing(tmp_path):
    """The first run caches in JAX_COMPILATION_CACHE_DIR; the second, given only
    XDG_CACHE_HOME, finds the same directory under it: its cache hits show it used it."""
    cache_dir = tmp_path / "xdg" / "jaxnn" / "jax"
    kept = cache_dir / cache.PROGRAMS
    first = train_counting(tmp_path / "a", env(cache_dir))
    assert first.get(WRITES, 0) >= 2 and first[REQUESTS] == first[COMPILES]  # all cached
    programs = {p.name: p.stat().st_ino for p in kept.glob("*.jaxexport")}
    assert len(programs) == 2  # fit's start and epoch, exported
    second = train_counting(tmp_path / "b", env(None, XDG_CACHE_HOME=str(tmp_path / "xdg")))
    assert second.get(WRITES, 0) == 0, second  # nothing compiled afresh
    assert second.get(HITS, 0) == second.get(REQUESTS, 0) == second.get(COMPILES, 0)
    # fit's two programs loaded from their exports, not traced ...
    assert second.get(TRACES, 0) <= first[TRACES] - 2, (first, second)
    assert {p.name: p.stat().st_ino for p in kept.glob("*.jaxexport")} == programs  # kept
    a, b = (json.loads((tmp_path / d / "metrics.json").read_text()) for d in "ab")
    assert a["history"] == b["history"]  # ... and they compute the same bits
    if hasattr(os, "sched_setaffinity") and os.path.isdir("/proc/self/task"):
        assert a["cpu_threads"] == 1  # a small network: XLA's CPU pool of one thread


@pytest.mark.slow
def test_no_compilation_cache_flag_writes_nothing(tmp_path):
    cache_dir = tmp_path / "cache"
    counts = train_counting(tmp_path / "a", env(cache_dir), "--no-compilation-cache")
    assert counts.get(REQUESTS, 0) == counts.get(HITS, 0) == counts.get(WRITES, 0) == 0
    assert counts[COMPILES] >= 2
    assert not cache_dir.exists() or not any(cache_dir.iterdir())


def test_cache_dir_precedence(tmp_path):
    """JAX_COMPILATION_CACHE_DIR wins; else XDG_CACHE_HOME; else ~/.cache."""
    assert cache.cache_dir({"JAX_COMPILATION_CACHE_DIR": "/a", "XDG_CACHE_HOME": "/b"}) == "/a"
    assert cache.cache_dir({"XDG_CACHE_HOME": "/b"}) == os.path.join("/b", "jaxnn", "jax")
    home = os.path.expanduser("~")
    assert cache.cache_dir({}) == os.path.join(home, ".cache", "jaxnn", "jax")
    assert cache.cache_dir({"XDG_CACHE_HOME": ""}) == os.path.join(home, ".cache", "jaxnn", "jax")
    settings = {"optimizer": "adam", "learning_rate": 0.001}
    kept = cache.programs(settings, {"XDG_CACHE_HOME": "/b"})
    assert kept.directory == os.path.join("/b", "jaxnn", "jax", cache.PROGRAMS)
    assert kept.recipe == "optimizer=adam learning_rate=0.001"


# --- kill -9 at random moments, then --resume: the same history, bit for bit -----------

EPOCHS = 20  # kills land after random epochs among 2..14
KILL_FLAGS = ["--epochs", str(EPOCHS), *SMALL, "--checkpoint-every", "0"]


def start(out, environ, resume=False):
    argv = [sys.executable, "-m", "jaxnn", "train", *KILL_FLAGS, "--out", str(out)]
    if resume:
        argv.append("--resume")
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=environ)


def saved_epochs(out) -> list[int]:
    try:
        return [int(name) for name in os.listdir(out / "checkpoints") if name.isdigit()]
    except FileNotFoundError:
        return []


def kill_when(proc, out, epoch: int | None, delay: float) -> None:
    """SIGKILL ``proc`` ``delay`` seconds after epoch ``epoch`` is saved (after its start if
    None), so the kill lands at a random moment: within a save in the background, an epoch,
    or the start-up (imports, restoring, compiling)."""
    deadline = time.monotonic() + 300
    while epoch is not None and not any(e >= epoch for e in saved_epochs(out)):
        assert proc.poll() is None and time.monotonic() < deadline, "the run ended first"
        time.sleep(0.002)
    time.sleep(delay)
    assert proc.poll() is None, "the run ended before its kill"
    proc.send_signal(signal.SIGKILL)
    proc.wait()


def newest(out):
    ds = data.load("digits")
    net = ds.network((8,), "relu")
    opt = optim.adam(1e-3)
    template = jaxnn.init_params(jax.random.key(0), net, dtype=jnp.float32)
    with checkpoint.Checkpoints(out / "checkpoints") as ckpts:
        return ckpts.restore(template, opt.init(template), jax.random.key(0))


@pytest.mark.slow
def test_kill_9_at_random_moments_then_resume_is_bitwise_exact(tmp_path):
    """Four SIGKILLs at random moments of real runs, each followed by --resume: during the
    start-up, and a random 0-40 ms after random epochs were saved (within an epoch or a
    background save); the end equals an uninterrupted run's, bit for bit."""
    environ = env(tmp_path / "cache")
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    assert start(whole, environ).wait(timeout=300) == 0  # also fills the compilation cache
    rng = random.Random(10)
    targets = [None, *sorted(rng.sample(range(2, EPOCHS - 5), 3))]
    for target in targets:  # a run killed before it wrote config.json starts afresh
        proc = start(killed, environ, resume=(killed / "config.json").exists())
        kill_when(proc, killed, target, rng.uniform(0, 1.0 if target is None else 0.04))
    final = start(killed, environ, resume=True)
    assert final.wait(timeout=300) == 0
    history = lambda d: json.loads((d / "metrics.json").read_text())["history"]
    assert history(killed) == history(whole)
    assert json.loads((killed / "metrics.json").read_text())["finished"] is True
    a, b = newest(killed), newest(whole)
    assert a.epoch == b.epoch == EPOCHS
    leaves = lambda r: jax.tree.leaves((r.params, r.opt_state))
    for x, y in zip(leaves(a), leaves(b), strict=True):
        np.testing.assert_array_equal(x, y)  # bitwise
    assert sorted(saved_epochs(killed)) == [EPOCHS - 2, EPOCHS - 1, EPOCHS]  # the newest 3


def wait_for_epochs(proc, total: int) -> None:
    """Read the progress bar on ``proc``'s stderr until an epoch is done."""
    seen, deadline = "", time.monotonic() + 120
    while not re.search(rf"\| *[1-9]\d*/{total} ", seen):
        assert time.monotonic() < deadline and proc.poll() is None, seen[-2000:]
        seen += os.read(proc.stderr.fileno(), 4096).decode(errors="replace")


@pytest.mark.slow
@pytest.mark.parametrize("every", ["0", "3600"])
def test_sigterm_saves_the_epoch_in_hand(tmp_path, every):
    """Saving every epoch or at most hourly, SIGTERM during training: the epoch in hand is
    saved, and metrics.json says which epochs are done and that the run is unfinished."""
    out, total = tmp_path / "run", 100_000
    argv = [sys.executable, "-m", "jaxnn", "train", "--epochs", str(total), *SMALL]
    argv += ["--checkpoint-every", every, "--out", str(out)]
    proc = subprocess.Popen(
        argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env(tmp_path / "cache")
    )
    try:
        wait_for_epochs(proc, total)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=120) == 143
    finally:
        proc.kill()
        proc.wait()
        proc.stderr.close()
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["finished"] is False and 1 <= metrics["epochs_done"] < total
    assert len(metrics["history"]) == metrics["epochs_done"]
    assert newest(out).epoch == metrics["epochs_done"]
    assert (out / "curves.png").exists()
