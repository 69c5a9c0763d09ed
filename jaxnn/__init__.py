"""jaxnn: dense networks in JAX with hand-derived backpropagation, verified against jax.grad.

Parameters are plain pytrees: ``params[l]`` is ``{"W": (n^[l+1], n^[l]), "b": (n^[l+1], 1)}``,
layer ``l + 1`` of the seeds' 1-based math (``b`` may be ``(n^[l+1],)``, as Flax and
Equinox hold it; ``from_flax``, ``from_equinox`` convert their parameters). Inputs are
``(n_x, m)``, one example per column; ``jaxnn.rows`` takes ``(m, n_x)``, one per row,
with the same parameters.

The package, from the bottom up (imports only ever point down this list):

* math: ``validation`` (input checks), ``activations`` (sigma, sigma'),
  ``losses`` (costs, grad_a C, the table of output heads), ``network`` (spec,
  init, forward, cost), ``backpropagation`` (BP1-BP4), ``regularization`` (weight
  decay: (C-L2), (BP4-L2)), ``weighted`` (a weighted mean cost: (C-W), (BP1-W)),
  ``hand_gradients``
  (``jax.custom_vjp``: the cost, and the network as a block of any model),
  ``per_example`` (per-example gradients, norms and clipping from the deltas),
  ``rows`` (the same for ``(m, n)`` data, one example per row), ``interop``
  (Flax and Equinox parameters as jaxnn's, and back), ``sharding``
  (sums over examples on any mesh), ``curvature`` (the math for other quantities, on
  the same BP machinery: Hessian- and Gauss-Newton products, diagonals, Kronecker
  factors, gradient moments), ``optim`` (optax transformations, on any pytree);
* training: ``steps`` (step and epoch), ``metrics`` (cost and task metrics on any
  mesh), ``parallel`` (meshes), ``distributed`` (several processes: jax.distributed,
  faults), ``sharded`` (each process's share of the data), ``programs`` (fit's
  start and epoch), ``program_cache`` (those programs kept on disk with
  ``jax.export``), ``train`` (fit, evaluate), ``data`` (datasets), ``tabular``
  (the user's own CSV, TSV, Parquet or .npz files), ``checkpoint`` (orbax);
* tools: ``verify`` (gradient checks, fault localisation, the matrix), ``bench``,
  ``onnx_export`` (a model as an ONNX graph), ``model`` (a finished run as a model,
  to predict with), ``sklearn`` (scikit-learn's MLPClassifier and MLPRegressor,
  trained by jaxnn);
* the command line: ``cli``, the only part that prints.

The training modules, ``jaxnn.verify`` and ``jaxnn.bench`` load on first use, so
``import jaxnn`` stays light. Nothing in the library prints or changes the
process's global state (CPU affinity, environment, signals, ``jax.config``): that
is the command line's business (``jaxnn.cli``), for its own process.
"""

import importlib

from jaxnn import activations as activations
from jaxnn import losses as losses
from jaxnn import optim as optim
from jaxnn import rows as rows
from jaxnn.backpropagation import Backward as Backward
from jaxnn.backpropagation import backprop as backprop
from jaxnn.backpropagation import backward as backward
from jaxnn.backpropagation import output_delta as output_delta
from jaxnn.backpropagation import value_and_backprop as value_and_backprop
from jaxnn.hand_gradients import cost_with_hand_gradients as cost_with_hand_gradients
from jaxnn.hand_gradients import network_with_hand_gradients as network_with_hand_gradients
from jaxnn.interop import from_equinox as from_equinox
from jaxnn.interop import from_flax as from_flax
from jaxnn.interop import to_equinox as to_equinox
from jaxnn.interop import to_flax as to_flax
from jaxnn.network import Cache as Cache
from jaxnn.network import Network as Network
from jaxnn.network import Params as Params
from jaxnn.network import cost as cost
from jaxnn.network import forward as forward
from jaxnn.network import forward_unchecked as forward_unchecked
from jaxnn.network import init_params as init_params
from jaxnn.network import predict as predict
from jaxnn.per_example import clipped_mean_grads as clipped_mean_grads
from jaxnn.per_example import per_example_grad_norms as per_example_grad_norms
from jaxnn.per_example import per_example_grads as per_example_grads
from jaxnn.validation import checked as checked

__version__ = "0.1.0"

# Submodules loaded on first attribute access (PEP 562).
_LAZY_MODULES = (
    "train",
    "data",
    "parallel",
    "distributed",
    "sharded",
    "checkpoint",
    "metrics",
    "programs",
    "program_cache",
    "steps",
    "verify",
    "bench",
    "regularization",
    "tabular",
    "onnx_export",
    "model",
    "weighted",
    "sklearn",
)
# Public functions of lazy submodules, re-exported by name.
_LAZY_NAMES = {
    "check_gradients": "verify",
    "locate_fault": "verify",
    "taylor_test": "verify",
    "load_run": "model",
}

__all__ = [
    "Backward",
    "Cache",
    "Network",
    "Params",
    "activations",
    "backprop",
    "backward",
    "check_gradients",
    "checked",
    "clipped_mean_grads",
    "cost",
    "cost_with_hand_gradients",
    "forward",
    "forward_unchecked",
    "from_equinox",
    "from_flax",
    "init_params",
    "load_run",
    "locate_fault",
    "losses",
    "network_with_hand_gradients",
    "optim",
    "output_delta",
    "per_example_grad_norms",
    "per_example_grads",
    "predict",
    "rows",
    "taylor_test",
    "to_equinox",
    "to_flax",
    "value_and_backprop",
    *_LAZY_MODULES,
]


def __getattr__(name: str):
    if name in _LAZY_MODULES:
        return importlib.import_module(f"jaxnn.{name}")
    if name in _LAZY_NAMES:
        return getattr(importlib.import_module(f"jaxnn.{_LAZY_NAMES[name]}"), name)
    raise AttributeError(f"module 'jaxnn' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))
