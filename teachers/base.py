"""The teacher contract: propose levels, learn from what the students did on them.

Decisions travel as values. `propose(n)` returns a `Proposal`: the levels, whether the students learn
from this rollout, and the teacher's own `context` (what `update` needs: the adversary's actions, the
replay slots, ...). The runner rolls the students out on `proposal.levels` and hands the same proposal
back to `update(proposal, results)`, which returns a `TeacherReport` (scalars and level pictures to log).
Nothing of one call is stashed on the teacher for the next one to read.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from ued.levels import LevelFamily, LevelResults


@dataclass(frozen=True)
class Proposal:
    """One rollout's curriculum decision.

    `levels`: one level per student sub-environment; `train_students`: False when the students roll out
    without a gradient step (Robust PLR's fresh levels); `context`: the teacher's own record of how it made
    the levels, read only by its `update`."""

    levels: list[Any]
    train_students: bool = True
    context: Any = None


@dataclass(frozen=True)
class TeacherReport:
    """What `update` tells the runner: `scalars` to log under teacher/, `pictures`, named lists of levels
    worth drawing (e.g. PLR's highest-scoring buffer levels), drawn only when images are due, and an
    optional `followup`: a proposal the students play right away, within the same update and outside the
    step budget (ACCEL's edited children, as dcd evaluates them); its own report cannot ask for another."""

    scalars: dict[str, float] = field(default_factory=dict)
    pictures: dict[str, list[Any]] = field(default_factory=dict)
    followup: Proposal | None = None


class Teacher(abc.ABC):
    """Generates curricula. The runner calls `propose(n)`, rolls the students out on its levels, then
    `update(proposal, results)` with one `LevelResults` per student role."""

    #: the students this teacher needs, by role; a regret teacher needs both
    roles: ClassVar[tuple[str, ...]] = ("protagonist",)
    #: the teacher's typed config (a `ued.config.Config` with published defaults), or None without settings
    config_class: ClassVar[type | None] = None

    def __init__(
        self,
        family: LevelFamily,
        config: Any = None,
        *,
        seed: int = 0,
        device: str = "cpu",
        workdir: Path | None = None,
    ):
        """`workdir`: a folder for files the teacher makes for itself (the run directory; None: none)."""
        self.family = family
        self.config = config if config is not None else (self.config_class() if self.config_class else None)
        self.seed = int(seed)
        self.rng = np.random.default_rng(seed)
        self.device = device
        self.workdir = Path(workdir) if workdir is not None else None

    @abc.abstractmethod
    def propose(self, n: int) -> Proposal:
        """n playable levels for the next rollout, and how the students use them."""

    def update(self, proposal: Proposal, results: dict[str, LevelResults]) -> TeacherReport:
        """Learn from the students' results on `proposal.levels`; returns what to log."""
        return TeacherReport()

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume (tensors, numbers, lists; no pickled objects)."""
        return {"rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rng.bit_generator.state = state["rng"]
