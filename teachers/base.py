"""The teacher contract: propose levels, learn from what the students did on them."""

from __future__ import annotations

import abc
from typing import Any, ClassVar

import numpy as np

from ued.levels import LevelFamily, LevelResults


class Teacher(abc.ABC):
    """Generates curricula. The runner calls `propose(n)`, rolls the students out on those levels, then
    `update(levels, results)` with one `LevelResults` per student role."""

    #: the students this teacher needs, by role; a regret teacher needs both
    roles: tuple[str, ...] = ("protagonist",)
    #: the teacher's typed config (a dataclass with published defaults), or None when it has no settings
    config_class: ClassVar[type | None] = None

    def __init__(self, family: LevelFamily, config: Any = None, *, seed: int = 0, device: str = "cpu"):
        self.family = family
        self.config = config if config is not None else (self.config_class() if self.config_class else None)
        self.rng = np.random.default_rng(seed)
        self.device = device
        #: False when the students must not take gradient steps on the last proposal (Robust PLR)
        self.train_students = True

    @abc.abstractmethod
    def propose(self, n: int) -> list[Any]:
        """n playable levels for the next rollout."""

    def update(self, levels: list[Any], results: dict[str, LevelResults]) -> dict[str, float]:
        """Learn from the students' results on `levels`; returns scalars to log."""
        return {}

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume (tensors, numbers, lists; no pickled objects)."""
        return {"rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rng.bit_generator.state = state["rng"]
