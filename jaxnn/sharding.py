"""Sums over examples on any device mesh: the one place where jaxnn's math meets sharding.

BP4 (``delta A^T``; ``delta^T A`` for rows) and the sums built on it contract
over the examples. When the examples are split over an ``Explicit`` mesh axis
(``jax.make_mesh``'s default in jax 0.10), JAX's sharding-in-types asks for
the result's sharding, since a contraction over a sharded dimension could give
a partial sum on each device or a full one everywhere
(``ShardingTypeError: Contracting dimensions are sharded ...``). The product
here names it, as JAX's explicit-sharding guide does: the sharding of the
dimensions that remain, which makes XLA all-reduce the per-device sums. On
``Auto`` axes, and with no mesh at all, it is the plain product: the compiler
decides, as before.
"""

import jax
from jax import lax
from jax.sharding import AxisType, NamedSharding
from jax.sharding import PartitionSpec as P

__all__ = [
    "sum_over_examples",
]


def _has_explicit_axes(x) -> bool:
    """Whether ``x``'s type names a mesh with at least one ``Explicit`` axis."""
    mesh = jax.typeof(x).sharding.mesh
    return not mesh.empty and AxisType.Explicit in tuple(mesh.axis_types)


def sum_over_examples(a: jax.Array, b: jax.Array, axis: int) -> jax.Array:
    """sum_x a[..x..] b[..x..]^T: the product of ``a`` and ``b`` contracted over their
    examples, which lie on ``axis`` of both (1 for columns, 0 for rows), on any mesh.

    ``sum_over_examples(delta, A, 1)`` is ``delta @ A.T`` and
    ``sum_over_examples(delta, A, 0)`` is ``delta.T @ A``, both ``(n_a, n_b)``,
    without a transposed copy of either. With Explicit axes the result keeps the
    sharding of the two remaining dimensions (replicated for jaxnn's
    parameters): the per-device partial sums are all-reduced.
    """
    other = 1 - axis
    dims = (((axis,), (axis,)), ((), ()))
    if not (_has_explicit_axes(a) or _has_explicit_axes(b)):
        return lax.dot_general(a, b, dims)
    mesh = jax.typeof(a).sharding.mesh
    if mesh.empty:
        mesh = jax.typeof(b).sharding.mesh
    spec_a, spec_b = jax.typeof(a).sharding.spec, jax.typeof(b).sharding.spec
    keep = P(
        spec_a[other] if len(spec_a) > other else None,
        spec_b[other] if len(spec_b) > other else None,
    )
    return lax.dot_general(a, b, dims, out_sharding=NamedSharding(mesh, keep))
