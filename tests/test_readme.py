"""The README's tour runs as written, and its gradients are what it says they are."""

import pathlib
import re

import jax
import numpy as np
import pytest

import jaxnn

README = pathlib.Path(__file__).resolve().parent.parent / "README.md"


@pytest.mark.slow
def test_readme_tour_runs_and_its_gradients_agree():
    tour = README.read_text().split("\n## A short tour\n")[1]
    code = re.findall(r"```python\n(.*?)```", tour, re.S)[0]  # the section's first block
    scope = {}
    exec(compile(code, str(README), "exec"), scope)  # the README's own code
    net, params, X, Y = scope["net"], scope["params"], scope["X"], scope["Y"]
    assert scope["report"].ok
    expected = jax.jit(jax.grad(jaxnn.cost))(params, X, Y, net)
    for got in (scope["grads"], scope["grads_bp1"], scope["grads_again"]):
        for g, e in zip(jax.tree.leaves(got), jax.tree.leaves(expected), strict=True):
            np.testing.assert_allclose(g, e, rtol=1e-9, atol=1e-12)
