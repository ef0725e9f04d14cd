"""References to read an evaluation against: a uniformly random policy on the same levels (cached, since it
never changes), and the run's own training distribution (the levels its trained teacher proposes now).

A held-out solved rate of 0.00 after a short run means little on its own; next to the random policy's
rate and to the student's rate on its own training levels it shows whether the student learned.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import gymnasium as gym
import torch
from torch import nn
from torch.distributions import Categorical, Distribution, Independent, Uniform

from ued.checkpoint import CHECKPOINT_NAME, load_checkpoint
from ued.config import load_config
from ued.evaluation import LevelScore, evaluate
from ued.io import write_json
from ued.levels import LevelFamily, Procedural
from ued.models import Policy
from ued.run import build_family, teacher_config_for
from ued.teachers import teacher_class


class RandomPolicy(Policy):
    """Uniformly random actions over `action_space` (Discrete: each action alike; Box: uniform in its
    bounds), for any observation; the value is 0. Batch size from `done` [B]."""

    def __init__(self, action_space: gym.Space):
        super().__init__()
        self.action_space = action_space
        self._device = nn.Parameter(torch.zeros(0), requires_grad=False)  # carries the device

    def forward(self, obs: Any, state: Any, done: torch.Tensor) -> tuple[Distribution, torch.Tensor, Any]:
        b, device = done.shape[0], self._device.device
        space = self.action_space
        if isinstance(space, gym.spaces.Discrete):
            dist: Distribution = Categorical(logits=torch.zeros(b, int(space.n), device=device))
        elif isinstance(space, gym.spaces.Box):
            low = torch.as_tensor(space.low, dtype=torch.float32, device=device).expand(b, *space.shape)
            high = torch.as_tensor(space.high, dtype=torch.float32, device=device).expand(b, *space.shape)
            dist = Independent(Uniform(low, high), len(space.shape))
        else:
            raise TypeError(f"no random policy for action space {space}")
        return dist, torch.zeros(b, device=device), None


def _cache_dir() -> Path:
    return Path(os.environ.get("UED_CACHE_DIR") or Path.home() / ".cache" / "ued")


def _entry_key(family: LevelFamily, entry: Any) -> str:
    if isinstance(entry, Procedural):
        return f"procedural:{entry.name}"
    try:
        return family.to_text(entry)
    except Exception:  # noqa: BLE001  (a family without a text form)
        return repr(entry)


def random_baseline(
    family: LevelFamily,
    named_levels: list[tuple[str, Any]],
    episodes: int,
    seed: int = 0,
    device: str = "cpu",
) -> list[LevelScore]:
    """A uniformly random policy on `named_levels`, `episodes` each (the same episode limits and draws
    as `evaluate` with this seed): one row per entry. Cached on disk ($UED_CACHE_DIR, default
    ~/.cache/ued) by family, levels, limits, episodes and seed; an unreadable cache is recomputed."""
    key_text = json.dumps(
        [
            family.name,
            family.options,
            episodes,
            seed,
            [
                [
                    name,
                    _entry_key(family, entry),
                    None if isinstance(entry, Procedural) else family.episode_limit(entry),
                ]
                for name, entry in named_levels
            ],
        ],
        sort_keys=True,
        default=str,
    )
    key = hashlib.sha256(key_text.encode("utf-8")).hexdigest()[:32]
    path = _cache_dir() / "random-baseline" / f"{key}.json"
    try:
        rows = json.loads(path.read_text(encoding="utf-8"))
        return [LevelScore(r["level"], r["mean_return"], r["solved_rate"], r["episodes"]) for r in rows]
    except (OSError, ValueError, KeyError, TypeError):
        pass
    policy = RandomPolicy(family.make_env().action_space)
    rows = evaluate(policy, family, named_levels, episodes, seed, device)
    with contextlib.suppress(Exception):  # a cache that cannot be written is only slower next time
        write_json(path, [r.as_dict() for r in rows])
    return rows


def teacher_levels(
    run_dir: str | os.PathLike, count: int, device: str = "cpu"
) -> tuple[LevelFamily, list[Any]]:
    """`count` levels the trained teacher of a run proposes now (from its checkpoint): what PAIRED's
    adversary writes, what PLR replays, ... - the run's own training distribution."""
    config = load_config(run_dir)
    family = build_family(config)
    teacher = teacher_class(config.teacher)(
        family, teacher_config_for(family, config), seed=config.seed, device=device, workdir=Path(run_dir)
    )
    teacher.load_state_dict(load_checkpoint(Path(run_dir) / CHECKPOINT_NAME)["teacher"])
    return family, teacher.propose(count).levels


__all__ = ["RandomPolicy", "random_baseline", "teacher_levels"]
