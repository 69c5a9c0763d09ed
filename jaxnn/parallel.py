"""Data-parallel training: each batch's columns (examples) split over a device mesh.

Any mesh works: ``make_mesh`` here (one Auto axis, ``"batch"``) or
``jax.make_mesh`` with Explicit or Auto axes and any names; the axis that
splits the examples is given (``axis=``, ``fit(batch_axis=)``) or found
(``batch_axis``). A batch ``X`` of shape ``(n_x, m)`` is placed with
``NamedSharding(mesh, P(None, axis))``: device k holds columns
``k m/N .. (k+1) m/N``. Parameters and optimizer state are replicated
(``P()``). The step is the ordinary single-device step, compiled by XLA's SPMD
partitioner: the forward pass and BP1-BP2 run on each device's columns alone,
and the sums over examples in BP3 and BP4 (``delta A^T``, ``sum delta``) become
an all-reduce that the compiler inserts. Nothing in the formulas changes.

Use it through ``jaxnn.train.fit(..., devices=N)`` or ``fit(..., mesh=mesh)``
(whose epoch shards the training set by examples too, ``jaxnn.sharded``) and
``jaxnn train --devices N``; ``docs/scaling.md`` has the details.

Several processes or hosts: ``jaxnn.distributed`` (joining, a mesh over every
process's devices) and ``jaxnn.sharded`` (each process holds only its share of
the examples).
"""

from collections.abc import Callable
from typing import Any

import jax
import numpy as np
import optax
from jax.sharding import AxisType, Mesh, NamedSharding
from jax.sharding import PartitionSpec as P
from jax.typing import ArrayLike

from jaxnn.network import Network
from jaxnn.steps import step_fn
from jaxnn.validation import as_real_array, check_int

__all__ = [
    "AXIS",
    "batch_axis",
    "batch_sharding",
    "check_divisible",
    "is_explicit",
    "make_mesh",
    "make_parallel_step",
    "replicate",
    "replicated",
    "shard",
    "take_batch",
]

AXIS = "batch"


def make_mesh(devices: int | None = None) -> Mesh:
    """A one-axis mesh over the first ``devices`` devices (all of them if None).

    Its axis is ``"batch"``, of type ``Auto``. Any other mesh works as well, for
    example ``jax.make_mesh((4,), ("data",))`` (Explicit axes, JAX's default).
    """
    available = jax.devices()
    n = len(available) if devices is None else check_int(devices, "devices")
    if n > len(available):
        have = f"only {len(available)} are" if len(available) > 1 else "only 1 is"
        raise ValueError(
            f"asked for {n} devices, but {have} available "
            f"({jax.default_backend()}); on a CPU, XLA_FLAGS="
            f"--xla_force_host_platform_device_count={n} makes that many"
        )
    return Mesh(np.array(available[:n]), (AXIS,))


def batch_axis(mesh: Mesh, axis: str | None = None) -> str:
    """The mesh axis that splits the examples: ``axis`` if given, else found.

    Found: the mesh's only axis, or else its axis named ``"batch"``. Any name
    works when given (``"data"``, ``"dp"``, ...); a mesh with several axes and
    none called ``"batch"`` needs it given.
    """
    if not isinstance(mesh, Mesh):
        raise ValueError(
            f"mesh must be a jax.sharding.Mesh (jax.make_mesh or jaxnn.parallel.make_mesh), "
            f"got {type(mesh).__name__}"
        )
    names = tuple(mesh.axis_names)
    if axis is not None:
        if axis not in names:
            raise ValueError(f"batch axis {axis!r} is not an axis of the mesh; its axes: {names}")
        return axis
    if len(names) == 1:
        return names[0]
    if AXIS in names:
        return AXIS
    raise ValueError(
        f"mesh has axes {names}: say which one splits the examples (batch_axis=one of them)"
    )


def is_explicit(mesh: Mesh, axis: str) -> bool:
    """Whether ``axis`` of ``mesh`` is an ``Explicit`` axis (sharding in types)."""
    types = dict(zip(mesh.axis_names, mesh.axis_types, strict=True))
    return types[axis] == AxisType.Explicit


