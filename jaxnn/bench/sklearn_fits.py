"""jaxnn.sklearn beside scikit-learn, as a user meets it: swap the import, compare time and score.

Two parts, each contender in a fresh Python process, rounds interleaved (the
order rotated each round), figures the medians over rounds:

* single fits (``FIT``): digits, breast_cancer, wine (classification) and
  diabetes (regression, the target standardised by the training part's mean and
  standard deviation), ``train_test_split(test_size=0.25, random_state=0)``
  (stratified for classification), a ``StandardScaler`` fitted on the training
  part, the same ``MLPClassifier`` / ``MLPRegressor`` settings for both libraries
  (one hidden layer of 100, batch 32, Adam 1e-3, ``random_state=0``) and the same
  number of epochs forced (``max_iter = n_iter_no_change = E``: no early stop).
  Each process fits twice: ``first_fit_s`` (for jaxnn, compile included) and
  ``fit_s``, the second, "warm" fit (the program compiled), whose held-out score
  (accuracy, R^2) is reported. Contenders: ``sklearn``; ``jaxnn-cold``, its
  process given an empty persistent compilation cache (``JAX_COMPILATION_CACHE_DIR``);
  ``jaxnn-cached``, one that an earlier jaxnn process filled.
* a grid search (``GRID``): ``GridSearchCV(make_pipeline(StandardScaler(),
  MLPClassifier(...)), 3 learning rates x 2 alphas, cv=5)`` on the whole digits
  set, refit included, with ``n_jobs`` 1 and 2 (loky's workers inherit the
  cache's environment variable): the process's wall time (``python grid.py``:
  imports, the search, exit), ``GridSearchCV.fit``'s seconds, ``best_score_``
  and ``best_params_``.

``run_sklearn`` returns a JSON-able report: the settings, the machine, the load
average at the start and the end, every round's raw figures, the medians, the
ratios jaxnn / scikit-learn and whether the issue's targets (jaxnn at most half
scikit-learn's time at an equal or better score) were met. Nothing here prints.
"""

import importlib.metadata
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

from jaxnn.bench.time_to_accuracy import rotations

__all__ = [
    "DATASETS",
    "DEFAULTS",
    "FIT_CONTENDERS",
    "grid_contenders",
    "markdown",
    "one_round",
    "run_sklearn",
    "summarise",
]

DATASETS = {  # sklearn.datasets.load_<name>, and its task
    "digits": "classification",
    "breast_cancer": "classification",
    "wine": "classification",
    "diabetes": "regression",
}
FIT_CONTENDERS = ("sklearn", "jaxnn-cold", "jaxnn-cached")
TARGET_RATIO = 0.5  # the target: jaxnn's time at most this fraction of scikit-learn's
# Scores this close count as equal: jaxnn trains in float32 (scikit-learn in float64), and
# its rounding moves a continuous score (R^2) by about 1e-8 and can move one example of a
# fold (a 360-example fold against a 359-example fold: 1.5e-6 of a mean accuracy).
SCORE_TOLERANCE = 1e-5
DEFAULTS = {
    "datasets": tuple(DATASETS),
    "hidden": (100,),
    "batch_size": 32,
    "learning_rate": 1e-3,
    "epochs": 30,  # classification
    # The issue asked for 200; scikit-learn's held-out R^2 is then 0.13 (100 hidden units
    # overfit 331 rows; linear regression: 0.36). 20 epochs: 0.31.
    "regression_epochs": 20,
    "grid_hidden": (64,),
    "grid_epochs": 30,
    "grid": {
        "mlpclassifier__learning_rate_init": [1e-3, 3e-3, 1e-2],
        "mlpclassifier__alpha": [1e-4, 1e-2],
    },
    "cv": 5,
    "n_jobs": (1, 2),
}

