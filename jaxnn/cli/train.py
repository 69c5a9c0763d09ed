"""``jaxnn train``: train a network and write its run directory.

The run directory holds config.json, metrics.json, curves.png and
checkpoints/; a run resumes from its newest checkpoint. Compiled programs are
kept in the persistent compilation cache, and fit's two programs whole beside it
(``jaxnn.cli.cache``), so a second run of the same network compiles nothing and
does not trace fit's programs.

Checkpoints are written in the background (orbax's asynchronous save) at most
every ``--checkpoint-every`` seconds, always after the last epoch and on a
signal: SIGINT and SIGTERM stop the run once the epoch under way is saved, and
metrics.json and curves.png are written for the epochs done, marked
``"finished": false`` (see ``jaxnn.cli`` for the exit statuses). A run killed
outright loses at most the epochs since its last save; ``--resume`` recomputes
them bit for bit.
"""

import importlib.util
import math
import os
import shlex
import signal
import sys
import time
from typing import Any, NamedTuple

from jaxnn.cli import cache, cluster
from jaxnn.cli.common import (
    RunFailed,
    UsageError,
    require,
    write_atomic,
    write_json,
)
from jaxnn.cli.run_control import PREFETCH, EpochSaver, StopOnSignal, prefetch
from jaxnn.cli.settings import (
    CONFIG,
    CURVES,
    METRICS,
    add_arguments,
    check_out,
    check_settings,
    from_args,
    network_config,
    optimizer_config,
)


def add(subparsers) -> None:
    p = subparsers.add_parser(
        "train",
        help="train a network on a dataset",
        description=(
            "Train a dense network by minibatch descent with hand-derived backpropagation. "
            "The run directory receives metrics.json, curves.png, config.json and "
            "checkpoints/ (the newest 3 saved epochs)."
        ),
    )
    add_arguments(p)
    p.set_defaults(handler=run)


class Job(NamedTuple):
    """Everything a run needs, checked before anything is written."""

    settings: dict
    config: dict
    dataset: Any  # a jaxnn.data.Dataset, or on several processes this one's share of it
    task: str
    net: Any
    optimizer: Any
    mesh: Any
    out: str
    key: Any
    metric: str
    several: bool  # several processes (jaxnn.cli.cluster); process 0 writes
    executables: Any  # a jaxnn.executables.ExecutableCache, or None (no cache)


def run(args) -> int:
    """``jaxnn train``: prepare, train (resuming if asked), write the report; the exit status."""
    cache.enable(not args.no_compilation_cache)  # before anything compiles
    if not args.no_compilation_cache:
        # The executables' keys hash jaxnn's source, about 50 file reads: 2 ms now, but
        # 50 ms beside the prefetch thread (each read hands the GIL over to it).
        from jaxnn.executables import source_digest

        source_digest()
    prefetch(PREFETCH)
    job = prepare(args)
    if not args.resume and cluster.is_writer():
        os.makedirs(job.out, exist_ok=True)
        write_json(os.path.join(job.out, CONFIG), job.config)
    # Several processes open the checkpoints together, before the first (collective) epoch:
    # opening removes unfinished saves, which must not race another process's first save.
    opened = args.resume or job.several
    with EpochSaver(job, args.checkpoint_every, opened=opened) as saver:
        start = resume_point(saver.ckpts, job) if args.resume else {}
        history, seconds, signum = train_with_progress(job, saver, start)
    # Unfinished: stopped by a signal (on several processes, maybe to another one).
    finished = history[-1]["epoch"] >= job.settings["epochs"]
    status = 0 if finished else 128 + (signum or signal.SIGTERM)
    if not cluster.is_writer():  # several processes: process 0 writes and reports
        return status
    devices = job.mesh.devices.size if job.several else args.devices
    write_report(job, history, seconds, devices, finished)
    if not finished:
        done = history[-1]["epoch"]
        print(interrupted_message(job, signum, done, resume_flags(args)), file=sys.stderr)
        return status
    print(summary_line(job, history, seconds))
    return 0


