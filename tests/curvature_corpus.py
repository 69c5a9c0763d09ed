"""Seeded errors in jaxnn.curvature: each must fail tests/test_curvature.py's checks.

Each ``Fault`` plants one plausible mistake in the library for the length of a test
(``monkeypatch``: a module's name, or an entry of one of its tables) and names the
network it shows on and the quantities whose comparison with autodiff must then fail
(``tests/test_curvature.py::test_each_seeded_error_is_caught``). The mistakes are the
issue's (a missing sigma'' term, the wrong H_out, a transposed factor) and their
neighbours: a sign, a lost 1/m, a term of the R-forward pass, a sigma' left out of
the factors' backpropagation, an unscaled Monte Carlo factor.
"""

import dataclasses
from collections.abc import Callable

import jax.numpy as jnp

from jaxnn import Network, activations
from jaxnn.curvature import diagonals, ggn, heads, rop, second_derivatives
from jaxnn.network import column_bias

# The networks the faults show on (tests/test_curvature.py checks them unplanted too):
# curved hidden layers (tanh among them) before softmax + CE, and before MSE after sigmoid.
CROSS_ENTROPY = Network((3, 4, 4, 3), ("sigmoid", "tanh", "softmax"), "cross_entropy")
SIGMOID_MSE = Network((3, 4, 4, 3), ("tanh", "sigmoid", "sigmoid"), "mse")
NETS = (CROSS_ENTROPY, SIGMOID_MSE)


@dataclasses.dataclass(frozen=True)
class Fault:
    """A mistake planted by ``plant(monkeypatch)``, shown by ``net``'s ``caught_by`` checks."""

    name: str
    net: Network
    caught_by: tuple[str, ...]
    plant: Callable


def _no_residual_in_hvp(mp):
    mp.setattr(rop, "residual_vp", lambda name, Z, A, G, V: jnp.zeros_like(V))


def _tanh_second_sign(mp):
    mp.setitem(
        second_derivatives.SECOND_DERIVATIVES,
        "tanh",
        lambda Z: -second_derivatives.tanh_second(Z),
    )


SOFTMAX_CE = ("softmax", "cross_entropy")


def _diag_p_for_softmax_ce(mp):
    """diag(p) for diag(p) - p p^T: the softmax Jacobian's outer product forgotten."""
    diagonal = lambda d: jnp.eye(d.shape[0])[:, :, None] * d[:, None, :]
    mp.setitem(
        heads.CONVEX_HEADS,
        SOFTMAX_CE,
        heads.ConvexHead(lambda Z, A, Y, V: A * V, lambda Z, A, Y: diagonal(jnp.sqrt(A)), "H1"),
    )


def _transposed_factor(mp):
    right = heads.CONVEX_HEADS[SOFTMAX_CE]
    wrong = lambda Z, A, Y: jnp.swapaxes(right.factor(Z, A, Y), 0, 1)  # S^T for S
    mp.setitem(heads.CONVEX_HEADS, SOFTMAX_CE, right._replace(factor=wrong))


def _mse_without_residual(mp):
    mp.setattr(rop, "output_hessian_vp", heads.ggn_output_hessian_vp)


def _diag_hessian_without_residuals(mp):
    mp.setattr(diagonals, "residual_factors", lambda name, Z, A, G: (jnp.zeros_like(Z), None, None))


def _r_forward_without_W_RA(params, cache, V, net):
    """(R1) without W^[l] R{A^[l-1]}: as if only the layer's own parameters moved."""
    RZ, RA = [], [None]
    for l, direction in enumerate(V):
        R_Z = direction["W"] @ cache.A[l] + column_bias(direction["b"])
        RZ.append(R_Z)
        if l + 1 < net.L:
            act = activations.get(net.activations[l])
            RA.append(act.vjp(cache.Z[l], cache.A[l + 1], R_Z))
    return RZ, RA


def _no_W_RA(mp):
    mp.setattr(rop, "r_forward", _r_forward_without_W_RA)
    mp.setattr(ggn, "r_forward", _r_forward_without_W_RA)


def _factors_without_sigma_prime(mp):
    mp.setattr(diagonals, "vjp_columns", lambda name, Z, A, F: F)


def _ggn_without_the_mean(mp):
    right = ggn.ggn_output_hessian_vp
    mp.setattr(
        ggn, "ggn_output_hessian_vp", lambda Z, A, Y, net, V: right(Z, A, Y, net, V) * Z.shape[1]
    )


def _mc_factor_unscaled(mp):
    right = heads.sampled_output_factor

    def wrong(Z, A, net, key, samples, **kwargs):
        return right(Z, A, net, key, samples, **kwargs) * jnp.sqrt(samples)

    mp.setattr(diagonals, "sampled_output_factor", wrong)


FAULTS = (
    Fault("hvp without sigma''", CROSS_ENTROPY, ("hvp",), _no_residual_in_hvp),
    Fault(
        "tanh'' with its sign flipped",
        CROSS_ENTROPY,
        ("hvp", "diag_hessian"),
        _tanh_second_sign,
    ),
    Fault(
        "softmax + CE: H_out = diag(p), without - p p^T",
        CROSS_ENTROPY,
        ("hvp", "ggn_vp", "diag_ggn", "diag_hessian"),
        _diag_p_for_softmax_ce,
    ),
    Fault(
        "softmax + CE: the factor transposed, S^T for S",
        CROSS_ENTROPY,
        ("diag_ggn", "diag_hessian"),
        _transposed_factor,
    ),
    Fault(
        "MSE after sigmoid: H_out without its residual (a - y) sigma''",
        SIGMOID_MSE,
        ("hvp",),
        _mse_without_residual,
    ),
    Fault(
        "diag_hessian without the residual terms",
        CROSS_ENTROPY,
        ("diag_hessian",),
        _diag_hessian_without_residuals,
    ),
    Fault(
        "R-forward without W R{A}",
        CROSS_ENTROPY,
        ("hvp", "ggn_vp"),
        _no_W_RA,
    ),
    Fault(
        "factors backpropagated without sigma'",
        CROSS_ENTROPY,
        ("diag_ggn", "diag_hessian", "diag_ggn_mc"),
        _factors_without_sigma_prime,
    ),
    Fault("GGN without the mean's 1/m", CROSS_ENTROPY, ("ggn_vp",), _ggn_without_the_mean),
    Fault(
        "Monte Carlo factor not divided by sqrt(samples)",
        CROSS_ENTROPY,
        ("diag_ggn_mc",),
        _mc_factor_unscaled,
    ),
)