# Both scripts read their settings (JSON) from argv[1], import the library asked for
# after the common imports, and print one JSON line of figures.
_IMPORTS = """
import json, sys, time, warnings
s = json.loads(sys.argv[1])
t0 = time.perf_counter()
from sklearn.exceptions import ConvergenceWarning
if s["library"] == "jaxnn":
    from jaxnn.sklearn import MLPClassifier, MLPRegressor
else:
    from sklearn.neural_network import MLPClassifier, MLPRegressor
warnings.simplefilter("ignore", ConvergenceWarning)  # every epoch is run, on purpose
"""

FIT = (
    _IMPORTS
    + """
from sklearn import datasets
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

import_s = time.perf_counter() - t0
X, y = getattr(datasets, "load_" + s["dataset"])(return_X_y=True)
regression = s["task"] == "regression"
X_train, X_test, y_train, y_test = train_test_split(
    X, y, test_size=0.25, random_state=0, stratify=None if regression else y
)
scaler = StandardScaler().fit(X_train)
X_train, X_test = scaler.transform(X_train), scaler.transform(X_test)
if regression:
    mean, std = y_train.mean(), y_train.std()
    y_train, y_test = (y_train - mean) / std, (y_test - mean) / std
E = s["epochs"]
settings = dict(
    hidden_layer_sizes=tuple(s["hidden"]), solver="adam", batch_size=s["batch_size"],
    learning_rate_init=s["learning_rate"], max_iter=E, n_iter_no_change=E, random_state=0,
)
seconds = []
for _ in range(2):
    model = (MLPRegressor if regression else MLPClassifier)(**settings)
    t = time.perf_counter()
    model.fit(X_train, y_train)
    seconds.append(time.perf_counter() - t)
print(json.dumps({
    "import_s": import_s, "first_fit_s": seconds[0], "fit_s": seconds[1],
    "score": float(model.score(X_test, y_test)), "n_iter": int(model.n_iter_),
    "train_rows": len(y_train), "test_rows": len(y_test),
}))
"""
)

GRID = (
    _IMPORTS
    + """
from sklearn.datasets import load_digits
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import_s = time.perf_counter() - t0
X, y = load_digits(return_X_y=True)
E = s["epochs"]
model = MLPClassifier(
    hidden_layer_sizes=tuple(s["hidden"]), batch_size=s["batch_size"], max_iter=E,
    n_iter_no_change=E, random_state=0,
)
search = GridSearchCV(make_pipeline(StandardScaler(), model), s["grid"], cv=s["cv"],
                      n_jobs=s["n_jobs"])
t = time.perf_counter()
search.fit(X, y)
print(json.dumps({
    "import_s": import_s, "fit_s": time.perf_counter() - t,
    "best_score": float(search.best_score_),
    "best_params": {k: float(v) for k, v in search.best_params_.items()},
}))
"""
)


def _child(script: str, settings: dict, cache_dir, timeout: float) -> dict:
    """One fresh process running ``script``; its figures and its wall time (start to exit).
    ``cache_dir``: the JAX_COMPILATION_CACHE_DIR it is given, with every compiled program
    kept (JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS=0); None: the caller's environment."""
    env = dict(os.environ)
    if cache_dir is not None:  # as docs/sklearn.md advises: every program kept, however quick
        env["JAX_COMPILATION_CACHE_DIR"] = cache_dir
        env["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
    argv = [sys.executable, "-c", script, json.dumps(settings)]
    t0 = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=timeout)
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        tail = done.stderr.strip().splitlines()[-1:] or ["(no output)"]
        what = settings.get("dataset", "grid search")
        raise RuntimeError(
            f"{settings['library']} on {what} exited with {done.returncode}: {tail[0]}"
        )
    return {"process_wall_s": wall, **json.loads(done.stdout.strip().splitlines()[-1])}


def _fit_settings(settings: dict, dataset: str) -> dict:
    task = DATASETS[dataset]
    return {
        "dataset": dataset,
        "task": task,
        "hidden": list(settings["hidden"]),
        "batch_size": settings["batch_size"],
        "learning_rate": settings["learning_rate"],
        "epochs": settings["regression_epochs" if task == "regression" else "epochs"],
    }


