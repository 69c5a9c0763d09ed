"""Issue 23's corpus: gradients that are wrong in awkward ways, and right ones that look wrong.

Each ``Honest`` case is any function (not a network): ``cost(params, *args)``, a
hand ``grad(params, *args)``, a point, and what an honest checker must say:
``"ok"`` (right: a pass, no alarm), ``"fail"`` (wrong: never ok) or
``"inconclusive"`` (nothing can be tested: never ok). The classes are the
issue's: nan and inf, leaves no direction moved (scalars, one-element leaves),
nothing to check, errors that look like kinks (a smooth cost with large inputs,
a tie of a max), exact zeros, a float32 leaf beside float64 ones, costs central
differences cannot resolve, a ``jax.custom_vjp`` cost, low precision.

``scripts/gradient_checkers.py`` runs every checker over it beside
``tests/corpus.py``; ``tests/test_verdicts.py`` asserts that jaxnn's checkers
have no false pass and no false alarm on it.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np


@dataclasses.dataclass(frozen=True)
class Honest:
    """One check to make, and the verdict an honest checker gives."""

    name: str
    cost: object
    grad: object
    params: object
    args: tuple = ()
    expect: str = "ok"  # "ok", "fail" or "inconclusive"
    dtype: str = "float64"
    taylor_expect: str | None = None  # where the Taylor test can only be inconclusive

    def expected(self, tool: str) -> str:
        """The verdict expected of ``tool`` ("taylor" may differ: see ``taylor_expect``)."""
        return self.taylor_expect if tool == "taylor" and self.taylor_expect else self.expect

    @property
    def bug(self) -> bool:
        return self.expect != "ok"


def _rng(seed=0):
    return np.random.default_rng(seed)


def _quadratic(w):
    return 0.5 * jnp.sum(w**2) + jnp.sum(jnp.sin(w))


def _quadratic_grad(w):
    return w + jnp.cos(w)


def _logistic(w, x, y):
    return jnp.mean(jnp.logaddexp(0.0, -y * (x @ w)))


def _tanh_regression(w, x, y):
    return 0.5 * jnp.mean((jnp.tanh(x @ w) - y) ** 2)


def _normalised(p, x, y):
    z = x @ p["W"] + p["b"]
    z = (z - z.mean(axis=0, keepdims=True)) / z.std(axis=0, keepdims=True)
    return jnp.mean((jax.nn.log_softmax(z + p["shift"]) - y) ** 2)


def _normalised_grad(p, x, y):
    g = jax.grad(_normalised)(p, x, y)
    return {"W": g["W"], "b": jnp.zeros_like(p["b"]), "shift": jnp.zeros_like(p["shift"])}


@jax.custom_vjp
def _sin_sum(w):
    return jnp.sum(jnp.sin(w))


_sin_sum.defvjp(lambda w: (_sin_sum(w), w), lambda w, g: (g * jnp.cos(w),))


def _scaled(grad, factor):
    return lambda *a: jax.tree.map(lambda g: factor * g, grad(*a))


def _cases():
    w3 = np.array([0.3, -1.2, 0.7])
    out = [
        Honest(
            "nan in the hand gradient",
            _quadratic,
            lambda w: _quadratic_grad(w).at[1].set(jnp.nan),
            w3,
            expect="fail",
        ),
        Honest(
            "inf in the hand gradient",
            _quadratic,
            lambda w: _quadratic_grad(w).at[1].set(jnp.inf),
            w3,
            expect="fail",
        ),
        Honest(
            "reference inf (sqrt at 0)",
            lambda w: jnp.sum(jnp.sqrt(w)),
            lambda w: 0.5 / jnp.sqrt(jnp.maximum(w, 1.0)),
            np.array([0.0, 1.0, 4.0]),
            expect="fail",
        ),
        Honest(
            "cost inf at the point (-log 0)",
            lambda w: -jnp.sum(jnp.log(w)),
            lambda w: -1 / jnp.where(w == 0, 1.0, w),
            np.array([0.5, 0.0, 2.0]),
            expect="fail",
        ),
        Honest(
            "log, steps leave the domain, right",
            lambda w: -jnp.sum(jnp.log(w)),
            lambda w: -1 / w,
            np.array([1e-3, 0.5, 2.0]),
        ),
        Honest(
            "log, steps leave the domain, 30% wrong",
            lambda w: -jnp.sum(jnp.log(w)),
            lambda w: -1.3 / w,
            np.array([1e-3, 0.5, 2.0]),
            expect="fail",
        ),
        Honest(
            "nothing to check: int params",
            lambda p: jnp.sum(p["n"]) * 1.0,
            lambda p: {"n": None},
            {"n": np.arange(3)},
            expect="inconclusive",
        ),
        Honest(
            "nothing to check: empty params",
            lambda p: 0.0 * jnp.sum(p["w"]),
            lambda p: {"w": jnp.zeros((0, 3))},
            {"w": np.zeros((0, 3))},
            expect="inconclusive",
        ),
        Honest(
            "exact zeros (normalisation, softmax shift)",
            _normalised,
            _normalised_grad,
            {
                "W": _rng(1).normal(size=(5, 5)),
                "b": _rng(2).normal(size=(1, 5)),
                "shift": np.array(0.7),
            },
            (_rng(3).normal(size=(8, 5)), _rng(4).normal(size=(8, 5))),
            # C does not move along the shift: its remainder is 0, below rounding
            taylor_expect="inconclusive",
        ),
        Honest(
            "exact zeros, bias 1e-3 wrong",
            _normalised,
            lambda p, x, y: {**_normalised_grad(p, x, y), "b": jnp.full((1, 5), 1e-3)},
            {
                "W": _rng(1).normal(size=(5, 5)),
                "b": _rng(2).normal(size=(1, 5)),
                "shift": np.array(0.7),
            },
            (_rng(3).normal(size=(8, 5)), _rng(4).normal(size=(8, 5))),
            expect="fail",
        ),
        Honest(
            "max tie, (1, 1) no subgradient",
            lambda w: jnp.maximum(w[0], w[1]) + 0.1 * jnp.sum(w**2),
            lambda w: 0.2 * w + 1.0,
            np.array([0.5, 0.5]),
            expect="fail",
        ),
        Honest(
            "max tie, (1, 0)",
            lambda w: jnp.maximum(w[0], w[1]) + 0.1 * jnp.sum(w**2),
            lambda w: 0.2 * w + jnp.array([1.0, 0.0]),
            np.array([0.5, 0.5]),
        ),
        Honest(
            "max tie, (0.25, 0.75)",
            lambda w: jnp.maximum(w[0], w[1]) + 0.1 * jnp.sum(w**2),
            lambda w: 0.2 * w + jnp.array([0.25, 0.75]),
            np.array([0.5, 0.5]),
        ),
        Honest(
            "relu at 0, relu'(0) = 1",
            lambda w: jnp.sum(jax.nn.relu(w)) + jnp.sum(w**2),
            lambda w: jnp.where(w >= 0, 1.0, 0.0) + 2 * w,
            np.array([0.0, 0.0, 0.3]),
        ),
        Honest(
            "relu at 0, slope 1.5",
            lambda w: jnp.sum(jax.nn.relu(w)) + jnp.sum(w**2),
            lambda w: jnp.where(w > 0, 1.0, 1.5) + 2 * w,
            np.array([0.0, 0.0, 0.3]),
            expect="fail",
        ),
        Honest(
            "float32 leaf beside float64, 1e-5 wrong in float64",
            lambda p: jnp.sum(jnp.sin(p["a"])) + jnp.sum(p["b"].astype(jnp.float64) ** 2),
            lambda p: {"a": jnp.cos(p["a"]) * (1 + 1e-5), "b": 2 * p["b"]},
            {"a": np.linspace(0.1, 1.0, 4), "b": np.linspace(0.1, 1.0, 4).astype(np.float32)},
            expect="fail",
        ),
        Honest(
            "float32 leaf beside float64, right",
            lambda p: jnp.sum(jnp.sin(p["a"])) + jnp.sum(p["b"].astype(jnp.float64) ** 2),
            lambda p: {"a": jnp.cos(p["a"]), "b": 2 * p["b"]},
            {"a": np.linspace(0.1, 1.0, 4), "b": np.linspace(0.1, 1.0, 4).astype(np.float32)},
        ),
        Honest(
            "high frequency sin(1e4 w), right",
            lambda w: jnp.sum(jnp.sin(1e4 * w)),
            lambda w: 1e4 * jnp.cos(1e4 * w),
            w3,
        ),
        Honest(
            "high frequency sin(1e4 w), 10% wrong",
            lambda w: jnp.sum(jnp.sin(1e4 * w)),
            lambda w: 1.1e4 * jnp.cos(1e4 * w),
            w3,
            expect="fail",
        ),
        Honest("custom_vjp cost, right", _sin_sum, lambda w: jnp.cos(w), w3),
        Honest("custom_vjp cost, wrong", _sin_sum, lambda w: jnp.sin(w), w3, expect="fail"),
    ]
    for dtype in (np.float64, np.float32):
        name = np.dtype(dtype).name
        for factor, expect in ((1.0, "ok"), (-1.0, "fail"), (1.3, "fail")):
            label = "right" if factor == 1.0 else f"x{factor}"
            out.append(
                Honest(
                    f"scalar parameter, {label}, {name}",
                    lambda w: jnp.sin(w) + w**2,
                    lambda w, f=factor: f * (jnp.cos(w) + 2 * w),
                    dtype(0.4),
                    expect=expect,
                    dtype=name,
                )
            )
            out.append(
                Honest(
                    f"one-element leaf, {label}, {name}",
                    lambda w: jnp.sum(jnp.sin(w) + w**2),
                    lambda w, f=factor: f * (jnp.cos(w) + 2 * w),
                    np.array([0.4], dtype),
                    expect=expect,
                    dtype=name,
                )
            )
        rng = _rng(5)
        x = (3e3 * rng.normal(size=(20, 4))).astype(dtype)
        y = rng.uniform(-1, 1, 20).astype(dtype)
        w = (rng.normal(size=4) * 1e-4).astype(dtype)
        g = jax.grad(_tanh_regression)
        out.append(
            Honest(
                f"tanh regression, inputs ~3e3, right, {name}",
                _tanh_regression,
                g,
                w,
                (x, y),
                dtype=name,
            )
        )
        for factor in (1.3, -1.0):
            wrong = lambda w, x, y, f=factor, g=g: g(w, x, y).at[0].multiply(f)
            out.append(
                Honest(
                    f"tanh regression, inputs ~3e3, w0 x{factor}, {name}",
                    _tanh_regression,
                    wrong,
                    w,
                    (x, y),
                    expect="fail",
                    dtype=name,
                )
            )
    for dtype in (np.float32, jnp.bfloat16):
        name = jnp.dtype(dtype).name
        rng = _rng(2)
        x, y = rng.normal(size=(30, 4)).astype(dtype), rng.choice([-1.0, 1.0], 30).astype(dtype)
        w = rng.normal(size=4).astype(dtype)
        g = jax.grad(_logistic)
        smallest = 0.1 if name == "bfloat16" else 0.01
        if name == "float32":
            out.append(Honest(f"logistic, right, {name}", _logistic, g, w, (x, y), dtype=name))
        for factor in (1 + smallest, 1.5, -1.0):
            out.append(
                Honest(
                    f"logistic, x{factor:g}, {name}",
                    _logistic,
                    _scaled(g, factor),
                    w,
                    (x, y),
                    expect="fail",
                    dtype=name,
                )
            )
    return out


CASES = _cases()
