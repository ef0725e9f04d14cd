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
from typing import Any

import numpy as np

from ued.config import ACCELConfig
from ued.levels import LevelFamily, LevelResults
from ued.teachers.base import Proposal, TeacherReport
from ued.teachers.plr import PLR


class ACCEL(PLR):
    """ACCEL over any level family (see the module docstring). Metrics: PLR's, plus mutant_admitted
    (share of new children that entered the buffer) and mutant_parents (distinct parents of the batch).

    The children of a replay batch are the teacher's curriculum state (like its buffer, and saved with
    it): they are the next proposal."""

    config_class = ACCELConfig

    def __init__(self, family: LevelFamily, config: ACCELConfig | None = None, **kwargs: Any):
        super().__init__(family, config, **kwargs)
        #: children of the last replay batch, to be proposed next
        self._children: list[Any] = []

    def _fresh_level(self) -> Any:
        if self.config.start_easy:
            return self.family.sample_easy(self.rng)
        return self.family.sample(self.rng)

    def propose(self, n: int) -> Proposal:
        """The children of the last replay batch if any (topped up with fresh levels, cut to n), else as PLR."""
        if not self._children:
            return super().propose(n)
        children, self._children = self._children[:n], []
        children += [self._fresh_level() for _ in range(n - len(children))]
        self.buffer.advance(n)
        return self._proposal("mutant", children)

    def select_parents(self, scores: np.ndarray, n: int) -> list[int]:
        """Batch indices of the parents of n children: the best `parent_share` of the batch by score
        (sorted over the whole batch, best first), repeated round-robin up to n."""
        order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
        k = max(1, math.ceil(self.config.parent_share * len(order)))
        best = order[:k]
        return [int(best[i % k]) for i in range(n)]

    def update(self, proposal: Proposal, results: dict[str, LevelResults]) -> TeacherReport:
        """PLR's update; after a replay batch, mutate its best levels into the next proposal."""
        kind = proposal.context.kind
        metrics, scores = self._store(proposal, results["protagonist"])
        metrics["mutant_admitted"] = metrics["fresh_admitted"] if kind == "mutant" else math.nan
        metrics["mutant_parents"] = math.nan
        levels = proposal.levels
        if kind == "replay" and levels:
            parents = self.select_parents(scores, len(levels))
            self._children = [self.family.mutate(levels[i], self.rng, self.config.num_edits) for i in parents]
            metrics["mutant_parents"] = float(len(set(parents)))
        return TeacherReport(metrics, self._pictures())

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state["children"] = [self.family.encode(c).tolist() for c in self._children]
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self._children = [
            self.family.decode(np.asarray(t, dtype=np.int64)) for t in state.get("children", [])
        ]
