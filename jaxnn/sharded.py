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
(``weighted_metrics``), divided by m: ``jaxnn.train.evaluate`` on the whole set.

``jaxnn.train.fit`` takes a ``Share`` as its data (with ``mesh=``), and makes
one itself when its mesh spans processes.
"""

import itertools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from jaxnn import losses, parallel
from jaxnn.distributed import spans_processes
from jaxnn.network import Network, forward_unchecked
from jaxnn.steps import epoch_fn


class Share(NamedTuple):
    """This process's share of a dataset: the columns (examples) its devices hold.

    ``X_train`` etc. are this process's columns of the training and test sets,
    each set padded with zero columns to a multiple of the mesh's devices;
    ``m_train`` and ``m_test`` are the numbers of real examples in the whole
    sets. Made by ``local_share``; ``jaxnn.train.fit`` takes one as its data.
    """

    X_train: np.ndarray
    Y_train: np.ndarray
    X_test: np.ndarray
    Y_test: np.ndarray
    m_train: int
    m_test: int


def check_mesh(mesh, axis: str | None = None) -> Mesh:
    """``mesh`` if it is a ``jax.sharding.Mesh`` with a ``"batch"`` axis (``parallel.AXIS``,
    as ``jaxnn.distributed.make_mesh`` builds) and ``axis`` is None or that axis; else a
    ValueError. Shares are split over that axis."""
    if not isinstance(mesh, Mesh) or parallel.AXIS not in mesh.axis_names:
        raise ValueError(
            f"a share of the data needs a jax.sharding.Mesh with a {parallel.AXIS!r} axis "
            f"(jaxnn.distributed.make_mesh), got {mesh!r}"
        )
    if axis not in (None, parallel.AXIS):
        raise ValueError(
            f"a share of the data is split over the mesh's {parallel.AXIS!r} axis, not {axis!r}"
        )
    return mesh


def padded(m: int, mesh: Mesh) -> int:
    """m rounded up to a multiple of the mesh's devices."""
    n = mesh.shape[parallel.AXIS]
    return -(-m // n) * n


def sharding(mesh: Mesh):
    """Columns (examples) split over the mesh's ``"batch"`` axis: how shares are placed."""
    return parallel.batch_sharding(mesh, parallel.AXIS)


def local_columns(mesh: Mesh, m_pad: int) -> tuple[int, int]:
    """``(lo, hi)``: the columns of an ``(n, m_pad)`` batch-sharded array this process holds."""
    index = sharding(mesh).addressable_devices_indices_map((1, m_pad))
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


def local_share(data, mesh: Mesh) -> Share:
    """This process's ``Share`` of ``data`` (anything with X_train, Y_train, X_test, Y_test)."""
    check_mesh(mesh)
    parts = {}
    for part in ("train", "test"):
        X, Y = getattr(data, f"X_{part}"), getattr(data, f"Y_{part}")
        m = np.shape(X)[1]
        lo, hi = local_columns(mesh, padded(m, mesh))
        parts[f"X_{part}"], parts[f"Y_{part}"], parts[f"m_{part}"] = (
            _columns(X, lo, hi),
            _columns(Y, lo, hi),
            m,
        )
    return Share(**parts)


def as_share(data, mesh: Mesh | None, axis: str | None = None) -> Share | None:
    """``data`` as a ``Share`` when it is one, or the mesh spans processes; else None.

    ``axis``: the batch axis asked for (``fit(batch_axis=)``); a share needs
    the mesh's ``"batch"`` axis (``check_mesh``).
    """
    if isinstance(data, Share):
        if mesh is None:
            raise ValueError("a jaxnn.sharded.Share needs mesh= (jaxnn.distributed.make_mesh)")
        check_mesh(mesh, axis)
        return data
    if mesh is not None and spans_processes(mesh):
        check_mesh(mesh, axis)
        return local_share(data, mesh)
    return None


def weighted_metrics(params, X, Y, weights, net: Network, m: int, task: str) -> dict:
    """``jaxnn.train.evaluate``'s metrics as sums over the columns with weight 1, over m.

    ``weights`` is ``(1, m_pad)``: 1 for the m real examples, 0 for padding.
    Every metric is a sum over examples (so over every process's share) divided
    by m: the cost (C-M), accuracy, R^2 (1 - SS_res / SS_tot per output row,
    averaged) and the mean squared error.
    """
    cache = forward_unchecked(params, X, net)
    Z, A = cache.Z[-1], cache.A[-1]
    w = weights[0]
    per_example = losses.get(net.loss).stable_value(Z, A, Y)
    out = {"cost": jnp.sum(w * per_example) / m}  # (C-M)
    n_out = A.shape[0]
    if task == "classification":
        if net.activations[-1] == "softmax":
            correct = (jnp.argmax(A, axis=0) == jnp.argmax(Y, axis=0)).astype(A.dtype)
            out["accuracy"] = jnp.sum(w * correct) / m
        else:  # sigmoid: per output unit
            correct = ((A > 0.5) == (Y > 0.5)).astype(A.dtype)
            out["accuracy"] = jnp.sum(weights * correct) / (m * n_out)
    else:
        mean = jnp.sum(weights * Y, axis=1, keepdims=True) / m
        residual = jnp.sum(weights * (Y - A) ** 2, axis=1)
        total = jnp.sum(weights * (Y - mean) ** 2, axis=1)
        r2 = jnp.where(
            total > 0, 1 - residual / jnp.where(total > 0, total, 1), 1.0 * (residual == 0)
        )
        out["r2"] = jnp.mean(r2)
        out["mse"] = jnp.sum(weights * (A - Y) ** 2) / (m * n_out)
    return out


class Placed(NamedTuple):
    """A share placed as global arrays over the mesh (``place``), batch-sharded."""

    X: jax.Array  # (n_x, padded(m_train)): every process's columns
    Y: jax.Array
    X_test: jax.Array  # (n_x, padded(m_test))
    Y_test: jax.Array
    weights: jax.Array  # (1, padded(m_test)): 1 for the m_test real examples, 0 for padding


def _place_share(local, m_pad: int, mesh: Mesh) -> jax.Array:
    local = np.asarray(local)
    return jax.make_array_from_process_local_data(sharding(mesh), local, (local.shape[0], m_pad))


def place(share: Share, arrays, mesh: Mesh) -> Placed:
    """The share's ``arrays`` (X, Y, X_test, Y_test: this process's columns, e.g. cast to
    the params' dtype) as global arrays split by columns over ``mesh``, with the test
    set's padding weights. Every process calls it with its own share."""
    m_train, m_test = padded(share.m_train, mesh), padded(share.m_test, mesh)
    X, Y = (_place_share(a, m_train, mesh) for a in arrays[:2])
    X_test, Y_test = (_place_share(a, m_test, mesh) for a in arrays[2:])
    real = (np.arange(m_test)[None, :] < share.m_test).astype(X.dtype)
    weights = jax.make_array_from_callback(real.shape, sharding(mesh), lambda index: real[index])
    return Placed(X, Y, X_test, Y_test, weights)


def replicated_key(key, mesh: Mesh):
    """The (host-local) key as one array replicated over the mesh: every process computes
    the same key from the seed alone, so each places its own copy."""
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        data = parallel.replicate(np.asarray(jax.random.key_data(key)), mesh)
        return jax.random.wrap_key_data(data, impl=jax.random.key_impl(key))
    return parallel.replicate(np.asarray(key), mesh)


def share_epoch_fn(net, optimizer, batch_size: int, m_train: int, mesh: Mesh, gradients="hand"):
    """The epoch on X, Y of ``padded(m_train, mesh)`` columns split over ``mesh``, not jitted.

    ``epoch(params, opt_state, X, Y, key) -> (params, opt_state, costs)``: its
    batches are ``jaxnn.steps.epoch_batches(key, m_train, batch_size)``, as on
    one device (the padding is never drawn), each constrained to the mesh's
    ``"batch"`` axis. ``jaxnn.train.make_share_train_epoch`` jits it with the
    test evaluation (``weighted_metrics``).
    """
    parallel.check_divisible(batch_size, mesh, axis=parallel.AXIS)
    constrain = parallel.constrain_to(mesh, parallel.AXIS)
    return epoch_fn(net, optimizer, batch_size, gradients, constrain, examples=m_train)
