"""Prioritized Level Replay as a teacher: Robust PLR (PLR-perp) by default, plain PLR with `robust=False`.

Each rollout the teacher either replays a batch of levels drawn from its `LevelBuffer` (probability
`replay_prob`, once the buffer is at least `min_fill` full) or proposes fresh levels from `family.sample`.
After the rollout every level is scored from the protagonist's `LevelResults` (positive value loss or
MaxMC) and stored or updated in the buffer; a fresh level enters a full buffer only by beating its lowest
score. In robust mode (Jiang et al. 2021, "Replay-Guided Adversarial Environment Design") the students take
gradient steps only on replayed levels: `train_students` is False after a fresh proposal.

Defaults (dcd's published runs):
- maze: replay_prob 0.5, buffer 4000, min_fill (rho) 0.5, positive value loss, rank prioritisation,
  temperature 0.3, staleness coefficient 0.3 (`mg_60b_uni_robust_plr`).
- carracing: replay_prob 0.5, buffer 8000, rho 0.5, positive value loss, power prioritisation, temperature
  1.0, staleness coefficient 0.7 (`cr_robust_plr`).
Fields left at None take the family's default from `FAMILY_DEFAULTS` (a plugin family may define a
`replay_defaults` dict attribute with the same keys); unknown families get the maze values.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ued.errors import UsageError
from ued.level_buffer import PRIORITIZATIONS, LevelBuffer
from ued.levels import LevelFamily, LevelResults
from ued.scores import REPLAY_SCORES
from ued.teachers.base import Teacher

#: published per-family defaults of the fields a `PLRConfig` leaves at None
FAMILY_DEFAULTS: dict[str, dict[str, Any]] = {
    "maze": {"buffer_size": 4000, "prioritization": "rank", "temperature": 0.3, "staleness_coef": 0.3},
    "carracing": {"buffer_size": 8000, "prioritization": "power", "temperature": 1.0, "staleness_coef": 0.7},
}


@dataclass
class PLRConfig:
    """Robust PLR teacher settings; None takes the family's published default (see `FAMILY_DEFAULTS`)."""

    replay_prob: float = 0.5
    """probability of replaying a batch from the buffer (once it is min_fill full) instead of fresh levels"""
    score: str = "pvl"
    """level score: "pvl" (positive value loss, dcd's Robust PLR) or "maxmc" (best return - value)"""
    prioritization: str | None = None
    """score transform of the replay distribution: "rank" or "power" (None: maze rank, carracing power)"""
    temperature: float | None = None
    """temperature of the score transform (None: maze 0.3, carracing 1.0)"""
    staleness_coef: float | None = None
    """weight of staleness in the replay distribution, in [0, 1] (None: maze 0.3, carracing 0.7)"""
    staleness_temperature: float = 1.0
    """temperature of the staleness transform"""
    buffer_size: int | None = None
    """most levels the buffer holds (None: maze 4000, carracing 8000)"""
    min_fill: float = 0.5
    """replay only once the buffer holds at least this share of buffer_size levels (PLR's rho)"""
    robust: bool = True
    """Robust PLR: students take no gradient step on fresh levels (False: plain PLR)"""


#: the type of each setting (options given as text, e.g. `--teacher-option buffer_size=100`, are converted)
_KINDS: dict[str, type] = {
    "replay_prob": float,
    "score": str,
    "prioritization": str,
    "temperature": float,
    "staleness_coef": float,
    "staleness_temperature": float,
    "buffer_size": int,
    "min_fill": float,
    "robust": bool,
}
_TRUE, _FALSE = ("true", "yes", "1", "on"), ("false", "no", "0", "off")


def coerce_option(key: str, value: Any, kind: type) -> Any:
    """`value` as `kind` (text such as "0.3", "4000" or "false" included); UsageError when it is not one."""
    if kind is bool:
        if isinstance(value, str) and value.strip().lower() in _TRUE + _FALSE:
            return value.strip().lower() in _TRUE
        if isinstance(value, (bool, int, np.integer)) and value in (0, 1):
            return bool(value)
        raise UsageError(f"{key} must be true or false, got {value!r}")
    try:
        if kind is int:
            as_float = float(value)
            if not as_float.is_integer():
                raise ValueError
            return int(as_float)
        return kind(value)
    except (TypeError, ValueError):
        raise UsageError(f"{key} must be a {kind.__name__}, got {value!r}") from None


