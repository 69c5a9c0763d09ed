"""The verify matrix: jaxnn's backprop against jax.grad and finite differences.

``run_matrix()`` runs every (hidden activation, output and loss, depth, fused)
configuration at test points chosen to be hard (kinks, saturation), in float64
and float32, and judges each against ``GRAD_RTOL`` and ``FD_RTOL``, reporting
checks that cannot succeed by the numerics of a point as n/a (``NOTES``);
``format_table`` renders its rows. The numbers come from
``jaxnn.verify.matrix_program``; errors are measured as in ``jaxnn.verify.measures``.
``jaxnn verify`` is this module on the command line.

This module never prints; ``jaxnn.cli`` prints what it returns.
"""

import math
import textwrap

import jax
import numpy as np
from jax.flatten_util import ravel_pytree

from jaxnn import losses
from jaxnn.verify.matrix_program import DEPTHS as DEPTHS
from jaxnn.verify.matrix_program import FD_DIRECTIONS as FD_DIRECTIONS
from jaxnn.verify.matrix_program import FD_STEP as FD_STEP
from jaxnn.verify.matrix_program import HIDDEN_ACTIVATIONS as HIDDEN_ACTIVATIONS
from jaxnn.verify.matrix_program import OUTPUT_LOSSES as OUTPUT_LOSSES
from jaxnn.verify.matrix_program import PIECEWISE, evaluate
from jaxnn.verify.matrix_program import POINTS as POINTS
from jaxnn.verify.measures import errors, format_error, text_table

__all__ = [
    "DEPTHS",
    "FD_DIRECTIONS",
    "FD_RTOL",
    "FD_STEP",
    "GRAD_RTOL",
    "HIDDEN_ACTIVATIONS",
    "NOTES",
    "OUTPUT_LOSSES",
    "POINTS",
    "format_table",
    "run_matrix",
]

GRAD_RTOL = {"float64": 1e-10, "float32": 1e-4}
FD_RTOL = 1e-6
NOTES = {
    "saturated": "the output is saturated past the dtype's resolution, 1 - |a| < 10 eps / tol: "
    "the derivative through it is formed from 1 - a, which a rounded a gives only to "
    "eps / (1 - a) relative, in jax.grad (sigma' = a (1 - a), tanh' = (1 + a)(1 - a), the "
    "softmax product) or in BP1 (grad_a C's 1 / (1 - a), the Jacobian product (S2)); "
    "at 1 - a = 0 BP1's grad_a C is inf and 0 * inf = nan",
    "underflow": "a probability below the smallest normal float: BP1's -y / a overflows",
    "fd-resolution": "|grad C| below what central differences resolve: "
    "FD_RTOL |g| < eps max(|C|, 1) / h",
    "no-point": "no test point where this check applies: the configuration is unverified",
    "saturated-judged": "saturated in float64 but resolved (1 - |a| > 1000 eps): judged at the "
    "tolerance the rounding of 1 - a allows, 10 eps / min(1 - |a|), not left out",
    "fd-kink": "FD at the kink point along directions that keep every kinked pre-activation "
    "at 0 (the kinked units' incoming weights and biases held fixed): across a kink FD "
    "gives the mean of the one-sided slopes, while jax.grad and jaxnn both take "
    "relu'(0) = 0, leaky_relu'(0) = 1 and are compared there",
}


def _worst(values):
    """The largest value, nan winning; 0 for none."""
    worst = 0.0
    for v in values:
        if not v <= worst:
            worst = v
    return worst


def _tree_rel(actual, expected) -> float:
    pairs = zip(jax.tree.leaves(actual), jax.tree.leaves(expected), strict=True)
    return _worst(errors(a, e).max_rel for a, e in pairs)


def _json_float(x):
    return float(x) if math.isfinite(x) else str(x)


