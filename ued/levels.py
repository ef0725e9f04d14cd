"""Level families: the one interface between teachers and environments.

A level is a small frozen dataclass. A family turns levels into short token sequences (so every teacher
works with every family), samples random ones, repairs broken ones, and builds gymnasium envs and pictures.
A held-out suite entry is a fixed level or a `Procedural` one (a generator: a fresh layout per episode).
Families register by the `@register_family` decorator or by the setup.cfg entry-point group
`ued.environments` (a third-party package: `myfam = mypkg.module:MyFamily`).
"""

from __future__ import annotations

import abc
import inspect
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np

from ued.config import PPOConfig
from ued.errors import UsageError
from ued.vecenv import GymLevelVectorEnv

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
    #: how many sub-envs zero-shot evaluation plays at once (`ued.evaluation.evaluate`): large for batched
    #: tensor backends, about a few per CPU core for families whose vector env runs one process per env
    eval_batch_size: int = 512
    #: episodes per held-out level `ued eval` plays by default (dcd's eval.py: 100)
    eval_episodes: ClassVar[int] = 100
    #: env steps between the periodic held-out evaluations of a training run by default (None: off)
    periodic_eval_steps: ClassVar[int | None] = 1_000_000
    #: file-name patterns `load_levels` reads from a folder
    level_file_patterns: tuple[str, ...] = ("*.txt",)
    #: name of the student network trained on this family (`ued.models.STUDENTS`; `--student` overrides)
    default_student: ClassVar[str | None] = None
    #: held-out suite this family's runs are judged on by default (`ued eval RUN`); None: none registered
    default_suite: ClassVar[str | None] = None
    #: published teacher settings for this family, by teacher name, merged over the teacher config's own
    #: defaults (which are the maze values) and under the user's options, e.g. {"plr": {"buffer_size": 8000}}
    teacher_defaults: ClassVar[dict[str, dict[str, Any]]] = {}

    @property
    def options(self) -> dict[str, Any]:
        """The constructor options this family was built with (recorded with runs and VAE files, so that a
        file made for other options is refused); {} for a family without options."""
        return {}

    # ----- tokens -------------------------------------------------------------------------------
    @abc.abstractmethod
    def encode(self, level: Any) -> np.ndarray:
        """Level -> int64 array of shape (max_tokens,)."""

    @abc.abstractmethod
    def decode(self, tokens: Sequence[int] | np.ndarray) -> Any:
        """Token sequence (length <= max_tokens, any ints in range) -> a level. Never raises on in-range
        tokens; the result may be invalid: call `repair` to get a playable level."""

    # ----- generation ---------------------------------------------------------------------------
    @abc.abstractmethod
    def sample(self, rng: np.random.Generator) -> Any:
        """A random valid level (domain randomization)."""

    @abc.abstractmethod
    def is_valid(self, level: Any) -> bool:
        """Whether the level is playable (maze: goal reachable; track: a closed track can be built)."""

    def can_play(self, level: Any) -> bool:
        """Whether an env can start an episode on `level`, valid or not (default: always; a track needs 3
        points for a road). Teachers that play invalid levels as written repair only these."""
        return True

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

    def allowed_tokens(self, tokens: Sequence[int]) -> np.ndarray | None:
        """bool [vocab_size]: the tokens the PAIRED adversary may write after `tokens` (a prefix), or None
        for all of them (default). E.g. CarRacing: no skip and no control point twice, as dcd's adversary."""
        return None

    # ----- students -----------------------------------------------------------------------------
    @abc.abstractmethod
    def make_env(self, level: Any | None = None) -> gym.Env:
        """A gymnasium env playing `level` (or a sampled one); `reset(options={"level": lvl})` switches level
        and assigning `env.unwrapped.level = lvl` makes every later reset use it."""

    def make_vector_env(
        self, num_envs: int, *, seed: int = 0, device: str = "cpu", evaluation: bool = False
    ) -> Any:
        """The student's batched env (a `ued.vecenv.LevelVectorEnv`); default: gymnasium vector env of
        `make_env`. Families with a batched tensor backend override this (keeping this signature).
        `evaluation=True` asks for the env zero-shot evaluation plays (e.g. CarRacing: the game's own reward,
        no shaping or early stop); families whose training and evaluation envs are the same ignore it."""
        return GymLevelVectorEnv(self, num_envs, seed=seed, device=device)

    def episode_limit(self, level: Any) -> int | None:
        """The most env steps an episode on `level` can last, if the family knows it (None: unknown).
        Evaluation batches levels of similar limits together, so that few sub-envs idle."""
        return None

    def default_ppo(self) -> Any:
        """Published student PPO defaults for this family (a `ued.config.PPOConfig`)."""
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

    # ----- level files --------------------------------------------------------------------------
    def load_levels(self, path: str | os.PathLike) -> list[tuple[str, Any]]:
        """Named levels from a level file or from every file of a folder matching `level_file_patterns`
        (sorted by name), via `load_level_file` (`ued eval --levels PATH`). Bad input raises UsageError."""
        path = Path(path)
        if path.is_dir():
            files = sorted(
                {f for pattern in self.level_file_patterns for f in path.glob(pattern) if f.is_file()}
            )
            if not files:
                raise UsageError(
                    f"folder {path} holds no level files ({', '.join(self.level_file_patterns)}); "
                    f"give a {self.name} level file or a folder of them"
                )
        elif path.is_file():
            files = [path]
        else:
            raise UsageError(f"level path {path} does not exist; give a level file or a folder of them")
        levels: list[tuple[str, Any]] = []
        for f in files:
            levels += self.load_level_file(f)
        return levels

    def load_level_file(self, path: Path) -> list[tuple[str, Any]]:
        """The named levels of one file; default: one level per text file (via `from_text`), named by the
        file's stem. Families with other file formats (CarRacing: JSON track files) override this."""
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(f"cannot read level file {path}: {exc}") from exc
        try:
            level = self.from_text(text)
        except UsageError as exc:
            message = str(exc)
            message = (
                message.replace("<string>", str(path)) if "<string>" in message else f"{path}: {message}"
            )
            raise UsageError(message) from exc
        except (ValueError, NotImplementedError) as exc:
            raise UsageError(f"{path} is not a valid {self.name} level: {exc}") from exc
        return [(path.stem, level)]

    def tokens_key(self, level: Any) -> bytes:
        """A hashable identity of a level (used to keep levels once in replay buffers)."""
        return self.encode(level).astype(np.int64).tobytes()

    # ----- ACCEL's editor -----------------------------------------------------------------------
    def mutate(self, level: Any, rng: np.random.Generator, num_edits: int = 1) -> Any:
        """A playable level a few edits away from `level` (ACCEL's random editor).

        Default, on tokens: `num_edits` times, set a random position of `encode(level)` to a random token in
        [0, vocab_size); then `decode` and `repair`. Families override this with edits that mean something
        for them (maze: add or remove a wall, move the goal; track: move a control point). Must be
        deterministic given `rng`, always terminate and return a valid level."""
        tokens = np.asarray(self.encode(level), dtype=np.int64).copy()
        for _ in range(int(num_edits)):
            tokens[int(rng.integers(tokens.shape[0]))] = int(rng.integers(self.vocab_size))
        return self.repair(self.decode(tokens))

    def sample_easy(self, rng: np.random.Generator) -> Any:
        """A random easy level, where ACCEL's curriculum starts (maze: no walls). Default: `sample(rng)`."""
        return self.sample(rng)


