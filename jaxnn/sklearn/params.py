"""The estimators' parameters: scikit-learn's names checked before any math, and the
tables that map scikit-learn's choices onto jaxnn's."""

import numbers
from typing import Any

import numpy as np
from scipy.special import expit, softmax

from jaxnn.sklearn import program
from jaxnn.steps import GRADIENTS

__all__ = ["ACTIVATIONS", "HEADS", "OUT", "check", "hidden_sizes"]

# scikit-learn's activation names and jaxnn's, with the NumPy function predict uses.
ACTIVATIONS = {
    "relu": ("relu", lambda z: np.maximum(z, 0)),
    "tanh": ("tanh", np.tanh),
    "logistic": ("sigmoid", expit),
    "identity": ("linear", lambda z: z),
}
# The output heads as scikit-learn chooses them: out_activation_ -> jaxnn's (activation, loss).
HEADS = {
    "softmax": ("softmax", "cross_entropy"),  # several classes (F1)
    "logistic": ("sigmoid", "binary_cross_entropy"),  # two classes, or multilabel (F2)
    "identity": ("linear", "mse"),  # regression (F3)
}
OUT = {"softmax": lambda z: softmax(z, axis=1), "logistic": expit, "identity": lambda z: z}


def _is_int(x) -> bool:
    return isinstance(x, numbers.Integral) and not isinstance(x, bool)


def _in(name: str, value, low: float, high: float, closed: str = "[)") -> None:
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and np.isfinite(value)
    if ok:
        ok = (low <= value if closed[0] == "[" else low < value) and (
            value <= high if closed[1] == "]" else value < high
        )
    if not ok:
        raise ValueError(
            f"{name} must be a float in {closed[0]}{low}, {high}{closed[1]}, got {value!r}"
        )


def _choice(name: str, value, valid) -> None:
    if value not in valid:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, valid))}; got {value!r}")


def hidden_sizes(sizes: Any) -> tuple[int, ...]:
    """``hidden_layer_sizes`` as a tuple of ints >= 1 (an int is one layer), or a ValueError
    naming the entry."""
    sizes = (sizes,) if _is_int(sizes) else sizes
    try:
        sizes = tuple(sizes)
    except TypeError:
        raise ValueError(
            f"hidden_layer_sizes must be an int or a sequence of ints, got {sizes!r}"
        ) from None
    for i, n in enumerate(sizes):
        if not _is_int(n) or n < 1:
            raise ValueError(f"hidden_layer_sizes[{i}] must be an int >= 1, got {n!r}")
    return tuple(int(n) for n in sizes)


def check(settings: dict) -> None:
    """Raise a ValueError naming the first parameter of ``settings`` (``get_params()``)
    that is out of its range, with the valid choices."""
    if settings.get("loss", "squared_error") != "squared_error":
        raise ValueError(
            f"loss must be 'squared_error' (the only loss of jaxnn.sklearn's regressor), got "
            f"{settings['loss']!r}"
        )
    if settings["solver"] == "lbfgs":
        raise ValueError(
            "solver='lbfgs' is not offered by jaxnn.sklearn (a full-batch quasi-Newton "
            "method); use 'adam', 'sgd' or 'rmsprop'"
        )
    _choice("solver", settings["solver"], program.SOLVERS)
    _choice("activation", settings["activation"], tuple(ACTIVATIONS))
    _choice("learning_rate", settings["learning_rate"], program.SCHEDULES)
    _choice("gradients", settings["gradients"], GRADIENTS)
    hidden_sizes(settings["hidden_layer_sizes"])
    _in("alpha", settings["alpha"], 0, np.inf)
    _in("learning_rate_init", settings["learning_rate_init"], 0, np.inf, "()")
    _in("power_t", settings["power_t"], 0, np.inf)
    _in("tol", settings["tol"], 0, np.inf)
    _in("momentum", settings["momentum"], 0, 1)
    _in("beta_1", settings["beta_1"], 0, 1)
    _in("beta_2", settings["beta_2"], 0, 1)
    _in("epsilon", settings["epsilon"], 0, np.inf, "()")
    _in("validation_fraction", settings["validation_fraction"], 0, 1, "()")
    if settings["batch_size"] != "auto" and (
        not _is_int(settings["batch_size"]) or settings["batch_size"] < 1
    ):
        raise ValueError(
            f"batch_size must be 'auto' or an int >= 1, got {settings['batch_size']!r}"
        )
    for name in ("max_iter", "n_iter_no_change"):
        value = settings[name]
        if not _is_int(value) or value < 1:
            raise ValueError(f"{name} must be an int >= 1, got {value!r}")
    for name in ("shuffle", "verbose", "warm_start", "nesterovs_momentum", "early_stopping"):
        if not isinstance(settings[name], (bool, np.bool_, numbers.Integral)):
            raise ValueError(f"{name} must be a bool, got {settings[name]!r}")
