"""``jaxnn train``'s settings: its flags, their defaults, and the checks on a run directory.

A run's settings come from the flags, then the defaults, then, with
``--resume``, the run's ``config.json``; all are checked here before anything
is written. ``--resume`` on a directory that holds no run yet starts one, so a
batch system can always pass it. This module never prints.

The data is a bundled dataset (``--dataset NAME``, its setting the name) or a file
of the user's own (``--data FILE`` without ``--dataset``: the setting ``dataset``
is None and ``data`` the file's absolute path).
"""

import inspect
import json
import math
import os

from jaxnn.cli.common import UsageError, check_choice, check_directory_path, flag

__all__ = [
    "CHECKPOINTS",
    "CONFIG",
    "CURVES",
    "DEFAULTS",
    "METRICS",
    "MODEL",
    "RUN_SETTINGS",
    "SCHEDULES",
    "add_arguments",
    "check_out",
    "check_settings",
    "from_args",
    "network_config",
    "optimizer_config",
    "run_name",
]

DEFAULTS = {
    "dataset": "digits",
    "data": None,
    "hidden": [256, 128],
    "activation": "relu",
    "optimizer": "adam",
    "learning_rate": 1e-3,
    "epochs": 40,
    "batch_size": 16,
    "seed": 0,
    "gradients": "hand",
    # A file of the user's own (--data FILE), and how the examples are split.
    "target": None,  # the target column; None: the file's last column
    "task": None,  # None: read from the target
    "test_fraction": 0.2,
    "test": None,  # a labelled file that is the test part (then nothing is split off)
    "validation_fraction": 0.0,
    # Against overfitting.
    "patience": None,
    "weight_decay": 0.0,
    "schedule": "constant",
}
# Settings a resumed run must keep; --epochs (the total target: with a schedule other
# than constant, kept too, since the schedule spans them) and --data and --test
# (locations) may change.
RUN_SETTINGS = (
    "dataset",
    "hidden",
    "activation",
    "optimizer",
    "learning_rate",
    "batch_size",
    "seed",
    "gradients",
    "target",
    "task",
    "test_fraction",
    "validation_fraction",
    "patience",
    "weight_decay",
    "schedule",
)
# The learning rate over the run's steps (jaxnn.cli.prepare.learning_rate).
SCHEDULES = ("constant", "cosine", "warmup-cosine")
TASKS = ("classification", "regression")
CONFIG, METRICS, CURVES, CHECKPOINTS = "config.json", "metrics.json", "curves.png", "checkpoints"
MODEL = "model.json"  # jaxnn.model's description of the trained model
# The file types jaxnn.tabular reads, for the messages about --data.
_FILE_TYPES = ".csv, .tsv, .parquet or .npz"


def add_arguments(p) -> None:
    """Add ``jaxnn train``'s flags to the parser ``p``; unset ones are None (see ``from_args``)."""
    _add_setting_flags(p)  # what config.json keeps: the DEFAULTS
    _add_own_data_flags(p)
    _add_overfitting_flags(p)
    _add_run_directory_flags(p)
    _add_device_flags(p)
    _add_runtime_flags(p)


def _choices(names) -> str:
    """A flag's metavar listing its valid values: ``{a,b,c}``."""
    return "{" + ",".join(names) + "}"


def _add_setting_flags(p) -> None:
    """The run's settings (``DEFAULTS``): the data, the network, the optimizer, the loop."""
    from jaxnn.activations import ACTIVATIONS
    from jaxnn.data import DATASETS
    from jaxnn.optim import OPTIMIZERS
    from jaxnn.steps import GRADIENTS

    d = DEFAULTS
    p.add_argument(
        "--dataset",
        metavar=_choices(DATASETS),
        help=f"a bundled dataset; default: {d['dataset']}, unless --data gives a file",
    )
    p.add_argument(
        "--data",
        metavar="PATH",
        help=f"a file of your own ({_FILE_TYPES}) with a header row: its columns are the "
        "features and the target (see --target); or, with --dataset mnist, a directory "
        "with the four MNIST IDX files (.gz or not) or mnist.npz",
    )
    p.add_argument(
        "--hidden",
        nargs="*",
        type=int,
        metavar="N",
        help="hidden layer sizes, none for no hidden layer; default: "
        + " ".join(map(str, d["hidden"])),
    )
    p.add_argument(
        "--activation",
        metavar=_choices(ACTIVATIONS),
        help=f"hidden activation; default: {d['activation']}",
    )
    p.add_argument("--optimizer", metavar=_choices(OPTIMIZERS), help=f"default: {d['optimizer']}")
    p.add_argument(
        "--learning-rate", type=float, metavar="A", help=f"default: {d['learning_rate']}"
    )
    p.add_argument(
        "--epochs",
        type=int,
        metavar="N",
        help=f"total epochs, counting those of a resumed run; default: {d['epochs']}",
    )
    p.add_argument("--batch-size", type=int, metavar="B", help=f"default: {d['batch_size']}")
    p.add_argument("--seed", type=int, help=f"default: {d['seed']}")
    p.add_argument(
        "--gradients",
        metavar=_choices(GRADIENTS),
        help="hand: backprop (BP1-BP4); autodiff: jax.value_and_grad; default: hand",
    )


