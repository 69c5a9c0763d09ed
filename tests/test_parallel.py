"""Data-parallel training on 4 virtual CPU devices, checked against one device.

XLA fixes the device count when JAX starts, so these checks run in a fresh
Python process with ``--xla_force_host_platform_device_count=4``.
"""

import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest

from jaxnn import parallel
from tests.proc_support import fast_env

SCRIPT = textwrap.dedent(
    """
    import jax, jax.numpy as jnp, numpy as np
    jax.config.update("jax_enable_x64", True)
    jax.config.update("jax_default_matmul_precision", "highest")
    import jaxnn
    from jaxnn import optim, parallel, steps, train

    assert jax.device_count() == 4, jax.devices()
    net = jaxnn.Network((6, 16, 8, 3), ("tanh", "relu", "softmax"), "cross_entropy")
    params = jaxnn.init_params(jax.random.PRNGKey(0), net)
    rng = np.random.default_rng(0)
    X = rng.standard_normal((6, 64))
    Y = np.eye(3)[:, rng.integers(0, 3, 64)]
    opt = optim.adam(1e-2)

    # Steps: sharded against single-device, 20 steps in float64.
    mesh = parallel.make_mesh(4)
    pstep = parallel.make_parallel_step(net, opt, mesh)
    step = steps.make_step(net, opt)
    p1, s1 = params, opt.init(params)
    p4, s4 = params, opt.init(params)
    Xs, Ys = parallel.shard(X, mesh), parallel.shard(Y, mesh)
    assert Xs.sharding.spec == jax.sharding.PartitionSpec(None, "batch"), Xs.sharding
    shard_shapes = {s.data.shape for s in Xs.addressable_shards}
    assert shard_shapes == {(6, 16)}, shard_shapes
    for _ in range(20):
        p1, s1, c1 = step(p1, s1, X, Y)
        p4, s4, c4 = pstep(p4, s4, Xs, Ys)
    err = max(float(jnp.max(jnp.abs(a - b)) / jnp.max(jnp.abs(b)))
              for a, b in zip(jax.tree.leaves(p4), jax.tree.leaves(p1)))
    print("STEP_ERR", err)
    assert err < 1e-12, err
    assert abs(float(c4) - float(c1)) < 1e-12 * abs(float(c1))
    leaf = jax.tree.leaves(p4)[0]
    assert leaf.sharding.is_fully_replicated, leaf.sharding

    # The compiled step really splits the batch: its input sharding, and an all-reduce.
    rep, bat = parallel.replicated(mesh), parallel.batch_sharding(mesh)
    hlo = jax.jit(steps.step_fn(net, opt, "hand"), in_shardings=(rep, rep, bat, bat)
                  ).lower(params, opt.init(params), Xs, Ys).compile().as_text()
    assert "all-reduce" in hlo

    # Epochs: fit on the 4-device mesh (data split by examples) equals fit on one device.
    from jaxnn import data
    ds = data.Dataset(X[:, :48], Y[:, :48], X[:, 48:], Y[:, 48:], "classification",
                      "softmax", "cross_entropy")
    key = jax.random.PRNGKey(3)
    one = train.fit(net, opt, ds, 2, 16, key)
    four = train.fit(net, opt, ds, 2, 16, key, mesh=mesh)
    assert four.params[0]["W"].sharding.mesh.shape == {"batch": 4}
    err = max(float(jnp.max(jnp.abs(a - b)) / jnp.max(jnp.abs(b)))
              for a, b in zip(jax.tree.leaves(four.params), jax.tree.leaves(one.params)))
    print("EPOCH_ERR", err)
    assert err < 1e-12, err

    # A batch that does not divide over the devices: a clear error.
    try:
        pstep(params, opt.init(params), X[:, :10], Y[:, :10])
    except ValueError as e:
        assert "batch size 10 does not divide over 4 devices" in str(e), e
    else:
        raise AssertionError("no error for batch 10 on 4 devices")
    try:
        train.fit(net, opt, ds, 1, 6, key, mesh=mesh)
    except ValueError as e:
        assert "batch size 6 does not divide over 4 devices" in str(e), e
    else:
        raise AssertionError("no error for batch 6 on 4 devices")
    print("OK")
    """
)


