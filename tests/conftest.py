"""Test configuration: float64, exact matmuls, and no silent rank promotion.

x64 lets gradient comparisons reach 1e-10; "highest" matmul precision makes a GPU
or TPU give the CPU's answers; rank promotion raises so a bias of shape (n,)
added to (n, m) is caught instead of broadcast.
"""

import jax

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_default_matmul_precision", "highest")
jax.config.update("jax_numpy_rank_promotion", "raise")