def _not_applicable(loss, A, dtype):
    """Why BP1 through a saturating output cannot be compared at this point, or None."""
    eps, tiny = float(np.finfo(dtype).eps), float(np.finfo(dtype).tiny)
    if np.min(1 - np.abs(A)) < 10 * eps / GRAD_RTOL[dtype]:
        return "saturated"
    if loss != "mse" and np.min(A) < tiny:
        return "underflow"
    return None


def _saturated_tolerance(A, dtype):
    """The tolerance a saturated but resolved output allows: 10 eps / min(1 - |a|), or None.

    Where 1 - |a| > 10 eps / GRAD_RTOL the point is not saturated; where 1 - |a| is
    0 (or within 10 eps) nothing can be said (n/a). Between, a correct
    derivative through 1 - a is right to eps / (1 - a) relative, so it is judged
    at that looser tolerance rather than left out: a grad_a C that clips a to
    [1e-6, 1 - 1e-6] is 500 times wrong at a logit of 20 and fails there.
    Float64 only (float32 resolves none of these points).
    """
    if dtype != "float64":
        return None
    eps = float(np.finfo(dtype).eps)
    gap = float(np.min(1 - np.abs(A)))
    if not gap > 10 * eps * 100:
        return None
    return max(GRAD_RTOL[dtype], 10 * eps / gap)


def _finite_difference_error(hand, fd, V, C):
    """max_k |FD_k - <g, v_k>| / |g| over unit directions v_k, or why it is n/a."""
    g = np.asarray(ravel_pytree(hand)[0])
    g_norm = float(np.linalg.norm(g))
    floor = float(np.finfo(np.float64).eps) * max(abs(float(C)), 1.0) / FD_STEP
    if math.isfinite(g_norm) and FD_RTOL * g_norm < floor:
        return None, "fd-resolution"
    err = float(np.max(np.abs(fd - V @ g))) / g_norm
    return (err if math.isfinite(err) else math.nan), None


def _row(hidden, depth, output, loss, fused, data, zeros, V):
    """One configuration at every point; its errors are the worst over the applicable points."""
    tag = losses.head(output, loss).tag
    delta_L = tag if fused and tag else "BP1"
    key = fused or not tag  # without a closed form, fused=True is BP1: computed once
    saturates = delta_L == "BP1" and output != "linear"
    worst = {"float64": [], "float32": [], "fd": []}
    per_point, notes, failed = {}, [], False
    for p, point in enumerate(POINTS):
        take = lambda tree, p=p: jax.tree.map(lambda x: x[p], tree)
        entry = {
            "max_abs_logit": float(np.max(np.abs(data["Z64"][p]))),
            "zero_preactivations": int(zeros[p]),
        }
        for dtype, bits in (("float64", "64"), ("float32", "32")):
            A = np.asarray(data[f"A{bits}"][p], np.float64)
            why = _not_applicable(loss, A, dtype) if saturates else None
            rel = _tree_rel(take(data[f"hand{bits}_{key}"]), take(data[f"ref{bits}"]))
            entry[dtype] = {"grad_rel": _json_float(rel)}
            loose = _saturated_tolerance(A, dtype) if why == "saturated" else None
            if loose is not None:
                # saturated, yet resolved: judged at the rounding that 1 - a allows
                good = rel <= loose
                entry[dtype]["status"] = "ok" if good else "FAIL"
                entry[dtype]["tolerance"] = loose
                notes.append(("saturated-judged", point, dtype))
                failed = failed or not good
            elif why:
                entry[dtype]["status"] = f"n/a ({why})"
                notes.append((why, point, dtype))
            else:
                entry[dtype]["status"] = "ok" if rel <= GRAD_RTOL[dtype] else "FAIL"
                worst[dtype].append(rel)
        if entry["float64"]["status"].startswith("n/a") or "tolerance" in entry["float64"]:
            entry["fd"] = {"status": "n/a (float64 check n/a)"}
        else:
            err, why = _finite_difference_error(
                take(data[f"hand64_{key}"]), data["fd64"][p], V[p], data["cost64"][p]
            )
            if why:
                entry["fd"] = {"status": f"n/a ({why})"}
                notes.append((why, point, "fd"))
            else:
                status = "ok" if err <= FD_RTOL else "FAIL"
                entry["fd"] = {"rel": _json_float(err), "status": status}
                worst["fd"].append(err)
                if point == "kink" and hidden in PIECEWISE:
                    notes.append(("fd-kink", point, "fd"))
        per_point[point] = entry
    # A check that applies at no point has verified nothing: the row fails.
    for check in ("float64", "float32", "fd"):
        if not worst[check]:
            notes.append(("no-point", "every point", check))
    g64, g32, fd = (_worst(worst[c]) if worst[c] else math.nan for c in worst)
    ok = g64 <= GRAD_RTOL["float64"] and g32 <= GRAD_RTOL["float32"] and fd <= FD_RTOL
    ok = ok and not failed
    return {
        "depth": depth,
        "hidden": hidden,
        "output": output,
        "loss": loss,
        "fused": fused,
        "delta_L": delta_L,
        "grad_rel_float64": _json_float(g64),
        "grad_rel_float32": _json_float(g32),
        "fd_rel_float64": _json_float(fd),
        "ok": bool(ok),
        "not_applicable": [
            {"point": point, "check": check, "reason": why}
            for why, point, check in notes
            if why not in ("fd-kink", "saturated-judged")
        ],
        "notes": sorted({why for why, _, _ in notes}),
        "points": per_point,
        "tolerances": {
            "grad_float64": GRAD_RTOL["float64"],
            "grad_float32": GRAD_RTOL["float32"],
            "fd_float64": FD_RTOL,
            "fd_step": FD_STEP,
            "fd_directions": FD_DIRECTIONS,
        },
    }