def _add_own_data_flags(p) -> None:
    """A file of the user's own: its target, its task, and the split of its examples."""
    d = DEFAULTS
    p.add_argument(
        "--target", metavar="COLUMN", help="--data FILE: the target column; default: the last"
    )
    p.add_argument(
        "--task",
        metavar=_choices(TASKS),
        help="--data FILE: default: read from the target (text, booleans or integers with "
        "few values: classification; floats: regression)",
    )
    p.add_argument(
        "--test-fraction",
        type=float,
        metavar="F",
        help="hold out this fraction of the examples as the test part (stratified), drawn "
        f"with --seed; default: {d['test_fraction']}",
    )
    p.add_argument(
        "--test",
        metavar="PATH",
        help="--data FILE: a labelled file with the same columns to test on, instead of "
        "holding out --test-fraction",
    )
    p.add_argument(
        "--validation-fraction",
        type=float,
        metavar="F",
        help="hold out this fraction of the training part as a validation part (stratified, "
        "drawn with --seed): the best epoch is the one of the lowest validation cost, and "
        "the model keeps it; default: 0, none",
    )


def _add_overfitting_flags(p) -> None:
    """Early stopping, weight decay and the learning rate's schedule."""
    p.add_argument(
        "--patience",
        type=int,
        metavar="N",
        help="stop once N epochs in a row brought no lower validation cost (needs "
        "--validation-fraction); default: run every epoch",
    )
    p.add_argument(
        "--weight-decay",
        type=float,
        metavar="LAMBDA",
        help="L2 on the weights as scikit-learn's alpha: each batch's cost gains "
        "LAMBDA / (2 B) sum ||W||^2; default: 0",
    )
    p.add_argument(
        "--schedule",
        metavar=_choices(SCHEDULES),
        help="the learning rate over the run's steps: constant; cosine (from --learning-rate "
        "down to 0 at the last step); warmup-cosine (up from 0 over the first 5%% of the "
        "steps, then cosine); default: constant",
    )


def _add_run_directory_flags(p) -> None:
    """Where the run is written, and whether it continues one already there."""
    p.add_argument("--out", metavar="DIR", help="run directory; default: runs/<dataset>-<time>")
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in --out DIR from its newest checkpoint up to --epochs in all; "
        "a run already complete only writes what it lacks of its report; a directory with no "
        "run yet starts one",
    )


def _add_device_flags(p) -> None:
    """The devices of each process, and the processes (jaxnn.distributed, jaxnn.cli.cluster,
    docs/scaling.md)."""
    p.add_argument(
        "--devices",
        type=int,
        default=1,
        metavar="N",
        help="split each batch over N devices (data-parallel; the batch size must divide by "
        "N); a resumed run may use another N; default: 1. With several processes: N devices "
        "of each process",
    )
    p.add_argument(
        "--coordinator",
        metavar="HOST:PORT",
        help="several processes: process 0's address and a free port there; every process "
        "runs the same command with --num-processes N and its own --process-id I",
    )
    p.add_argument("--num-processes", type=int, metavar="N", help="several processes: N in all")
    p.add_argument(
        "--process-id",
        type=int,
        metavar="I",
        help="several processes: this one's id, 0..N-1; process 0 prints and writes the files",
    )
    p.add_argument(
        "--distributed",
        action="store_true",
        help="several processes on a cluster that JAX detects (SLURM, a TPU pod, Open MPI), "
        "without --coordinator, --num-processes, --process-id",
    )
    p.add_argument(
        "--peer-timeout",
        type=float,
        default=60.0,
        metavar="S",
        help="several processes: wait S seconds for all to join, and stop with an error when "
        "one has not been heard from for S seconds; default: 60",
    )