def resolve_config(config: PLRConfig, family: LevelFamily) -> dict[str, Any]:
    """The config's settings with None fields filled from the family's defaults, checked."""
    defaults = dict(FAMILY_DEFAULTS["maze"])
    defaults.update(FAMILY_DEFAULTS.get(getattr(family, "name", ""), {}))
    defaults.update(getattr(family, "replay_defaults", None) or {})
    values = {k: getattr(config, k) for k in config.__dataclass_fields__}
    for key, value in defaults.items():
        if values.get(key) is None:
            values[key] = value
    for key, kind in _KINDS.items():
        values[key] = coerce_option(key, values[key], kind)
    if values["score"] not in REPLAY_SCORES:
        raise UsageError(
            f"unknown replay score {values['score']!r}; choose one of: {', '.join(REPLAY_SCORES)}"
        )
    if values["prioritization"] not in PRIORITIZATIONS:
        raise UsageError(
            f"unknown prioritization {values['prioritization']!r}; choose one of: {', '.join(PRIORITIZATIONS)}"
        )
    for key in ("replay_prob", "min_fill"):
        if not 0.0 <= float(values[key]) <= 1.0:
            raise UsageError(f"{key} must be in [0, 1], got {values[key]}; e.g. 0.5")
    if int(values["buffer_size"]) < 1:
        raise UsageError(f"buffer_size must be at least 1, got {values['buffer_size']}; e.g. 4000")
    return values


class PLR(Teacher):
    """Robust Prioritized Level Replay over any level family (see the module docstring).

    `top_levels(k)` gives the k highest-scoring buffer levels (for pictures in the logs).
    Metrics of `update`: buffer_size, buffer_score_mean/max, buffer_staleness_mean, batch_score_mean,
    replayed (1 for a replay batch), replay_share (share of replay batches so far), fresh_admitted (share of
    the new levels of this batch that entered the buffer; nan on replay batches).
    """

    config_class = PLRConfig

    def __init__(
        self, family: LevelFamily, config: PLRConfig | None = None, *, seed: int = 0, device: str = "cpu"
    ):
        super().__init__(family, config, seed=seed, device=device)
        self.settings = resolve_config(self.config, family)
        s = self.settings
        self.buffer = LevelBuffer(
            int(s["buffer_size"]),
            int(family.max_tokens),
            prioritization=s["prioritization"],
            temperature=float(s["temperature"]),
            staleness_coef=float(s["staleness_coef"]),
            staleness_temperature=float(s["staleness_temperature"]),
            decode=family.decode,
        )
        #: what the latest proposal was: "fresh", "replay" or "mutant" (ACCEL's children); None before any
        self.last_kind: str | None = None
        self._last_slots: np.ndarray | None = None
        #: per-level scores [L] of the latest `update`'s batch
        self.last_scores = np.zeros(0)
        self._num_batches = 0
        self._num_replays = 0

    # ----- proposing ----------------------------------------------------------------------------
    @property
    def can_replay(self) -> bool:
        """Whether the buffer is full enough to replay from (at least min_fill of its capacity, and 1)."""
        needed = max(1, math.ceil(float(self.settings["min_fill"]) * self.buffer.capacity))
        return len(self.buffer) >= needed

    def _fresh_level(self) -> Any:
        return self.family.sample(self.rng)

    def propose(self, n: int) -> list[Any]:
        """A replay batch (probability replay_prob, once the buffer can replay) or n fresh levels."""
        if self.can_replay and self.rng.random() < float(self.settings["replay_prob"]):
            slots = self.buffer.sample(self.rng, n)
            self._set_kind("replay", slots)
            return [self.buffer.level(int(i)) for i in slots]
        levels = [self._fresh_level() for _ in range(n)]
        self.buffer.advance(n)
        self._set_kind("fresh", None)
        return levels

    def _set_kind(self, kind: str, slots: np.ndarray | None) -> None:
        self.last_kind = kind
        self._last_slots = slots
        self.train_students = kind == "replay" or not bool(self.settings["robust"])
        self._num_batches += 1
        self._num_replays += int(kind == "replay")

    # ----- learning -----------------------------------------------------------------------------
    def score_levels(self, levels: list[Any], results: LevelResults) -> tuple[np.ndarray, list[bytes]]:
        """(score per level [L], key per level) from the protagonist's results; MaxMC uses the best return
        the buffer has seen on each level, as well as this rollout's."""
        keys = [self.family.tokens_key(level) for level in levels]
        if self.settings["score"] == "maxmc":
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

    def update(self, levels: list[Any], results: dict[str, LevelResults]) -> dict[str, float]:
        """Score the levels just played and store or update them in the buffer."""
        protagonist = results["protagonist"]
        scores, keys = self.score_levels(levels, protagonist)
        self.last_scores = scores
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
            "replayed": float(self.last_kind == "replay"),
            "replay_share": self._num_replays / max(1, self._num_batches),
            "fresh_admitted": admitted / new if new else math.nan,
        }

    # ----- pictures -----------------------------------------------------------------------------
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
        self.last_kind, self._last_slots = None, None
        self.train_students = True
