"""What the ``jaxnn`` command line's modules share: its two errors, atomic writes, JSON.

``jaxnn.cli`` turns ``UsageError`` into exit status 2 and ``RunFailed`` into 1,
each as one line on stderr. This module never prints.
"""

import json
import math
import os

ERROR = "jaxnn: error: "  # the one prefix of every error line, whichever subcommand raised it


class UsageError(Exception):
    """A problem the user can fix; reported as one line, exit status 2."""


class RunFailed(Exception):
    """The run failed after it started (training diverged, a verify row failed); one line,
    exit status 1."""


def require(module: str, what: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise UsageError(f"{what} needs {module.split('.')[0]}: pip install 'jaxnn[cli]'") from None


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def check_choice(name: str, value, choices) -> None:
    if value not in choices:
        raise UsageError(f"unknown {name} {value!r}; valid: {', '.join(choices)}")


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
    write_atomic(path, lambda f: f.write(json.dumps(jsonable(obj), indent=2) + "\n"))
