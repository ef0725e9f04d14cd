"""ACCEL (Parker-Holder, Jiang et al. 2022, "Evolving Curricula with Regret-Based Environment Design").

Robust PLR whose buffer also grows by editing: after every replay batch, the highest-scoring levels of
that batch are mutated (`family.mutate`, `num_edits` random edits each) and the children are the next
proposal. The students play them without gradient steps (in robust mode), then the children are scored and
enter the buffer like fresh levels (replacing the lowest score when it is full). Fresh levels come from
`family.sample_easy` (maze: no walls) when `start_easy`, so the curriculum grows from easy levels.

Parents are chosen over the per-level scores of the *whole* replayed batch, sorted best first; the
`parent_share` best of them (all by default) get children round-robin until the batch is full. (dcd's
reference mutated the first replayed level only.)

Defaults (dcd's `mg_60b_uni_accel_empty`): replay_prob 0.8, 5 edits, easy (empty) base levels, positive
value loss, rank prioritisation with temperature 0.3, buffer 4000, rho 0.5, no gradient updates on new
levels. The remaining fields follow `PLRConfig`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ued.errors import UsageError
from ued.levels import LevelFamily, LevelResults
from ued.teachers.plr import PLR, PLRConfig, coerce_option


@dataclass
class ACCELConfig(PLRConfig):
    """ACCEL teacher settings: `PLRConfig` plus the editor; None takes the family's published default."""

    replay_prob: float = 0.8
    """probability of replaying a batch from the buffer (once it is min_fill full) instead of fresh levels"""
    num_edits: int = 5
    """random edits per child level (`family.mutate`)"""
    start_easy: bool = True
    """fresh levels from `family.sample_easy` (maze: no walls) instead of `family.sample`"""
    parent_share: float = 1.0
    """share of the replayed batch, highest scores first, whose levels get children (at least one)"""


class ACCEL(PLR):
    """ACCEL over any level family (see the module docstring). Metrics: PLR's, plus mutant_admitted
    (share of new children that entered the buffer) and mutant_parents (distinct parents of the batch)."""

    config_class = ACCELConfig

    def __init__(
        self, family: LevelFamily, config: ACCELConfig | None = None, *, seed: int = 0, device: str = "cpu"
    ):
        super().__init__(family, config, seed=seed, device=device)
        s = self.settings
        for key, kind in (("num_edits", int), ("start_easy", bool), ("parent_share", float)):
            s[key] = coerce_option(key, getattr(self.config, key), kind)
        if s["num_edits"] < 1:
            raise UsageError(f"num_edits must be at least 1, got {s['num_edits']}; e.g. 5")
        if not 0.0 < s["parent_share"] <= 1.0:
            raise UsageError(f"parent_share must be in (0, 1], got {s['parent_share']}; e.g. 1.0")
        #: children waiting to be proposed, and the batch index of each child's parent in the last replay
        self._children: list[Any] = []
        self.last_parents: list[int] = []

    def _fresh_level(self) -> Any:
        if self.settings["start_easy"]:
            return self.family.sample_easy(self.rng)
        return self.family.sample(self.rng)

    def propose(self, n: int) -> list[Any]:
        """The children of the last replay batch if any (topped up with fresh levels, cut to n), else as PLR."""
        if not self._children:
            return super().propose(n)
        children, self._children = self._children[:n], []
        children += [self._fresh_level() for _ in range(n - len(children))]
        self.buffer.advance(n)
        self._set_kind("mutant", None)
        return children

    def select_parents(self, scores: np.ndarray, n: int) -> list[int]:
        """Batch indices of the parents of n children: the best `parent_share` of the batch by score
        (sorted over the whole batch, best first), repeated round-robin up to n."""
        order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
        k = max(1, math.ceil(self.settings["parent_share"] * len(order)))
        best = order[:k]
        return [int(best[i % k]) for i in range(n)]

    def update(self, levels: list[Any], results: dict[str, LevelResults]) -> dict[str, float]:
        """PLR's update; after a replay batch, mutate its best levels into the next proposal."""
        kind = self.last_kind
        metrics = super().update(levels, results)
        metrics["mutant_admitted"] = metrics["fresh_admitted"] if kind == "mutant" else math.nan
        metrics["mutant_parents"] = math.nan
        if kind == "replay" and levels:
            self.last_parents = self.select_parents(self.last_scores, len(levels))
            self._children = [
                self.family.mutate(levels[i], self.rng, self.settings["num_edits"]) for i in self.last_parents
            ]
            metrics["mutant_parents"] = float(len(set(self.last_parents)))
        return metrics

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state["children"] = [self.family.encode(c).tolist() for c in self._children]
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self._children = [
            self.family.decode(np.asarray(t, dtype=np.int64)) for t in state.get("children", [])
        ]
