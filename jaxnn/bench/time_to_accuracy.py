"""Time to accuracy: the whole training job, timed the way a user meets it, in fresh processes.

Each contender trains the same network (relu hidden layers, softmax +
cross-entropy) on the same split with the same batch size, number of epochs
and optimizer (Adam, no weight decay), each in a process of its own, started
afresh; rounds interleave the contenders (A B C D, A B C D, ...) and figures are
medians over rounds:

* ``jaxnn-cold``: ``jaxnn train`` with an empty compilation cache (a new
  directory in ``JAX_COMPILATION_CACHE_DIR``), as on a machine's first run;
* ``jaxnn-warm``: ``jaxnn train`` again, with the cache the cold run filled;
* ``sklearn``: scikit-learn's ``MLPClassifier(hidden, solver="adam",
  batch_size=B, max_iter=epochs, alpha=0)``, every epoch run (no early stop);
* ``torch``: PyTorch eager, ``torch.nn`` + ``torch.optim.Adam``, the same loop
  (a fresh permutation per epoch, full batches only), test accuracy at the end.

``jaxnn train`` loads its dataset itself, as a user runs it; scikit-learn and
PyTorch read the same split, already standardised, from one ``.npz`` file
written beforehand (their load costs nothing). Reported per contender: the
process's wall time (start to exit, imports included), its training seconds
(``jaxnn train``'s metrics.json ``seconds``: from the first compile to the last
epoch, test evaluation included; scikit-learn's ``fit``; PyTorch's loop) and
the test accuracy; and the ratios of the jaxnn figures to scikit-learn's.
"""

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

__all__ = [
    "CONTENDERS",
    "DEFAULTS",
    "markdown",
    "run_time_to_accuracy",
    "write_split",
]

CONTENDERS = ("jaxnn-cold", "jaxnn-warm", "sklearn", "torch")
DEFAULTS = {
    "dataset": "digits",
    "data": None,
    "hidden": (256, 128),
    "epochs": 40,
    "batch_size": 16,
    "learning_rate": 1e-3,
    "seed": 0,
}

# The peers: each reads the split from argv[1] (.npz) and its settings from argv[2]
# (JSON), and prints one JSON line: training seconds and test accuracy.
SKLEARN = """
import json, sys, time, warnings
import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.neural_network import MLPClassifier

d, s = np.load(sys.argv[1]), json.loads(sys.argv[2])
model = MLPClassifier(
    tuple(s["hidden"]), solver="adam", learning_rate_init=s["learning_rate"], alpha=0.0,
    batch_size=s["batch_size"], max_iter=s["epochs"], n_iter_no_change=s["epochs"] + 1,
    tol=0.0, shuffle=True, random_state=s["seed"],
)
t0 = time.perf_counter()
with warnings.catch_warnings():
    warnings.simplefilter("ignore", ConvergenceWarning)
    model.fit(d["X_train"], d["y_train"])
seconds = time.perf_counter() - t0
print(json.dumps({"training_s": seconds, "test_accuracy": model.score(d["X_test"], d["y_test"]),
                  "epochs_run": model.n_iter_}))
"""

TORCH = """
import json, sys, time
import numpy as np
import torch

d, s = np.load(sys.argv[1]), json.loads(sys.argv[2])
torch.manual_seed(s["seed"])
X, y = torch.from_numpy(d["X_train"]), torch.from_numpy(d["y_train"])
sizes = [X.shape[1], *s["hidden"], int(d["n_classes"])]
layers = []
for i in range(len(sizes) - 1):
    layers.append(torch.nn.Linear(sizes[i], sizes[i + 1]))
    if i < len(sizes) - 2:
        layers.append(torch.nn.ReLU())
model = torch.nn.Sequential(*layers)
opt = torch.optim.Adam(model.parameters(), lr=s["learning_rate"])
loss_fn = torch.nn.CrossEntropyLoss()
B = s["batch_size"]
t0 = time.perf_counter()
for epoch in range(s["epochs"]):
    order = torch.randperm(X.shape[0])
    for k in range(X.shape[0] // B):
        idx = order[k * B:(k + 1) * B]
        opt.zero_grad(set_to_none=True)
        loss_fn(model(X[idx]), y[idx]).backward()
        opt.step()
with torch.no_grad():
    accuracy = (model(torch.from_numpy(d["X_test"])).argmax(1) == torch.from_numpy(d["y_test"]))
    accuracy = accuracy.double().mean().item()
print(json.dumps({"training_s": time.perf_counter() - t0, "test_accuracy": accuracy,
                  "epochs_run": s["epochs"]}))
"""


