"""docs/interop.md runs as written, on 4 virtual CPU devices (its mesh example needs
them), and its results are what it says: each example asserts its own gradients
against jax.grad of the same model, and this test checks the values it leaves behind
against independent references once more."""

import pathlib
import subprocess
import sys
import textwrap

import pytest

from tests.proc_support import fast_env

DOC = pathlib.Path(__file__).resolve().parent.parent / "docs" / "interop.md"

HARNESS = textwrap.dedent(
    """
    import re, sys
    import jax
    jax.config.update("jax_enable_x64", True)
    jax.config.update("jax_default_matmul_precision", "highest")
    assert jax.device_count() == 4, jax.devices()
    text = open(sys.argv[1]).read()
    blocks = re.findall(r"```python\\n(.*?)```", text, re.S)
    assert len(blocks) == 8, len(blocks)
    scope = {}
    for i, block in enumerate(blocks):
        exec(compile(block, f"{sys.argv[1]} block {i + 1}", "exec"), scope)

    # Independent checks of what the examples left behind.
    import numpy as np
    import jax.numpy as jnp
    import jaxnn
    net, params, X, y = scope["net"], scope["params"], scope["X"], scope["y"]
    one_hot = np.eye(3)[np.asarray(y)]
    # rows with labels against the column functions on one-hot columns.
    col = jaxnn.backprop(params, np.asarray(X).T, one_hot.T, net)
    for a, b in zip(jax.tree.leaves(scope["grads"]), jax.tree.leaves(col)):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)
    # the Explicit mesh: the gradients came back replicated, the batch was split.
    leaf = jax.tree.leaves(scope["mesh_grads"])[0]
    assert leaf.sharding.is_fully_replicated, leaf.sharding
    assert scope["X_sharded"].sharding.shard_shape((64, 8)) == (16, 8)
    assert str(scope["mesh"].axis_types[0]).endswith("Explicit"), scope["mesh"].axis_types
    # the Equinox MLP's hand gradients came back in its own tree; b is (out,).
    assert scope["mlp_hand"].layers[0].bias.shape == (32,)
    assert [p["b"].shape for p in scope["mlp_params"]] == [(32,), (3,)]
    # training happened in every framework.
    assert scope["eqx_costs"][-1] < scope["eqx_costs"][0]
    assert scope["nnx_costs"][-1] < scope["nnx_costs"][0]
    assert scope["mixed_costs"][-1] < scope["mixed_costs"][0]
    # mixed precision: the master stayed float32, the copy's gradients were bfloat16.
    assert {a.dtype for a in jax.tree.leaves(scope["master"])} == {jnp.dtype(jnp.float32)}
    assert {a.dtype for a in jax.tree.leaves(scope["hand16"])} == {jnp.dtype(jnp.bfloat16)}
    print("OK")
    """
)


@pytest.mark.slow
def test_interop_doc_examples_run_and_their_gradients_agree():
    env = fast_env(4)
    out = subprocess.run(
        [sys.executable, "-c", HARNESS, str(DOC)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-4000:]
    assert "OK" in out.stdout
