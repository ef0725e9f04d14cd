"""Level families: the one interface between teachers and environments.

A level is a small frozen dataclass. A family turns levels into short token sequences (so every teacher
works with every family), samples random ones, repairs broken ones, and builds gymnasium envs and pictures.
Families register by the `@register_family` decorator or by the setup.cfg entry-point group
`ued.environments` (a third-party package: `myfam = mypkg.module:MyFamily`).
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any, ClassVar, Sequence

import gymnasium as gym
import numpy as np

from ued.errors import UsageError

ENTRY_POINT_GROUP = "ued.environments"


class LevelFamily(abc.ABC):
    """A family of levels (mazes, tracks, ...) and everything teachers and students need from it.

    Subclasses set `name`, `vocab_size` and `max_tokens` and implement the abstract methods. All methods are
    deterministic given their inputs (randomness only through the `rng` argument) and always terminate.
    """

    name: ClassVar[str]
    #: number of distinct token values; tokens are ints in [0, vocab_size)
    vocab_size: int
    #: length of every encoded level (shorter levels are padded by the family's own convention)
    max_tokens: int

    # ----- tokens -------------------------------------------------------------------------------
    @abc.abstractmethod
    def encode(self, level: Any) -> np.ndarray:
        """Level -> int64 array of shape (max_tokens,)."""

    @abc.abstractmethod
    def decode(self, tokens: Sequence[int] | np.ndarray) -> Any:
        """Token sequence (length <= max_tokens, any ints in range) -> a level. Never raises on in-range tokens;
        the result may be invalid: call `repair` to get a playable level."""

    # ----- generation ---------------------------------------------------------------------------
    @abc.abstractmethod
    def sample(self, rng: np.random.Generator) -> Any:
        """A random valid level (domain randomization)."""

    @abc.abstractmethod
    def is_valid(self, level: Any) -> bool:
        """Whether the level is playable (maze: goal reachable; track: a closed track can be built)."""

    @abc.abstractmethod
    def repair(self, level: Any) -> Any:
        """A playable level close to `level`; deterministic and always terminating."""

    # ----- the PAIRED adversary's editor --------------------------------------------------------
    @abc.abstractmethod
    def editor_view(self, tokens: Sequence[int]) -> np.ndarray:
        """Image of a partly written level (the first len(tokens) tokens): float32 array (C, H, W)."""

    @property
    @abc.abstractmethod
    def editor_view_shape(self) -> tuple[int, int, int]:
        """Shape (C, H, W) of `editor_view`."""

    # ----- students -----------------------------------------------------------------------------
    @abc.abstractmethod
    def make_env(self, level: Any | None = None) -> gym.Env:
        """A gymnasium env playing `level` (or a sampled one); `reset(options={"level": lvl})` switches level
        and assigning `env.unwrapped.level = lvl` makes every later reset use it."""

    def make_vector_env(self, num_envs: int, *, seed: int = 0, device: str = "cpu") -> "Any":
        """The student's batched env (a `ued.vecenv.LevelVectorEnv`); default: gymnasium vector env of
        `make_env`. Families with a batched tensor backend override this."""
        from ued.vecenv import GymLevelVectorEnv

        return GymLevelVectorEnv(self, num_envs, seed=seed, device=device)

    @abc.abstractmethod
    def make_student(self, device: str = "cpu") -> Any:
        """The student policy network for this family (a `ued.models.Policy`)."""

    def default_ppo(self) -> Any:
        """Published student PPO defaults for this family (a `ued.config.PPOConfig`)."""
        from ued.config import PPOConfig

        return PPOConfig()

    # ----- pictures and statistics --------------------------------------------------------------
    @abc.abstractmethod
    def render(self, level: Any) -> np.ndarray:
        """An RGB picture of the level: uint8 array (H, W, 3)."""

    def level_stats(self, level: Any) -> dict[str, float]:
        """Numbers worth logging about a level (maze: walls, shortest path length)."""
        return {}

    def to_text(self, level: Any) -> str:
        """A human-readable text form of the level."""
        return repr(level)

    def from_text(self, text: str) -> Any:
        """Inverse of `to_text`."""
        raise NotImplementedError(f"family {self.name!r} has no text form")

    def tokens_key(self, level: Any) -> bytes:
        """A hashable identity of a level (used to keep levels once in replay buffers)."""
        return self.encode(level).astype(np.int64).tobytes()


# ----- registry ---------------------------------------------------------------------------------
FAMILIES: dict[str, type[LevelFamily]] = {}


def register_family(cls: type[LevelFamily]) -> type[LevelFamily]:
    """Class decorator: make a family available by its `name` (`ued train --env NAME`)."""
    FAMILIES[cls.name] = cls
    return cls


def _load_entry_points() -> None:
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name not in FAMILIES:
            try:
                cls = ep.load()
            except Exception as exc:  # a broken plugin must not break the tool
                raise UsageError(f"cannot load environment plugin {ep.name!r} ({ep.value}): {exc}") from exc
            FAMILIES.setdefault(ep.name, cls)


def family_names() -> list[str]:
    import ued.environments  # noqa: F401  (registers the built-in families)

    _load_entry_points()
    return sorted(FAMILIES)


def make_family(name: str, **options: Any) -> LevelFamily:
    """The family registered as `name`, built with `options` (e.g. `max_walls=25`)."""
    names = family_names()
    if name not in FAMILIES:
        raise UsageError(f"unknown environment {name!r}; choose one of: {', '.join(names)}")
    return FAMILIES[name](**options)


@dataclass(frozen=True)
class LevelResults:
    """What one student did on each of a batch of levels during one rollout.

    `episode_returns[i]` holds the returns of the episodes finished on level i (if none finished, the partial
    return of the running episode). Arrays have one entry per level.
    """

    episode_returns: list[np.ndarray]
    mean_return: np.ndarray
    max_return: np.ndarray
    solved_rate: np.ndarray
    #: mean over the level's steps of max(GAE advantage, 0): PLR's positive value loss
    positive_value_loss: np.ndarray
    #: mean value prediction over the level's steps (MaxMC = best return ever seen - this)
    mean_value: np.ndarray