@pytest.mark.slow
def test_sharded_training_equals_single_device():
    env = fast_env(4)
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "OK" in out.stdout


def test_mesh_asks_for_too_many_devices():
    n = jax.device_count() + 1
    with pytest.raises(ValueError, match=f"asked for {n} devices, but only {n - 1}"):
        parallel.make_mesh(n)


@pytest.mark.parametrize("bad", [0, -1, 1.5, True])
def test_mesh_rejects_bad_device_counts(bad):
    with pytest.raises(ValueError, match="devices must be an integer >= 1"):
        parallel.make_mesh(bad)


FIT_SCRIPT = textwrap.dedent(
    """
    import contextlib, io, json, os, sys
    import jax, jax.numpy as jnp, numpy as np
    jax.config.update("jax_enable_x64", True)
    jax.config.update("jax_default_matmul_precision", "highest")
    import jaxnn
    from jaxnn import checkpoint, cli, data, optim, parallel, train

    TOL = 1e-12  # float64; the sums over examples are taken in another order

    def rel_err(a, b):
        return max(float(np.max(np.abs(np.asarray(x) - np.asarray(y)), initial=0.0))
                   / max(float(np.max(np.abs(np.asarray(y)), initial=0.0)), 1e-300)
                   for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True))

    # Every batch constraint inside the epoch, with the sharding the compiler gives it.
    seen = []
    constrain = jax.lax.with_sharding_constraint
    def spy(x, sharding):
        y = constrain(x, sharding)
        jax.debug.inspect_array_sharding(y, callback=lambda s: seen.append((x.shape, s)))
        return y
    jax.lax.with_sharding_constraint = spy

    # fit(devices=4) against one device, 3 epochs of adam, float64.
    rng = np.random.default_rng(0)
    X = rng.standard_normal((6, 80))
    Y = np.eye(3)[:, rng.integers(0, 3, 80)]
    ds = data.Dataset(X[:, :64], Y[:, :64], X[:, 64:], Y[:, 64:], "classification",
                      "softmax", "cross_entropy")
    net = jaxnn.Network((6, 16, 3), ("tanh", "softmax"), "cross_entropy")
    opt, key = optim.adam(1e-2), jax.random.key(0)
    one = train.fit(net, opt, ds, 3, 16, key)
    four = train.fit(net, opt, ds, 3, 16, key, devices=4)
    err = rel_err(four.params, one.params)
    print("FIT_ERR", err)
    assert err < TOL, err
    for a, b in zip(four.history, one.history, strict=True):
        assert a.keys() == b.keys()
        assert all(abs(a[k] - b[k]) <= TOL * max(1.0, abs(b[k])) for k in a), (a, b)
    leaf = jax.tree.leaves(four.params)[0]
    assert leaf.sharding.is_fully_replicated and len(leaf.sharding.device_set) == 4
    # The batches really are split: (n, 16) batches, columns over the 4 devices.
    assert [shape for shape, _ in seen] == [(6, 16), (3, 16)], seen
    for _, sharding in seen:
        assert sharding.spec == jax.sharding.PartitionSpec(None, "batch"), sharding
        assert sharding.mesh.shape == {"batch": 4}
        assert sharding.shard_shape((6, 16)) == (6, 4)
    mesh = parallel.make_mesh(4)
    again = train.fit(net, opt, ds, 3, 16, key, mesh=mesh)  # the same, from a mesh
    assert rel_err(again.params, four.params) == 0.0

    for kwargs, words in [
        (dict(devices=4, batch_size=10), "batch size 10 does not divide over 4 devices"),
        (dict(devices=5, batch_size=16), "asked for 5 devices, but only 4 are available"),
        (dict(devices=2, mesh=mesh, batch_size=16), "give devices or mesh, not both"),
        (dict(mesh="cpu", batch_size=16), "mesh must be a jax.sharding.Mesh"),
    ]:
        batch_size = kwargs.pop("batch_size")
        try:
            train.fit(net, opt, ds, 1, batch_size, key, **kwargs)
        except ValueError as e:
            assert words in str(e), (words, e)
        else:
            raise AssertionError(f"no error for {kwargs}")

    # The command line: --devices 4 against fit on one device.
    def run(*argv):
        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            status = cli.main(list(argv))
        return status, err.getvalue()

    out = sys.argv[1]
    flags = ["--epochs", "2", "--hidden", "8", "--batch-size", "64"]
    status, err = run("train", *flags, "--devices", "4", "--out", f"{out}/d4")
    assert status == 0, err
    ds = data.digits()
    net = ds.network((8,), "relu")
    one = train.fit(net, optim.adam(1e-3), ds, 2, 64, key)  # as the command runs it
    with checkpoint.Checkpoints(f"{out}/d4/checkpoints") as ckpts:
        restored = ckpts.restore(one.params, one.opt_state, key)
    err = rel_err(restored.params, one.params)
    print("CLI_ERR", err)
    assert err < 1e-10, err  # 44 adam steps
    metrics = json.load(open(f"{out}/d4/metrics.json"))
    assert metrics["devices"] == 4
    assert abs(metrics["test_accuracy"] - one.history[-1]["test_accuracy"]) < 1e-9

    # Errors: one line, exit status 2, nothing written.
    for argv, words in [
        (["--batch-size", "30"], "batch size 30 does not divide over 4 devices; use a multiple "
                                 "of 4 (e.g. 28)"),
        (["--devices", "8"], "asked for 8 devices, but only 4 are available"),
    ]:
        argv = ["--devices", "4", *argv] if "--devices" not in argv else argv
        status, err = run("train", "--epochs", "1", *argv, "--out", f"{out}/bad")
        assert status == 2 and err.count("\\n") == 1 and words in err, (status, err)
        assert not os.path.exists(f"{out}/bad")
    print("OK")
    """
)


