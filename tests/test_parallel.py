"""Data-parallel training on 4 virtual CPU devices, checked against one device.

XLA fixes the device count when JAX starts, so these checks run in a fresh
Python process with ``--xla_force_host_platform_device_count=4``.
"""

import os
import subprocess
import sys
import textwrap

import jax
import pytest

from jaxnn import parallel

SCRIPT = textwrap.dedent(
    """
    import jax, jax.numpy as jnp, numpy as np
    jax.config.update("jax_enable_x64", True)
    jax.config.update("jax_default_matmul_precision", "highest")
    import jaxnn
    from jaxnn import optim, parallel, train

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
    step = train.make_step(net, opt)
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
    hlo = jax.jit(train._make_step(net, opt, "hand"), in_shardings=(rep, rep, bat, bat)
                  ).lower(params, opt.init(params), Xs, Ys).compile().as_text()
    assert "all-reduce" in hlo

    # Epochs: the parallel epoch equals the single-device epoch.
    epoch1 = train.make_epoch(net, opt, 16)
    epoch4 = parallel.make_parallel_epoch(net, opt, 16, mesh)
    key = jax.random.PRNGKey(3)
    q1, t1, costs1 = epoch1(params, opt.init(params), X, Y, key)
    q4, t4, costs4 = epoch4(params, opt.init(params), X, Y, key)
    err = max(float(jnp.max(jnp.abs(a - b)) / jnp.max(jnp.abs(b)))
              for a, b in zip(jax.tree.leaves(q4), jax.tree.leaves(q1)))
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
        parallel.make_parallel_epoch(net, opt, 6, mesh)
    except ValueError as e:
        assert "batch size 6 does not divide over 4 devices" in str(e), e
    else:
        raise AssertionError("no error for batch 6 on 4 devices")
    print("OK")
    """
)


def test_sharded_training_equals_single_device():
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4")
    env["JAX_PLATFORMS"] = "cpu"
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