def batch_sharding(mesh: Mesh | None, axis: str | None = None) -> NamedSharding | None:
    """Columns (examples) split over the mesh's batch axis, rows whole (None for no mesh)."""
    return None if mesh is None else NamedSharding(mesh, P(None, batch_axis(mesh, axis)))


def replicated(mesh: Mesh | None) -> NamedSharding | None:
    """A full copy on every device of the mesh (None for no mesh: JAX's default device)."""
    return None if mesh is None else NamedSharding(mesh, P())


def take_batch(mesh: Mesh | None, axis: str | None = None) -> Callable:
    """``take(rows, idx) -> (n, B)``: the examples ``idx`` of ``rows`` (m, n) as
    columns split over the mesh's batch axis, inside a jitted function (the epoch's
    gather, ``jaxnn.steps.epoch_fn``).

    On an Explicit axis the gather states its result's sharding (JAX cannot tell
    it from a sharded operand); on an Auto axis the batch is constrained after it;
    for no mesh, ``rows[idx].T``.
    """
    if mesh is None:
        return lambda rows, idx: rows[idx].T
    axis = batch_axis(mesh, axis)
    if is_explicit(mesh, axis):
        rows_sharding = NamedSharding(mesh, P(axis, None))
        return lambda rows, idx: rows.at[idx].get(out_sharding=rows_sharding).T
    sharding = batch_sharding(mesh, axis)
    return lambda rows, idx: jax.lax.with_sharding_constraint(rows[idx].T, sharding)


def check_divisible(m: int, mesh: Mesh, what: str = "batch size", axis: str | None = None) -> None:
    """Raise ValueError unless the mesh's batch axis splits m examples evenly."""
    axis = batch_axis(mesh, axis)  # checks the mesh first
    n = mesh.shape[axis]
    if m % n:
        raise ValueError(
            f"{what} {m} does not divide over {n} devices; use a multiple of {n} "
            f"(e.g. {max(n, m - m % n)})"
        )


def _place(x, sharding):
    if isinstance(x, jax.Array):
        if x.sharding.is_equivalent_to(sharding, x.ndim):
            return x  # placed already
        if not x.is_fully_addressable:  # a global array of several processes
            return jax.device_put(x, sharding)
    x = np.asarray(x)
    return jax.make_array_from_callback(x.shape, sharding, lambda index: x[index])


def shard(X: ArrayLike, mesh: Mesh, axis: str | None = None) -> jax.Array:
    """X ``(n, m)`` as a global array with its columns split over the mesh's batch axis."""
    axis = batch_axis(mesh, axis)
    X = np.asarray(as_real_array(X, "X"))
    if X.ndim != 2:
        raise ValueError(
            f"X has shape {X.shape}; shard takes an (n, m) batch, one example per column"
        )
    check_divisible(X.shape[1], mesh, "number of examples", axis)
    return _place(X, batch_sharding(mesh, axis))


def replicate(tree: Any, mesh: Mesh | None) -> Any:
    """Every leaf of ``tree`` copied to every device of the mesh; for no mesh, put on
    JAX's default device (uncommitted) unless it is on a device already."""
    if mesh is None:
        return jax.tree.map(jax.device_put, tree)
    return jax.tree.map(lambda x: _place(x, replicated(mesh)), tree)


def make_parallel_step(
    net: Network,
    optimizer: optax.GradientTransformation,
    mesh: Mesh,
    gradients: str = "hand",
    axis: str | None = None,
) -> Callable:
    """``jaxnn.steps.make_step``, with each batch split over the mesh's devices.

    Returns ``step(params, opt_state, X, Y) -> (params, opt_state, cost)``; the
    batch size (X's columns) must divide by the number of devices. Inputs may
    be host arrays; they are placed as the step's shardings say.
    """
    axis = batch_axis(mesh, axis)
    rep, bat = replicated(mesh), batch_sharding(mesh, axis)
    step = jax.jit(
        step_fn(net, optimizer, gradients),
        in_shardings=(rep, rep, bat, bat),
        out_shardings=(rep, rep, rep),
    )

    def parallel_step(params, opt_state, X, Y):
        check_divisible(np.shape(X)[1], mesh, axis=axis)
        return step(params, opt_state, X, Y)

    return parallel_step
