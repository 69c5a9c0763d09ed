"""The verify matrix's computation: configurations, test points, one compiled program per depth.

``evaluate(seed, hidden_activations, depths)`` builds the random networks and the
test ``POINTS`` of every depth and runs, for every (hidden activation, output and
loss) of that depth, jaxnn's backprop (fused and not, float64 and float32),
``jax.grad(jaxnn.cost)`` in both dtypes, and central differences along
``FD_DIRECTIONS`` random directions, in one jitted program vmapped over the points.
Each program is compiled once per process. ``jaxnn.verify.matrix`` judges the numbers.
"""

import functools
import itertools
import math
from concurrent.futures import ThreadPoolExecutor

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from jaxnn import losses
from jaxnn.activations import ACTIVATIONS
from jaxnn.backpropagation import backprop
from jaxnn.network import Network, cost, forward_unchecked, output_cost
from jaxnn.verify.kinks import KINKS

__all__ = [
    "DEPTHS",
    "FD_DIRECTIONS",
    "FD_STEP",
    "HIDDEN_ACTIVATIONS",
    "OUTPUT_LOSSES",
    "PIECEWISE",
    "POINTS",
    "evaluate",
]

# Every element-wise activation of jaxnn's table (softmax is an output here).
HIDDEN_ACTIVATIONS = tuple(name for name, act in ACTIVATIONS.items() if act.deriv is not None)
# Every head with a closed form (the table's own pairs), then MSE after the other outputs.
OUTPUT_LOSSES = (
    *((h.activation, h.loss) for h in losses.HEADS),
    ("sigmoid", "mse"),
    ("tanh", "mse"),
    ("softmax", "mse"),
)
DEPTHS = (1, 2, 3)  # hidden layers
# Test points: (how, size) rescales W^[L] and b^[L] so that max|Z^[L]| or rms(Z^[L]) is size.
POINTS = {
    "random": ("rms", 1.0),
    "kink": ("rms", 1.0),
    "logit<=10": ("max", 10.0),
    "logit~50": ("rms", 50.0),
    "logit~2000": ("rms", 2000.0),
    # the random point's network rescaled (drawn after the others: their draws are kept)
    "logit<=20": ("max", 20.0),
}
FD_STEP = 1e-5
FD_DIRECTIONS = 4
_WIDTHS = (4, 6, 5, 6)  # n_x, then the hidden widths
_N_OUT = 3
_M = 8
PIECEWISE = tuple(KINKS)  # the hidden activations with a kink (relu, leaky_relu)


def _sizes(depth):
    return (*_WIDTHS[: depth + 1], _N_OUT)


def _target_kind(output, loss):
    return loss if loss != "mse" else f"mse_{output}"


def _make_points(depth, seed):
    """Parameters, inputs, targets and FD directions for every point, stacked, float64."""
    rng = np.random.default_rng([seed, depth])
    sizes = _sizes(depth)
    P, m, n = len(POINTS) - 1, _M, _N_OUT  # the last point reuses the random point's draws
    params = [
        {
            "W": rng.normal(0.0, 1.0 / math.sqrt(n_in), (P, n_out, n_in)),
            "b": rng.normal(0.0, 0.5, (P, n_out, 1)),
        }
        for n_in, n_out in itertools.pairwise(sizes)
    ]
    X = rng.normal(0.0, 1.0, (P, sizes[0], m))
    # The kink point: Z^[1] = 0 in column 0 (X's column 0 and b^[1] are zero), and
    # in every later hidden layer unit 0 has no weights and no bias: Z = 0 in row 0.
    k = list(POINTS).index("kink")
    X[k, :, 0] = 0.0
    params[0]["b"][k] = 0.0
    for layer in params[1:depth]:
        layer["W"][k, 0, :] = 0.0
        layer["b"][k, 0] = 0.0
    one_hot = np.eye(n)[:, rng.integers(0, n, (P, m))].transpose(1, 0, 2)
    soft = rng.dirichlet(np.ones(n), (P, m)).transpose(0, 2, 1)
    probabilities = np.where(np.arange(m) % 2 == 0, one_hot, soft)
    binary = rng.integers(0, 2, (P, n, m)).astype(np.float64)
    Ys = {
        "cross_entropy": probabilities,
        "binary_cross_entropy": np.where(
            np.arange(m) % 2 == 0, binary, rng.uniform(0.0, 1.0, (P, n, m))
        ),
        "mse_linear": rng.normal(0.0, 1.0, (P, n, m)),
        "mse_sigmoid": rng.uniform(0.0, 1.0, (P, n, m)),
        "mse_tanh": rng.uniform(-1.0, 1.0, (P, n, m)),
        "mse_softmax": probabilities,
    }
    shapes = [{"W": np.ones((o, i)), "b": np.ones((o, 1))} for i, o in itertools.pairwise(sizes)]
    V = rng.normal(0.0, 1.0, (P, FD_DIRECTIONS, ravel_pytree(shapes)[0].shape[0]))
    # At the kink point FD must not move a pre-activation that sits at z = 0: the
    # kinked units' incoming weights and biases are held fixed (masked out of V).
    shapes[0]["b"][:] = 0.0
    for layer in shapes[1:depth]:
        layer["W"][0, :] = 0.0
        layer["b"][0] = 0.0
    V_kink = V.copy()
    V_kink[k] *= np.asarray(ravel_pytree(shapes)[0])
    V /= np.linalg.norm(V, axis=-1, keepdims=True)
    V_kink /= np.linalg.norm(V_kink, axis=-1, keepdims=True)
    scales = np.array([[how == "max", size] for how, size in POINTS.values()])
    again = lambda a: np.concatenate([a, a[:1]], axis=0)
    params, X, Ys, V, V_kink = jax.tree.map(again, (params, X, Ys, V, V_kink))
    return params, X, Ys, V, V_kink, scales