@pytest.mark.slow
def test_fit_and_cli_on_four_devices_equal_one(tmp_path):
    """fit(devices=4) and ``jaxnn train --devices 4`` against one device, in float64:
    parameters within 1e-12 (fit, 3 epochs) and 1e-10 (the command, 44 adam steps) of
    their scale; the batches split 4 ways; bad device counts and batch sizes are errors."""
    env = fast_env(4)
    out = subprocess.run(
        [sys.executable, "-c", FIT_SCRIPT, str(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "OK" in out.stdout


@pytest.mark.parametrize(
    "X",
    [np.zeros(8), np.zeros((2, 2, 2)), [[1.0, 2.0], [3.0]], np.array([["a"]]), [[None]]],
    ids=["1-d", "3-d", "ragged", "strings", "objects"],
)
def test_shard_rejects_bad_batches(X):
    mesh = parallel.make_mesh(1)
    with pytest.raises(ValueError, match="X "):
        parallel.shard(X, mesh)
    assert parallel.shard([[1.0, 2.0]], mesh).shape == (1, 2)  # a list is fine


MESH_SCRIPT = textwrap.dedent(
    """
    import jax, jax.numpy as jnp, numpy as np
    jax.config.update("jax_enable_x64", True)
    jax.config.update("jax_default_matmul_precision", "highest")
    from jax.sharding import AxisType, NamedSharding, PartitionSpec as P
    import jaxnn
    from jaxnn import data, optim, parallel, train

    TOL = 1e-12  # float64; sums over examples are taken in another order

    def rel_err(a, b):
        return max(float(np.max(np.abs(np.asarray(x) - np.asarray(y))))
                   / float(np.max(np.abs(np.asarray(y))))
                   for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True))

    net = jaxnn.Network((6, 16, 8, 3), ("tanh", "relu", "softmax"), "cross_entropy")
    params = jaxnn.init_params(jax.random.key(0), net)
    rng = np.random.default_rng(0)
    X = rng.standard_normal((6, 64))
    labels = rng.integers(0, 3, 64)
    Y = np.eye(3)[:, labels]
    expected = jax.grad(jaxnn.cost)(params, X, Y, net)
    ds = data.Dataset(X[:, :48], Y[:, :48], X[:, 48:], Y[:, 48:], "classification",
                      "softmax", "cross_entropy")
    one = train.fit(net, optim.adam(1e-2), ds, 2, 16, jax.random.key(0))

    meshes = [  # (mesh, the batch axis to give, or None: found)
        (jax.make_mesh((4,), ("data",)), None),  # Explicit, jax's default
        (jax.make_mesh((4,), ("examples",), axis_types=(AxisType.Auto,)), None),
        (jax.make_mesh((2, 2), ("dp", "model"), axis_types=(AxisType.Explicit,) * 2), "dp"),
        (jax.make_mesh((2, 2), ("batch", "model")), None),  # found by name
    ]
    for mesh, given in meshes:
        axis = parallel.batch_axis(mesh, given)
        n = mesh.shape[axis]
        columns, examples = NamedSharding(mesh, P(None, axis)), NamedSharding(mesh, P(axis))
        Xs, Ys = jax.device_put(X, columns), jax.device_put(Y, columns)
        Xr, ys = jax.device_put(X.T, NamedSharding(mesh, P(axis, None))), jax.device_put(
            labels, examples)
        results = {
            "hand": jax.jit(jax.grad(jaxnn.cost_with_hand_gradients(net)))(params, Xs, Ys),
            "backprop": jax.jit(jaxnn.backprop)(params, Xs, Ys, net),
            "rows": jax.jit(jax.grad(jaxnn.rows.cost_with_hand_gradients(net)))(params, Xr, ys),
            "clipped": jax.jit(jaxnn.clipped_mean_grads)(params, Xs, Ys, net, 1e9),
        }
        for name, grads in results.items():
            err = rel_err(grads, expected)
            assert err < TOL, (mesh, name, err)
        assert Xs.sharding.shard_shape(X.shape) == (6, 64 // n)
        fitted = train.fit(net, optim.adam(1e-2), ds, 2, 16, jax.random.key(0), mesh=mesh,
                           batch_axis=given)
        assert rel_err(fitted.params, one.params) < TOL, (mesh, rel_err(fitted.params, one.params))
        print(mesh.axis_names, mesh.axis_types, "ok")

    # A mesh with several axes and none called "batch": the axis must be given.
    mesh = jax.make_mesh((2, 2), ("dp", "model"))
    for kwargs, words in [
        ({}, "mesh has axes ('dp', 'model'): say which one splits the examples"),
        ({"batch_axis": "rows"}, "batch axis 'rows' is not an axis of the mesh"),
    ]:
        try:
            train.fit(net, optim.adam(1e-2), ds, 1, 16, jax.random.key(0), mesh=mesh, **kwargs)
        except ValueError as e:
            assert words in str(e), e
        else:
            raise AssertionError(kwargs)
    print("OK")
    """
)


@pytest.mark.slow
def test_any_mesh_hand_gradients_and_fit_equal_one_device():
    """Meshes from jax.make_mesh, Explicit and Auto, any axis names, the batch axis
    given or found: hand gradients (cost, backprop, rows, clipped mean) equal jax.grad
    on one device, and fit(mesh=) equals fit on one device, within 1e-12 in float64."""
    env = fast_env(4)
    out = subprocess.run(
        [sys.executable, "-c", MESH_SCRIPT], env=env, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "OK" in out.stdout
