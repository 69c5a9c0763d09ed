"""The benchmark's machinery: its peers compute the same thing, its counts are right.

Nothing here times anything; speed is measured by `jaxnn bench` (scripts/bench.py).
"""

import json
import os

import jax
import numpy as np
import pytest

import jaxnn
from jaxnn import bench, optim, steps


def test_step_flops_counts_every_product():
    # 3-4-2 network, m = 5: forward W1 A0 (4x3 by 3x5) and W2 A1 (2x4 by 4x5);
    # BP4 for both layers (same sizes); BP2 for layer 1 only (W2^T delta2).
    m = 5
    forward = 2 * m * (4 * 3 + 2 * 4)
    bp4 = 2 * m * (4 * 3 + 2 * 4)
    bp2 = 2 * m * (2 * 4)
    assert bench.step_flops((3, 4, 2), m) == forward + bp4 + bp2


def test_numpy_peer_matches_jaxnn_step():
    """The NumPy transcription and jaxnn's hand step + Adam make the same 3 updates."""
    net = bench.network((6, 5, 4, 3))
    params = jaxnn.init_params(jax.random.PRNGKey(0), net)
    X, Y, _ = bench.data(8, net.sizes)
    X, Y = X.astype(np.float64), Y.astype(np.float64)
    opt = optim.adam(0.01)
    step = steps.make_step(net, opt)
    p, s = params, opt.init(params)
    np_params = [{k: np.array(v) for k, v in layer.items()} for layer in params]
    V = [{k: np.zeros_like(v) for k, v in layer.items()} for layer in np_params]
    S = [{k: np.zeros_like(v) for k, v in layer.items()} for layer in np_params]
    for t in range(1, 4):
        p, s, _ = step(p, s, X, Y)
        bench.numpy_step(np_params, V, S, t, X, Y, learning_rate=0.01)
    for layer, np_layer in zip(p, np_params, strict=True):
        for k in ("W", "b"):
            np.testing.assert_allclose(layer[k], np_layer[k], rtol=1e-10, atol=1e-12)


@pytest.mark.slow
@pytest.mark.skipif(jax.default_backend() != "cpu", reason="XLA CPU's product kinds")
def test_hand_gradient_compiles_to_library_matmuls_only():
    """BP2's explicit W^T keeps every product in the fast path (see BENCHMARKS.md):
    no plain `dot` instruction, which XLA's CPU backend leaves to its slower path."""
    report = bench.dot_report(m=8, sizes=(12, 16, 16, 4))
    if report["autodiff"]["library_fusions"] == 0:
        pytest.skip("this XLA build does not use YNNPACK fusions")
    assert report["hand"]["plain_dots"] == []
    assert report["hand"]["library_fusions"] >= 5
    # 2 examples through wide layers: BP2 as (delta^T W)^T (transpose_times_cpu), the same
    small_batch = bench.dot_report(m=2, sizes=(12, 32, 32, 4))
    assert small_batch["hand"]["plain_dots"] == []
    assert small_batch["hand"]["library_fusions"] >= 5


@pytest.mark.slow
def test_run_benchmark_reports_every_contender():
    environ = dict(os.environ)
    report = bench.run_benchmark(
        batch_sizes=(4,),
        contenders=("hand", "autodiff", "numpy", "epoch"),
        rounds=1,
        target_s=0.0,
        sizes=(6, 5, 3),
        matmul_sizes=(64,),
        settle_s=0.0,
    )
    assert dict(os.environ) == environ  # OMP_WAIT_POLICY is jaxnn bench's to set
    rows = {r["contender"]: r for r in report["results"]}
    assert set(rows) == {"hand", "autodiff", "numpy", "epoch"}
    for r in rows.values():  # each row's ratio to hand, from the medians it reports
        assert r["vs_hand"] == pytest.approx(r["median_ms"] / rows["hand"]["median_ms"])
        assert r["median_ms"] > 0 and np.isfinite(r["gflops"])
        assert r["gflops"] == pytest.approx(
            bench.step_flops((6, 5, 3), 4) / (r["median_ms"] / 1e3) / 1e9
        )
    table = bench.markdown(report)
    assert table.count("\n| 4 |") == 4
    assert "Best float32 matmul" in table


def test_bench_refuses_to_overwrite(tmp_path, capsys):
    from jaxnn import cli

    out = tmp_path / "bench.json"
    out.write_text("mine")
    assert cli.main(["bench", "--json", str(out), "--batch-sizes", "4"]) == 2
    assert "already exists; pass --force" in capsys.readouterr().err
    assert out.read_text() == "mine"


def test_jaxnn_bench_command_errors_in_one_line(tmp_path, capsys):
    from jaxnn import cli

    assert cli.main(["bench", "--batch-sizes", "0"]) == 2
    err = capsys.readouterr().err
    assert err == "jaxnn: error: batch size must be >= 1, got 0\n"


