"""Compatibility for jaxued's 2024 examples on today's JAX: `jax.tree_map` (removed in JAX 0.6) is
`jax.tree_util.tree_map`. Nothing else changes."""

import jax

if not hasattr(jax, "tree_map"):
    jax.tree_map = jax.tree_util.tree_map