def _scale_output_layer(params, X, hidden, depth, scale):
    """W^[L], b^[L] rescaled so that max|Z^[L]| (scale[0] = 1) or rms(Z^[L]) is scale[1]."""
    net = Network(_sizes(depth), (hidden,) * depth + ("linear",), "mse")
    Z = forward_unchecked(params, X, net).Z[-1]
    size = jnp.where(scale[0] > 0, jnp.max(jnp.abs(Z)), jnp.sqrt(jnp.mean(Z**2)))
    s = scale[1] / size
    return [*params[:-1], {"W": params[-1]["W"] * s, "b": params[-1]["b"] * s}]


def _program(params, X, Ys, V, scales, *, hidden, depth):
    """Every configuration of one hidden activation and depth, vmapped over the points.

    Per (output, loss): jax.grad in float64 and float32, the FD quotients along
    V, the cost, Z^[L] and A^[L]; per (output, loss, fused): jaxnn.backprop in
    both dtypes (fused=False only where a closed form exists: elsewhere both run BP1).
    """
    h = FD_STEP

    def at_point(params, X, Ys, V, scale):
        params = _scale_output_layer(params, X, hidden, depth, scale)
        p32 = jax.tree.map(lambda x: x.astype(jnp.float32), params)
        X32 = X.astype(jnp.float32)
        flat, unravel = ravel_pytree(params)
        hidden_net = Network(_sizes(depth), (hidden,) * depth + ("linear",), "mse")
        zeros = sum(jnp.sum(Z == 0) for Z in forward_unchecked(params, X, hidden_net).Z[:-1])
        results = {}
        for output, loss in OUTPUT_LOSSES:
            net = Network(_sizes(depth), (hidden,) * depth + (output,), loss)
            Y = Ys[_target_kind(output, loss)]
            Y32 = Y.astype(jnp.float32)
            f = lambda theta, net=net, Y=Y: cost(unravel(theta), X, Y, net)
            quotient = lambda v, f=f: (f(flat + h * v) - f(flat - h * v)) / (2 * h)
            cache = forward_unchecked(params, X, net)
            r = {
                "ref64": jax.grad(cost)(params, X, Y, net),
                "ref32": jax.grad(cost)(p32, X32, Y32, net),
                "fd64": jax.vmap(quotient)(V),
                "cost64": output_cost(cache, Y, net),
                "Z64": cache.Z[-1],
                "A64": cache.A[-1],
                "A32": forward_unchecked(p32, X32, net).A[-1],
            }
            for fused in (True, False) if losses.head(output, loss).fused else (True,):
                r[f"hand64_{fused}"] = backprop(params, X, Y, net, fused=fused)
                r[f"hand32_{fused}"] = backprop(p32, X32, Y32, net, fused=fused)
            results[output, loss] = r
        return zeros, results

    return jax.vmap(at_point)(params, X, Ys, V, scales)


def _depth_program(params, X, Ys, V, V_kink, scales, *, depth, hidden_activations):
    return {
        hidden: _program(
            params,
            X,
            Ys,
            V_kink if hidden in PIECEWISE else V,
            scales,
            hidden=hidden,
            depth=depth,
        )
        for hidden in hidden_activations
    }


# Compiled once per process. XLA's CPU backend optimisations cost these small
# programs more time than they save; they change how code is generated, not
# its floating-point semantics.
_CPU_COMPILER_OPTIONS = {
    "xla_backend_optimization_level": 0,
    "xla_llvm_disable_expensive_passes": True,
    "xla_cpu_use_fusion_emitters": False,
}
_COMPILED = {}


def _compile(lowered, platform):
    if platform == "cpu":
        try:
            return lowered.compile(_CPU_COMPILER_OPTIONS)
        except jax.errors.JaxRuntimeError:  # an XLA without one of these options
            pass
    return lowered.compile()


def evaluate(seed, hidden_activations, depths):
    """Every configuration of ``hidden_activations`` x ``OUTPUT_LOSSES`` at every point, per depth.

    One program per depth; each compiles in a worker thread while the next one
    traces. Returns ``{depth: (results, inputs)}``: ``inputs`` as ``_make_points``
    builds them, ``results[hidden] = (zeros, {(output, loss): arrays})``, each
    array with the points on its leading axis (see ``_program``).
    """
    out = {}
    with (
        jax.enable_x64(True),
        jax.default_matmul_precision("highest"),
        ThreadPoolExecutor(max_workers=2) as pool,
    ):
        inputs = {depth: _make_points(depth, seed) for depth in depths}
        for depth in depths:
            key = (depth, hidden_activations)
            if key not in _COMPILED:
                program = functools.partial(
                    _depth_program, depth=depth, hidden_activations=hidden_activations
                )
                lowered = jax.jit(program).trace(*inputs[depth]).lower()
                _COMPILED[key] = pool.submit(_compile, lowered, jax.default_backend())
        for depth in depths:
            compiled = _COMPILED[depth, hidden_activations].result()
            out[depth] = jax.tree.map(np.asarray, compiled(*inputs[depth])), inputs[depth]
    return out
