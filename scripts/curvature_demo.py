"""jaxnn.curvature as a researcher would try it: three ways to the same numbers, then a use.

``compare``: on a small network (4-5-4-3, tanh and sigmoid hidden layers, softmax with
cross-entropy, 6 examples, float64), every quantity of ``jaxnn.curvature`` three ways:
jaxnn's hand-derived formulas, autodiff (``jax.jvp(jax.grad(...))``, dense GGN and
Hessian matrices from ``jax.jacfwd`` and ``jax.hessian``, ``jax.vmap(jax.grad(...))``),
and BackPACK on the same PyTorch stack (where it is installed). Prints the largest
difference of each pair, relative to the quantity's largest entry.

``gauss-newton``: a few steps of damped Gauss-Newton, Hessian-free (conjugate gradients
on ``ggn_vp``, Levenberg-Marquardt damping), against Adam from the same initial weights,
on scikit-learn's digits (8x8 images, 10 classes; shipped with scikit-learn, no
download), a 64-32-10 tanh network, full batch, float64. Prints the training cost, the
test accuracy and the seconds (compilation excluded) at a few checkpoints.

Usage: ``python scripts/curvature_demo.py [compare|gauss-newton]`` (both by default).
The numbers are in docs/curvature.md.
"""

import argparse
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

jax.config.update("jax_enable_x64", True)
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import jaxnn  # noqa: E402
from jaxnn import optim, steps  # noqa: E402
from jaxnn.curvature import (  # noqa: E402
    diag_ggn,
    diag_ggn_mc,
    diag_hessian,
    ggn_vp,
    hvp,
    kfac,
    kflr,
    sum_grad_squared,
    variance,
)

SAMPLES = 4000  # labels per example for the sampled quantities
GN_STEPS, CG_ITERATIONS = 20, 20
ADAM_STEPS, ADAM_LEARNING_RATE = 2000, 1e-2


def relative(a, b) -> float:
    """max |a - b| over the leaves, over the largest |b|."""
    a = [np.asarray(x, np.float64).ravel() for x in jax.tree.leaves(a)]
    b = [np.asarray(x, np.float64).ravel() for x in jax.tree.leaves(b)]
    a, b = np.concatenate(a), np.concatenate(b)
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


def autodiff(params, X, Y, net, V):
    """Every quantity by autodiff alone, in the params' shapes (kflr: its factors)."""
    from tests.test_curvature_kronecker import output_curvature, reference_ggn_blocks

    theta, unravel = ravel_pytree(params)
    cost = lambda t: jaxnn.cost(unravel(t), X, Y, net)
    m = X.shape[1]
    Z_L = lambda t: jaxnn.forward_unchecked(unravel(t), X, net).Z[-1]
    J = jax.jacfwd(Z_L)(theta)  # (n_L, m, P)
    H_out = jax.vmap(output_curvature(net), in_axes=(1, 1))(Z_L(theta), Y)  # (m, n_L, n_L)
    ggn = jnp.einsum("imp,mij,jmq->pq", J, H_out, J) / m
    hessian = jax.hessian(cost)(theta)
    v = ravel_pytree(V)[0]
    per_example = jax.vmap(
        jax.grad(lambda p, x, y: jaxnn.cost(p, x[:, None], y[:, None], net)), in_axes=(None, 1, 1)
    )(params, X, Y)
    g = jax.tree.map(lambda x: x / m, per_example)  # BackPACK's individual gradients
    _, ggn_v = jax.jvp(Z_L, (theta,), (v,))
    ggn_v = jax.vjp(Z_L, theta)[1](jnp.einsum("mij,jm->im", H_out, ggn_v) / m)[0]
    blocks = reference_ggn_blocks(params, X, Y, net)
    return {
        "hvp": unravel(jax.jvp(jax.grad(cost), (theta,), (v,))[1]),
        "ggn_vp": unravel(ggn_v),
        "diag_ggn": unravel(jnp.diag(ggn)),
        "diag_hessian": unravel(jnp.diag(hessian)),
        "kflr": [
            {"W": [b["b"], A @ A.T / m], "b": [b["b"]]}
            for b, A in zip(blocks, jaxnn.forward(params, X, net).A, strict=False)
        ],
        "sum_grad_squared": jax.tree.map(lambda x: jnp.sum(x * x, axis=0), g),
        "variance": jax.tree.map(lambda x: jnp.var(x, axis=0), g),
    }