def installed(module: str) -> bool:
    """Whether ``module`` can be imported, without importing it (its parent package is)."""
    if module in sys.modules:
        return sys.modules[module] is not None
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def prepare(args) -> Job:
    """The run's settings, data, network, optimizer and mesh, all checked; nothing written."""
    settings, config = from_args(args)
    check_settings(settings)
    if args.cpu_threads is not None and args.cpu_threads < 1:
        raise UsageError(f"--cpu-threads must be >= 1, got {args.cpu_threads}")
    for module in ("tqdm", "matplotlib", "orbax.checkpoint"):
        if not installed(module):  # found, not imported (that happens in the background)
            require(module, "jaxnn train")  # says what to install
    # Several processes (jaxnn.cli.cluster): join them before any JAX computation.
    several = cluster.join(args)

    import jax

    from jaxnn import data, optim, train

    dataset = data.load(settings["dataset"], settings["data"])
    train.check_data(dataset)
    net = dataset.network(settings["hidden"], settings["activation"])
    train.check_batch_size(settings["batch_size"], dataset.X_train.shape[1])
    start_backends(args, settings, net, several)
    mesh = None
    task = dataset.task
    if several:  # one mesh over --devices devices of every process; keep this one's share
        from jaxnn import distributed, parallel, sharded

        mesh = distributed.make_mesh(args.devices)
        parallel.check_divisible(settings["batch_size"], mesh)
        dataset = sharded.local_share(dataset, mesh)
    elif args.devices != 1:
        from jaxnn import parallel

        mesh = parallel.make_mesh(args.devices)
        parallel.check_divisible(settings["batch_size"], mesh)
    optimizer = optim.OPTIMIZERS[settings["optimizer"]](settings["learning_rate"])
    out = args.out or os.path.join(
        "runs", f"{settings['dataset']}-{time.strftime('%Y%m%d-%H%M%S')}"
    )
    check_out(out, args.resume)
    config = run_config(config, settings, net, out)
    key = jax.random.key(settings["seed"])
    cluster.check_same(args, settings, config)  # several processes: the same command?
    metric = train.main_metric(task)
    # fit's programs kept whole beside JAX's cache (one process: fit ignores them on a mesh)
    kept = None if args.no_compilation_cache or several else cache.executables(settings)
    job = (settings, config, dataset, task, net, optimizer, mesh, out, key, metric, several)
    return Job(*job, kept)


def start_backends(args, settings: dict, net, several: bool) -> None:
    """Start JAX's backends, XLA's CPU pool sized by ``--cpu-threads`` (at most the
    cores) or, on one device in one process, by ``jaxnn.cpu_threads.threads_for`` (one
    thread for a small step)."""
    from jaxnn import cpu_threads

    threads = args.cpu_threads
    if threads is None and args.devices == 1 and not several:
        threads = cpu_threads.threads_for(net, settings["batch_size"])
    cpu_threads.start_backends(threads)


def run_config(config: dict | None, settings: dict, net, out: str) -> dict:
    """config.json's content: a new run's, or the resumed run's after checking its network."""
    if config is None:
        return {
            "settings": settings,
            "network": network_config(net),
            "optimizer": optimizer_config(settings["optimizer"], settings["learning_rate"]),
        }
    if config.get("network") != network_config(net):
        raise UsageError(
            f"--resume: {out} holds a network {config.get('network')}, the settings "
            f"give {network_config(net)}"
        )
    return config


