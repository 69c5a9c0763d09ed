"""``jaxnn train`` on several processes: joining, agreeing, one writer, failing together.

Every process runs the same command but its ``--process-id`` (or, with
``--distributed``, the same command, on a cluster JAX detects). ``join``
initializes JAX's distributed runtime before any JAX computation and starts the
watchdog (``jaxnn.distributed.Watchdog``), whose verdict ends the process with
one line on stderr, exit status 1. ``check_same`` compares the commands; only
process 0 (``is_writer``) prints progress and writes the run's files. When a
process fails, ``abandon`` tells the others and ends it at once: JAX's shutdown
would wait for processes that may never come.

Without any of these flags, every function here does nothing (one process).
"""

import atexit
import os
import sys
import threading
import time

from jaxnn.cli.common import RunFailed, UsageError, flag

__all__ = [
    "abandon",
    "any_process",
    "check_same",
    "explain",
    "is_writer",
    "join",
    "wanted",
]

_FLAGS = ("coordinator", "num_processes", "process_id")

_timeout = None  # --peer-timeout, once this process has joined several
_watchdog = None  # the running watchdog, once the processes agree (check_same)


def wanted(args) -> bool:
    """True if the command asks for several processes."""
    return args.distributed or any(getattr(args, name) is not None for name in _FLAGS)


def join(args) -> bool:
    """Join the cluster if the command asks for it (True), before any JAX computation."""
    global _timeout
    if not wanted(args):
        return False
    given = [flag(name) for name in _FLAGS if getattr(args, name) is not None]
    if args.distributed and given:
        raise UsageError(
            f"--distributed detects the cluster by itself; drop {', '.join(given)}, or drop "
            "--distributed and give --coordinator, --num-processes and --process-id"
        )
    if args.out is None:
        raise UsageError(
            "several processes need --out DIR, one run directory that every process can reach "
            "(a shared file system)"
        )
    if not 0 < args.peer_timeout < float("inf"):
        raise UsageError(f"--peer-timeout must be a number of seconds > 0, got {args.peer_timeout}")
    from jaxnn import distributed

    try:
        distributed.initialize(
            args.coordinator,
            args.num_processes,
            args.process_id,
            timeout=args.peer_timeout,
            on_timeout=_not_joined,
        )
    except distributed.ClusterError as e:
        raise RunFailed(str(e)) from None
    except ValueError as e:
        raise UsageError(str(e)) from None
    _timeout = args.peer_timeout
    return True


def _not_joined(message: str) -> None:
    """The cluster did not form: one line, and the process ends (JAX's would abort it)."""
    print(f"jaxnn: error: {message}", file=sys.stderr, flush=True)
    os._exit(1)


def _lost(message: str) -> None:
    """The watchdog's verdict: one line, and the process ends (its peers are gone)."""
    from jaxnn import distributed

    newline = "\n" if distributed.is_writer() else ""  # after process 0's progress bar
    _leave(1, message, f"{newline}jaxnn: error: {message}")


_leaving = threading.Lock()


def _leave(status: int, message: str, line: str) -> None:
    """Print ``line``, tell the others this process fails with ``message``, and end it with
    ``status`` now.

    JAX's shutdown would wait for processes that may never come. Process 0 first
    waits (a bounded time) for the others to go, since they need its coordination
    service to read the message. Only the first caller (the main thread after an
    error, or the watchdog) proceeds, so one line is printed.
    """
    from jaxnn import distributed

    if not _leaving.acquire(blocking=False):  # the other thread is ending the process
        if threading.current_thread() is threading.main_thread():
            threading.Event().wait()
        return
    print(line, file=sys.stderr, flush=True)
    distributed.report_failure(message)
    if distributed.is_writer():
        distributed.wait_for_others(_timeout, _watchdog.lost if _watchdog else None)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


def check_same(args, settings: dict, config: dict) -> None:
    """A UsageError naming every difference between this process's command and another's;
    once they agree, the watchdog starts (a peer lost before then times this exchange out)."""
    global _watchdog
    if _timeout is None:
        return
    import jax

    from jaxnn import distributed

    mine = {flag(k): v for k, v in settings.items()}
    mine.update(
        {
            "--num-processes": args.num_processes or jax.process_count(),
            "--devices": args.devices,
            "--out": os.path.abspath(args.out),
            "--resume": args.resume,
            "network": config["network"],
        }
    )
    try:
        distributed.check_same(mine, args.peer_timeout)
    except distributed.ClusterError as e:
        raise RunFailed(str(e)) from None
    except ValueError as e:
        raise UsageError(str(e)) from None
    _watchdog = distributed.Watchdog(_lost, _timeout)
    _watchdog.__enter__()
    atexit.register(_watchdog.stop)  # before JAX's own atexit shutdown, registered earlier


def is_writer() -> bool:
    """True on the process that prints and writes the run's files: process 0, or the only one."""
    if _timeout is None:
        return True
    from jaxnn import distributed

    return distributed.is_writer()


def any_process(*flags: bool) -> bool | tuple[bool, ...]:
    """Each flag as given on one process; on several, true if true on any (one collective:
    all must call this together, with as many flags). One flag gives a bool, several a tuple."""
    if _timeout is None:
        return flags[0] if len(flags) == 1 else flags
    from jaxnn import distributed

    return distributed.any_process(*flags)


def abandon(status: int, message: str, line: str) -> None:
    """After an error on several processes: print ``line``, tell the others, and end this
    process with ``status`` at once. Does nothing on one process."""
    if _timeout is not None:
        _leave(status, message, line)


def explain(error: Exception) -> Exception:
    """What to raise for a JAX runtime error in training: on several processes it is most
    likely a lost process (a collective's peer closed); the watchdog is given the time to
    name it (and end this process), else a RunFailed with the error's first line."""
    if _timeout is None:
        return error
    time.sleep(_timeout + 3)  # the watchdog beats every second at most
    lines = str(error).strip().splitlines()
    return RunFailed(
        f"a computation across the processes failed ({lines[0] if lines else error!r}); "
        "another process may have failed: see its output"
    )
