"""Prioritized Level Replay as a teacher: Robust PLR (PLR-perp) by default, plain PLR with `robust=False`.

Each rollout the teacher either replays a batch of levels drawn from its `LevelBuffer` (probability
`replay_prob`, once the buffer is at least `min_fill` full) or proposes fresh levels from `family.sample`.
After the rollout every level is scored from the protagonist's `LevelResults` (positive value loss or
MaxMC, over the last episode completed on it) and stored or updated in the buffer; a fresh level enters a
full buffer by replacing the level with the lowest replay probability if it scores at least as high.
(dcd also gives an env a new replay level at each episode end inside a replay rollout; here each env keeps
its level for the rollout, as jaxued does.) In robust mode (Jiang et al. 2021, "Replay-Guided Adversarial Environment Design") the students take
gradient steps only on replayed levels: `train_students` is False after a fresh proposal.

Defaults: `ued.config.PLRConfig` (dcd's published maze runs); a family declares its own published values
in `LevelFamily.teacher_defaults` (CarRacing: buffer 8000, power prioritisation, temperature 1.0, staleness
coefficient 0.7, from dcd's `cr_robust_plr`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ued.config import PLRConfig
from ued.level_buffer import LevelBuffer
from ued.levels import LevelFamily, LevelResults
from ued.scores import REPLAY_SCORES
from ued.teachers.base import Proposal, Teacher, TeacherReport


@dataclass(frozen=True)
class ReplayContext:
    """How a PLR proposal was made: `kind` is "fresh", "replay" or "mutant" (ACCEL's children)."""

    kind: str


class PLR(Teacher):
    """Robust Prioritized Level Replay over any level family (see the module docstring).

    Metrics of `update`: buffer_size, buffer_score_mean/max, buffer_staleness_mean, batch_score_mean,
    replayed (1 for a replay batch), replay_share (share of replay batches so far), fresh_admitted (share of
    the new levels of this batch that entered the buffer; nan on replay batches). Pictures: top_buffer, the
    8 highest-scoring buffer levels.
    """

    config_class = PLRConfig

    def __init__(self, family: LevelFamily, config: PLRConfig | None = None, **kwargs: Any):
        super().__init__(family, config, **kwargs)
        c: PLRConfig = self.config
        self.buffer = LevelBuffer(
            c.buffer_size,
            int(family.max_tokens),
            prioritization=c.prioritization,
            temperature=c.temperature,
            staleness_coef=c.staleness_coef,
            staleness_temperature=c.staleness_temperature,
            decode=family.decode,
        )
        self._num_batches = 0
        self._num_replays = 0

    # ----- proposing ----------------------------------------------------------------------------
    @property
    def can_replay(self) -> bool:
        """Whether the buffer is full enough to replay from (at least min_fill of its capacity, and 1)."""
        needed = max(1, math.ceil(self.config.min_fill * self.buffer.capacity))
        return len(self.buffer) >= needed

    def _fresh_level(self) -> Any:
        return self.family.sample(self.rng)

    def propose(self, n: int) -> Proposal:
        """A replay batch or n fresh levels. Replay once the buffer is min_fill full, with probability
        min(fill, replay_prob) where fill = stored / buffer_size (dcd's "proportionate" schedule)."""
        fill = len(self.buffer) / self.buffer.capacity
        if self.can_replay and self.rng.random() < min(fill, self.config.replay_prob):
            slots = self.buffer.sample(self.rng, n)
            return self._proposal("replay", [self.buffer.level(int(i)) for i in slots])
        return self._proposal("fresh", [self._fresh_level() for _ in range(n)])

    def _proposal(self, kind: str, levels: list[Any]) -> Proposal:
        self._num_batches += 1
        self._num_replays += int(kind == "replay")
        train = kind == "replay" or not self.config.robust
        return Proposal(levels, train_students=train, context=ReplayContext(kind))

    # ----- learning -----------------------------------------------------------------------------
    def score_levels(self, levels: list[Any], results: LevelResults) -> tuple[np.ndarray, list[bytes]]:
        """(score per level [L], key per level) from the protagonist's results; MaxMC uses the best return
        the buffer has seen on each level, as well as this rollout's."""
        keys = [self.family.tokens_key(level) for level in levels]
        if self.config.score == "maxmc":
            before = np.full(len(levels), -np.inf)
            for i, key in enumerate(keys):
                slot = self.buffer.find(key)
                if slot is not None:
                    before[i] = self.buffer.max_returns[slot]
            scores = REPLAY_SCORES["maxmc"](results, before)
        else:
            scores = REPLAY_SCORES["pvl"](results)
        if scores.shape[0] != len(levels):
            raise ValueError(f"got results for {scores.shape[0]} levels, expected {len(levels)}")
        return scores, keys

    def update(self, proposal: Proposal, results: dict[str, LevelResults]) -> TeacherReport:
        """Score the levels just played and store or update them in the buffer."""
        metrics, _ = self._store(proposal, results["protagonist"])
        return TeacherReport(metrics, self._pictures())

    def _store(self, proposal: Proposal, protagonist: LevelResults) -> tuple[dict[str, float], np.ndarray]:
        """Score `proposal.levels` from the protagonist's results and store them; returns the metrics and
        the per-level scores [L]."""
        levels = proposal.levels
        scores, keys = self.score_levels(levels, protagonist)
        max_returns = np.asarray(protagonist.max_return, dtype=np.float64).reshape(-1)
        # a level played on several envs: one entry, mean score, best return
        groups: dict[bytes, list[int]] = {}
        for i, key in enumerate(keys):
            groups.setdefault(key, []).append(i)
        new, admitted = 0, 0
        for key, idx in groups.items():
            score = float(np.mean(scores[idx]))
            best = float(np.max(max_returns[idx]))
            slot = self.buffer.find(key)
            if slot is not None:
                self.buffer.update(slot, score, best)
                continue
            new += 1
            tokens = self.family.encode(levels[idx[0]])
            admitted += (
                self.buffer.insert(tokens, score, key=key, level=levels[idx[0]], max_return=best) is not None
            )
        stats = self.buffer.stats()
        return {
            "buffer_size": stats["size"],
            "buffer_score_mean": stats["score_mean"],
            "buffer_score_max": stats["score_max"],
            "buffer_staleness_mean": stats["staleness_mean"],
            "batch_score_mean": float(scores.mean()) if scores.size else math.nan,
            "replayed": float(proposal.context.kind == "replay"),
            "replay_share": self._num_replays / max(1, self._num_batches),
            "fresh_admitted": admitted / new if new else math.nan,
        }, scores

    def _pictures(self) -> dict[str, list[Any]]:
        top = self.top_levels(8)
        return {"top_buffer": top} if top else {}

    def top_levels(self, k: int) -> list[Any]:
        """The k highest-scoring levels in the buffer, best first (fewer when the buffer holds fewer)."""
        return [self.buffer.level(int(slot)) for slot in self.buffer.top(k)]

    # ----- checkpoints --------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state.update(
            buffer=self.buffer.state_dict(), num_batches=self._num_batches, num_replays=self._num_replays
        )
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        family = self.family
        self.buffer.load_state_dict(state["buffer"], key_fn=lambda t: family.tokens_key(family.decode(t)))
        self._num_batches = int(state["num_batches"])
        self._num_replays = int(state["num_replays"])