def with_backpack(params, X, labels, net):
    """BackPACK's quantities on the same stack, or None where it does not import."""
    try:
        import backpack
        import torch
        from backpack.extensions import (
            KFAC,
            KFLR,
            DiagGGNExact,
            DiagGGNMC,
            DiagHessian,
            SumGradSquared,
            Variance,
        )
    except ImportError:
        return None
    from tests.test_curvature_backpack import as_numpy, backpack_quantities

    args = (torch, backpack, params, X, labels, net, torch.nn.CrossEntropyLoss())
    exact = backpack_quantities(
        *args, [DiagGGNExact(), DiagHessian(), KFLR(), SumGradSquared(), Variance()]
    )
    torch.manual_seed(0)
    sampled = backpack_quantities(*args, [DiagGGNMC(mc_samples=SAMPLES), KFAC(mc_samples=SAMPLES)])
    as_ours = lambda layers: [{k: as_numpy(v) for k, v in q.items()} for q in layers]
    return {
        "diag_ggn": as_ours(exact["diag_ggn_exact"]),
        "diag_hessian": as_ours(exact["diag_h"]),
        "kflr": as_ours(exact["kflr"]),
        "sum_grad_squared": as_ours(exact["sum_grad_squared"]),
        "variance": as_ours(exact["variance"]),
        "diag_ggn_mc": as_ours(sampled["diag_ggn_mc"]),
        "kfac": as_ours(sampled["kfac"]),
    }


def compare() -> list[tuple[str, float, float | None]]:
    """``(quantity, jaxnn vs autodiff, jaxnn vs BackPACK)`` rows; see the module docstring."""
    from tests.test_curvature_backpack import CASES, problem

    net = CASES["ce, tanh and sigmoid"][0]
    params, X, labels = problem(net)
    Y = np.eye(net.sizes[-1])[:, labels]
    V = jax.tree.map(lambda p: np.random.default_rng(1).normal(size=p.shape), params)
    key_diag, key_kfac = jax.random.split(jax.random.key(0))
    ours = {
        "hvp": hvp(params, X, Y, net, V),
        "ggn_vp": ggn_vp(params, X, Y, net, V),
        "diag_ggn": diag_ggn(params, X, Y, net),
        "diag_hessian": diag_hessian(params, X, Y, net),
        "kflr": kflr(params, X, Y, net),
        "sum_grad_squared": sum_grad_squared(params, X, Y, net),
        "variance": variance(params, X, Y, net),
        "diag_ggn_mc": diag_ggn_mc(params, X, Y, net, key_diag, samples=SAMPLES),
        "kfac": kfac(params, X, Y, net, key_kfac, samples=SAMPLES),
    }
    reference = autodiff(params, X, Y, net, V)
    reference["diag_ggn_mc"], reference["kfac"] = reference["diag_ggn"], reference["kflr"]
    theirs = with_backpack(params, X, labels, net) or {}
    rows = []
    for name, value in ours.items():
        other = relative(value, theirs[name]) if name in theirs else None
        rows.append((name, relative(value, reference[name]), other))
    return rows


def digits():
    """scikit-learn's digits as columns in [0, 1]: (X_train, y_train, X_test, y_test)."""
    from sklearn.datasets import load_digits

    data = load_digits()
    order = np.random.default_rng(0).permutation(len(data.target))
    X, y = data.data[order].T / 16.0, data.target[order]
    return X[:, :1297], y[:1297], X[:, 1297:], y[1297:]


def tree_dot(a, b):
    return sum(jnp.vdot(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True))


def axpy(a, x, y):
    """a x + y, leaf by leaf."""
    return jax.tree.map(lambda u, v: a * u + v, x, y)


