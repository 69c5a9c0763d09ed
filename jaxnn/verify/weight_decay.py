"""Weight decay in ``jaxnn verify``: (BP4-L2) against ``jax.grad`` of (C-L2), every head.

One row per output head (the verify matrix's ``OUTPUT_LOSSES``) and precision:
the hand gradient of the penalised cost (``jaxnn.regularization.value_and_backprop_l2``)
against ``jax.grad(jaxnn.regularization.penalised_cost)``, relative to the largest
entry of each leaf, within the matrix's ``GRAD_RTOL``. A row is ok only when every
entry of both gradients is finite and the error is within tolerance.
"""

import jax
import jax.numpy as jnp
import numpy as np

from jaxnn.network import Network
from jaxnn.regularization import penalised_cost, value_and_backprop_l2
from jaxnn.verify.matrix import GRAD_RTOL
from jaxnn.verify.matrix_program import OUTPUT_LOSSES

__all__ = ["WEIGHT_DECAY", "check_weight_decay"]

WEIGHT_DECAY = 0.5  # lambda: large enough that (BP4-L2)'s term is of the gradient's size


def _targets(rng, output: str, loss: str, shape) -> np.ndarray:
    if loss == "cross_entropy" or output == "softmax":
        return np.eye(shape[0])[:, rng.integers(0, shape[0], shape[1])]
    if loss == "binary_cross_entropy" or output == "sigmoid":
        return rng.uniform(0.0, 1.0, shape)
    return rng.uniform(-1.0, 1.0, shape)


def check_weight_decay(seed: int = 0) -> list[dict]:
    """Rows ``{"output", "loss", "dtype", "error", "tolerance", "ok"}``, float64 and float32."""
    rows = []
    with jax.enable_x64(True):
        for i, (output, loss) in enumerate(OUTPUT_LOSSES):
            rng = np.random.default_rng([seed, i])
            net = Network((4, 6, 3), ("tanh", output), loss)
            params = [
                {"W": rng.normal(0, 0.7, (o, n)), "b": rng.normal(0, 0.5, (o, 1))}
                for n, o in zip(net.sizes[:-1], net.sizes[1:], strict=True)
            ]
            X, Y = rng.normal(size=(4, 8)), _targets(rng, output, loss, (3, 8))
            for dtype in ("float64", "float32"):
                cast = lambda t, d=dtype: jax.tree.map(lambda a: jnp.asarray(a, d), t)
                p, x, y = cast(params), cast(X), cast(Y)
                _, hand = value_and_backprop_l2(p, x, y, net, WEIGHT_DECAY)
                ref = jax.grad(penalised_cost)(cast(params), X, Y, net, WEIGHT_DECAY)
                rows.append(_row(output, loss, dtype, hand, ref))
    return rows


def _row(output: str, loss: str, dtype: str, hand, ref) -> dict:
    errors = []
    finite = True
    for h, r in zip(jax.tree.leaves(hand), jax.tree.leaves(ref), strict=True):
        h, r = np.asarray(h, np.float64), np.asarray(r, np.float64)
        finite &= bool(np.isfinite(h).all() and np.isfinite(r).all())
        errors.append(float(np.max(np.abs(h - r)) / max(float(np.max(np.abs(r))), 1e-300)))
    error = max(errors) if finite else float("nan")
    tolerance = GRAD_RTOL[dtype]
    ok = finite and error <= tolerance
    return {"output": output, "loss": loss, "dtype": dtype, "error": error,
            "tolerance": tolerance, "ok": ok}  # fmt: skip