def run_matrix(seed=0, *, hidden_activations=HIDDEN_ACTIVATIONS, depths=DEPTHS) -> list:
    """jaxnn's backprop against jax.grad and finite differences, configuration by configuration.

    Configurations: hidden activation (``HIDDEN_ACTIVATIONS``, every hidden
    layer alike) x output and loss (``OUTPUT_LOSSES``) x number of hidden layers
    (``DEPTHS``) x ``fused``. Each runs at every one of the ``POINTS``, on a
    random network (widths 4-6-5-6 cut to the depth, 3 outputs, 8 examples):

      * ``random``: random weights, non-zero biases, inputs ~ N(0, 1), rms logit 1;
      * ``kink``: pre-activations exactly 0 (column 0 of Z^[1], row 0 of every
        later hidden Z), where relu and leaky_relu have their kinks;
      * ``logit<=10``, ``logit~50``, ``logit~2000``: the output layer rescaled to
        max |logit| 10, or rms |logit| 50 or 2000: probabilities within 5e-5 of 0
        and 1, within 1e-22, or exactly 0 and 1.

    At each point ``jaxnn.backprop`` is compared with ``jax.grad(jaxnn.cost)`` in
    float64 and in float32 (the same point rounded), within ``GRAD_RTOL``; and
    in float64 with central differences along ``FD_DIRECTIONS`` random unit
    directions v: (C(p + h v) - C(p - h v)) / 2h against <g, v>, error relative
    to |g|, h = ``FD_STEP``, within ``FD_RTOL``. Points where a check cannot
    succeed by the numerics of the configuration, decided from the forward pass
    alone (see ``NOTES``), are reported n/a rather than judged. Float64 is
    enabled and matmuls run at "highest" precision for the run, whatever the
    global settings. One program per depth, vmapped over the points, is
    compiled once per process.

    Returns:
      One JSON-serialisable dict per configuration (inf and nan as strings):
      ``depth, hidden, output, loss, fused``; ``delta_L``, the closed form used
      (F1-F3) or ``"BP1"``; the worst ``grad_rel_float64``,
      ``grad_rel_float32`` and ``fd_rel_float64`` over the points where each
      applies; ``ok``; ``not_applicable`` (point, check, reason) and ``notes``
      (reasons, see ``NOTES``); ``points`` (every point's numbers and status,
      n/a ones included); ``tolerances``.
    """
    hidden_activations, depths = tuple(hidden_activations), tuple(depths)
    evaluated = evaluate(seed, hidden_activations, depths)
    rows = []
    for depth in depths:
        res, inputs = evaluated[depth]
        V, V_kink = inputs[3], inputs[4]
        for hidden in hidden_activations:
            zeros, results = res[hidden]
            for output, loss in OUTPUT_LOSSES:
                for fused in (True, False):
                    directions = V_kink if hidden in PIECEWISE else V
                    data = results[output, loss]
                    rows.append(_row(hidden, depth, output, loss, fused, data, zeros, directions))
    return rows