# ----- procedural held-out levels ---------------------------------------------------------------
@dataclass(frozen=True)
class Procedural:
    """A held-out level that is a procedure, not one layout (dcd's FourRooms, SimpleCrossing, perfect
    mazes, corridors with a random goal): `sample(rng)` draws one level of the family.

    Evaluation plays a fresh draw in every episode, from `entry_rng(seed, position)`; `generate` must be
    deterministic given its numpy Generator."""

    name: str
    generate: Callable[[np.random.Generator], Any]
    description: str = ""

    def sample(self, rng: np.random.Generator) -> Any:
        """One level drawn with `rng`."""
        return self.generate(rng)


def entry_rng(seed: int, position: int) -> np.random.Generator:
    """The Generator that draws the levels of the suite entry at `position` (0-based) for evaluation seed
    `seed`: one independent stream per (seed, position), the same whatever the batch sizes."""
    return np.random.default_rng([int(seed), int(position)])


def draw_levels(entry: Any, count: int, rng: np.random.Generator) -> list[Any]:
    """`count` levels of a suite entry: the level itself `count` times, or `count` draws of a
    `Procedural` one from `rng` (in order, so the first draws do not depend on `count`)."""
    if isinstance(entry, Procedural):
        return [entry.sample(rng) for _ in range(count)]
    return [entry] * count


