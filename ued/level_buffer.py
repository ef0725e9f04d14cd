"""The replay buffer of Prioritized Level Replay (PLR, Robust PLR / PLR-perp, ACCEL).

A `LevelBuffer` holds up to `capacity` levels as token arrays (`family.encode`), one score per level, the
time each level was last sampled (its staleness) and the best return ever seen on it (for MaxMC). Levels
are sampled from the replay distribution of Jiang et al. (2021), "Prioritized Level Replay":

    P_replay(i) = (1 - c) * P_S(i) + c * P_C(i)

where P_S prioritises high scores (rank or power transform with a temperature) and P_C prioritises levels
not sampled for a long time (staleness), mixed by the staleness coefficient c. The prioritisation math is
in small pure functions (`rank_weights`, `power_weights`, `staleness_weights`, `replay_distribution`).

Insertion follows dcd's finite buffer (`level_sampler.py`, `replay_support` priority): a new level takes
a free slot, or, once the buffer is full, replaces the level with the lowest replay probability (scores
and staleness together) if its own score is at least that level's. A level already present (same key, by
default its token bytes; teachers pass `family.tokens_key(level)`) is updated in place, never stored
twice. Only replay draws age the buffer (staleness counts draws from it, as dcd's).

The buffer's `state_dict` holds only tensors, numbers and strings (tokens as an int64 tensor), so it loads
with `torch.load(weights_only=True)`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from ued.errors import UsageError

#: score transforms for P_S
PRIORITIZATIONS = ("rank", "power")


def _check_temperature(temperature: float, what: str = "temperature") -> float:
    temperature = float(temperature)
    if not temperature > 0.0 or not math.isfinite(temperature):
        raise UsageError(f"{what} must be a positive number, got {temperature}; e.g. 0.3")
    return temperature


def _normalise(weights: np.ndarray) -> np.ndarray:
    """weights / sum, or uniform when every weight is zero (an empty array stays empty)."""
    total = float(weights.sum())
    if weights.size == 0:
        return weights
    if total <= 0.0 or not math.isfinite(total):
        return np.full(weights.shape, 1.0 / weights.size)
    return weights / total


def rank_weights(scores: np.ndarray, temperature: float) -> np.ndarray:
    """PLR's rank prioritisation: P_S(i) proportional to (1 / rank(S_i)) ** (1 / temperature).

    rank 1 is the highest score; as in dcd, tied scores get distinct ranks in sort order (here: a stable
    ascending sort reversed, so among equal scores the later slot ranks first).
    scores: [N] -> probabilities [N] summing to 1.
    """
    temperature = _check_temperature(temperature)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    if scores.size == 0:
        return np.zeros(0)
    order = np.argsort(scores, kind="stable")[::-1]
    ranks = np.empty(scores.size, dtype=np.float64)
    ranks[order] = np.arange(1, scores.size + 1)
    return _normalise(ranks ** (-1.0 / temperature))


def power_weights(scores: np.ndarray, temperature: float, eps: float = 0.0) -> np.ndarray:
    """PLR's power prioritisation: P_S(i) proportional to (max(S_i, 0) + eps) ** (1 / temperature); uniform
    when every weight is 0. scores: [N] -> probabilities [N] summing to 1."""
    temperature = _check_temperature(temperature)
    scores = np.clip(np.asarray(scores, dtype=np.float64).reshape(-1), 0.0, None) + float(eps)
    if scores.size == 0:
        return np.zeros(0)
    top = scores.max()
    if top <= 0.0:
        return _normalise(np.zeros_like(scores))
    # dividing by the maximum first keeps large scores and small temperatures from overflowing
    return _normalise((scores / top) ** (1.0 / temperature))


def staleness_weights(staleness: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """PLR's staleness prioritisation P_C: proportional to staleness ** (1 / temperature), where a level's
    staleness is the number of level draws since it was last sampled; uniform when all are 0.
    staleness: [N] -> probabilities [N] summing to 1."""
    return power_weights(np.asarray(staleness, dtype=np.float64), temperature)


def replay_distribution(
    scores: np.ndarray,
    staleness: np.ndarray,
    *,
    prioritization: str = "rank",
    temperature: float = 0.3,
    staleness_coef: float = 0.3,
    staleness_temperature: float = 1.0,
) -> np.ndarray:
    """The replay distribution P = (1 - staleness_coef) * P_S + staleness_coef * P_C over N levels.

    P_S is `rank_weights` or `power_weights` of `scores` (by `prioritization`), P_C is `staleness_weights`
    of `staleness`. scores, staleness: [N] -> probabilities [N] summing to 1.
    """
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    staleness = np.asarray(staleness, dtype=np.float64).reshape(-1)
    if scores.shape != staleness.shape:
        raise ValueError(f"scores {scores.shape} and staleness {staleness.shape} differ in shape")
    if prioritization == "rank":
        p_score = rank_weights(scores, temperature)
    elif prioritization == "power":
        # dcd adds 1e-3 to the scores when there is no staleness term to keep zero scores replayable
        p_score = power_weights(scores, temperature, eps=0.0 if staleness_coef > 0 else 1e-3)
    else:
        raise UsageError(
            f"unknown prioritization {prioritization!r}; choose one of: {', '.join(PRIORITIZATIONS)}"
        )
    c = float(staleness_coef)
    if not 0.0 <= c <= 1.0:
        raise UsageError(f"staleness_coef must be in [0, 1], got {staleness_coef}; e.g. 0.3")
    if c == 0.0:
        return p_score
    return (1.0 - c) * p_score + c * staleness_weights(staleness, staleness_temperature)


class LevelBuffer:
    """A finite buffer of levels with PLR scores, staleness and best returns; see the module docstring.

    Slots 0..size-1 are filled. `clock` counts replay draws; a level's staleness is `clock - last_sampled`
    (dcd: fresh levels do not age the buffer).

    `decode` (tokens -> level) lets `level(slot)` rebuild level objects, e.g. after `load_state_dict`;
    levels given to `insert` are cached as they are.
    """

    def __init__(
        self,
        capacity: int,
        num_tokens: int,
        *,
        prioritization: str = "rank",
        temperature: float = 0.3,
        staleness_coef: float = 0.3,
        staleness_temperature: float = 1.0,
        decode: Callable[[np.ndarray], Any] | None = None,
    ):
        if int(capacity) < 1:
            raise UsageError(f"the level buffer needs a capacity of at least 1, got {capacity}; e.g. 4000")
        if prioritization not in PRIORITIZATIONS:
            raise UsageError(
                f"unknown prioritization {prioritization!r}; choose one of: {', '.join(PRIORITIZATIONS)}"
            )
        _check_temperature(temperature)
        _check_temperature(staleness_temperature, "staleness_temperature")
        if not 0.0 <= float(staleness_coef) <= 1.0:
            raise UsageError(f"staleness_coef must be in [0, 1], got {staleness_coef}; e.g. 0.3")
        self.capacity = int(capacity)
        self.num_tokens = int(num_tokens)
        self.prioritization = prioritization
        self.temperature = float(temperature)
        self.staleness_coef = float(staleness_coef)
        self.staleness_temperature = float(staleness_temperature)
        self.decode = decode
        self.tokens = np.zeros((self.capacity, self.num_tokens), dtype=np.int64)
        self.scores = np.zeros(self.capacity, dtype=np.float64)
        self.last_sampled = np.zeros(self.capacity, dtype=np.int64)
        #: best episode return ever seen on each level (-inf: none yet)
        self.max_returns = np.full(self.capacity, -np.inf, dtype=np.float64)
        self.size = 0
        self.clock = 0
        self._keys: list[bytes | None] = [None] * self.capacity
        self._levels: list[Any] = [None] * self.capacity
        self._index: dict[bytes, int] = {}

    # ----- queries ------------------------------------------------------------------------------
    def __len__(self) -> int:
        return self.size

    @property
    def full(self) -> bool:
        return self.size >= self.capacity

    def find(self, key: bytes) -> int | None:
        """The slot holding the level with this key, or None."""
        return self._index.get(key)

    def __contains__(self, key: bytes) -> bool:
        return key in self._index

    def staleness(self) -> np.ndarray:
        """int64 [size]: level draws since each stored level was last sampled."""
        return self.clock - self.last_sampled[: self.size]

    def replay_distribution(self) -> np.ndarray:
        """float64 [size]: the probability of replaying each stored level."""
        return replay_distribution(
            self.scores[: self.size],
            self.staleness(),
            prioritization=self.prioritization,
            temperature=self.temperature,
            staleness_coef=self.staleness_coef,
            staleness_temperature=self.staleness_temperature,
        )

    def level(self, slot: int) -> Any:
        """The level in `slot` (cached object, or `decode(tokens)`)."""
        if not 0 <= slot < self.size:
            raise IndexError(f"slot {slot} is not filled (size {self.size})")
        if self._levels[slot] is None:
            if self.decode is None:
                raise RuntimeError("this buffer has no decode function to rebuild levels from tokens")
            self._levels[slot] = self.decode(self.tokens[slot].copy())
        return self._levels[slot]

    def top(self, k: int) -> np.ndarray:
        """Slots of the k highest-scoring levels, best first (ties: lower slot first)."""
        order = np.argsort(-self.scores[: self.size], kind="stable")
        return order[: max(0, int(k))]

    def stats(self) -> dict[str, float]:
        """Buffer size, score mean/max/min and mean staleness (nan for scores of an empty buffer)."""
        if self.size == 0:
            return {
                "size": 0.0,
                "score_mean": math.nan,
                "score_max": math.nan,
                "score_min": math.nan,
                "staleness_mean": math.nan,
            }
        s = self.scores[: self.size]
        return {
            "size": float(self.size),
            "score_mean": float(s.mean()),
            "score_max": float(s.max()),
            "score_min": float(s.min()),
            "staleness_mean": float(self.staleness().mean()),
        }

    # ----- changes ------------------------------------------------------------------------------
    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """n slots drawn with replacement from the replay distribution; marks them sampled now."""
        if self.size == 0:
            raise RuntimeError("cannot replay from an empty level buffer")
        p = self.replay_distribution()
        slots = rng.choice(self.size, size=int(n), replace=True, p=p)
        self.clock += int(n)
        self.last_sampled[slots] = self.clock
        return slots

    def update(self, slot: int, score: float, max_return: float | None = None) -> None:
        """Set the score of a stored level (the newest estimate replaces the old one, as in PLR) and
        raise its best return to `max_return` if higher."""
        if not 0 <= slot < self.size:
            raise IndexError(f"slot {slot} is not filled (size {self.size})")
        self.scores[slot] = float(score)
        if max_return is not None and not math.isnan(max_return):
            self.max_returns[slot] = max(self.max_returns[slot], float(max_return))

    def insert(
        self,
        tokens: np.ndarray,
        score: float,
        *,
        key: bytes | None = None,
        level: Any = None,
        max_return: float | None = None,
    ) -> int | None:
        """Add a level; returns its slot, or None when the buffer is full and `score` is below the score of
        the level with the lowest replay probability (which it would replace). A level already stored (same
        key) is updated instead.

        tokens: int array [num_tokens]; key: identity for duplicates (default: the token bytes); level:
        the level object to cache (else `decode` rebuilds it on demand). A new level counts as sampled now.
        """
        tokens = np.asarray(tokens, dtype=np.int64).reshape(-1)
        if tokens.shape[0] != self.num_tokens:
            raise ValueError(f"expected {self.num_tokens} tokens, got {tokens.shape[0]}")
        if key is None:
            key = tokens.tobytes()
        slot = self._index.get(key)
        if slot is not None:
            self.update(slot, score, max_return)
            if level is not None and self._levels[slot] is None:
                self._levels[slot] = level
            return slot
        if self.size < self.capacity:
            slot = self.size
            self.size += 1
        else:
            slot = int(np.argmin(self.replay_distribution()))
            if float(score) < self.scores[slot]:
                return None
            del self._index[self._keys[slot]]
        self.tokens[slot] = tokens
        self.scores[slot] = float(score)
        self.last_sampled[slot] = self.clock
        self.max_returns[slot] = -np.inf
        if max_return is not None and not math.isnan(max_return):
            self.max_returns[slot] = float(max_return)
        self._keys[slot] = key
        self._levels[slot] = level
        self._index[key] = slot
        return slot

    # ----- checkpoints --------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Tensors and numbers only: tokens int64 [size, num_tokens], scores, last_sampled, max_returns."""
        n = self.size
        return {
            "capacity": self.capacity,
            "num_tokens": self.num_tokens,
            "clock": self.clock,
            "tokens": torch.from_numpy(self.tokens[:n].copy()),
            "scores": torch.from_numpy(self.scores[:n].copy()),
            "last_sampled": torch.from_numpy(self.last_sampled[:n].copy()),
            "max_returns": torch.from_numpy(self.max_returns[:n].copy()),
        }

    def load_state_dict(
        self, state: dict[str, Any], key_fn: Callable[[np.ndarray], bytes] | None = None
    ) -> None:
        """Restore from `state_dict`; `key_fn(tokens)` recomputes duplicate keys (default: token bytes) and
        must match the keys used by `insert`."""
        tokens = np.asarray(state["tokens"], dtype=np.int64).reshape(-1, int(state["num_tokens"]))
        n = tokens.shape[0]
        if int(state["num_tokens"]) != self.num_tokens:
            raise UsageError(
                f"the saved level buffer has {state['num_tokens']} tokens per level, this one {self.num_tokens}; "
                "use the same environment options as the saved run"
            )
        if n > self.capacity:
            raise UsageError(
                f"the saved level buffer holds {n} levels, more than this buffer's capacity {self.capacity}; "
                "use the same buffer_size as the saved run"
            )
        self.__init__(  # type: ignore[misc]
            self.capacity,
            self.num_tokens,
            prioritization=self.prioritization,
            temperature=self.temperature,
            staleness_coef=self.staleness_coef,
            staleness_temperature=self.staleness_temperature,
            decode=self.decode,
        )
        self.tokens[:n] = tokens
        self.scores[:n] = np.asarray(state["scores"], dtype=np.float64)
        self.last_sampled[:n] = np.asarray(state["last_sampled"], dtype=np.int64)
        self.max_returns[:n] = np.asarray(state["max_returns"], dtype=np.float64)
        self.size = n
        self.clock = int(state["clock"])
        for slot in range(n):
            key = key_fn(tokens[slot].copy()) if key_fn is not None else tokens[slot].tobytes()
            self._keys[slot] = key
            self._index[key] = slot
