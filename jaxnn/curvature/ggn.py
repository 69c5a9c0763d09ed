"""The generalised Gauss-Newton matrix times a vector: J^T Lambda J V, from BP's own parts.

With J the Jacobian of Z^[L] (all m columns) in the params and Lambda the GGN's
output Hessian of each example (H4: the cost's whole Hessian in z^[L] for the
convex heads, J_sigma^T J_sigma for MSE), the GGN of the mean cost is
(1/m) sum_x J_x^T Lambda_x J_x, and its product with V takes three steps:

  U = J V = R{Z^[L]}, the R-forward pass (R1), (R2)                          (GN1)
  delta~^[L] = (1/m) Lambda U   per column                                    (GN2)
  G V = J^T delta~^[L]: BP2-BP4 from delta~^[L], as from any delta^[L]        (GN3)

(GN3) holds because BP2-BP4 are J^T applied to delta^[L] (``propagate``): no sigma''
appears, which is what makes the GGN positive semi-definite where the Hessian is not.
Derivations in ``docs/derivations.md``, "Curvature".
"""

from jax.typing import ArrayLike

from jaxnn.backpropagation import backward_from
from jaxnn.curvature.heads import ggn_output_hessian_vp
from jaxnn.curvature.rop import check_direction, r_forward
from jaxnn.network import Network, Params, check_inputs, forward_unchecked

__all__ = [
    "ggn_vp",
]


def ggn_vp(params: Params, X: ArrayLike, Y: ArrayLike, net: Network, V: Params) -> Params:
    """The generalised Gauss-Newton matrix of ``jaxnn.cost`` times ``V``   (GN1)-(GN3)

    G = (1/m) sum_x J_x^T Lambda_x J_x, J_x the Jacobian of example x's z^[L] in the
    params, Lambda_x its output Hessian (H4): for softmax + cross-entropy
    diag(p) - p p^T (times sum_k y_k), for sigmoid + BCE diag(sigma'(z)), for MSE
    J_sigma^T J_sigma (the identity for a linear output).

    Args:
      params, X, Y, net: as ``jaxnn.backprop``.
      V: the direction, with exactly the params' structure and shapes.

    Returns:
      G V in the params' structure, shapes and dtypes.
    """
    X, Y = check_inputs(params, X, net, Y)
    check_direction(params, V)
    cache = forward_unchecked(params, X, net)
    RZ, _ = r_forward(params, cache, V, net)  # (GN1): J V
    m = X.shape[1]
    delta = ggn_output_hessian_vp(cache.Z[-1], cache.A[-1], Y, net, RZ[-1]) / m  # (GN2)
    return backward_from(params, cache, delta, net).grads  # (GN3): J^T, by BP2-BP4