def _grid_settings(settings: dict, n_jobs: int) -> dict:
    return {
        "hidden": list(settings["grid_hidden"]),
        "batch_size": settings["batch_size"],
        "epochs": settings["grid_epochs"],
        "grid": settings["grid"],
        "cv": settings["cv"],
        "n_jobs": n_jobs,
    }


def grid_contenders(n_jobs) -> list[str]:
    """The grid search's contenders: each fit contender at each ``n_jobs``."""
    return [f"{name} n_jobs={n}" for n in n_jobs for name in FIT_CONTENDERS]


def _run_one(name: str, script: str, child: dict, key: str, caches: dict, work, timeout):
    """One contender's process. ``jaxnn-cold`` gets a new, empty cache, which then serves
    ``key``'s ``jaxnn-cached`` runs; if a cached run comes first, an untimed run fills one."""
    library = "sklearn" if name == "sklearn" else "jaxnn"
    child = {**child, "library": library}
    if library == "sklearn":
        return _child(script, child, None, timeout)
    if name == "jaxnn-cold":
        cache = tempfile.mkdtemp(prefix="cache-", dir=work)
        result = _child(script, child, cache, timeout)
        caches.setdefault(key, cache)
        return result
    if key not in caches:
        caches[key] = tempfile.mkdtemp(prefix="cache-", dir=work)
        _child(script, child, caches[key], timeout)  # untimed: fills the cache
    return _child(script, child, caches[key], timeout)


def one_round(settings: dict, r: int, caches: dict, work: str, timeout: float) -> dict:
    """Round ``r``: every dataset's fit contenders, then the grid's, in rotated orders."""
    t0 = time.perf_counter()
    fits = {}
    for dataset in settings["datasets"]:
        child = _fit_settings(settings, dataset)
        order = rotations(FIT_CONTENDERS, r + 1)[r]
        got = {n: _run_one(n, FIT, child, dataset, caches, work, timeout) for n in order}
        fits[dataset] = {n: got[n] for n in FIT_CONTENDERS}
    grid = {}
    names = grid_contenders(settings["n_jobs"])
    for label in rotations(names, r + 1)[r]:
        name, n_jobs = label.split(" n_jobs=")
        child = _grid_settings(settings, int(n_jobs))
        grid[label] = _run_one(name, GRID, child, "grid", caches, work, timeout)
    grid = {label: grid[label] for label in names}
    return {"fits": fits, "grid": grid, "seconds": time.perf_counter() - t0}


def _median(rounds, *path) -> float:
    values = []
    for r in rounds:
        for step in path[:-1]:
            r = r[step]
        values.append(r[path[-1]])
    return statistics.median(values)


