"""Sums over examples on any device mesh: the one place where jaxnn's math meets sharding.

BP4 (``delta A^T``) and the per-example quantities built on it contract over the
examples. When the examples are split over an ``Explicit`` mesh axis (the
default of ``jax.make_mesh`` since jax 0.7), JAX's sharding-in-types asks for
the result's sharding, since a contraction over a sharded dimension could give
a partial sum on each device or a full one everywhere
(``ShardingTypeError: Contracting dimensions are sharded ...``). The product
here names it, as JAX's explicit-sharding guide does: the sharding of the
dimensions that remain, which makes XLA all-reduce the per-device sums. On
``Auto`` axes, and with no mesh at all, it is the plain product: the compiler
decides, as before.
"""

import jax
import jax.numpy as jnp
from jax.sharding import AxisType, NamedSharding
from jax.sharding import PartitionSpec as P


def has_explicit_axes(x) -> bool:
    """Whether ``x``'s type names a mesh with at least one ``Explicit`` axis."""
    mesh = jax.typeof(x).sharding.mesh
    return not mesh.empty and AxisType.Explicit in tuple(mesh.axis_types)


def matmul_over_examples(a: jax.Array, b: jax.Array) -> jax.Array:
    """``a @ b`` for a product whose contraction runs over examples, on any mesh.

    With Explicit axes the result keeps the sharding of ``a``'s rows and ``b``'s
    columns (replicated for jaxnn's parameters): the per-device partial sums
    are all-reduced. Values are those of ``a @ b``.
    """
    if not (has_explicit_axes(a) or has_explicit_axes(b)):
        return a @ b
    mesh = jax.typeof(a).sharding.mesh
    if mesh.empty:
        mesh = jax.typeof(b).sharding.mesh
    rows = jax.typeof(a).sharding.spec
    cols = jax.typeof(b).sharding.spec
    spec = P(rows[0] if len(rows) else None, cols[1] if len(cols) > 1 else None)
    return jnp.matmul(a, b, out_sharding=NamedSharding(mesh, spec))