def write_split(path: str, settings: dict) -> None:
    """The dataset's split as jaxnn loads it, in rows (examples) for the peers: ``.npz``."""
    import numpy as np

    from jaxnn import data

    ds = data.load(settings["dataset"], settings["data"])
    if ds.task != "classification" or ds.Y_train.shape[0] < 2:
        raise ValueError(
            f"time to accuracy compares classifiers; {settings['dataset']} is not a "
            "classification task with one-hot labels"
        )
    np.savez(
        path,
        X_train=np.ascontiguousarray(ds.X_train.T, np.float32),
        y_train=ds.Y_train.argmax(axis=0),
        X_test=np.ascontiguousarray(ds.X_test.T, np.float32),
        y_test=ds.Y_test.argmax(axis=0),
        n_classes=ds.Y_train.shape[0],
    )


def jaxnn_argv(settings: dict, out: str) -> list[str]:
    """``jaxnn train`` with the benchmark's settings, writing its run to ``out``."""
    argv = [sys.executable, "-m", "jaxnn", "train", "--dataset", settings["dataset"]]
    if settings["data"]:
        argv += ["--data", settings["data"]]
    argv += ["--hidden", *map(str, settings["hidden"]), "--epochs", str(settings["epochs"])]
    argv += ["--batch-size", str(settings["batch_size"]), "--seed", str(settings["seed"])]
    argv += ["--learning-rate", repr(settings["learning_rate"]), "--optimizer", "adam"]
    return [*argv, "--out", out]


def timed(argv: list[str], env: dict, timeout: float) -> tuple[float, str]:
    """Run ``argv`` to its end; (wall seconds, stdout). A failure is a RuntimeError."""
    t0 = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=timeout)
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        tail = done.stderr.strip().splitlines()[-1:] or ["(no output)"]
        raise RuntimeError(f"{argv[2:4]} exited with {done.returncode}: {tail[0]}")
    return wall, done.stdout


def run_jaxnn(settings: dict, workdir: str, name: str, cache_dir: str, timeout: float) -> dict:
    """One ``jaxnn train`` process with this compilation cache; its figures."""
    out = tempfile.mkdtemp(prefix=f"{name}-", dir=workdir)
    os.rmdir(out)  # jaxnn train wants a new (or empty) directory
    env = {**os.environ, "JAX_COMPILATION_CACHE_DIR": cache_dir}
    wall, _ = timed(jaxnn_argv(settings, out), env, timeout)
    with open(os.path.join(out, "metrics.json")) as f:
        metrics = json.load(f)
    return {
        "process_wall_s": wall,
        "training_s": metrics["seconds"],
        "test_accuracy": metrics["test_accuracy"],
        "epochs_run": metrics["epochs_done"],
    }


def run_peer(script: str, split: str, settings: dict, timeout: float) -> dict:
    """One scikit-learn or PyTorch process; its figures."""
    argv = [sys.executable, "-c", script, split, json.dumps(settings)]
    wall, stdout = timed(argv, dict(os.environ), timeout)
    return {"process_wall_s": wall, **json.loads(stdout.strip().splitlines()[-1])}


def one_round(settings: dict, contenders, workdir: str, split: str, order, timeout: float):
    """Each contender once, in ``order``. The cold run gets a new, empty compilation
    cache; the warm run the cache its round's cold run filled (or, if it goes first,
    one filled by an untimed run beforehand)."""
    results, filled = {}, None
    for name in order:
        if name not in contenders:
            continue
        if name == "jaxnn-cold":
            cache_dir = tempfile.mkdtemp(prefix="cache-", dir=workdir)
            results[name] = run_jaxnn(settings, workdir, name, cache_dir, timeout)
            filled = cache_dir
        elif name == "jaxnn-warm":
            if filled is None:
                filled = tempfile.mkdtemp(prefix="cache-", dir=workdir)
                run_jaxnn(settings, workdir, "fill", filled, timeout)  # untimed
            results[name] = run_jaxnn(settings, workdir, name, filled, timeout)
        else:
            script = {"sklearn": SKLEARN, "torch": TORCH}[name]
            results[name] = run_peer(script, split, settings, timeout)
    return {name: results[name] for name in contenders if name in results}


