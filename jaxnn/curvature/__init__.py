"""Curvature by hand: Hessian and Gauss-Newton products, diagonals, Kronecker factors and
gradient moments, derived as BP1-BP4 are, for the mean cost of ``jaxnn.cost``.

Every function takes ``(params, X, Y, net, ...)`` as ``jaxnn.backprop`` does (columns;
one-hot or integer labels for softmax + cross-entropy) and returns a params-shaped
result unless said otherwise. Each quantity is BackPACK's of the same name for
``torch.nn.CrossEntropyLoss()`` (mean) on the same ``Linear``/activation stack.

* ``hvp(params, X, Y, net, V)``: the Hessian times V, by Pearlmutter's R-operator:
  an R-forward pass (R1), (R2) and an R-backward pass (R3)-(R6) beside BP1-BP4, with
  sigma'' (SD1-SD9, SD-S1) and the output head's Hessian (H1)-(H3).
* ``ggn_vp(params, X, Y, net, V)``: the generalised Gauss-Newton matrix J^T Lambda J
  times V (GN1)-(GN3), Lambda the heads' (H4).
* ``diag_ggn(params, X, Y, net)``: its exact diagonal, the factor S of (H5)
  backpropagated as matrices (D1)-(D3); ``diag_ggn_mc(..., key, samples)``: its Monte
  Carlo estimate, from the factor of labels drawn from the model (H6).
* ``diag_hessian(params, X, Y, net)``: the Hessian's exact diagonal, the GGN's plus
  the residual terms of sigma'' (D4), (D5).
* ``kflr(params, X, Y, net)``, ``kfac(params, X, Y, net, key, samples)``: per layer
  ``{"W": [G, A], "b": [G]}``, the Kronecker factors of the GGN block, exact or
  sampled (K1)-(K4).
* ``sum_grad_squared(params, X, Y, net)``, ``variance(params, X, Y, net)``: the sum
  over examples of the squared per-example gradients and their variance (M1)-(M3),
  without forming per-example gradients.

The pieces: ``second_derivatives`` (sigma'' and softmax's residual), ``heads`` (each
head's Hessian in Z^[L], its factors), ``rop``, ``ggn``, ``diagonals``, ``kronecker``,
``moments``. Derivations in ``docs/derivations.md``, "Curvature"; the use and the
BackPACK correspondence in ``docs/curvature.md``.
"""

from jaxnn.curvature.diagonals import diag_ggn as diag_ggn
from jaxnn.curvature.diagonals import diag_ggn_mc as diag_ggn_mc
from jaxnn.curvature.diagonals import diag_hessian as diag_hessian
from jaxnn.curvature.ggn import ggn_vp as ggn_vp
from jaxnn.curvature.kronecker import kfac as kfac
from jaxnn.curvature.kronecker import kflr as kflr
from jaxnn.curvature.moments import sum_grad_squared as sum_grad_squared
from jaxnn.curvature.moments import variance as variance
from jaxnn.curvature.rop import hvp as hvp

__all__ = [
    "diag_ggn",
    "diag_ggn_mc",
    "diag_hessian",
    "ggn_vp",
    "hvp",
    "kfac",
    "kflr",
    "sum_grad_squared",
    "variance",
]
