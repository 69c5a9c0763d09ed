"""The persistent compilation cache that ``jaxnn train`` turns on: compile once per machine.

JAX can keep every compiled program on disk and load it the next time the same
program is compiled (`the persistent compilation cache
<https://docs.jax.dev/en/latest/persistent_compilation_cache.html>`_). The
command line turns it on, in this order of precedence:

1. ``JAX_COMPILATION_CACHE_DIR``, if set, is used as it is (JAX reads it itself);
2. otherwise ``$XDG_CACHE_HOME/jaxnn/jax`` (``~/.cache/jaxnn/jax`` when
   ``XDG_CACHE_HOME`` is unset), the user's cache directory.

Beside JAX's entries, in ``<that directory>/jaxnn-programs``, the command line
keeps ``fit``'s two programs as JAX exports them (``jaxnn.program_cache``): a
second identical run loads them without tracing them (about 0.3 s of Python on
the default network), which JAX's cache alone still does.

Every program is cached, however fast it compiled (JAX's default skips those
under 1 s, which are all of a small network's programs), so a second identical
run compiles nothing. Turn it off with ``jaxnn train --no-compilation-cache``, or
with ``JAX_ENABLE_COMPILATION_CACHE=false`` for every JAX program. The cache is
safe to delete at any time.

This module never prints.
"""

import os

__all__ = ["ENV_DIR", "PROGRAMS", "cache_dir", "enable", "programs"]

ENV_DIR = "JAX_COMPILATION_CACHE_DIR"
PROGRAMS = "jaxnn-programs"


def cache_dir(environ=None) -> str:
    """The directory the command line caches compiled programs in (see the module docstring)."""
    environ = os.environ if environ is None else environ
    if environ.get(ENV_DIR):
        return environ[ENV_DIR]
    base = environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "jaxnn", "jax")


def enable(enabled: bool = True) -> str | None:
    """Point JAX's persistent compilation cache at ``cache_dir()``; returns it (None if off).

    Call before the first compilation of the process: JAX decides once per
    process whether it uses the cache.
    """
    import jax

    if not enabled:
        jax.config.update("jax_enable_compilation_cache", False)
        return None
    directory = cache_dir()
    jax.config.update("jax_compilation_cache_dir", directory)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)  # cache every entry
    return directory


def programs(settings: dict, environ=None):
    """The ``jaxnn.program_cache.ProgramCache`` of a run with these settings.

    Its recipe names the optimizer and its learning rate (``fit`` also keys its
    programs by the optimizer's ``fingerprint``).
    """
    from jaxnn.program_cache import ProgramCache

    recipe = f"optimizer={settings['optimizer']} learning_rate={settings['learning_rate']!r}"
    return ProgramCache(os.path.join(cache_dir(environ), PROGRAMS), recipe)