_SHORT_LOSS = {"cross_entropy": "CE", "binary_cross_entropy": "BCE", "mse": "MSE"}


def _compact_notes(items) -> str:
    """'saturated: logit~50, logit~2000 [f64 f32]; logit<=10 [f32]' from n/a records."""
    by_reason = {}
    for item in items:
        checks = by_reason.setdefault(item["reason"], {}).setdefault(item["point"], [])
        checks.append(item["check"].replace("float", "f"))
    parts = []
    for reason, points in by_reason.items():
        groups = {}
        for point, checks in points.items():
            groups.setdefault(" ".join(checks), []).append(point)
        parts.append(f"{reason}: " + "; ".join(f"{', '.join(p)} [{c}]" for c, p in groups.items()))
    return "; ".join(parts)


def format_table(rows) -> str:
    """The rows of ``run_matrix`` as a text table, with the tolerances and the notes' legend."""
    head = [
        "depth",
        "hidden",
        "output + loss",
        "fused",
        "delta^L",
        "grad f64",
        "grad f32",
        "FD f64",
        "result",
        "not applicable (point [check]) / notes",
    ]
    body = []
    for r in rows:
        notes = _compact_notes(r["not_applicable"])
        if "fd-kink" in r["notes"]:
            notes = "; ".join(filter(None, [notes, "fd-kink"]))
        body.append(
            [
                str(r["depth"]),
                r["hidden"],
                f"{r['output']} + {_SHORT_LOSS.get(r['loss'], r['loss'])}",
                str(r["fused"]),
                r["delta_L"],
                format_error(r["grad_rel_float64"]),
                format_error(r["grad_rel_float32"]),
                format_error(r["fd_rel_float64"]),
                "ok" if r["ok"] else "FAIL",
                notes,
            ]
        )
    used = {code for r in rows for code in r["notes"]}
    n_ok = sum(r["ok"] for r in rows)
    return "\n".join(
        [
            "jaxnn verify: jaxnn.backprop against jax.grad(jaxnn.cost) and central differences",
            "error: the worst over points and leaves of max|a - e| / max|e| (per leaf, the hand "
            "gradient a, the reference e)",
            f"tolerances: grad f64 {GRAD_RTOL['float64']:.0e}, "
            f"grad f32 {GRAD_RTOL['float32']:.0e}; "
            f"FD f64 {FD_RTOL:.0e} of |g| along {FD_DIRECTIONS} random unit directions, "
            f"h = {FD_STEP:.0e}",
            f"points: {', '.join(POINTS)}; depth: hidden layers; delta^L: the closed form "
            "(F1-F3) or BP1",
            text_table(head, body),
            "",
            *(
                textwrap.fill(
                    f"{code}: {text}", width=100, subsequent_indent="  ", break_on_hyphens=False
                )
                for code, text in NOTES.items()
                if code in used
            ),
            f"{n_ok}/{len(rows)} configurations pass",
        ]
    )
