"""Data sharded by examples over a mesh that may span processes: each holds only its share.

A training or test set of m examples is padded with zero columns to ``m_pad``,
the next multiple of the mesh's D devices, and sharded by columns
(``parallel.batch_sharding``): each process holds only the columns its devices
hold (``local_share``, a ``Share``), and the global arrays are assembled from
those process-local parts with ``jax.make_array_from_process_local_data``.
Memory per process for the data falls as 1/P with P processes.

An epoch draws the same global permutation of the m real examples as a single
device does (``jaxnn.steps.epoch_batches``, from the key alone: the same on
every process, placed replicated by ``replicated_key``). Each batch is gathered
from the process-local columns inside the compiled epoch (XLA turns the gather
into a local gather and an all-reduce of the B-column batch: no process ever
holds the whole set) and split over the devices. The padding is never drawn.
The test metrics are sums over every process's share, the padding weighted 0
(``jaxnn.metrics.metrics``), divided by m: ``jaxnn.train.evaluate`` on the whole set.

``jaxnn.train.fit`` places every dataset this way, on any mesh (one device is a
mesh of one, one process a cluster of one); it takes a ``Share`` as its data
(with ``mesh=``) and makes one itself otherwise (``as_share``).
"""

import itertools
from typing import Any, NamedTuple

import jax
import numpy as np
from jax.sharding import Mesh
from jax.typing import ArrayLike

from jaxnn import parallel

__all__ = [
    "Placed",
    "Share",
    "as_share",
    "local_columns",
    "local_share",
    "padded",
    "place",
]


class Share(NamedTuple):
    """This process's share of a dataset: the columns (examples) its devices hold.

    ``X_train`` etc. are this process's columns of the training and test sets (and
    of a validation set, if the data has one), each set padded with zero columns to
    a multiple of the mesh's devices; ``m_train``, ``m_test`` and ``m_val`` are the
    numbers of real examples in the whole sets. Made by ``local_share``;
    ``jaxnn.train.fit`` takes one as its data.
    """

    X_train: np.ndarray
    Y_train: np.ndarray
    X_test: np.ndarray
    Y_test: np.ndarray
    m_train: int
    m_test: int
    X_val: np.ndarray | None = None
    Y_val: np.ndarray | None = None
    m_val: int = 0


def padded(m: int, mesh: Mesh | None, axis: str | None = None) -> int:
    """m rounded up to a multiple of the devices along the mesh's batch axis (no mesh:
    one device)."""
    n = 1 if mesh is None else mesh.shape[parallel.batch_axis(mesh, axis)]
    return -(-m // n) * n


def local_columns(mesh: Mesh | None, m_pad: int, axis: str | None = None) -> tuple[int, int]:
    """``(lo, hi)``: the columns of an ``(n, m_pad)`` batch-sharded array this process
    holds (no mesh: all of them)."""
    if mesh is None:
        return 0, m_pad
    index = parallel.batch_sharding(mesh, axis).addressable_devices_indices_map((1, m_pad))
    if not index:
        raise ValueError(f"the mesh has none of process {jax.process_index()}'s devices")
    spans = sorted(
        {(s[1].start or 0, m_pad if s[1].stop is None else s[1].stop) for s in index.values()}
    )
    if any(a[1] != b[0] for a, b in itertools.pairwise(spans)):
        raise ValueError(
            "this process's devices are not one contiguous block of the mesh; build it with "
            "jaxnn.distributed.make_mesh"
        )
    return spans[0][0], spans[-1][1]


def _columns(x, lo: int, hi: int) -> np.ndarray:
    x = np.asarray(x)
    part = x[:, lo : min(hi, x.shape[1])]
    return np.pad(part, ((0, 0), (0, hi - lo - part.shape[1])))  # padding: zeros


def local_share(data: Any, mesh: Mesh | None, axis: str | None = None) -> Share:
    """This process's ``Share`` of ``data`` (anything with X_train, Y_train, X_test,
    Y_test and optionally X_val, Y_val, in columns), split over the mesh's batch axis
    (``parallel.batch_axis``)."""
    parts = {}
    for part in ("train", "test", "val"):
        X, Y = getattr(data, f"X_{part}", None), getattr(data, f"Y_{part}", None)
        if X is None:
            continue
        m = np.shape(X)[1]
        lo, hi = local_columns(mesh, padded(m, mesh, axis), axis)
        parts[f"X_{part}"], parts[f"Y_{part}"], parts[f"m_{part}"] = (
            _columns(X, lo, hi),
            _columns(Y, lo, hi),
            m,
        )
    return Share(**parts)


def as_share(data: Any, mesh: Mesh | None, axis: str | None = None) -> Share:
    """``data`` as this process's ``Share`` over ``mesh``: itself if it is one."""
    return data if isinstance(data, Share) else local_share(data, mesh, axis)


class Placed(NamedTuple):
    """One set of a share placed as global arrays over the mesh (``place``), split by
    columns: every process's columns, padded to a multiple of the devices."""

    X: jax.Array  # (n_x, m_pad)
    Y: jax.Array  # (n_y, m_pad)
    weights: jax.Array  # (1, m_pad): 1 for the m real examples, 0 for padding


def _place_share(local, m_pad: int, sharding) -> jax.Array:
    local = np.asarray(local)
    if sharding is None:  # JAX's default device, uncommitted
        return jax.device_put(local)
    return jax.make_array_from_process_local_data(sharding, local, (local.shape[0], m_pad))


def place(X: ArrayLike, Y: ArrayLike, m: int, mesh: Mesh | None, axis: str | None = None) -> Placed:
    """This process's columns ``X``, ``Y`` of a set of m examples (e.g. cast to the
    params' dtype) as global arrays split by columns over the mesh's batch axis, with
    the padding's weights. Every process calls it with its own columns."""
    sharding = parallel.batch_sharding(mesh, axis)
    m_pad = padded(m, mesh, axis)
    X, Y = _place_share(X, m_pad, sharding), _place_share(Y, m_pad, sharding)
    real = (np.arange(m_pad)[None, :] < m).astype(X.dtype)
    if sharding is None:
        weights = jax.device_put(real)
    else:  # every process knows the whole vector: each places its own columns
        weights = jax.make_array_from_callback(real.shape, sharding, lambda index: real[index])
    return Placed(X, Y, weights)
