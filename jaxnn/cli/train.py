"""``jaxnn train``: train a network and write its run directory.

The run directory holds config.json, model.json (the model: ``jaxnn.model``),
metrics.json, curves.png and checkpoints/; a run resumes from its newest
checkpoint, and ``--resume`` on a run already complete only writes what its report
lacks (a kill between the last save and the report leaves it so). The data is a
bundled dataset or a file of the user's own (``jaxnn.cli.prepare``). Compiled programs are
kept in the persistent compilation cache, and fit's two programs exported beside
it (``jaxnn.cli.cache``), so a second run of the same network compiles nothing and
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
import os
import signal
import sys
import time
from typing import Any, NamedTuple

from jaxnn.cli import cache, cluster
from jaxnn.cli.common import (
    RunFailed,
    UsageError,
    require,
    write_json,
)
from jaxnn.cli.curves import Plotter
from jaxnn.cli.report import (
    complete_message,
    interrupted_message,
    resume_flags,
    stopping_message,
    summary_line,
    write_report,
)
from jaxnn.cli.resume import check_model, is_finished, resume_point
from jaxnn.cli.run_control import PREFETCH, EpochSaver, StopOnSignal, prefetch
from jaxnn.cli.settings import (
    CONFIG,
    CURVES,
    METRICS,
    MODEL,
    add_arguments,
    check_out,
    check_settings,
    from_args,
    network_config,
    optimizer_config,
    run_name,
)

__all__ = ["Job", "add", "run"]


def add(subparsers) -> None:
    """Add ``jaxnn train`` and its flags to the command line's ``subparsers``."""
    p = subparsers.add_parser(
        "train",
        help="train a network on a bundled dataset or a file of your own",
        description=(
            "Train a dense network by minibatch descent with hand-derived backpropagation, "
            "on a bundled dataset or a file of your own (--data FILE). The run directory "
            "receives config.json, model.json (what jaxnn predict, evaluate, export and "
            "jaxnn.load_run read), metrics.json, curves.png and checkpoints/ (the newest 3 "
            "saved epochs, and the best one with a validation part)."
        ),
    )
    add_arguments(p)
    p.set_defaults(handler=run)


class Job(NamedTuple):
    """Everything a run needs, checked before anything is written."""

    settings: dict
    config: dict
    dataset: Any  # jaxnn.cli.prepare.Parts, or on several processes this one's share of it
    task: str
    net: Any
    optimizer: Any
    mesh: Any
    out: str
    key: Any
    metric: str
    several: bool  # several processes (jaxnn.cli.cluster); process 0 writes
    programs: Any  # a jaxnn.program_cache.ProgramCache, or None (no cache)
    resuming: bool  # the run's config.json is there (else a new run, --resume or not)
    model: dict  # model.json's content (jaxnn.model.model_record)
    name: str  # the run's name in messages (jaxnn.cli.settings.run_name)


def run(args) -> int:
    """``jaxnn train``: prepare, train (resuming if asked), write the report; the exit status."""
    cache.enable(not args.no_compilation_cache)  # before anything compiles
    if not args.no_compilation_cache:
        # The programs' keys hash jaxnn's source, about 50 file reads: 2 ms now, but
        # 50 ms beside the prefetch thread (each read hands the GIL over to it).
        from jaxnn.program_cache import source_digest

        source_digest()
    loading = prefetch(PREFETCH)
    try:
        return _run(args)
    finally:
        # No import left running in the background once the command returns: a caller
        # (a test, a notebook) goes on in this process, and CPython 3.11's ast module
        # is not safe beside another thread's imports ("AST constructor recursion depth
        # mismatch", seen in CI).
        loading.join()


def _run(args) -> int:
    """``run`` once the background imports are started."""
    job = prepare(args)
    if cluster.is_writer():
        if not job.resuming:
            os.makedirs(job.out, exist_ok=True)
            write_json(os.path.join(job.out, CONFIG), job.config)
        if not os.path.isfile(os.path.join(job.out, MODEL)):  # also a run killed before it
            write_json(os.path.join(job.out, MODEL), job.model)
    # Several processes open the checkpoints together, before the first (collective) epoch:
    # opening removes unfinished saves, which must not race another process's first save.
    opened = job.resuming or job.several
    with Plotter() as plotter:  # curves.png's drawing process (jaxnn.cli.curves)
        with EpochSaver(job, args.checkpoint_every, opened=opened) as saver:
            start = resume_point(saver, job) if job.resuming else {}
            already = start.pop("complete", False)
            if not already:
                history, seconds, signum = train_with_progress(job, saver, start, plotter)
        if not already:
            return report(args, job, history, seconds, signum, plotter)
    # complete before this command: write what its report lacks
    return complete(job, start["history"], start["seconds"], args.devices)


def report(args, job: Job, history: list, seconds: float, signum, plotter: Plotter) -> int:
    """Write the report of the run this command trained and print its line; the status."""
    finished = is_finished(job, history)  # else stopped by a signal (maybe to another process)
    status = 0 if finished else 128 + (signum or signal.SIGTERM)
    if not cluster.is_writer():  # several processes: process 0 writes and reports
        return status
    devices = job.mesh.devices.size if job.several else args.devices
    write_report(job, history, seconds, devices, finished, plotter)
    if not finished:
        done = history[-1]["epoch"]
        print(interrupted_message(job, signum, done, resume_flags(args)), file=sys.stderr)
        return status
    print(summary_line(job, history, seconds))
    return 0