def rotations(contenders, rounds: int):
    """The order of each round: rotated, so that no contender always goes first."""
    names = list(contenders)
    return [names[r % len(names) :] + names[: r % len(names)] for r in range(rounds)]


def summarise(rounds: list[dict]) -> dict:
    """Medians over rounds per contender and figure, and the rounds' ranges."""
    summary = {}
    for name in rounds[0]:
        per = [r[name] for r in rounds]
        summary[name] = {
            key: statistics.median(x[key] for x in per)
            for key in ("process_wall_s", "training_s", "test_accuracy")
        }
        summary[name]["epochs_run"] = per[0]["epochs_run"]
        summary[name]["training_s_range"] = [
            min(x["training_s"] for x in per),
            max(x["training_s"] for x in per),
        ]
    return summary


def ratios(summary: dict) -> dict:
    """Each jaxnn figure over scikit-learn's (and PyTorch's): below 1, jaxnn is faster."""
    out = {}
    for peer in ("sklearn", "torch"):
        for name in ("jaxnn-cold", "jaxnn-warm"):
            if peer in summary and name in summary:
                for key in ("training_s", "process_wall_s"):
                    out[f"{name} / {peer} {key}"] = summary[name][key] / summary[peer][key]
    return out


def run_time_to_accuracy(
    contenders=CONTENDERS, rounds: int = 3, workdir=None, timeout: float = 1800, **settings
) -> dict:
    """Time each contender's whole job in processes of its own; a JSON-able report.

    ``settings`` override ``DEFAULTS`` (dataset, data, hidden, epochs,
    batch_size, learning_rate, seed). Temporary files go to ``workdir`` (a new
    temporary directory, removed afterwards, if None).
    """
    unknown = sorted(set(settings) - set(DEFAULTS))
    if unknown:
        raise ValueError(f"unknown settings {unknown}; valid: {', '.join(DEFAULTS)}")
    bad = [c for c in contenders if c not in CONTENDERS]
    if bad or not contenders:
        raise ValueError(f"unknown contenders {bad}; valid: {', '.join(CONTENDERS)}")
    if rounds < 1:
        raise ValueError(f"rounds must be >= 1, got {rounds}")
    settings = {**DEFAULTS, **settings}
    settings["hidden"] = list(settings["hidden"])
    with tempfile.TemporaryDirectory(prefix="jaxnn-tta-", dir=workdir) as work:
        split = os.path.join(work, "split.npz")
        write_split(split, settings)
        order = rotations(contenders, rounds)
        measured = [one_round(settings, contenders, work, split, o, timeout) for o in order]
    from jaxnn.bench.timing import machine

    summary = summarise(measured)
    return {
        "mode": "time-to-accuracy",
        "settings": settings,
        "machine": machine(),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "rounds": measured,
        "summary": summary,
        "ratios": ratios(summary),
    }


def markdown(report: dict) -> str:
    """The time-to-accuracy report as a markdown table and its ratios."""
    s = report["settings"]
    sizes = "-".join(map(str, ["in", *s["hidden"], "out"]))
    lines = [
        f"{s['dataset']}, network {sizes} relu, softmax + cross-entropy, Adam "
        f"{s['learning_rate']}, batch {s['batch_size']}, {s['epochs']} epochs; "
        f"medians of {len(report['rounds'])} rounds, each contender in a fresh process.",
        "",
        "| contender | process wall | training seconds | test accuracy |",
        "|---|---:|---:|---:|",
    ]
    for name, r in report["summary"].items():
        lines.append(
            f"| {name} | {r['process_wall_s']:.2f} s | {r['training_s']:.2f} s "
            f"| {r['test_accuracy']:.4f} |"
        )
    lines.append("")
    lines += [f"- {key}: {value:.2f}" for key, value in report["ratios"].items()]
    if report.get("load_average"):
        load = ", ".join(f"{x:.1f}" for x in report["load_average"])
        lines.append(f"- load average at the end (1, 5, 15 min): {load}")
    return "\n".join(lines) + "\n"
