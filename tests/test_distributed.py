"""Several processes: ``jaxnn train`` across real processes on localhost, and its parts.

The real runs start ``python -m jaxnn train`` as two processes with two virtual
CPU devices each (``--xla_force_host_platform_device_count=2``), joined by
``jax.distributed`` over 127.0.0.1 (gloo collectives, jax's CPU default), and
compare them with one process on four devices. They are kept small (digits, a
hidden layer of 8, batches of 64, 3 epochs) for CI on two cores.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time

import jax
import numpy as np
import pytest

from jaxnn import Network, distributed, optim, parallel, sharded, train
from tests.proc_support import fast_env
from tests.test_cli import run

SMALL = ["--hidden", "8", "--batch-size", "64", "--epochs", "3"]
# float32 runs; the histories of 2 x 2 and 1 x 4 devices agree to rounding (measured: train
# costs bitwise equal, test costs within 1 ulp, 2.4e-7; accuracies equal).
RTOL = 1e-5


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def env(devices: int) -> dict:
    flags = f"--xla_force_host_platform_device_count={devices}"
    return {**os.environ, "XLA_FLAGS": flags, "JAX_PLATFORMS": "cpu"}


def jaxnn_train(*argv, devices=4):
    return subprocess.run(
        [sys.executable, "-m", "jaxnn", "train", *argv],
        capture_output=True,
        text=True,
        timeout=300,
        env=env(devices),
    )


def start_two(*argv, per_process=((), ())):
    """Two ``jaxnn train`` processes, two devices each, joined at a free local port."""
    launch = [sys.executable, "-m", "jaxnn", "train", "--coordinator", f"127.0.0.1:{free_port()}"]
    launch += ["--num-processes", "2", "--devices", "2"]
    return [
        subprocess.Popen(
            [*launch, "--process-id", str(i), *argv, *per_process[i]],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env(2),
        )
        for i in range(2)
    ]


def finish(procs, timeout=300):
    """[(status, stdout, stderr)] of each process; none is left running."""
    results = []
    try:
        for p in procs:
            out, err = p.communicate(timeout=timeout)
            results.append((p.returncode, out, err))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    return results


def history(out) -> list:
    with open(os.path.join(out, "metrics.json")) as f:
        return json.load(f)["history"]


def assert_histories_close(got, want):
    assert [r["epoch"] for r in got] == [r["epoch"] for r in want]
    for g, w in zip(got, want, strict=True):
        assert set(g) == set(w)
        for name in w:
            assert abs(g[name] - w[name]) <= RTOL * abs(w[name]) + 1e-7, (name, g, w)


def jaxnn_lines(text: str) -> list[str]:
    """The lines jaxnn wrote (JAX's runtime and gloo add their own)."""
    return [line for line in text.splitlines() if "jaxnn" in line or "digits" in line]


@pytest.mark.slow
def test_two_processes_equal_one_and_resume_either_way(tmp_path):
    """2 processes x 2 devices against 1 x 4: metrics.json histories equal within RTOL;
    only process 0 prints and writes; a 2-process run resumes on 2 processes and on 1."""
    one, two, solo = tmp_path / "one", tmp_path / "two", tmp_path / "solo"
    ref = jaxnn_train(*SMALL, "--devices", "4", "--out", str(one))
    assert ref.returncode == 0, ref.stderr[-2000:]
    want = history(one)

    every = ("--checkpoint-every", "0")  # a checkpoint each epoch, on both processes
    results = finish(start_two(*SMALL[:-1], "2", *every, "--out", str(two), "--peer-timeout", "30"))
    assert [r[0] for r in results] == [0, 0], [r[2][-2000:] for r in results]
    (_, out0, err0), (_, out1, err1) = results
    assert_histories_close(history(two), want[:2])
    assert len(jaxnn_lines(out0)) == 1 and "test accuracy" in out0  # the summary line
    assert "2/2" in err0  # the progress bar
    assert jaxnn_lines(out1) == [] and jaxnn_lines(err1) == []  # process 1: silent
    with open(two / "metrics.json") as f:
        assert json.load(f)["devices"] == 4
    assert sorted(os.listdir(two)) == [
        "checkpoints", "config.json", "curves.png", "metrics.json", "model.json"
    ]  # fmt: skip
    assert sorted(os.listdir(two / "checkpoints")) == ["1", "2"]  # committed, no tmp left
    shutil.copytree(two, solo)

    # Resume on the same two processes ...
    results = finish(start_two("--resume", "--epochs", "3", "--out", str(two)))
    assert [r[0] for r in results] == [0, 0], [r[2][-2000:] for r in results]
    assert_histories_close(history(two), want)
    # ... and the same checkpoint on one process with the same 4 devices in all.
    resumed = jaxnn_train("--resume", "--epochs", "3", "--devices", "4", "--out", str(solo))
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert_histories_close(history(solo), want)


@pytest.mark.slow
def test_a_process_that_stops_responding_stops_the_other_with_one_line(tmp_path):
    """Process 1 hangs (SIGSTOP) after epoch 1; process 0 ends with one line naming it,
    exit status 1, within the 5 s peer timeout plus a margin. A stopped process keeps its
    sockets open, so only the watchdog can notice: this is its test. (A SIGKILL closes the
    sockets, and one landing inside a collective can let gloo abort the survivor with its
    own check failure first: seen once in CI, see docs/scaling.md.)"""
    out = tmp_path / "run"
    procs = start_two(
        *SMALL[:-1], "500", "--checkpoint-every", "0", "--out", str(out), "--peer-timeout", "5"
    )
    try:
        deadline = time.monotonic() + 240
        while not (out / "checkpoints" / "1").is_dir():  # mid-run: epoch 1 is saved
            assert time.monotonic() < deadline and procs[0].poll() is None, "no epoch 1"
            time.sleep(0.2)
        procs[1].send_signal(signal.SIGSTOP)
        stopped = time.monotonic()
        _, err = procs[0].communicate(timeout=60)
        took = time.monotonic() - stopped
    finally:
        procs[1].kill()  # a stopped process is killed too
        finish(procs)
    assert procs[0].returncode == 1, err[-2000:]
    last = err.strip().splitlines()[-1]
    assert last == (
        "jaxnn: error: process 1 stopped responding: no heartbeat for 5 s (it died, hangs, "
        "or its host is unreachable)"
    ), err[-2000:]
    assert "stack trace" not in err  # JAX's own abort did not come first
    assert took < 20, took


@pytest.mark.slow
def test_a_signal_to_one_process_stops_both_after_the_same_saved_epoch(tmp_path):
    """SIGTERM to process 1 mid-run, with the time-based checkpoint policy (default 10 s):
    both stop after the same epoch, saved on both (a collective save), exit 143; process 0
    writes the unfinished metrics.json and prints the resume command with the flags."""
    out = tmp_path / "run"
    procs = start_two(*SMALL[:-1], "100000", "--out", str(out), "--peer-timeout", "30")
    try:
        deadline = time.monotonic() + 240
        while not (out / "config.json").exists():  # written once both agree, before training
            assert time.monotonic() < deadline and procs[0].poll() is None, "no start"
            time.sleep(0.2)
        time.sleep(3)  # training under way
        procs[1].send_signal(signal.SIGTERM)
    finally:
        results = finish(procs, timeout=120)
    assert [r[0] for r in results] == [143, 143], [r[2][-2000:] for r in results]
    with open(out / "metrics.json") as f:
        metrics = json.load(f)
    done = metrics["epochs_done"]
    assert not metrics["finished"] and len(metrics["history"]) == done >= 1
    saved = os.listdir(out / "checkpoints")
    assert all(name.isdigit() for name in saved), saved  # committed, none left unfinished
    assert max(int(name) for name in saved) == done, saved  # the epoch in hand, saved
    line = jaxnn_lines(results[0][2])[-1]
    assert line.startswith(
        f"jaxnn: interrupted by a signal to another process after epoch {done} of 100000"
    ), line
    assert "--resume" in line and "--process-id I (on every process I)" in line, line
    assert jaxnn_lines(results[1][1]) == []  # process 1 writes no summary


@pytest.mark.slow
def test_a_mismatched_command_names_each_difference(tmp_path):
    """Process 1 with another seed, network and number of processes: both processes stop
    at the start with one line naming each difference, exit status 2, nothing written."""
    out = tmp_path / "run"
    other = ["--seed", "1", "--hidden", "4", "--num-processes", "3"]
    results = finish(start_two(*SMALL, "--out", str(out), per_process=((), other)))
    for i, (status, _, err) in enumerate(results):
        assert status == 2, err[-2000:]
        (line,) = jaxnn_lines(err)
        assert line.startswith(f"jaxnn: error: process {1 - i} was started with another command")
        for words in [
            ("--seed 1 there, 0 here", "--seed 0 there, 1 here"),
            ("--hidden [4] there, [8] here", "--hidden [8] there, [4] here"),
            ("--num-processes 3 there, 2 here", "--num-processes 2 there, 3 here"),
        ]:
            assert words[i] in line, line
        assert "network" in line
    assert not out.exists()


SHARE_SCRIPT = textwrap.dedent(
    """
    import jax, jax.numpy as jnp, numpy as np
    jax.config.update("jax_enable_x64", True)
    jax.config.update("jax_default_matmul_precision", "highest")
    import jaxnn
    from jaxnn import data, distributed, metrics, optim, parallel, programs, sharded, train

    mesh = distributed.make_mesh(4)
    # The metrics, summed over the padded, sharded test set: evaluate's, for every head.
    for name in ["digits", "breast_cancer", "diabetes"]:
        ds = data.load(name, dtype=np.float64)
        net = ds.network((8,))
        share = sharded.local_share(ds, mesh)
        assert share.X_test.shape[1] % 4 == 0 and share.X_test.shape[1] - share.m_test < 4
        params = jaxnn.init_params(jax.random.key(0), net)
        p = sharded.place(share.X_test, share.Y_test, share.m_test, mesh)
        weighted = jax.jit(metrics.metrics, static_argnums=(4, 5))
        got = weighted(parallel.replicate(params, mesh), p.X, p.Y, p.weights, net,
                       share.m_test)
        got = {k: float(v) for k, v in got.items()}
        want = train.evaluate(params, ds.X_test, ds.Y_test, net)
        assert set(got) == set(want), (got, want)
        for k in want:
            assert abs(got[k] - want[k]) <= 1e-12 * max(1, abs(want[k])), (name, k, got, want)

    # Training on the share: the single device's history (digits: 1438 examples, 2 padded).
    ds = data.load("digits", dtype=np.float64)
    net, opt = ds.network((8,)), optim.adam(1e-2)
    share = sharded.local_share(ds, mesh)
    assert (share.m_train, share.X_train.shape[1]) == (1438, 1440)
    got = train.fit(net, opt, share, 2, 32, jax.random.key(0), mesh=mesh)
    want = train.fit(net, opt, ds, 2, 32, jax.random.key(0))
    for g, w in zip(got.history, want.history, strict=True):
        for k in w:
            assert abs(g[k] - w[k]) <= 1e-12 * max(1, abs(w[k])), (k, g, w)
    print("fit OK")

    # Each device holds a quarter of the (padded) training set, and the compiled epoch
    # gathers its batches without gathering the set: no all-gather as large as X.
    opt = optim.sgd(0.1)
    params = jaxnn.init_params(jax.random.key(0), net)
    state = parallel.replicate((params, opt.init(params)), mesh)
    p = sharded.place(share.X_train, share.Y_train, share.m_train, mesh)
    t = sharded.place(share.X_test, share.Y_test, share.m_test, mesh)
    n, m_pad = p.X.shape
    assert {s.data.shape for s in p.X.addressable_shards} == {(n, m_pad // 4)}
    state = jax.tree.leaves(state)
    tree = jax.tree.structure((params, opt.init(params)))
    built = programs.build(net, opt, 32, "hand", mesh, "batch", (share.m_train, share.m_test),
                           tree, None)
    train_epoch = built.epoch
    key = parallel.replicate(np.asarray(jax.random.PRNGKey(1)), mesh)
    e = parallel.replicate(np.int32(0), mesh)
    hlo = train_epoch.lower(*state, p.X, p.Y, p.weights, key, e, t.X, t.Y, t.weights)
    hlo = hlo.compile().as_text()
    import math, re
    for line in hlo.splitlines():
        if "all-gather(" in line:
            dims = re.search(r"= \\w+\\[([\\d,]*)\\]", line).group(1)
            size = math.prod(int(d) for d in dims.split(",") if d)
            assert size < n * m_pad // 4, line
    print("OK")
    """
)


@pytest.mark.slow
def test_a_share_trains_as_one_device_does():
    """On 4 devices, with the examples padded and split by columns: the test metrics equal
    evaluate's for the three output heads, and fit on the Share equals fit on one device,
    in float64; each device holds a quarter of the data, and no all-gather brings it back."""
    out = subprocess.run(
        [sys.executable, "-c", SHARE_SCRIPT],
        env=fast_env(4),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.count("OK") == 2, out.stdout


@pytest.mark.parametrize(
    "argv, words",
    [
        (["--coordinator", "127.0.0.1:1", "--num-processes", "2"], "give --coordinator, "),
        (["--coordinator", "nowhere", "--num-processes", "2", "--process-id", "0"], "HOST:PORT"),
        (["--coordinator", "h:1", "--num-processes", "2", "--process-id", "2"], "not in 0..1"),
        (["--distributed", "--process-id", "0"], "--distributed detects the cluster by itself"),
        (["--distributed", "--peer-timeout", "0"], "--peer-timeout must be"),
    ],
)
def test_bad_launch_flags_are_one_line(tmp_path, argv, words):
    status, _, err = run("train", *argv, "--out", str(tmp_path / "run"))
    assert status == 2 and err.count("\n") == 1 and words in err, err
    assert not jax.distributed.is_initialized()


def test_several_processes_need_a_run_directory():
    status, _, err = run("train", "--distributed")
    assert status == 2 and "several processes need --out DIR" in err, err


def test_mesh_and_share_on_one_process():
    mesh = distributed.make_mesh(1)
    assert mesh.axis_names == (parallel.AXIS,) and not distributed.spans_processes(mesh)
    assert sharded.padded(7, mesh) == 7 and sharded.local_columns(mesh, 7) == (0, 7)
    with pytest.raises(ValueError, match="asked for 9 devices per process"):
        distributed.make_mesh(9)
    X = np.arange(12.0).reshape(2, 6)
    share = sharded.local_share(
        type("D", (), {"X_train": X, "Y_train": X[:1], "X_test": X[:, :2], "Y_test": X[:1, :2]}),
        mesh,
    )
    np.testing.assert_array_equal(share.X_train, X)
    assert (share.m_train, share.m_test) == (6, 2)
    with pytest.raises(ValueError, match="needs mesh="):  # a share is split for a mesh
        train.fit(
            Network((2, 1), ("linear",), "mse"), optim.sgd(0.1), share, 1, 2, jax.random.key(0)
        )
    distributed.check_same({"anything": 1})  # one process: nothing to compare
    assert distributed.is_writer() and distributed.any_process(True)
    assert distributed.any_process(False, True, False) == (False, True, False)