def summarise(rounds: list[dict]) -> dict:
    """Medians over rounds; the ratios jaxnn / scikit-learn; the issue's targets.

    A dataset's jaxnn warm fit is the median of both jaxnn processes' second fits."""
    fits, grid, targets = {}, {}, {}
    for dataset in rounds[0]["fits"]:
        per = {
            name: {
                key: _median(rounds, "fits", dataset, name, key)
                for key in ("first_fit_s", "fit_s", "score", "process_wall_s")
            }
            for name in FIT_CONTENDERS
        }
        sk = per["sklearn"]
        warm = statistics.median(
            r["fits"][dataset][n]["fit_s"] for r in rounds for n in ("jaxnn-cold", "jaxnn-cached")
        )
        score = per["jaxnn-cold"]["score"]
        fits[dataset] = {
            "sklearn_fit_s": sk["fit_s"],
            "sklearn_first_fit_s": sk["first_fit_s"],
            "jaxnn_warm_fit_s": warm,
            "jaxnn_first_fit_empty_cache_s": per["jaxnn-cold"]["first_fit_s"],
            "jaxnn_first_fit_filled_cache_s": per["jaxnn-cached"]["first_fit_s"],
            "sklearn_score": sk["score"],
            "jaxnn_score": score,
            "epochs": rounds[0]["fits"][dataset]["sklearn"]["n_iter"],
            "ratios": {
                "warm fit": warm / sk["fit_s"],
                "first fit, empty cache": per["jaxnn-cold"]["first_fit_s"] / sk["fit_s"],
                "first fit, filled cache": per["jaxnn-cached"]["first_fit_s"] / sk["fit_s"],
            },
            "score_difference": score - sk["score"],
        }
        same = score >= sk["score"] - SCORE_TOLERANCE
        targets[f"{dataset} warm fit"] = warm / sk["fit_s"] <= TARGET_RATIO and same
    for label in rounds[0]["grid"]:
        grid[label] = {
            key: _median(rounds, "grid", label, key)
            for key in ("process_wall_s", "fit_s", "best_score")
        }
        grid[label]["best_params"] = rounds[0]["grid"][label]["best_params"]
    for label, g in grid.items():
        name, n_jobs = label.split(" n_jobs=")
        sk = grid.get(f"sklearn n_jobs={n_jobs}")
        if name == "sklearn" or sk is None:
            continue
        g["ratios"] = {key: g[key] / sk[key] for key in ("process_wall_s", "fit_s")}
        g["best_score_difference"] = g["best_score"] - sk["best_score"]
        ok = g["best_score"] >= sk["best_score"] - SCORE_TOLERANCE
        targets[f"grid {label}"] = g["ratios"]["process_wall_s"] <= TARGET_RATIO and ok
    return {"fits": fits, "grid": grid, "targets": targets}


def _machine() -> dict:
    from jaxnn.bench.timing import machine

    return {**machine(), "sklearn": importlib.metadata.version("scikit-learn")}


def _load() -> list[float] | None:
    return list(os.getloadavg()) if hasattr(os, "getloadavg") else None


def run_sklearn(rounds: int = 3, workdir=None, timeout: float = 1800, **settings) -> dict:
    """Both parts, ``rounds`` times, each contender in a process of its own; a JSON-able
    report. ``settings`` override ``DEFAULTS``; temporary files (the compilation caches)
    go to a new directory in ``workdir``, removed afterwards."""
    unknown = sorted(set(settings) - set(DEFAULTS))
    if unknown:
        raise ValueError(f"unknown settings {unknown}; valid: {', '.join(DEFAULTS)}")
    if rounds < 1:
        raise ValueError(f"rounds must be >= 1, got {rounds}")
    settings = {**DEFAULTS, **settings}
    bad = [d for d in settings["datasets"] if d not in DATASETS]
    if bad or not settings["datasets"]:
        raise ValueError(f"unknown datasets {bad}; valid: {', '.join(DATASETS)}")
    load_start = _load()
    with tempfile.TemporaryDirectory(prefix="jaxnn-sklearn-", dir=workdir) as work:
        caches: dict = {}
        measured = [one_round(settings, r, caches, work, timeout) for r in range(rounds)]
    return {
        "mode": "sklearn",
        "settings": settings,
        "machine": _machine(),
        "load_average": {"start": load_start, "end": _load()},
        "rounds": measured,
        "summary": summarise(measured),
    }


