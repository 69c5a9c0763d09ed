"""``jaxnn train``: train a network and write its run directory.

The run directory holds config.json, metrics.json, curves.png and
checkpoints/; a run resumes from its newest checkpoint. SIGINT and SIGTERM stop
it once the epoch under way is saved (see ``jaxnn.cli`` for the exit statuses).
"""

import math
import os
import shlex
import signal
import sys
import threading
import time

from jaxnn.cli import cluster
from jaxnn.cli.common import (
    RunFailed,
    UsageError,
    jsonable,
    require,
    write_atomic,
    write_json,
)
from jaxnn.cli.settings import (
    CHECKPOINTS,
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
            "checkpoints/ (the newest 3 epochs)."
        ),
    )
    add_arguments(p)
    p.set_defaults(handler=run)


def _plot(path: str, history: list, metric: str, title: str) -> None:
    from matplotlib.figure import Figure  # Agg canvas; pyplot's global state never touched

    epochs = [r["epoch"] for r in history]
    series = lambda name: [math.nan if r[name] is None else r[name] for r in history]
    fig = Figure(figsize=(9, 3.6), layout="constrained")
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


def run(args) -> int:
    settings, config = from_args(args)
    check_settings(settings)
    tqdm = require("tqdm", "jaxnn train").tqdm
    require("matplotlib", "jaxnn train")
    require("orbax.checkpoint", "jaxnn train")
    # Several processes (jaxnn.cli.cluster): join them before any JAX computation.
    several = cluster.join(args)

    import jax

    from jaxnn import checkpoint, data, optim, train

    # Everything is checked before anything is written.
    dataset = data.load(settings["dataset"], settings["data"])
    train.check_data(dataset)
    net = dataset.network(settings["hidden"], settings["activation"])
    train.check_batch_size(settings["batch_size"], dataset.X_train.shape[1])
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
    if config is None:
        config = {
            "settings": settings,
            "network": network_config(net),
            "optimizer": optimizer_config(settings["optimizer"], settings["learning_rate"]),
        }
    elif config.get("network") != network_config(net):
        raise UsageError(
            f"--resume: {out} holds a network {config.get('network')}, the settings "
            f"give {network_config(net)}"
        )
    key = jax.random.key(settings["seed"])
    cluster.check_same(args, settings, config)  # several processes: the same command?

    if not args.resume and cluster.is_writer():
        os.makedirs(out, exist_ok=True)
        write_json(os.path.join(out, CONFIG), config)
    metric = train.main_metric(task)
    with checkpoint.Checkpoints(os.path.join(out, CHECKPOINTS)) as ckpts:
        start = {}
        if args.resume:
            start = _restore(ckpts, net, optimizer, key, settings["epochs"], out, metric)
        seconds_before = start.pop("seconds", 0.0)
        bar = tqdm(
            total=settings["epochs"],
            initial=start.get("start_epoch", 0),
            desc=settings["dataset"],
            unit="epoch",
            file=sys.stderr,
            dynamic_ncols=True,
            disable=not cluster.is_writer(),
        )
        t0 = time.perf_counter()

        stop = _StopOnSignal(lambda name: tqdm.write(_stopping(name), file=sys.stderr))

        def on_epoch(epoch, params, opt_state, history):
            meta = {"history": history, "seconds": seconds_before + time.perf_counter() - t0}
            ckpts.save(epoch, params, opt_state, key, jsonable(meta))
            record = history[-1]
            bar.set_postfix(
                {"cost": f"{record['train_cost']:.4g}", metric: f"{record[f'test_{metric}']:.4f}"},
                refresh=False,
            )
            bar.update(1)
            # stop once this epoch is saved; several processes stop together
            return cluster.any_process(stop.signum is not None)

        try:
            with stop:
                result = train.fit(
                    net,
                    optimizer,
                    dataset,
                    settings["epochs"],
                    settings["batch_size"],
                    key,
                    callback=on_epoch,
                    gradients=settings["gradients"],
                    mesh=mesh,
                    **start,
                )
        except train.NonFiniteCostError as e:
            kept = ckpts.latest_epoch()
            where = (
                f"kept the last good checkpoint, epoch {kept}, in {ckpts.directory}"
                if kept is not None
                else "no epoch finished, so no checkpoint was saved"
            )
            raise RunFailed(f"training diverged: {e}; {where}") from None
        except jax.errors.JaxRuntimeError as e:  # several processes: one lost mid-collective?
            raise cluster.explain(e) from None
        finally:
            bar.close()
    done = result.history[-1]["epoch"]
    if done < settings["epochs"]:  # stopped by a signal (several processes: to any of them)
        if cluster.is_writer():
            how = signal.Signals(stop.signum).name if stop.signum else "a signal to another process"
            resume = f"jaxnn train --resume --out {shlex.quote(out)}"
            if args.devices != 1:
                resume += f" --devices {args.devices}"
            if args.distributed:
                resume += " --distributed (on every process)"
            elif several:
                resume += (
                    f" --coordinator {args.coordinator} --num-processes {args.num_processes} "
                    "--process-id I (on every process I)"
                )
            print(
                f"jaxnn: interrupted by {how} after epoch {done} of "
                f"{settings['epochs']}; its checkpoint is saved; resume with: {resume}",
                file=sys.stderr,
            )
        return 128 + (stop.signum or signal.SIGTERM)
    if not cluster.is_writer():  # several processes: process 0 reports
        return 0
    seconds = seconds_before + time.perf_counter() - t0
    devices = mesh.devices.size if several else args.devices
    _report(out, settings, config, task, result.history, seconds, devices)
    return 0


