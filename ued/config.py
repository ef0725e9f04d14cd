"""Typed configuration with defaults from published work (PAIRED / dcd for mazes)."""

from __future__ import annotations

from dataclasses import dataclass, fields, is_dataclass, replace
from typing import Any

from ued.errors import UsageError


@dataclass
class PPOConfig:
    """PPO hyperparameters of one learner (student or teacher). Defaults: dcd's maze students."""

    num_envs: int = 32
    """parallel environments (levels per rollout)"""
    num_steps: int = 256
    """steps per environment per rollout"""
    lr: float = 1e-4
    """Adam learning rate"""
    gamma: float = 0.995
    """discount"""
    gae_lambda: float = 0.95
    """GAE lambda"""
    epochs: int = 5
    """PPO epochs per update"""
    num_minibatches: int = 1
    """minibatches per epoch (split over environments for recurrent policies)"""
    clip: float = 0.2
    """PPO ratio clip (also used for the clipped value loss)"""
    value_coef: float = 0.5
    """value loss weight"""
    entropy_coef: float = 0.0
    """entropy bonus weight"""
    max_grad_norm: float = 0.5
    """gradient clipping norm"""
    eps: float = 1e-5
    """Adam epsilon"""
    bf16: bool = False
    """run the update's LSTM in bfloat16 (torch.autocast; float32 states, encoder, heads and optimizer):
    ~1.6x faster updates measured on an AVX-512 BF16 CPU (slow on CPUs without bf16 instructions), slightly
    different numerics; off in the published settings"""


def merge(config: Any, overrides: dict[str, Any], where: str = "config") -> Any:
    """A copy of dataclass `config` with `overrides` applied (nested dicts for nested dataclasses);
    unknown keys raise a UsageError naming the valid ones."""
    if not overrides:
        return config
    known = {f.name: f for f in fields(config)}
    changes: dict[str, Any] = {}
    for key, value in overrides.items():
        key = key.replace("-", "_")
        if key not in known:
            raise UsageError(f"unknown {where} key {key!r}; valid keys: {', '.join(sorted(known))}")
        current = getattr(config, key)
        if is_dataclass(current) and isinstance(value, dict):
            changes[key] = merge(current, value, f"{where}.{key}")
        else:
            changes[key] = value
    return replace(config, **changes)


__all__ = ["PPOConfig", "merge"]