def train_with_progress(job: Job, saver, start: dict):
    """Run ``fit`` with a progress bar, checkpoints and signal handling.

    Returns ``(history, seconds, signum)``: the history of every epoch done, the
    training seconds (with those of the resumed run), and the signal that
    stopped the run early, or None.
    """
    import jax
    from tqdm import tqdm

    from jaxnn import train

    seconds_before = start.pop("seconds", 0.0)
    history = start.get("history", [])
    bar = tqdm(
        total=job.settings["epochs"],
        initial=start.get("start_epoch", 0),
        desc=job.settings["dataset"],
        unit="epoch",
        file=sys.stderr,
        dynamic_ncols=True,
        disable=not cluster.is_writer(),
    )
    stop = StopOnSignal(lambda name: tqdm.write(stopping_message(name), file=sys.stderr))
    t0 = time.perf_counter()
    clock = lambda: seconds_before + time.perf_counter() - t0
    saver.clock = clock

    def on_epoch(epoch, params, opt_state, history):
        stopping = stop.signum is not None  # read once: a signal may land at any line
        # Several processes decide together (one collective): each process's clock may say
        # otherwise, but orbax's saves are collective, and all stop after the same epoch.
        stopping, saving = cluster.any_process(stopping, saver.due(epoch))
        saver(epoch, params, opt_state, history, force=stopping or saving)
        record = history[-1]
        shown = {"cost": f"{record['train_cost']:.4g}"}
        shown[job.metric] = f"{record[f'test_{job.metric}']:.4f}"
        bar.set_postfix(shown, refresh=False)
        bar.update(1)
        return stopping  # stop once this epoch is saved

    try:
        with stop:
            history = fit(job, on_epoch, start).history
    except train.NonFiniteCostError as e:
        raise RunFailed(f"training diverged: {e}; {saver.kept_message()}") from None
    except jax.errors.JaxRuntimeError as e:  # several processes: one lost mid-collective?
        raise cluster.explain(e) from None
    finally:
        bar.close()
    return history, clock(), stop.signum


def fit(job: Job, callback, start: dict):
    """``jaxnn.train.fit`` with the job's settings, from ``start`` (``resume_point``)."""
    from jaxnn import train

    s = job.settings
    return train.fit(
        job.net,
        job.optimizer,
        job.dataset,
        s["epochs"],
        s["batch_size"],
        job.key,
        callback=callback,
        gradients=s["gradients"],
        mesh=job.mesh,
        executables=job.executables,
        **start,
    )


def stopping_message(name: str) -> str:
    return f"jaxnn: {name}: stopping once this epoch's checkpoint is saved (again: stop at once)"


def resume_flags(args) -> str:
    """The flags that resume the run besides ``--resume --out``: devices, processes."""
    flags = f" --devices {args.devices}" if args.devices != 1 else ""
    if args.distributed:
        flags += " --distributed (on every process)"
    elif cluster.wanted(args):
        flags += (
            f" --coordinator {args.coordinator} --num-processes {args.num_processes} "
            "--process-id I (on every process I)"
        )
    return flags


def interrupted_message(job: Job, signum: int | None, done: int, flags: str = "") -> str:
    """The line of a run stopped by ``signum`` (None: a signal to another process)."""
    resume = f"jaxnn train --resume --out {shlex.quote(job.out)}{flags}"
    how = signal.Signals(signum).name if signum else "a signal to another process"
    return (
        f"jaxnn: interrupted by {how} after epoch {done} of "
        f"{job.settings['epochs']}; its checkpoint is saved, and metrics.json and curves.png "
        f"show the epochs done; resume with: {resume}"
    )


def resume_point(ckpts, job: Job) -> dict:
    """``fit``'s keyword arguments to continue the run, and its ``seconds`` so far.

    A run killed before its first save has no checkpoint: it starts over.
    """
    if ckpts.latest_epoch() is None:
        return {}
    from jaxnn import train

    template, template_state = train.make_init(job.net, job.optimizer)(job.key)
    restored = ckpts.restore(template, template_state, job.key)
    if restored.epoch >= job.settings["epochs"]:
        raise UsageError(
            f"--resume: {job.out} has {restored.epoch} epochs already; --epochs is the total, "
            f"so give more than {restored.epoch}"
        )
    history = restored.meta.get("history")
    check_history(history, restored.epoch, job.metric, ckpts.directory)
    seconds = restored.meta.get("seconds")
    return {
        "params": restored.params,
        "opt_state": restored.opt_state,
        "start_epoch": restored.epoch,
        "history": history,
        "seconds": float(seconds) if isinstance(seconds, (int, float)) else 0.0,
    }