def _add_runtime_flags(p) -> None:
    """How the run saves its checkpoints, and how its programs are compiled and run."""
    p.add_argument(
        "--checkpoint-every",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="save a checkpoint (in the background) at most every SECONDS, and always after the "
        "last epoch and on SIGINT/SIGTERM; 0: after every epoch. A run killed outright loses "
        "at most the epochs since its last save, which --resume recomputes exactly; default: 10",
    )
    p.add_argument(
        "--cpu-threads",
        type=int,
        metavar="N",
        help="threads of XLA's CPU runtime (the arithmetic, hence the results, are the same); "
        "default: 1 for a small network on one device (a step of at most 10 MFLOP of "
        "matrix products, where handing kernels between cores costs more than it gives), "
        "else one per core",
    )
    p.add_argument(
        "--no-compilation-cache",
        action="store_true",
        help="do not use JAX's persistent compilation cache (by default in "
        "$JAX_COMPILATION_CACHE_DIR, else $XDG_CACHE_HOME/jaxnn/jax or ~/.cache/jaxnn/jax) "
        "nor the programs kept whole beside it, so every program is compiled afresh",
    )


def from_args(args) -> tuple[dict, dict | None]:
    """The run's settings, from the flags, the defaults and, with --resume, the run; and
    the run's config.json, or None for a new run (also with --resume, where there is no
    run yet)."""
    given = {k: getattr(args, k) for k in DEFAULTS if getattr(args, k) is not None}
    for k in ("data", "test"):
        if k in given:
            given[k] = os.path.abspath(given[k])  # resumable from anywhere
    if args.resume and args.out is None:
        raise UsageError("--resume needs --out DIR, the run to continue")
    config_path = os.path.join(args.out, CONFIG) if args.resume else None
    if not args.resume or not os.path.isfile(config_path):  # a new run
        if args.resume and os.path.isdir(args.out) and os.listdir(args.out):
            raise UsageError(
                f"--resume: {args.out} holds no run to resume (no {CONFIG}) and is not empty; "
                "choose another --out"
            )
        return _new_settings(given), None
    try:
        with open(config_path) as f:
            config = json.load(f)
        saved = config["settings"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise UsageError(f"--resume: cannot read {config_path}: {e}") from None
    mismatches = [
        f"{flag(k)} {given[k]!r} but the run has {saved.get(k)!r}"
        for k in RUN_SETTINGS
        if k in given and given[k] != saved.get(k)
    ]
    if mismatches:
        raise UsageError(f"--resume: {args.out} does not match: {'; '.join(mismatches)}")
    settings = {**DEFAULTS, **saved}
    if (
        settings["schedule"] != "constant"
        and given.get("epochs", settings["epochs"]) != (settings["epochs"])
    ):
        raise UsageError(
            f"--resume: {args.out} does not match: --epochs {given['epochs']} but the run has "
            f"{settings['epochs']}, over which its {settings['schedule']} schedule runs"
        )
    settings.update({k: given[k] for k in ("epochs", "data", "test") if k in given})
    return settings, config


def _new_settings(given: dict) -> dict:
    """A new run's settings: ``--data FILE`` without ``--dataset`` is the user's own file."""
    settings = {**DEFAULTS, **given}
    if "data" in given and "dataset" not in given:
        if os.path.isdir(given["data"]):
            raise UsageError(
                f"--data {given['data']} is a directory: for the MNIST files there give "
                f"--dataset mnist; for data of your own give a file ({_FILE_TYPES})"
            )
        settings["dataset"] = None
    if "test" in given and "test_fraction" in given:
        raise UsageError(
            "give --test FILE (a test part of its own) or --test-fraction F (held out of "
            "--data), not both"
        )
    return settings


def run_name(settings: dict) -> str:
    """The run's name in its messages and its default directory: the bundled dataset's,
    or the stem of the user's file (``wine`` for ``wine.csv``)."""
    if settings["dataset"] is not None:
        return settings["dataset"]
    return os.path.splitext(os.path.basename(settings["data"]))[0]


def check_settings(s: dict) -> None:
    """Raise UsageError unless every setting is valid, naming it and the valid choices."""
    from jaxnn.activations import ACTIVATIONS
    from jaxnn.data import DATASETS
    from jaxnn.optim import OPTIMIZERS
    from jaxnn.steps import GRADIENTS

    own = s["dataset"] is None  # a file of the user's own
    if not own:
        check_choice("dataset", s["dataset"], DATASETS)
    check_choice("optimizer", s["optimizer"], OPTIMIZERS)
    check_choice("activation", s["activation"], ACTIVATIONS)
    check_choice("gradients", s["gradients"], GRADIENTS)
    check_choice("schedule", s["schedule"], SCHEDULES)
    if s["task"] is not None:
        check_choice("task", s["task"], TASKS)
    if not 0 < s["learning_rate"] < math.inf:
        raise UsageError(f"learning rate must be a finite number > 0, got {s['learning_rate']}")
    for name in ("epochs", "batch_size"):
        if s[name] < 1:
            raise UsageError(f"{name.replace('_', ' ')} must be >= 1, got {s[name]}")
    if any(n < 1 for n in s["hidden"]):
        raise UsageError(f"hidden layer sizes must be >= 1, got {' '.join(map(str, s['hidden']))}")
    _check_split(s)
    if s["patience"] is not None and s["patience"] < 1:
        raise UsageError(f"--patience must be >= 1, got {s['patience']}")
    if s["patience"] is not None and not s["validation_fraction"]:
        raise UsageError(
            "--patience stops on the validation cost: give --validation-fraction F too (e.g. 0.1)"
        )
    if not 0 <= s["weight_decay"] < math.inf:
        raise UsageError(f"--weight-decay must be a finite number >= 0, got {s['weight_decay']}")
    if own:
        return
    for name in ("target", "task", "test"):
        if s[name] is not None:
            raise UsageError(
                f"{flag(name)} is for data of your own (--data FILE); {s['dataset']} has its "
                "own target and test part"
            )
    _check_bundled_data(s)


def _check_split(s: dict) -> None:
    """The test and validation fractions."""
    if not 0 < s["test_fraction"] < 1:
        raise UsageError(f"--test-fraction must be in (0, 1), got {s['test_fraction']}")
    if not 0 <= s["validation_fraction"] < 1:
        raise UsageError(f"--validation-fraction must be in [0, 1), got {s['validation_fraction']}")
    if s["dataset"] == "mnist" and s["test_fraction"] != DEFAULTS["test_fraction"]:
        raise UsageError("--test-fraction: mnist comes with its own test set")


def _check_bundled_data(s: dict) -> None:
    """``--data`` with a bundled dataset: a directory (or .npz) for mnist, none otherwise."""
    data = s["data"]
    if s["dataset"] == "mnist" and data is None:
        raise UsageError(
            "--dataset mnist needs --data DIR, a directory holding the MNIST IDX files or mnist.npz"
        )
    own_file = f"to train on your own file {data}, leave out --dataset"
    if s["dataset"] != "mnist" and data is not None:
        if os.path.isfile(data):
            raise UsageError(f"--dataset {s['dataset']} is bundled and takes no --data; {own_file}")
        raise UsageError(
            f"--data is only for --dataset mnist or a file of your own; {s['dataset']} is "
            "bundled with scikit-learn"
        )
    if s["dataset"] == "mnist" and os.path.isfile(data) and not data.endswith(".npz"):
        raise UsageError(
            f"--dataset mnist takes a directory of the MNIST files or mnist.npz; {own_file}"
        )


def check_out(out: str, resume: bool) -> None:
    """Raise UsageError unless ``--out`` can hold this run (nothing of the user's lost);
    ``resume``: it continues the run there (config.json is there)."""
    check_directory_path("--out", out)  # nor under one
    if not resume and os.path.isdir(out) and os.listdir(out):
        raise UsageError(
            f"{out} already exists and is not empty; continue the run there with --resume "
            "or choose another --out"
        )


def optimizer_config(name: str, learning_rate: float) -> dict:
    """config.json's record of the optimizer: its name and every hyperparameter."""
    from jaxnn.optim import OPTIMIZERS

    config = {"name": name, "learning_rate": learning_rate}
    for p in inspect.signature(OPTIMIZERS[name]).parameters.values():
        if p.default is not inspect.Parameter.empty:
            config[p.name] = p.default
    return config


def network_config(net) -> dict:
    """config.json's record of the network: sizes, activations, loss."""
    return {"sizes": list(net.sizes), "activations": list(net.activations), "loss": net.loss}
