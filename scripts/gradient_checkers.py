"""Gradient checkers measured on the corpus of hand backward passes (tests/corpus.py).

For each case and each checker: did it flag the pass (a bug caught, or a false
alarm), did it name the layer (and the equation), and how long it took (wall
time, compilation included). Checkers:

* ``check_gradients``: jaxnn.verify.check_gradients, every entry against jax.grad;
* ``directional``: check_gradients(directions=4): jax.jvp and central differences;
* ``taylor_test``: jaxnn.taylor_test;
* ``locate_fault``: jaxnn.verify.locate_fault (layer and equation);
* ``check_grads``: jax.test_util.check_grads(order=1, modes=["rev"]) of the cost
  with the hand backward as its ``jax.custom_vjp``;
* ``gradcheck``: torch.autograd.gradcheck of a torch.autograd.Function whose
  forward is jaxnn.cost and whose backward is the hand backward (when torch imports).

The same checkers then run over ``tests/corpus_honest.py`` (issue 23: nan and
inf, scalars, nothing to check, kinks that are not, exact zeros, mixed
precision, costs differences cannot resolve, custom VJPs, float32 and
bfloat16), counting false passes (ok where the gradient is wrong or nothing
could be tested) and false alarms (not ok where it is right).

Usage: ``python scripts/gradient_checkers.py [--json PATH]``; prints the
summary tables (markdown, as in docs/verifying.md) and one line per case.
"""

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import jax
import numpy as np

jax.config.update("jax_enable_x64", True)
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import jaxnn  # noqa: E402
from jaxnn.verify import check_gradients, locate_fault, taylor_test  # noqa: E402
from tests import corpus, corpus_honest  # noqa: E402


def layer_of(path):
    """Math layer (1-based) of a leaf path like ``[1]['W']``."""
    return int(path.split("]")[0].strip("[")) + 1


def run_jaxnn_check(case, params, X, Y, **options):
    report = check_gradients(
        corpus.grad_fn(case), corpus.cost_fn(case.net), params, X, Y, **options
    )
    bad = sorted(
        {layer_of(leaf.path) for leaf in report.leaves if not (leaf.ok and leaf.fd_ok is not False)}
    )
    return not report.ok, (bad[-1] if bad else None), None


def run_taylor(case, params, X, Y):
    report = taylor_test(corpus.grad_fn(case), corpus.cost_fn(case.net), params, X, Y)
    bad = sorted({layer_of(leaf.path) for leaf in report.leaves if not leaf.ok})
    return not report.ok, (bad[-1] if bad else None), None


def run_locate(case, params, X, Y):
    report = locate_fault(params, X, Y, case.net, corpus.jitted_backward(case))
    fault = report.fault
    return not report.ok, (fault[0] if fault else None), (fault[2] if fault else None)


def custom_vjp_cost(case, X, Y):
    """The cost with the hand backward as its VJP: what check_grads can check."""
    cost = corpus.cost_fn(case.net)
    grad = corpus.grad_fn(case)

    @jax.custom_vjp
    def f(params):
        return cost(params, X, Y)

    f.defvjp(
        lambda p: (cost(p, X, Y), p), lambda p, g: (jax.tree.map(lambda x: g * x, grad(p, X, Y)),)
    )
    return f


def run_check_grads(case, params, X, Y):
    from jax.test_util import check_grads

    try:
        check_grads(custom_vjp_cost(case, X, Y), (params,), order=1, modes=["rev"])
    except AssertionError:
        return True, None, None
    return False, None, None


