"""Verifying gradients: ``check_gradients``, ``locate_fault``, and the verify matrix.

Three tools, from the most general to the most specific:

* ``check_gradients(grad_fn, cost_fn, params, *args)`` (``gradients``) compares
  any hand-written gradient with ``jax.grad(cost_fn)`` (and, optionally, central
  finite differences), leaf by leaf;
* ``locate_fault(params, X, Y, net, backward_fn)`` (``faults``) compares every
  layer's delta^[l] = dC/dZ^[l] of a jaxnn-style backward pass with ``jax.vjp``
  of the network cut at Z^[l], and names the layer where a wrong formula enters;
* ``run_matrix()`` (``matrix``, its computation in ``matrix_program``) runs
  jaxnn's own backprop over every (hidden activation, output and loss, depth,
  fused) configuration at test points chosen to be hard (kinks, saturation), in
  float64 and float32; ``format_table`` renders it, ``format_summary``
  (``summary``) condenses it to one screen.

All three measure errors per leaf as ``measures`` defines them (``errors``:
absolute, relative to the leaf's largest reference entry, and in ulps of it); a
leaf passes when max_i |a_i - e_i| <= atol + rtol * max_i |e_i|.

Nothing in this package prints; ``jaxnn.cli`` prints what it returns.
"""

from jaxnn.verify.faults import FaultReport as FaultReport
from jaxnn.verify.faults import LayerCheck as LayerCheck
from jaxnn.verify.faults import locate_fault as locate_fault
from jaxnn.verify.faults import reference_deltas as reference_deltas
from jaxnn.verify.gradients import GradientReport as GradientReport
from jaxnn.verify.gradients import LeafCheck as LeafCheck
from jaxnn.verify.gradients import check_gradients as check_gradients
from jaxnn.verify.gradients import finite_difference_gradient as finite_difference_gradient
from jaxnn.verify.matrix import format_table as format_table
from jaxnn.verify.matrix import run_matrix as run_matrix
from jaxnn.verify.measures import Errors as Errors
from jaxnn.verify.measures import errors as errors
from jaxnn.verify.summary import format_summary as format_summary

__all__ = [
    "Errors",
    "FaultReport",
    "GradientReport",
    "LayerCheck",
    "LeafCheck",
    "check_gradients",
    "errors",
    "finite_difference_gradient",
    "format_summary",
    "format_table",
    "locate_fault",
    "reference_deltas",
    "run_matrix",
]