def _stopping(name: str) -> str:
    return f"jaxnn: {name}: stopping once this epoch's checkpoint is saved (again: stop at once)"


class _StopOnSignal:
    """While active, SIGINT and SIGTERM set ``signum`` instead of stopping the process.

    The first signal puts the previous handlers back, so a second one acts as
    usual (SIGINT: KeyboardInterrupt; SIGTERM: the process ends). Only the
    main thread can take signals; elsewhere this does nothing.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, notify):
        self.signum = None
        self._notify = notify
        self._previous = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._previous = {s: signal.signal(s, self._handle) for s in self.SIGNALS}
        return self

    def _handle(self, signum, frame):
        self.signum = signum
        self._restore()
        self._notify(signal.Signals(signum).name)

    def _restore(self):
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        self._previous = {}

    def __exit__(self, *exc):
        self._restore()


def _restore(ckpts, net, optimizer, key, epochs: int, out: str, metric: str) -> dict:
    """``fit``'s keyword arguments to continue the run, and its ``seconds`` so far."""
    import jax

    from jaxnn.network import init_params

    init_key, _ = jax.random.split(key)  # as fit does: the template is the same network
    template = init_params(init_key, net)
    restored = ckpts.restore(template, optimizer.init(template), key)
    if restored.epoch >= epochs:
        raise UsageError(
            f"--resume: {out} has {restored.epoch} epochs already; --epochs is the total, "
            f"so give more than {restored.epoch}"
        )
    history = restored.meta.get("history")
    keys = {"epoch", "train_cost", "test_cost", f"test_{metric}"}
    if not (
        isinstance(history, list)
        and all(isinstance(r, dict) and keys <= set(r) for r in history)
        and [r["epoch"] for r in history] == list(range(1, restored.epoch + 1))
    ):
        raise UsageError(
            f"--resume: the checkpoint of epoch {restored.epoch} in {ckpts.directory} has no "
            f"valid history (a record per epoch 1..{restored.epoch}, each with "
            f"{', '.join(sorted(keys))})"
        )
    seconds = restored.meta.get("seconds")
    return {
        "params": restored.params,
        "opt_state": restored.opt_state,
        "start_epoch": restored.epoch,
        "history": history,
        "seconds": float(seconds) if isinstance(seconds, (int, float)) else 0.0,
    }


def _report(out, settings, config, task, history, seconds, devices=1) -> None:
    """Write metrics.json and curves.png; print the summary line."""
    from jaxnn.train import main_metric

    metric = main_metric(task)
    final = history[-1]
    metrics = {
        "dataset": settings["dataset"],
        "task": task,
        "network": config["network"],
        "optimizer": config["optimizer"],
        "batch_size": settings["batch_size"],
        "seed": settings["seed"],
        "gradients": settings["gradients"],
        "epochs": settings["epochs"],
        "devices": devices,
        "seconds": seconds,
        "history": history,
        **{k: v for k, v in final.items() if k.startswith("test_")},
    }
    write_json(os.path.join(out, METRICS), metrics)
    sizes = tuple(config["network"]["sizes"])
    _plot(
        os.path.join(out, CURVES),
        history,
        metric,
        f"{settings['dataset']}: {sizes}, {settings['optimizer']}",
    )
    name = {"accuracy": "test accuracy", "r2": "test R^2"}[metric]
    print(
        f"{settings['dataset']}: {name} {final[f'test_{metric}']:.4f} after "
        f"{settings['epochs']} epochs in {seconds:.1f} s -> {out}"
    )