def run_gradcheck(case, params, X, Y):
    import torch
    from jax.flatten_util import ravel_pytree

    flat, unravel = ravel_pytree(params)
    cost, grad = corpus.cost_fn(case.net), corpus.grad_fn(case)
    dtype = {"float64": torch.float64, "float32": torch.float32}[case.dtype]

    class Cost(torch.autograd.Function):
        @staticmethod
        def forward(ctx, theta):
            ctx.save_for_backward(theta)
            p = unravel(np.asarray(theta.detach().numpy(), case.dtype))
            return torch.tensor(float(cost(p, X, Y)), dtype=dtype)

        @staticmethod
        def backward(ctx, g):
            (theta,) = ctx.saved_tensors
            p = unravel(np.asarray(theta.detach().numpy(), case.dtype))
            hand = np.asarray(ravel_pytree(grad(p, X, Y))[0])
            return g * torch.tensor(hand, dtype=dtype)

    theta = torch.tensor(np.asarray(flat), dtype=dtype, requires_grad=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ok = torch.autograd.gradcheck(Cost.apply, (theta,), raise_exception=False)
    return not ok, None, None


CHECKERS = {
    "check_gradients": lambda c, *a: run_jaxnn_check(c, *a),
    "directional (k=4)": lambda c, *a: run_jaxnn_check(c, *a, directions=4),
    "taylor_test": run_taylor,
    "locate_fault": run_locate,
    "jax check_grads": run_check_grads,
    "torch gradcheck": run_gradcheck,
}


def evaluate(checkers=CHECKERS, cases=corpus.CASES, progress=None):
    """One row per (case, checker): flagged, layer, equation, seconds."""
    rows = []
    for case in cases:
        params, X, Y = corpus.make_point(case)
        for name, run in checkers.items():
            start = time.perf_counter()
            try:
                flagged, layer, eq = run(case, params, X, Y)
                error = None
            except Exception as e:  # a checker that cannot run the case
                flagged, layer, eq, error = None, None, None, f"{type(e).__name__}: {e}"[:120]
            rows.append(
                {
                    "case": case.name,
                    "bug": case.bug,
                    "point": case.point,
                    "dtype": case.dtype,
                    "expect": case.expect,
                    "checker": name,
                    "flagged": flagged,
                    "layer": layer,
                    "equation": eq,
                    "seconds": time.perf_counter() - start,
                    "error": error,
                }
            )
            if progress:
                progress(rows[-1])
    return rows


def summary(rows):
    """The markdown table: per checker, detection, false alarms, layer/equation named, time."""
    lines = [
        "| checker | bugs caught | false alarms | right layer named | right equation named "
        "| median time per case |",
        "|---|---|---|---|---|---|",
    ]
    for name in dict.fromkeys(r["checker"] for r in rows):
        mine = [r for r in rows if r["checker"] == name]
        bugs = [r for r in mine if r["bug"]]
        good = [r for r in mine if not r["bug"]]
        caught = sum(bool(r["flagged"]) for r in bugs)
        alarms = sum(bool(r["flagged"]) for r in good)
        layer = sum(r["layer"] == r["expect"][0] for r in bugs)
        eq = sum(r["equation"] == r["expect"][2] for r in bugs)
        errs = sum(r["error"] is not None for r in mine)
        named = lambda n, what, bugs=bugs, mine=mine: (
            f"{n}/{len(bugs)}" if any(r[what] for r in mine) else "no"
        )
        t = float(np.median([r["seconds"] for r in mine]))
        note = f" ({errs} could not run)" if errs else ""
        lines.append(
            f"| {name} | {caught}/{len(bugs)}{note} | {alarms}/{len(good)} | "
            f"{named(layer, 'layer')} | {named(eq, 'equation')} | {t:.2f} s |"
        )
    return "\n".join(lines)


def big_network(directions=8, m=256):
    """check_gradients(directions=k) on a 784-512-512-10 relu network; seconds of two calls."""
    net = jaxnn.Network((784, 512, 512, 10), ("relu", "relu", "softmax"), "cross_entropy")
    params = jaxnn.init_params(jax.random.key(0), net)
    rng = np.random.default_rng(0)
    X, Y = rng.normal(size=(784, m)), np.eye(10)[:, rng.integers(0, 10, m)]
    grad = jax.jit(jaxnn.backprop, static_argnums=3)
    cost = jax.jit(jaxnn.cost, static_argnums=3)
    times = []
    for _ in range(2):
        start = time.perf_counter()
        report = check_gradients(grad, cost, params, X, Y, net, directions=directions)
        times.append(time.perf_counter() - start)
    n = sum(int(np.size(x)) for x in jax.tree.leaves(params))
    return {
        "parameters": n,
        "directions": directions,
        "m": m,
        "ok": report.ok,
        "first_s": times[0],
        "second_s": times[1],
        "worst_rel": max(leaf.grad.max_rel for leaf in report.leaves),
        "worst_fd_rel": max(leaf.fd.max_rel for leaf in report.leaves),
        "status": report.status,
    }


def honest_verdict(name, case):
    """True where the checker says ok on an ``corpus_honest`` case, False where not, None: error."""
    args = case.args
    if name == "check_gradients":
        return check_gradients(case.grad, case.cost, case.params, *args).ok
    if name == "directional (k=4)":
        return check_gradients(case.grad, case.cost, case.params, *args, directions=4).ok
    if name == "taylor_test":
        return taylor_test(case.grad, case.cost, case.params, *args).ok
    if name == "jax check_grads":
        from jax.test_util import check_grads

        @jax.custom_vjp
        def f(p):
            return case.cost(p, *args)

        f.defvjp(
            lambda p: (f(p), p),
            lambda p, g: (jax.tree.map(lambda x: g * x, case.grad(p, *args)),),
        )
        try:
            check_grads(f, (case.params,), order=1, modes=["rev"])
        except AssertionError:
            return False
        return True
    if name == "torch gradcheck":
        import torch
        from jax.flatten_util import ravel_pytree

        flat, unravel = ravel_pytree(case.params)
        dtype = torch.float64 if flat.dtype == np.float64 else torch.float32

        class Cost(torch.autograd.Function):
            @staticmethod
            def forward(ctx, theta):
                ctx.save_for_backward(theta)
                p = unravel(np.asarray(theta.detach().numpy(), flat.dtype))
                return torch.tensor(float(case.cost(p, *args)), dtype=dtype)

            @staticmethod
            def backward(ctx, g):
                (theta,) = ctx.saved_tensors
                p = unravel(np.asarray(theta.detach().numpy(), flat.dtype))
                hand = np.asarray(ravel_pytree(case.grad(p, *args))[0], np.float64)
                return g * torch.tensor(hand, dtype=dtype)

        theta = torch.tensor(np.asarray(flat, np.float64), dtype=dtype, requires_grad=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return bool(torch.autograd.gradcheck(Cost.apply, (theta,), raise_exception=False))
    raise KeyError(name)


def evaluate_honest(names):
    """One row per (honest case, checker): expected verdict, ok or not, error."""
    rows = []
    for case in corpus_honest.CASES:
        for name in names:
            if name == "locate_fault":
                continue
            try:
                ok, error = honest_verdict(name, case), None
            except Exception as e:  # a checker that cannot run the case
                ok, error = None, f"{type(e).__name__}: {e}"[:120]
            rows.append(
                {
                    "case": case.name,
                    "expect": case.expected("taylor" if name == "taylor_test" else name),
                    "checker": name,
                    "ok": ok,
                    "error": error,
                }
            )
    return rows


def honest_summary(rows):
    """Per checker: false passes (ok on a wrong or untestable case), false alarms, errors."""
    lines = [
        "| checker | false passes | false alarms | could not run |",
        "|---|---|---|---|",
    ]
    for name in dict.fromkeys(r["checker"] for r in rows):
        mine = [r for r in rows if r["checker"] == name]
        wrong = [r for r in mine if r["expect"] != "ok"]
        right = [r for r in mine if r["expect"] == "ok"]  # inconclusive expected: not ok
        passes = sum(r["ok"] is True for r in wrong)
        alarms = sum(r["ok"] is False for r in right)
        errs = sum(r["ok"] is None for r in mine)
        lines.append(
            f"| {name} | {passes}/{len(wrong)} | {alarms}/{len(right)} | {errs}/{len(mine)} |"
        )
    return "\n".join(lines)


def show(r):
    mark = {True: "flagged", False: "passed", None: "error"}[r["flagged"]]
    wrong = (r["flagged"] is not None) and (bool(r["flagged"]) != r["bug"])
    print(
        f"{r['checker']:18} {r['case']:48} {r['dtype']:7} {mark:8}"
        f"{' <- WRONG' if wrong else ''} layer={r['layer']} eq={r['equation']} "
        f"{r['seconds']:.2f}s {r['error'] or ''}",
        flush=True,
    )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, help="write every row as JSON here")
    args = parser.parse_args(argv)
    try:
        import torch  # noqa: F401
    except ImportError:
        CHECKERS.pop("torch gradcheck")
    rows = evaluate(progress=show)
    honest = evaluate_honest(CHECKERS)
    big = big_network()
    print()
    print(summary(rows))
    print()
    print(honest_summary(honest))
    print()
    print(f"784-512-512-10, check_gradients(directions=8): {json.dumps(big)}")
    if args.json:
        out = {"rows": rows, "honest": honest, "big_network": big}
        args.json.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
