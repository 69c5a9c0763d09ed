"""The environment of the fresh Python processes the real-process tests start."""

import os

from tests.conftest import FUSION_EMITTERS_OFF, pinned_jaxlib


def fast_env(devices: int = 1, *xla_flags: str) -> dict:
    """This environment, on the CPU with ``devices`` virtual devices and ``xla_flags``,
    and XLA's CPU optimisations off as tests/conftest.py's ``fast_compiles`` sets them for
    the test process (``JAX_DISABLE_MOST_OPTIMIZATIONS``; the fusion emitters off on the
    pinned jaxlib). For scripts that compare results computed within the same process:
    their programs are small and run a few times (test_parallel.py's mesh script: 87 s of
    CPU with XLA's defaults, 41 s without). ``JAXNN_TEST_FAST_COMPILE=0`` keeps XLA's
    defaults.
    """
    flags = [f"--xla_force_host_platform_device_count={devices}", *xla_flags]
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    if os.environ.get("JAXNN_TEST_FAST_COMPILE", "1") != "0":
        env["JAX_DISABLE_MOST_OPTIMIZATIONS"] = "1"
        if pinned_jaxlib():
            flags.append(FUSION_EMITTERS_OFF)
    env["XLA_FLAGS"] = " ".join(flags)
    return env