@pytest.mark.slow
def test_jaxnn_bench_command_writes_its_table(tmp_path, capsys, monkeypatch):
    from jaxnn import cli

    monkeypatch.setenv("OMP_WAIT_POLICY", "")  # so that the test's end restores it
    monkeypatch.delenv("OMP_WAIT_POLICY")
    real = bench.run_benchmark
    monkeypatch.setattr(
        bench,
        "run_benchmark",
        lambda b, c, r, **kw: real(
            b, c, r, target_s=0.0, sizes=(5, 4, 3), matmul_sizes=(32,), settle_s=0.0, **kw
        ),
    )
    md = tmp_path / "b.md"
    argv = ["bench", "--batch-sizes", "4", "--contenders", "hand", "numpy", "--rounds", "1"]
    assert cli.main([*argv, "--markdown", str(md)]) == 0
    out = capsys.readouterr().out
    assert out == md.read_text()
    assert os.environ["OMP_WAIT_POLICY"] == "PASSIVE"  # the command line's own process
    assert "| 4 | hand |" in out and "| 4 | numpy |" in out
    assert "XLA" not in out  # the compiled products only with --xla-products
    assert cli.main([*argv, "--xla-products"]) == 0
    out = capsys.readouterr().out
    assert "matrix products run in the fast matmul library (YNNPACK fusions)" in out


def test_bench_help_gives_every_default_and_meaning(capsys):
    from jaxnn import cli

    with pytest.raises(SystemExit):
        cli.main(["bench", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for option, default in [
        ("--rounds", "default: 9 for the step benchmark, 3 for --time-to-accuracy"),
        ("--batch-sizes", "default: 32 256 2048"),
        ("--contenders", "default: all of the mode's"),
        ("--hidden", "default: 256 128"),
        ("--epochs", "default: 40"),
        ("--batch-size B", "default: 16"),
        ("--learning-rate", "default: 0.001"),
        ("--json", "default: none"),
    ]:
        assert option in text and default in text, option


def test_jaxnn_verify_refuses_to_overwrite(tmp_path, capsys):
    from jaxnn import cli

    out = tmp_path / "rows.json"
    out.write_text("mine")
    assert cli.main(["verify", "--json", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert out.read_text() == "mine"


# --- time to accuracy, at a tiny size (seconds) -------------------------------------------

TINY = {"hidden": (8,), "epochs": 2, "batch_size": 64}


@pytest.mark.slow
def test_time_to_accuracy_runs_every_contender_in_its_own_process(tmp_path):
    pytest.importorskip("torch")
    report = bench.run_time_to_accuracy(rounds=1, workdir=tmp_path, **TINY)
    summary = report["summary"]
    assert list(summary) == ["jaxnn-cold", "jaxnn-warm", "sklearn", "torch"]
    for name, r in summary.items():
        assert r["epochs_run"] == 2, name  # every contender ran exactly the epochs asked
        assert 0 < r["training_s"] < r["process_wall_s"], name
        assert 0.1 < r["test_accuracy"] <= 1.0, name  # 2 epochs: better than chance (0.1)
    # The two jaxnn runs train the same network with the same seed: the same accuracy.
    assert summary["jaxnn-cold"]["test_accuracy"] == summary["jaxnn-warm"]["test_accuracy"]
    ratio = report["ratios"]["jaxnn-warm / sklearn training_s"]
    assert ratio == summary["jaxnn-warm"]["training_s"] / summary["sklearn"]["training_s"]
    assert os.listdir(tmp_path) == []  # its temporary files are gone
    table = bench.time_to_accuracy.markdown(report)
    assert table.count("\n| jaxnn-") == 2 and "| sklearn |" in table and "| torch |" in table


def test_time_to_accuracy_split_is_jaxnn_train_split(tmp_path):
    from jaxnn import data
    from jaxnn.bench import time_to_accuracy

    path = tmp_path / "split.npz"
    time_to_accuracy.write_split(str(path), {"dataset": "digits", "data": None})
    saved, ds = np.load(path), data.load("digits")
    np.testing.assert_array_equal(saved["X_train"], ds.X_train.T)
    np.testing.assert_array_equal(saved["y_test"], ds.Y_test.argmax(axis=0))
    assert saved["X_train"].flags.c_contiguous and int(saved["n_classes"]) == 10


@pytest.mark.slow
def test_jaxnn_bench_time_to_accuracy_writes_json_and_markdown(tmp_path, capsys):
    from jaxnn import cli

    js, md = tmp_path / "tta.json", tmp_path / "tta.md"
    argv = ["bench", "--time-to-accuracy", "--contenders", "sklearn", "--rounds", "1"]
    argv += ["--hidden", "8", "--epochs", "2", "--batch-size", "64"]
    assert cli.main([*argv, "--json", str(js), "--markdown", str(md)]) == 0
    report = json.loads(js.read_text())
    assert report["settings"]["hidden"] == [8] and list(report["summary"]) == ["sklearn"]
    assert capsys.readouterr().out == md.read_text()
    assert cli.main([*argv, "--json", str(js)]) == 2  # never over an existing file
    assert cli.main(["bench", "--time-to-accuracy", "--contenders", "jax"]) == 2
    assert "unknown contenders ['jax']" in capsys.readouterr().err