def check_history(history, epoch: int, metric: str, where: str) -> None:
    """Raise UsageError unless ``history`` has a valid record for each epoch 1..epoch."""
    keys = {"epoch", "train_cost", "test_cost", f"test_{metric}"}
    if not (
        isinstance(history, list)
        and all(isinstance(r, dict) and keys <= set(r) for r in history)
        and [r["epoch"] for r in history] == list(range(1, epoch + 1))
    ):
        raise UsageError(
            f"--resume: the checkpoint of epoch {epoch} in {where} has no "
            f"valid history (a record per epoch 1..{epoch}, each with "
            f"{', '.join(sorted(keys))})"
        )


def write_report(job: Job, history: list, seconds: float, devices: int, finished: bool) -> None:
    """Write metrics.json and curves.png for the epochs in ``history``."""
    from jaxnn import cpu_threads

    if not history:
        return
    s, config = job.settings, job.config
    metrics = {
        "dataset": s["dataset"],
        "task": job.task,
        "network": config["network"],
        "optimizer": config["optimizer"],
        "batch_size": s["batch_size"],
        "seed": s["seed"],
        "gradients": s["gradients"],
        "epochs": s["epochs"],
        "epochs_done": history[-1]["epoch"],
        "finished": finished,
        "devices": devices,
        "cpu_threads": cpu_threads.pool_threads(),  # XLA's CPU pool (0: not known here)
        "seconds": seconds,
        "history": history,
        **{k: v for k, v in history[-1].items() if k.startswith("test_")},
    }
    write_json(os.path.join(job.out, METRICS), metrics)
    sizes = tuple(config["network"]["sizes"])
    title = f"{s['dataset']}: {sizes}, {s['optimizer']}"
    if not finished:
        title += f" (unfinished: {history[-1]['epoch']} of {s['epochs']} epochs)"
    plot(os.path.join(job.out, CURVES), history, job.metric, title)


def summary_line(job: Job, history: list, seconds: float) -> str:
    name = {"accuracy": "test accuracy", "r2": "test R^2"}[job.metric]
    return (
        f"{job.settings['dataset']}: {name} {history[-1][f'test_{job.metric}']:.4f} after "
        f"{job.settings['epochs']} epochs in {seconds:.1f} s -> {job.out}"
    )


def plot(path: str, history: list, metric: str, title: str) -> None:
    """curves.png: the train and test cost, and the test metric, per epoch."""
    from matplotlib.figure import Figure  # Agg canvas; pyplot's global state never touched

    epochs = [r["epoch"] for r in history]
    series = lambda name: [math.nan if r[name] is None else r[name] for r in history]
    fig = Figure(figsize=(9, 3.6))  # fixed margins: "constrained" layout doubled the time
    fig.subplots_adjust(left=0.08, right=0.98, bottom=0.14, top=0.82, wspace=0.25)
    ax_cost, ax_metric = fig.subplots(1, 2)
    ax_cost.plot(epochs, series("train_cost"), label="train (mean of batches)")
    ax_cost.plot(epochs, series("test_cost"), label="test")
    ax_cost.set(xlabel="epoch", ylabel="cost", yscale="log", title="cost")
    ax_cost.legend()
    ax_metric.plot(epochs, series(f"test_{metric}"), color="C2")
    label = {"accuracy": "test accuracy", "r2": "test R^2"}[metric]
    ax_metric.set(xlabel="epoch", ylabel=label, title=label)
    fig.suptitle(title)
    write_atomic(path, lambda f: fig.savefig(f, format="png", dpi=100), mode="wb")