# ----- registry ---------------------------------------------------------------------------------
FAMILIES: dict[str, type[LevelFamily]] = {}
#: entry-point plugins that failed to load: name -> why (reported when the name is asked for)
PLUGIN_ERRORS: dict[str, str] = {}


def register_family(cls: type[LevelFamily]) -> type[LevelFamily]:
    """Class decorator: make a family available by its `name` (`ued train --env NAME`).

    Registering the same class again (a re-import) is a no-op; another class under a taken name raises."""
    if not (isinstance(cls, type) and issubclass(cls, LevelFamily)):
        raise TypeError(f"register_family needs a LevelFamily subclass, got {cls!r}")
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not name:
        raise TypeError(f"{cls.__qualname__} needs a class attribute `name` (a non-empty string)")
    old = FAMILIES.get(name)
    if old is not None and _qualified(old) != _qualified(cls):
        raise ValueError(
            f"environment name {name!r} is taken by {_qualified(old)}; give {_qualified(cls)} another name"
        )
    FAMILIES[name] = cls
    return cls


def _qualified(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _load_entry_points() -> None:
    """Load the `ued.environments` plugins not loaded yet; a broken one is recorded in `PLUGIN_ERRORS` (and
    reported by `make_family` when asked for) so that it cannot break the other families."""
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name in FAMILIES or ep.name in PLUGIN_ERRORS:
            continue
        try:
            cls = ep.load()
        except Exception as exc:  # noqa: BLE001  (any import-time failure of third-party code)
            PLUGIN_ERRORS[ep.name] = f"cannot import {ep.value} ({type(exc).__name__}: {exc})"
            continue
        if not (isinstance(cls, type) and issubclass(cls, LevelFamily)):
            PLUGIN_ERRORS[ep.name] = f"{ep.value} is {cls!r}, not a ued.levels.LevelFamily subclass"
            continue
        FAMILIES.setdefault(ep.name, cls)


def family_names() -> list[str]:
    """Names of the usable families: the built-in ones and the plugins that load."""
    import ued.environments  # noqa: F401  (registers the built-in families)

    _load_entry_points()
    return sorted(FAMILIES)


def family_class(name: str) -> type[LevelFamily]:
    """The family class registered as `name`; UsageError for an unknown or broken one."""
    names = family_names()
    if name in PLUGIN_ERRORS and name not in FAMILIES:
        raise UsageError(
            f"environment plugin {name!r} (entry point group {ENTRY_POINT_GROUP!r}) is broken: "
            f"{PLUGIN_ERRORS[name]}; fix or reinstall the package that provides it"
        )
    if name not in FAMILIES:
        raise UsageError(f"unknown environment {name!r}; choose one of: {', '.join(names)}")
    return FAMILIES[name]


def make_family(name: str, **options: Any) -> LevelFamily:
    """The family registered as `name`, built with `options` (e.g. `max_walls=25`)."""
    cls = family_class(name)
    try:
        inspect.signature(cls).bind(**options)
    except TypeError as exc:
        kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
        valid = ", ".join(p.name for p in inspect.signature(cls).parameters.values() if p.kind in kinds)
        valid = valid or "none"
        raise UsageError(f"bad options for environment {name!r} ({exc}); its options: {valid}") from None
    return cls(**options)


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
    #: positive value loss and mean value over the steps of the last episode completed on the level (nan
    #: when none completed): dcd's PLR scores a level per completed episode, the newest replacing the old,
    #: and skips the episode cut off by the end of the rollout (None: not measured, e.g. hand-made results)
    last_episode_pvl: np.ndarray | None = None
    last_episode_value: np.ndarray | None = None
    #: mean |GAE return - value| over the level's steps (dcd's batched value loss, used by ACCEL)
    value_l1: np.ndarray | None = None