def markdown(report: dict) -> str:
    """The report as markdown: the medians, the ratios, the targets, each round's figures."""
    s, summary = report["settings"], report["summary"]
    n = len(report["rounds"])
    lines = [
        f"jaxnn.sklearn beside scikit-learn {report['machine'].get('sklearn')}: medians of "
        f"{n} round{'s' * (n > 1)}, each contender in a fresh process.",
        "",
        f"Single fits: hidden {tuple(s['hidden'])}, batch {s['batch_size']}, Adam "
        f"{s['learning_rate']}, {s['epochs']} epochs (regression: {s['regression_epochs']}), "
        "held-out 25%. Warm: the second fit in a process; first fit: a fresh process's, "
        "compile included, with an empty / a filled JAX_COMPILATION_CACHE_DIR.",
        "",
        "| dataset | sklearn fit | jaxnn warm fit | x sklearn | jaxnn first fit, empty "
        "/ filled cache | sklearn score | jaxnn score |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for dataset, f in summary["fits"].items():
        lines.append(
            f"| {dataset} | {f['sklearn_fit_s']:.3f} s | {f['jaxnn_warm_fit_s']:.3f} s "
            f"| {f['ratios']['warm fit']:.2f} | {f['jaxnn_first_fit_empty_cache_s']:.2f} s / "
            f"{f['jaxnn_first_fit_filled_cache_s']:.2f} s | {f['sklearn_score']:.4f} "
            f"| {f['jaxnn_score']:.4f} |"
        )
    lines += [
        "",
        f"GridSearchCV on digits: hidden {tuple(s['grid_hidden'])}, {s['grid_epochs']} epochs, "
        f"cv={s['cv']}, {' x '.join(str(len(v)) for v in s['grid'].values())} candidates, "
        "refit; each a fresh `python grid.py` process.",
        "",
        "| contender | process wall | x sklearn | GridSearchCV.fit | x sklearn | best_score_ "
        "| best_params_ |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for label, g in summary["grid"].items():
        ratio = g.get("ratios", {})
        wall_x = f"{ratio['process_wall_s']:.2f}" if ratio else "-"
        fit_x = f"{ratio['fit_s']:.2f}" if ratio else "-"
        params = ", ".join(f"{k.split('__')[-1]}={v:g}" for k, v in g["best_params"].items())
        lines.append(
            f"| {label} | {g['process_wall_s']:.1f} s | {wall_x} | {g['fit_s']:.1f} s "
            f"| {fit_x} | {g['best_score']:.4f} | {params} |"
        )
    within = f"score >= its - {SCORE_TOLERANCE:g}"
    lines += ["", f"Targets (at most {TARGET_RATIO}x scikit-learn's time, {within}):"]
    lines += [f"- {k}: {'met' if ok else 'not met'}" for k, ok in summary["targets"].items()]
    lines += ["", *_raw_lines(report["rounds"])]
    load = report["load_average"]
    if load.get("start"):
        fmt = lambda xs: ", ".join(f"{x:.1f}" for x in xs)
        lines.append(
            f"\nLoad average (1, 5, 15 min) at the start: {fmt(load['start'])}; "
            f"at the end: {fmt(load['end'])}"
        )
    return "\n".join(lines) + "\n"


def _raw_lines(rounds: list[dict]) -> list[str]:
    """Each round's figures: fit seconds (first / warm) and grid seconds (wall / fit)."""
    lines = [
        "Each round, single fits (seconds, first fit / warm fit):",
        "",
        f"| round | dataset | {' | '.join(FIT_CONTENDERS)} |",
        "|---:|---|" + "---:|" * len(FIT_CONTENDERS),
    ]
    for i, r in enumerate(rounds, start=1):
        for dataset, f in r["fits"].items():
            cells = [f"{f[n]['first_fit_s']:.2f} / {f[n]['fit_s']:.3f}" for n in FIT_CONTENDERS]
            lines.append(f"| {i} | {dataset} | {' | '.join(cells)} |")
    names = list(rounds[0]["grid"])
    lines += [
        "",
        "Each round, grid search (seconds, process wall / GridSearchCV.fit):",
        "",
        f"| round | {' | '.join(names)} | round's seconds |",
        "|---:|" + "---:|" * (len(names) + 1),
    ]
    for i, r in enumerate(rounds, start=1):
        cells = [
            f"{r['grid'][n]['process_wall_s']:.1f} / {r['grid'][n]['fit_s']:.1f}" for n in names
        ]
        lines.append(f"| {i} | {' | '.join(cells)} | {r['seconds']:.0f} |")
    return lines
