"""Data-parallel training on 4 virtual CPU devices: what the comparisons with Adam miss.

* The all-reduce is looked for in the program XLA compiled for
  ``make_parallel_step``'s own jit, read from XLA's dump of the modules compiled
  while it ran.
* Plain SGD against one device: Adam divides each update by the root of its own
  second moment, so a gradient N times too large (a sum over the devices instead
  of a mean) barely moves it; SGD moves N times as far.
* ``gradients="autodiff"`` on a mesh, and (float32 only) ``jaxnn train --resume``
  on another number of devices than the run began with.

Each runs twice, in float64 (x64 on) and in float32 (JAX's default, as users run
it), in a fresh process: XLA fixes the device count when JAX starts. Tolerances
are relative to each leaf's scale: 1e-12 (float64) and 1e-5 (float32, where up to
3.4e-7 was seen).
"""

import subprocess
import sys
import textwrap

import pytest

from tests.proc_support import fast_env

SCRIPT = textwrap.dedent(
    r"""
    import contextlib, io, json, os, re, sys
    import jax, numpy as np

    dtype, out, dump = sys.argv[1], sys.argv[2], sys.argv[3]
    if dtype == "float64":
        jax.config.update("jax_enable_x64", True)
    jax.config.update("jax_default_matmul_precision", "highest")
    import jaxnn
    from jaxnn import checkpoint, cli, data, optim, parallel, steps, train

    assert jax.device_count() == 4, jax.devices()
    # Tolerances, relative to each leaf's scale: the devices sum over their examples in
    # another order than one device, so results differ by rounding, amplified over steps.
    TOL = {"float64": 1e-12, "float32": 1e-5}[dtype]

    def rel_err(a, b):
        return max(float(np.max(np.abs(np.asarray(x) - np.asarray(y)), initial=0.0))
                   / max(float(np.max(np.abs(np.asarray(y)), initial=0.0)), 1e-300)
                   for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True))

    def dtypes(tree):
        return {str(x.dtype) for x in jax.tree.leaves(tree)}

    rng = np.random.default_rng(0)
    X = rng.standard_normal((6, 80))
    Y = np.eye(3)[:, rng.integers(0, 3, 80)]
    net = jaxnn.Network((6, 16, 3), ("tanh", "softmax"), "cross_entropy")
    params = jaxnn.init_params(jax.random.key(1), net)
    assert dtypes(params) == {dtype}
    mesh = parallel.make_mesh(4)

    # 1. make_parallel_step's own program: the modules XLA compiled during its first call.
    sgd = optim.sgd(0.5)
    pstep = parallel.make_parallel_step(net, sgd, mesh)
    Xb, Yb = X[:, :16].astype(dtype), Y[:, :16].astype(dtype)
    before = set(os.listdir(dump))
    p4, s4, c4 = pstep(params, sgd.init(params), Xb, Yb)
    new = [f for f in set(os.listdir(dump)) - before if f.endswith("cpu_after_optimizations.txt")]
    texts = [open(os.path.join(dump, f)).read() for f in new]
    reducing = [t for t in texts if "all-reduce(" in t]
    assert len(reducing) == 1, f"{len(reducing)} modules with an all-reduce among {new}"
    [text] = reducing
    # Its entry takes a (6, 4) block of the (6, 16) batch: each device holds 4 examples ...
    p = {"float64": "f64", "float32": "f32"}[dtype]
    assert f"{p}[6,4]" in text.splitlines()[0], text.splitlines()[0][:500]
    # ... and it sums over the devices a tensor of the shape of every W and b gradient.
    reduce_lines = " ".join(l for l in text.splitlines() if "all-reduce(" in l)
    for shape in ("16,6", "16", "3,16", "3"):
        assert re.search(rf"{p}\[{shape}(,1)?\]", reduce_lines), (shape, reduce_lines[:800])
    # ... and that step equals one device's.
    p1, s1, c1 = steps.make_step(net, sgd)(params, sgd.init(params), Xb, Yb)
    err = rel_err(p4, p1)
    assert err < TOL, f"the parallel sgd step is {err:.1e} from one device's"
    assert abs(float(c4) - float(c1)) < TOL * abs(float(c1)), (float(c4), float(c1))
    assert dtypes(p4) == {dtype}

    # 2. fit with plain SGD, 3 epochs of 4 steps, and with autodiff gradients, on 4 devices
    # against 1: a gradient N times too large would be N times the step here.
    ds = data.Dataset(X[:, :64], Y[:, :64], X[:, 64:], Y[:, 64:], "classification",
                      "softmax", "cross_entropy")
    key = jax.random.key(0)
    one = train.fit(net, sgd, ds, 3, 16, key)
    four = train.fit(net, sgd, ds, 3, 16, key, devices=4)
    weights = lambda result: [layer["W"] for layer in result.params]
    moved = rel_err(weights(one), weights(train.fit(net, sgd, ds, 0, 16, key)))
    err = rel_err(four.params, one.params)
    print("SGD_FIT", dtype, err, "moved", moved)
    assert moved > 0.05 and err < TOL, (err, moved)
    assert dtypes(four.params) == {dtype}
    for a, b in zip(four.history, one.history, strict=True):
        assert all(abs(a[k] - b[k]) <= TOL * max(1.0, abs(b[k])) for k in a), (a, b)
    auto4 = train.fit(net, sgd, ds, 3, 16, key, devices=4, gradients="autodiff")
    auto1 = train.fit(net, sgd, ds, 3, 16, key, gradients="autodiff")
    err = rel_err(auto4.params, auto1.params)
    print("AUTODIFF_FIT", dtype, err, rel_err(auto4.params, one.params))
    assert err < TOL and rel_err(auto4.params, one.params) < 10 * TOL, err

    # 3. jaxnn train in float32, as users run it: 2 epochs on 2 devices, resumed to 4
    # epochs on 4 devices, against fit on one device (88 sgd steps; 1.7e-7 seen).
    if dtype == "float32":
        def run(*argv):
            err = io.StringIO()
            with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
                status = cli.main(list(argv))
            assert status == 0, err.getvalue()

        flags = ["--hidden", "8", "--batch-size", "64", "--optimizer", "sgd",
                 "--learning-rate", "0.05"]
        run("train", "--epochs", "2", *flags, "--devices", "2", "--out", f"{out}/split")
        run("train", "--resume", "--epochs", "4", "--devices", "4", "--out", f"{out}/split")
        ds = data.digits()
        whole = train.fit(ds.network((8,), "relu"), optim.sgd(0.05), ds, 4, 64, key,
                          train_metrics=True)  # as the command line reports
        with checkpoint.Checkpoints(f"{out}/split/checkpoints") as ckpts:
            split = ckpts.restore(whole.params, whole.opt_state, key)
        err = rel_err(split.params, whole.params)
        print("CLI_RESUME", dtype, err)
        assert split.epoch == 4 and dtypes(split.params) == {"float32"}
        assert err < TOL, err
        metrics = json.load(open(f"{out}/split/metrics.json"))
        assert metrics["devices"] == 4 and len(metrics["history"]) == 4
        for a, b in zip(metrics["history"], whole.history, strict=True):
            assert a.keys() == b.keys(), (a, b)
            assert all(abs(a[k] - b[k]) <= TOL * max(1.0, abs(b[k])) for k in a), (a, b)
    print("OK")
    """
)


@pytest.mark.slow
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_parallel_against_one_device(tmp_path, dtype):
    dump = tmp_path / "xla-dump"
    dump.mkdir()
    env = fast_env(4, f"--xla_dump_to={dump}", "--xla_dump_hlo_as_text")
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, dtype, str(tmp_path), str(dump)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    assert result.stdout.endswith("OK\n"), result.stdout