def gauss_newton_step(params, X, y, net, damping, iterations=CG_ITERATIONS):
    """params + d, d from ``iterations`` steps of conjugate gradients on (G + damping I) d = -g,
    G V by ``ggn_vp``: a Hessian-free (truncated Newton) step on the Gauss-Newton model."""
    g = jaxnn.backprop(params, X, y, net)
    product = lambda v: axpy(damping, v, ggn_vp(params, X, y, net, v))

    def cg(_, state):
        d, r, p, rr = state
        Ap = product(p)
        alpha = rr / tree_dot(p, Ap)
        d, r = axpy(alpha, p, d), axpy(-alpha, Ap, r)
        rr_next = tree_dot(r, r)
        return d, r, axpy(rr_next / rr, p, r), rr_next

    r = jax.tree.map(jnp.negative, g)
    d = jax.tree.map(jnp.zeros_like, g)
    d, *_ = jax.lax.fori_loop(0, iterations, cg, (d, r, r, tree_dot(r, r)))
    return jax.tree.map(jnp.add, params, d)


def gauss_newton(steps_count=GN_STEPS) -> list[dict]:
    """Damped Gauss-Newton (Levenberg-Marquardt damping, CG on ``ggn_vp``) against Adam
    on digits, from the same initial weights: one row per checkpoint."""
    X, y, X_test, y_test = digits()
    net = jaxnn.Network((64, 32, 10), ("tanh", "softmax"), "cross_entropy")
    start = jaxnn.init_params(jax.random.key(0), net)
    cost = jax.jit(lambda p: jaxnn.cost(p, X, y, net))
    accuracy = lambda p: float(np.mean(np.argmax(jaxnn.predict(p, X_test, net), 0) == y_test))
    rows = []
    step = jax.jit(gauss_newton_step, static_argnums=3)
    step(start, X, y, net, 1.0)  # compile before timing
    params, damping, value, seconds = start, 1.0, float(cost(start)), 0.0
    for k in range(1, steps_count + 1):
        t0 = time.perf_counter()
        candidate = step(params, X, y, net, damping)
        new = float(cost(candidate))
        if new < value:  # accept, and trust the quadratic model more
            params, value, damping = candidate, new, damping * 2 / 3
        else:  # reject, and damp more
            damping = damping * 3 / 2
        seconds += time.perf_counter() - t0
        if k in (1, 5, 10, 20, steps_count):
            passes = k * (1 + CG_ITERATIONS)
            rows.append(
                {
                    "method": "Gauss-Newton + CG",
                    "steps": k,
                    "products": passes,
                    "cost": value,
                    "accuracy": accuracy(params),
                    "seconds": seconds,
                }
            )
    optimizer = optim.adam(ADAM_LEARNING_RATE)
    adam_step = steps.make_step(net, optimizer)
    Y = np.eye(10)[:, y]
    params, state = start, optimizer.init(start)
    adam_step(params, state, X, Y)  # compile before timing
    seconds = 0.0
    for k in range(1, ADAM_STEPS + 1):
        t0 = time.perf_counter()
        params, state, _ = jax.block_until_ready(adam_step(params, state, X, Y))
        seconds += time.perf_counter() - t0
        if k in (20, 100, 420, 1000, ADAM_STEPS):
            rows.append(
                {
                    "method": "Adam",
                    "steps": k,
                    "products": k,
                    "cost": float(cost(params)),
                    "accuracy": accuracy(params),
                    "seconds": seconds,
                }
            )
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "part", nargs="?", choices=("compare", "gauss-newton", "both"), default="both"
    )
    args = parser.parse_args(argv)
    if args.part in ("compare", "both"):
        print("| quantity | jaxnn vs autodiff | jaxnn vs BackPACK |\n|---|---|---|")
        for name, to_autodiff, to_backpack in compare():
            other = "-" if to_backpack is None else f"{to_backpack:.1e}"
            print(f"| {name} | {to_autodiff:.1e} | {other} |")
    if args.part in ("gauss-newton", "both"):
        print("\nDamped Gauss-Newton (CG on ggn_vp) against Adam, digits, 64-32-10")
        print("| method | steps | backprops + ggn_vp | training cost | test accuracy | seconds |")
        print("|---|---|---|---|---|---|")
        for r in gauss_newton():
            print(
                f"| {r['method']} | {r['steps']} | {r['products']} | {r['cost']:.2e} | "
                f"{r['accuracy']:.3f} | {r['seconds']:.2f} |"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