def complete(job: Job, history: list, seconds: float, devices: int) -> int:
    """A run complete before this command: write metrics.json and curves.png if either is
    missing (a kill after the last save), say so; exit status 0."""
    if cluster.is_writer():
        missing = [f for f in (METRICS, CURVES) if not os.path.isfile(os.path.join(job.out, f))]
        if missing:
            write_report(job, history, seconds, devices, True)
        print(complete_message(job, history, missing))
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
    resuming = config is not None
    name = run_name(settings)
    out = args.out or os.path.join("runs", f"{name}-{time.strftime('%Y%m%d-%H%M%S')}")
    check_out(out, resuming)  # before the data is read: a large file takes a while
    # Several processes (jaxnn.cli.cluster): join them before any JAX computation.
    several = cluster.join(args)

    import jax

    from jaxnn import metrics, optim, train, validation
    from jaxnn.cli import prepare as run_data

    loaded = run_data.load(settings)
    dataset = loaded.parts
    train.check_data(dataset)
    net = loaded.dataset.network(settings["hidden"], settings["activation"])
    m_train = loaded.split["m_train"]
    validation.check_batch_size(settings["batch_size"], m_train)
    start_backends(args, settings, net, several)
    mesh = None
    task = loaded.dataset.task
    if several:  # one mesh over --devices devices of every process; keep this one's share
        from jaxnn import distributed, parallel, sharded

        mesh = distributed.make_mesh(args.devices)
        parallel.check_divisible(settings["batch_size"], mesh)
        dataset = sharded.local_share(dataset, mesh)
    elif args.devices != 1:
        from jaxnn import parallel

        mesh = parallel.make_mesh(args.devices)
        parallel.check_divisible(settings["batch_size"], mesh)
    steps_per_epoch = m_train // settings["batch_size"]
    schedule = run_data.schedule_config(
        settings["schedule"], settings["learning_rate"], settings["epochs"], steps_per_epoch
    )
    optimizer = optim.OPTIMIZERS[settings["optimizer"]](run_data.learning_rate(schedule))
    config = run_config(config, settings, net, out, schedule)
    record = describe_model(loaded, net, config, task)
    if resuming:
        check_model(out, record)
    key = jax.random.key(settings["seed"])
    cluster.check_same(args, settings, config)  # several processes: the same command?
    metric = metrics.main_metric(task)
    # fit's programs exported beside JAX's cache
    kept = None if args.no_compilation_cache else cache.programs(settings)
    if kept is not None:  # what the programs close over beyond the optimizer (fit's key)
        kept.recipe += (
            f" weight_decay={settings['weight_decay']!r} train_metrics=True schedule={schedule!r}"
        )
    job = (settings, config, dataset, task, net, optimizer, mesh, out, key, metric, several)
    return Job(*job, kept, resuming, record, name)


def describe_model(loaded, net, config: dict, task: str) -> dict:
    """model.json's content for this run (``jaxnn.model.model_record``)."""
    import jax
    import jax.numpy as jnp

    from jaxnn.model import model_record as record

    dtype = jax.dtypes.canonicalize_dtype(jnp.float64)  # the params' (fit's default)
    optimizer = config["optimizer"]
    return record(net, dtype, optimizer, loaded.preprocessing, task, loaded.source, loaded.split)


def start_backends(args, settings: dict, net, several: bool) -> None:
    """Start JAX's backends, XLA's CPU pool sized by ``--cpu-threads`` (at most the
    cores) or, on one device in one process, by ``jaxnn.cpu_threads.threads_for`` (one
    thread for a small step)."""
    from jaxnn.cli import cpu_threads

    threads = args.cpu_threads
    if threads is None and args.devices == 1 and not several:
        threads = cpu_threads.threads_for(net, settings["batch_size"])
    cpu_threads.start_backends(threads)


def run_config(config: dict | None, settings: dict, net, out: str, schedule: dict) -> dict:
    """config.json's content: a new run's, or the resumed run's after checking its network
    and its schedule."""
    if config is None:
        return {
            "settings": settings,
            "network": network_config(net),
            "optimizer": optimizer_config(settings["optimizer"], settings["learning_rate"]),
            "schedule": schedule,
        }
    if config.get("network") != network_config(net):
        raise UsageError(
            f"--resume: {out} holds a network {config.get('network')}, the settings "
            f"give {network_config(net)}"
        )
    saved = config.get("schedule", {"name": "constant"})
    if saved["name"] != "constant" and saved != schedule:
        raise UsageError(
            f"--resume: {out} has the schedule {saved}, the data and settings give {schedule}"
        )
    return {**config, "schedule": schedule} if saved["name"] == "constant" else config


def train_with_progress(job: Job, saver, start: dict, plotter: Plotter | None = None):
    """Run ``fit`` with a progress bar, checkpoints and signal handling; ``plotter``'s
    drawing process starts at the first epoch's end (``jaxnn.cli.curves``).

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
        desc=job.name,
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
        if plotter is not None and cluster.is_writer():
            plotter.start()  # after the compile, which it would slow down
        stopping = stop.signum is not None  # read once: a signal may land at any line
        # Several processes decide together (one collective): each process's clock may say
        # otherwise, but orbax's saves are collective, and all stop after the same epoch.
        stopping, saving = cluster.any_process(stopping, saver.due(epoch))
        saver(epoch, params, opt_state, history, force=stopping or saving)
        record = history[-1]
        shown = {"cost": f"{record['train_cost']:.4g}"}
        if "val_cost" in record:
            shown["val"] = f"{record['val_cost']:.4g}"
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
        program_cache=job.programs,
        weight_decay=s["weight_decay"],
        patience=s["patience"],
        train_metrics=True,
        **start,
    )
