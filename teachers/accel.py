"""ACCEL (Parker-Holder, Jiang et al. 2022, "Evolving Curricula with Regret-Based Environment Design").

Robust PLR whose buffer also grows by editing, as dcd runs it: after every replay batch, parents are
picked from that batch, mutated (`family.mutate`, `num_edits` random edits each), and the children are a
follow-up proposal that the students play at once, without gradient steps and outside the step budget
(dcd's extra edit rollout); the children are then scored and enter the buffer like fresh levels. Fresh
levels come from `family.sample_easy` (maze: no walls) when `start_easy`, so the curriculum grows from easy
levels.

Parents (`parents`): "dcd" - the `num_parents` replayed levels with the lowest mean return minus value
loss (dcd's `base_levels easy`: it sorts ascending and keeps the first 4, although a comment there says
"top"), each copied num_envs / num_parents times; "best_score" - ued's option, the `parent_share` best of
the batch by replay score, round-robin.

Defaults (dcd's `mg_60b_uni_accel_empty`): replay_prob 0.8, 5 edits, easy (empty) base levels, positive
value loss, rank prioritisation with temperature 0.3, buffer 4000, rho 0.5, no gradient updates on new
levels. The remaining fields follow `PLRConfig`.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ued.config import ACCELConfig
from ued.levels import LevelResults
from ued.teachers.base import Proposal, TeacherReport
from ued.teachers.plr import PLR


class ACCEL(PLR):
    """ACCEL over any level family (see the module docstring). Metrics: PLR's, plus mutant_parents
    (distinct parents of the batch); the children's own update is logged as followup/..."""

    config_class = ACCELConfig

    def _fresh_level(self) -> Any:
        if self.config.start_easy:
            return self.family.sample_easy(self.rng)
        return self.family.sample(self.rng)

    def select_parents(self, results: LevelResults, scores: np.ndarray, n: int) -> list[int]:
        """Batch indices of the parents of n children (see the module docstring for the two rules)."""
        c = self.config
        if c.parents == "dcd":
            l1 = results.value_l1 if results.value_l1 is not None else np.zeros(len(results.mean_return))
            value_loss = np.clip(np.asarray(l1, dtype=np.float64), -1.0, 1.0)
            easiness = np.asarray(results.mean_return, dtype=np.float64) - value_loss
            order = np.argsort(easiness, kind="stable")
            k = min(c.num_parents, len(order))
            chosen = order[:k]
            copies = n // k
            return [int(chosen[i // copies]) if i // copies < k else int(chosen[i % k]) for i in range(n)]
        order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
        k = max(1, math.ceil(c.parent_share * len(order)))
        return [int(order[i % k]) for i in range(n)]

    def update(self, proposal: Proposal, results: dict[str, LevelResults]) -> TeacherReport:
        """PLR's update; after a replay batch, its mutated parents are the follow-up proposal."""
        kind = proposal.context.kind
        metrics, scores = self._store(proposal, results["protagonist"])
        followup = None
        if kind == "replay" and proposal.levels:
            levels = proposal.levels
            parents = self.select_parents(results["protagonist"], scores, len(levels))
            children = [self.family.mutate(levels[i], self.rng, self.config.num_edits) for i in parents]
            metrics["mutant_parents"] = float(len(set(parents)))
            followup = self._proposal("mutant", children)
        return TeacherReport(metrics, self._pictures(), followup)
