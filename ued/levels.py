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
from ued.io import read_input_text
from ued.vecenv import GymLevelVectorEnv

ENTRY_POINT_GROUP = "ued.environments"


class LevelFamily(abc.ABC):
    """A family of levels (mazes, tracks, ...) and everything teachers and students need from it.

    Subclasses set `name`, `vocab_size` and `max_tokens` and implement the abstract methods. All methods are
    deterministic given their inputs (randomness only through the `rng` argument) and always terminate.
    `ued check-family NAME` (or `ued.testing.check_family(family)` in a plugin's own tests) checks every rule
    these docstrings state; docs/level-families.md is generated from them.

    Each member's docstring says who calls it (teachers, the runner, evaluation, the CLI), what it
    receives, what it returns and what it must never do.
    """

    #: the family's registry name (`ued train --env NAME`); an entry point must use the same name.
    #: Required (no default). Read by the registry, run configs, checkpoints and CLUTR's VAE files.
    name: ClassVar[str]
    #: number of distinct token values; tokens are ints in [0, vocab_size). Required (a class attribute or
    #: set in `__init__`). Read by every teacher that writes tokens (PAIRED's action space, CLUTR's VAE).
    vocab_size: int
    #: length of every encoded level (shorter levels are padded by the family's own convention). Required.
    #: PAIRED's adversary writes exactly this many tokens, one per step.
    max_tokens: int
    #: how many sub-envs zero-shot evaluation plays at once (`ued.evaluation.evaluate`): large for batched
    #: tensor backends, about a few per CPU core for families whose vector env runs one process per env
    eval_batch_size: int = 512
    #: episodes per held-out level `ued eval` plays by default (dcd's eval.py: 100)
    eval_episodes: ClassVar[int] = 100
    #: True where the family's vector env can step its sub-envs in several worker processes
    #: (`make_sharded_vector_env`); `ued bench` then measures it both ways
    shards_envs: ClassVar[bool] = False
    #: names of held-out levels that the published mean over a suite or file leaves out: `ued eval` plays and
    #: lists them but keeps them out of its overall row (CarRacing: LagunaSeca, outside the 20-circuit F1 mean)
    mean_excludes: ClassVar[frozenset[str]] = frozenset()
    #: env steps between the periodic held-out evaluations of a training run by default (None: off)
    periodic_eval_steps: ClassVar[int | None] = 1_000_000
    #: file-name patterns `load_levels` reads from a folder (`ued eval/render --levels DIR`)
    level_file_patterns: tuple[str, ...] = ("*.txt",)
    #: name of the student network trained on this family (`ued.models.STUDENTS`; `--student` overrides).
    #: Read by the runner (`ued.models.make_student`); register the network with `@register_student(name)`
    #: in the family's module so that importing the family registers it too.
    default_student: ClassVar[str | None] = None
    #: held-out suite this family's runs are judged on by default (`ued eval RUN` and the training loop's
    #: periodic evaluation, through `ued.environments.suites.resolve_suite(env, None)`); register it at import
    #: of the family's module (`register_suite`) or through the `ued.suites` entry-point group. None: the
    #: only registered suite of this family, if there is exactly one.
    default_suite: ClassVar[str | None] = None
    #: published teacher settings for this family, by teacher name, merged over the teacher config's own
    #: defaults (which are the maze values) and under the user's options, e.g. {"plr": {"buffer_size": 8000}}
    teacher_defaults: ClassVar[dict[str, dict[str, Any]]] = {}

    @property
    def options(self) -> dict[str, Any]:
        """The constructor options this family was built with; {} for a family without options (default).

        Called by: the runner (recorded in config.json; a resumed run and `ued eval` rebuild the family
        with `make_family(name, **options)`), CLUTR (recorded with VAE files, so that a file made for other
        options is refused).
        Returns: a dict of plain values (JSON: numbers, strings, lists) naming every `__init__` argument.
        Never: leave out an option (a rebuilt family would differ from the one that trained)."""
        return {}

    @property
    def level_options(self) -> dict[str, Any]:
        """The options that shape the levels themselves (sampling, tokens, decoding); default: all `options`.

        Called by: CLUTR and `ued pretrain-vae` (a VAE file or checkpoint made for other values of these is
        refused; the other options do not matter to it).
        Returns: a sub-dict of `options`; a family leaves out the options that only change how its levels
        are played (frame limits, the camera).
        Never: leave out an option that changes `sample`, `encode` or `decode`."""
        return self.options

    # ----- tokens -------------------------------------------------------------------------------
    @abc.abstractmethod
    def encode(self, level: Any) -> np.ndarray:
        """Level -> int64 array of shape (max_tokens,), every value in [0, vocab_size).

        Called by: PLR and ACCEL (replay buffers store levels as tokens; `tokens_key`), CLUTR (VAE training
        data: `encode(sample(rng))`), ACCEL's default `mutate`.
        Receives: any level `sample`, `decode`, `repair`, `mutate` or `sample_easy` returned.
        Never: return another length or out-of-range values; `decode(encode(level))` must give `level` back."""

    @abc.abstractmethod
    def decode(self, tokens: Sequence[int] | np.ndarray) -> Any:
        """Token sequence -> a level (a small frozen, hashable dataclass).

        Called by: PAIRED (the adversary's written tokens, `ued.editor.finish_level`), CLUTR (the VAE's
        greedy decode), PLR (buffer tokens on resume), ACCEL's default `mutate`.
        Receives: an int64 array of length 0..max_tokens (a partly written level is shorter: missing tokens
        get the family's defaults), any values in [0, vocab_size), in any combination.
        Returns: a level `encode` accepts; it may be invalid (`is_valid` False): `repair` makes it playable.
        Never: raise on in-range tokens (a PAIRED adversary writes any of them; an exception there stops
        training), depend on anything but `tokens`."""

    # ----- generation ---------------------------------------------------------------------------
    @abc.abstractmethod
    def sample(self, rng: np.random.Generator) -> Any:
        """A random level (domain randomization).

        Called by: DR (every level), PLR and ACCEL (new levels), CLUTR (VAE training data), the vector
        env's first levels (`make_vector_env`), `ued render --sample`.
        Receives: a seeded numpy Generator, the only source of randomness.
        Returns: a level `encode` accepts and `can_play` allows (it may be unsolvable, as published DR).
        Never: use global randomness (np.random.*, random.*), return different levels for equal Generators."""

    @abc.abstractmethod
    def is_valid(self, level: Any) -> bool:
        """Whether the level is playable and solvable (maze: goal reachable; track: a closed track).

        Called by: PAIRED and CLUTR (the share of valid written levels; invalid ones are repaired or
        played as written), `ued eval --levels` (warns about invalid level files), `check_family`.
        Receives: any level, valid or not.
        Never: raise on a level `decode` returned; change the level."""

    def can_play(self, level: Any) -> bool:
        """Whether an env can start an episode on `level`, valid or not (default: always).

        Called by: PAIRED and CLUTR, which play invalid written levels as written and repair only those
        this rejects (a track needs 3 points for a road).
        Receives: any decoded level.
        Never: return False for a level `repair` returned."""
        return True

    @abc.abstractmethod
    def repair(self, level: Any) -> Any:
        """A playable level close to `level`.

        Called by: PAIRED and CLUTR (invalid written levels, with `repair_levels`, or always when
        `can_play` is False), the default `mutate`, `check_family`.
        Receives: any level `decode` returned (often invalid).
        Returns: a level with `is_valid` True and `can_play` True; a valid level should come back unchanged,
        and `repair(repair(level)) == repair(level)`.
        Never: use randomness (it is deterministic), loop without a bound (it always terminates)."""

    # ----- the PAIRED adversary's editor --------------------------------------------------------
    @abc.abstractmethod
    def editor_view(self, tokens: Sequence[int]) -> np.ndarray:
        """Image of a partly written level: float32 array of shape `editor_view_shape` (C, H, W).

        Called by: PAIRED's adversary before each token it writes (`ued.editor`), for every prefix length.
        Receives: the first t tokens written so far, an int64 array of length t for every t in
        0..max_tokens - 1 (0: nothing written yet), values in [0, vocab_size).
        Never: raise on a prefix, return another shape for another length, read tokens not yet written."""

    @property
    @abc.abstractmethod
    def editor_view_shape(self) -> tuple[int, int, int]:
        """Shape (C, H, W) of `editor_view`, the same for every prefix.

        Called by: PAIRED (the adversary network's input size and the editor's observation space)."""

    def allowed_tokens(self, tokens: Sequence[int]) -> np.ndarray | None:
        """bool [vocab_size]: the tokens the PAIRED adversary may write after the prefix `tokens`, or None
        for all of them (default). E.g. CarRacing: no skip and no control point twice, as dcd's adversary.

        Called by: PAIRED's adversary before each token, with the prefix as `editor_view` gets it.
        Never: allow no token at all (the adversary must write `max_tokens` tokens), return another length."""
        return None

    # ----- students -----------------------------------------------------------------------------
    @abc.abstractmethod
    def make_env(self, level: Any | None = None) -> gym.Env:
        """A gymnasium env playing `level` (or a sampled one, from a fixed seed).

        Called by: the default `make_vector_env` (one per sub-env; it assigns levels as below),
        `check_family`. Families with a batched backend may only use it as a reference.
        Contract: `reset(options={"level": lvl})` switches level, and assigning `env.unwrapped.level = lvl`
        makes every later reset play `lvl` (that is how the vector env hands each sub-env the teacher's
        level); the observation space (shape and dtype) is the same for every level of the family; it passes
        `gymnasium.utils.env_checker.check_env`; `reset(seed=s)` is deterministic.
        Never: ignore an assigned level (training would silently play the first levels only)."""

    def make_render_env(self, level: Any) -> gym.Env:
        """A gymnasium env playing `level` as zero-shot evaluation plays it, whose `render()` returns an RGB
        frame uint8 [H, W, 3] (gymnasium's "rgb_array"); default: `make_env(level, render_mode="rgb_array")`.

        Called by: `ued render --episode` and `ued train --video-interval` (`ued.episodes`).
        Override: when the evaluation env differs from `make_env`'s (CarRacing: the game's own reward) or
        `make_env` takes no `render_mode`.
        Never: return an env whose rewards differ from what `make_vector_env(evaluation=True)` plays."""
        try:
            return self.make_env(level, render_mode="rgb_array")
        except TypeError as exc:
            if "render_mode" not in str(exc):
                raise
            raise UsageError(
                f"the {self.name} family's make_env takes no render_mode, so its episodes cannot be drawn; "
                "give its make_env a render_mode argument (gymnasium's rgb_array) or override make_render_env"
            ) from None

    def make_vector_env(
        self, num_envs: int, *, seed: int = 0, device: str = "cpu", evaluation: bool = False
    ) -> Any:
        """The student's batched env (a `ued.vecenv.LevelVectorEnv`); default: gymnasium vector env of
        `make_env`. Families with a batched tensor backend override this (keeping this signature).
        `evaluation=True` asks for the env zero-shot evaluation plays (e.g. CarRacing: the game's own reward,
        no shaping or early stop); families whose training and evaluation envs are the same ignore it.

        Called by: the runner (the students' envs), `ued.evaluation.evaluate` (`evaluation=True`).
        Contract: `set_levels(levels)` (one per sub-env) takes effect at the next `reset` and persists
        through autoresets; observations are torch tensors with the batch on dim 0.
        Never: ignore `set_levels`, share state between sub-envs."""
        return GymLevelVectorEnv(self, num_envs, seed=seed, device=device)

    def make_sharded_vector_env(
        self, num_envs: int, workers: int, *, seed: int = 0, device: str = "cpu", evaluation: bool = False
    ) -> Any:
        """`make_vector_env`'s env with its sub-envs stepped in `workers` processes (1: in-process; a family
        may count its own process among them), the same results whatever `workers` is. Only where the family declares `shards_envs`.

        Called by: the family's own `make_vector_env` (its rule for how many workers), `ued bench` (both
        ways, side by side).
        Never: give results that depend on `workers`."""
        raise NotImplementedError(
            f"the {self.name} family does not shard its vector env (shards_envs is False)"
        )

    def make_reference_vector_env(
        self, num_envs: int, *, seed: int = 0, device: str = "cpu", evaluation: bool = False
    ) -> Any:
        """The reference backend of `make_vector_env` (`ued train --backend gym`), the same
        `LevelVectorEnv` contract; default: gymnasium's vector env of `make_env` (what `make_vector_env`
        gives unless the family overrides it with a batched backend).

        Called by: the runner with `--backend gym`, and parity tests of a batched backend.
        Override: when the reference needs other settings (CarRacing: one process per env, `eval_mode`).
        Never: differ from `make_vector_env` in anything but speed and float rounding."""
        return GymLevelVectorEnv(self, num_envs, seed=seed, device=device)

    def episode_limit(self, level: Any) -> int | None:
        """The most env steps an episode on `level` can last, if the family knows it (default: None,
        unknown).

        Called by: `ued.evaluation.evaluate`, which batches levels of similar limits together so that few
        sub-envs idle."""
        return None

    def default_ppo(self) -> Any:
        """Published student PPO defaults for this family (a `ued.config.PPOConfig`; default: ued's).

        Called by: the runner, under the user's `--ppo` / config-file overrides."""
        return PPOConfig()

    # ----- pictures and statistics --------------------------------------------------------------
    @abc.abstractmethod
    def render(self, level: Any) -> np.ndarray:
        """An RGB picture of the level: uint8 array (H, W, 3).

        Called by: TensorBoard level images (`ued.tblog`), `ued render`, the editor env's `render`.
        Receives: any level, valid or not (teachers log invalid written levels too).
        Never: open a window or need a display."""

    def level_stats(self, level: Any) -> dict[str, float]:
        """Numbers worth logging about a level (maze: walls, shortest path length); default: none.

        Called by: the runner's TensorBoard logging, for the levels of every logged update.
        Returns: a dict of name -> float (the same names for every level)."""
        return {}

    def to_text(self, level: Any) -> str:
        """A human-readable text form of the level (default: `repr`).

        Called by: `check_family` (round trip), users writing level files.
        Returns: text that `from_text` reads back to an equal level."""
        return repr(level)

    def from_text(self, text: str) -> Any:
        """Inverse of `to_text` (default: no text form).

        Called by: the default `load_level_file` (`ued eval --levels`, `ued render --levels`).
        Receives: the full text of a level file, as written by a user (trailing newline, comments if the
        format has them).
        Never: accept text it cannot read; raise `ued.errors.UsageError("what is wrong; how to fix it")`
        (or ValueError) instead."""
        raise NotImplementedError(f"family {self.name!r} has no text form")

    # ----- level files --------------------------------------------------------------------------
    def load_levels(self, path: str | os.PathLike) -> list[tuple[str, Any]]:
        """Named levels from a level file or from every file of a folder matching `level_file_patterns`
        (sorted by name), via `load_level_file`.

        Called by: `ued eval --levels PATH`, `ued render --levels PATH --env NAME`.
        Never: raise anything but UsageError on bad input (a missing path, a bad file)."""
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
        elif path.exists():
            raise UsageError(
                f"level path {path} is not a file or a folder; give a level file or a folder of them"
            )
        else:
            raise UsageError(f"level path {path} does not exist; give a level file or a folder of them")
        levels: list[tuple[str, Any]] = []
        for f in files:
            levels += self.load_level_file(f)
        return levels

    def load_level_file(self, path: Path) -> list[tuple[str, Any]]:
        """The named levels of one file; default: one level per text file (via `from_text`), named by the
        file's stem. Families with other file formats (CarRacing: JSON track files) override this.

        Called by: `load_levels`, once per file.
        Never: raise anything but UsageError on a bad file."""
        text = read_input_text(path, "level file", f"give a {self.name} level file")
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
        """A hashable identity of a level (default: its token bytes).

        Called by: PLR, ACCEL and CLUTR, to keep a level once in replay buffers and count unique levels."""
        return self.encode(level).astype(np.int64).tobytes()

    # ----- ACCEL's editor -----------------------------------------------------------------------
    def mutate(self, level: Any, rng: np.random.Generator, num_edits: int = 1) -> Any:
        """A level a few edits away from `level` (ACCEL's random editor).

        Default, on tokens: `num_edits` times, set a random position of `encode(level)` to a random token in
        [0, vocab_size); then `decode` and `repair`. Families override this with edits that mean something
        for them (maze: add or remove a wall, move the goal; track: move a control point).

        Called by: ACCEL, on the replayed levels of highest regret.
        Receives: a level from the replay buffer and the teacher's seeded Generator.
        Returns: a level `encode` accepts and `can_play` allows (it may be unsolvable, as in dcd's maze).
        Never: use randomness but `rng`, loop without a bound."""
        tokens = np.asarray(self.encode(level), dtype=np.int64).copy()
        for _ in range(int(num_edits)):
            tokens[int(rng.integers(tokens.shape[0]))] = int(rng.integers(self.vocab_size))
        return self.repair(self.decode(tokens))

    def sample_easy(self, rng: np.random.Generator) -> Any:
        """A random easy level, where ACCEL's curriculum starts (maze: no walls). Default: `sample(rng)`.

        Called by: ACCEL with `start_easy` (its new levels).
        Returns: a level `encode` accepts and `can_play` allows.
        Never: use randomness but `rng`."""
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

    Registering the same class again (a re-import) is a no-op; another class under a taken name raises
    ValueError; a class that is not a LevelFamily, has no `name` or leaves abstract methods unimplemented
    raises TypeError (a plugin module that does this fails to import, and `ued envs` says why)."""
    if not (isinstance(cls, type) and issubclass(cls, LevelFamily)):
        raise TypeError(f"register_family needs a LevelFamily subclass, got {cls!r}")
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not name:
        raise TypeError(f"{cls.__qualname__} needs a class attribute `name` (a non-empty string)")
    missing = missing_methods(cls)
    if missing:
        raise TypeError(f"{_qualified(cls)} {_missing_text(missing)}")
    old = FAMILIES.get(name)
    if old is not None and _qualified(old) != _qualified(cls):
        raise ValueError(
            f"environment name {name!r} is taken by {_qualified(old)}; give {_qualified(cls)} another name"
        )
    FAMILIES[name] = cls
    return cls


def _qualified(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def missing_methods(cls: type[LevelFamily]) -> list[str]:
    """The abstract LevelFamily members `cls` does not implement (sorted; [] for a complete family)."""
    return sorted(getattr(cls, "__abstractmethods__", ()))


def _missing_text(missing: list[str]) -> str:
    return (
        f"does not implement the abstract LevelFamily method(s) {', '.join(missing)}; implement them "
        "(docs/level-families.md says what each receives and returns)"
    )


def one_line(exc: BaseException, limit: int = 240) -> str:
    """`Type: message` of an exception on one line (whitespace collapsed), at most `limit` characters."""
    text = " ".join(str(exc).split())
    text = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def plugin_entry_points(group: str) -> list[Any]:
    """The installed entry points of `group` (`ued.environments`, `ued.suites`); one place to look them up,
    so that tests can replace `entry_points`."""
    return list(entry_points(group=group))


def _same_target(ep: Any, cls: type) -> bool:
    """Whether entry point `ep` ("module:attr") names `cls` (without importing anything)."""
    module, _, attr = str(ep.value).partition(":")
    return f"{module.strip()}.{attr.strip()}" == _qualified(cls)


def _load_entry_points() -> None:
    """Load the `ued.environments` plugins not loaded yet; a broken one is recorded in `PLUGIN_ERRORS` (and
    reported by `make_family` when asked for, and by `ued envs`) so that it cannot break the other families.

    Broken: the module fails to import, the object is not a LevelFamily subclass, it leaves abstract methods
    unimplemented, or its `name` differs from the entry point's name (both are reported). An entry point
    whose name a built-in or earlier family already holds is reported too; the holder keeps the name."""
    for ep in plugin_entry_points(ENTRY_POINT_GROUP):
        if ep.name in PLUGIN_ERRORS or (ep.name in FAMILIES and _same_target(ep, FAMILIES[ep.name])):
            continue
        where = f"{ep.name} = {ep.value}"
        try:
            cls = ep.load()
        except Exception as exc:  # noqa: BLE001  (any import-time failure of third-party code)
            PLUGIN_ERRORS[ep.name] = f"cannot import {ep.value} ({one_line(exc)})"
            continue
        if not (isinstance(cls, type) and issubclass(cls, LevelFamily)):
            PLUGIN_ERRORS[ep.name] = f"{ep.value} is {cls!r}, not a ued.levels.LevelFamily subclass"
            continue
        held = FAMILIES.get(ep.name)
        if held is not None:
            if held is not cls:
                PLUGIN_ERRORS[ep.name] = (
                    f"entry point {where!r} asks for the name {ep.name!r}, which {_qualified(held)} already "
                    f"holds; give the plugin's family another name (its class `name` and entry point)"
                )
            continue
        class_name = getattr(cls, "name", None)
        if class_name != ep.name:
            PLUGIN_ERRORS[ep.name] = (
                f"entry point name {ep.name!r} differs from {_qualified(cls)}.name {class_name!r}; make them "
                f"the same (rename the entry point in the plugin's setup.cfg / pyproject.toml, or the class's "
                f"`name`) and reinstall it"
            )
            continue
        missing = missing_methods(cls)
        if missing:
            PLUGIN_ERRORS[ep.name] = f"{_qualified(cls)} {_missing_text(missing)}"
            continue
        FAMILIES[ep.name] = cls


def family_names() -> list[str]:
    """Names of the registered families: the built-in ones and the plugins that load (a family may still
    fail to build: `make_family` says why, `ued envs` lists it as broken)."""
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
    """The family registered as `name`, built with `options` (e.g. `max_walls=25`).

    Every failure is one UsageError line: an unknown or broken plugin, an option the constructor does not
    take, a UsageError of the constructor (a bad option value), or any other exception of the constructor
    (a broken family: reported with the class and the options, never as a traceback)."""
    cls = family_class(name)
    missing = missing_methods(cls)
    if missing:
        raise UsageError(f"environment {name!r} is broken: {_qualified(cls)} {_missing_text(missing)}")
    try:
        inspect.signature(cls).bind(**options)
    except TypeError as exc:
        kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
        valid = ", ".join(p.name for p in inspect.signature(cls).parameters.values() if p.kind in kinds)
        valid = valid or "none"
        raise UsageError(f"bad options for environment {name!r} ({exc}); its options: {valid}") from None
    try:
        return cls(**options)
    except UsageError:
        raise
    except Exception as exc:  # noqa: BLE001  (a family's constructor is third-party code)
        built = ", ".join(f"{k}={v!r}" for k, v in options.items()) or "its default options"
        raise UsageError(
            f"environment {name!r} is broken: {_qualified(cls)}({built}) raised {one_line(exc)}; fix the "
            f"family's __init__ (or, for a bad option value, raise ued.errors.UsageError there)"
        ) from None


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
