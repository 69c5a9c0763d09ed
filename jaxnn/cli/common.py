"""What the ``jaxnn`` command line's modules share: its two errors, atomic writes, JSON.

``jaxnn.cli`` turns ``UsageError`` into exit status 2 and ``RunFailed`` into 1,
each as one line on stderr. This module never prints.
"""

import json
import math
import os

__all__ = [
    "ERROR",
    "RunFailed",
    "UsageError",
    "check_choice",
    "check_directory_path",
    "flag",
    "jsonable",
    "require",
    "write_atomic",
    "write_json",
]

ERROR = "jaxnn: error: "  # the one prefix of every error line, whichever subcommand raised it


class UsageError(Exception):
    """A problem the user can fix; reported as one line, exit status 2."""


class RunFailed(Exception):
    """The run failed after it started (training diverged, a verify row failed); one line,
    exit status 1."""


def require(module: str, what: str):
    """``module``, imported; a ``UsageError`` naming the extra to install if it is missing."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise UsageError(f"{what} needs {module.split('.')[0]}: pip install 'jaxnn[cli]'") from None


def flag(name: str) -> str:
    """The command-line flag of a setting: ``num_processes`` -> ``--num-processes``."""
    return "--" + name.replace("_", "-")


def check_choice(name: str, value, choices) -> None:
    """Raise ``UsageError`` unless ``value`` is one of ``choices``, naming them."""
    if value not in choices:
        raise UsageError(f"unknown {name} {value!r}; valid: {', '.join(choices)}")


def check_directory_path(option: str, path: str) -> None:
    """Raise ``UsageError`` unless ``path`` is a directory or can be made one: the nearest
    part of it that exists must be a directory (``--out FILE/run``, under a regular file,
    cannot be). Checks only; creates nothing."""
    existing = os.path.normpath(path)
    while not os.path.lexists(existing):  # a dangling link counts: makedirs cannot pass it
        existing = os.path.dirname(existing) or "."
    if os.path.isdir(existing):
        return
    what = "is a file, not a directory" if os.path.isfile(existing) else "is not a directory"
    where = "" if existing == os.path.normpath(path) else f": {existing}"
    raise UsageError(f"{option} {path}{where} {what}")


def write_atomic(path: str, write, mode: str = "w") -> None:
    """Write through ``write(file)`` to a temporary file, then rename it to ``path``."""
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        with open(tmp, mode) as f:
            write(f)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def jsonable(x):
    """Non-finite floats become None, so the files are standard JSON."""
    if isinstance(x, dict):
        return {k: jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def write_json(path: str, obj) -> None:
    """Write ``obj`` to ``path`` as indented standard JSON (``jsonable``), atomically."""
    write_atomic(path, lambda f: f.write(json.dumps(jsonable(obj), indent=2) + "\n"))
