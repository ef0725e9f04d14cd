"""The CarRacing level family: closed tracks through control points on a 10x10 sketch grid (dcd / CLUTR).

Levels and their geometry are in `tracks.py`, track files and the held-out suite in `track_files.py`,
pictures in `track_render.py`, the student env in `carracing_env.py` and the student network in
`carracing_policy.py`. This module holds the family: tokens, sampling, the adversary's editor view.

Tokens (`vocab_size` 101, `max_tokens` 12): token i is a control point, cell index `y * 10 + x` (0..99), or
`SKIP` (100) = no point. Decoding follows the PAIRED track adversary:
- a skip is honoured only after the first 4 tokens; a skip at position i < 4 stands for the fixed cell
  `FIRST_FOUR_DEFAULT[i]` (the corners of a square), so an all-skip sequence decodes to a square loop;
- duplicate cells are dropped, and the points are sorted counter-clockwise around their centroid.

Held-out tracks: the suite `carracing-transfer` (`environments/tracks/*.json`, designed for ued) and any
file in the F1 format (`load_track_file`), whose centerline polylines become `Centerline` levels with their
own episode limit and playfield. `ued eval RUN --tracks FILE.json` (or `--levels`) reads either format
through `CarRacingFamily.load_levels`; evaluation plays the game's own reward (no shaping, no early stop).

As published (dcd's `CarRacingF1`): an F1 centerline is used as it is, one road tile per point (its last
point closes the loop: 5000 points, 4999 tiles), each tile worth 1000 / tiles on first contact, -0.1 per
frame, -100 for leaving the playfield (bounds / 6), each track's own frame limit, and on every track a lap
is complete only when every tile has been visited. Two family options bring back ued's earlier rules; both
are off by default, recorded in config.json and settable at evaluation (`ued eval --env-option`), and
numbers obtained with them are not comparable with published F1 results:
- `thin_centerlines` (default False): thin centerlines to ~3.5-unit tiles (`tracks.thin_closed`);
- `lap_complete_percent` (default 1.0): gymnasium's lap rule, e.g. 0.95 (tile 0 reached after more than
  95% of the tiles).
A third option chooses the frames' camera, `camera`: "dcd" (the default: dcd's `CarRacingBezier` with
`animate_zoom=False`, zoomed in from the first frame, the view turned to the car's velocity above 0.5 units
per second) or "gymnasium" (CarRacing-v3's: turned to the hull, zooming in over each episode's first
second; ued's camera before 2026-12-07).

Deviations from dcd kept on purpose: sketch tracks (`TrackLevel`) are tiled as ued's thinned Bezier curve
(~21/6-unit tiles, `tracks.level_centerline`) where dcd takes 40 Bezier samples per control-point segment,
one tile each (tiles of unequal length, ~12 x 40 of them): ued's tiles are even and ~4x fewer (faster to
build and draw); the lap rule (all tiles) is dcd's on both kinds. The game runs on gymnasium 1.4's
CarRacing and its pygame renderer (dcd: gym 0.x and pyglet), so frames differ in small details.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from ued.config import PPOConfig
from ued.environments.carracing_env import CAMERAS, make_student_env
from ued.environments.track_files import load_track_file
from ued.environments.track_render import render_track
from ued.environments.tracks import (
    DEFAULT_LEVEL,
    DEFAULT_MAX_EPISODE_STEPS,
    FIRST_FOUR_DEFAULT,
    GRID,
    MAX_POINTS,
    MIN_POINTS,
    NUM_CELLS,
    SKIP,
    Cell,
    Centerline,
    TrackLevel,
    centerline_of,
    is_valid_track,
    repair_track,
    track_geometry_stats,
)
from ued.errors import UsageError
from ued.levels import LevelFamily, register_family
from ued.vecenv import GymLevelVectorEnv


def _usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


#: the PPO of dcd's CarRacing adversary and of CLUTR's CarRacing teacher (cr_paired.json, the CLUTR script)
_TEACHER_PPO = {
    "lr": 3e-4,
    "epochs": 8,
    "num_minibatches": 4,
    "gamma": 0.99,
    "gae_lambda": 0.9,
    "value_loss": "smooth_l1",
}


# ----- the family ------------------------------------------------------------------------------------
@register_family
class CarRacingFamily(LevelFamily):
    """Closed tracks through 4..12 control points on a 10x10 sketch grid (see the module docstring).

    Students race them in gymnasium's CarRacing (96x96 RGB, frame stack 4, action repeat 8, Beta policy):
    see `ued.environments.carracing_env.CarRacingStudentEnv` for the observation and action spaces.
    """

    name = "carracing"
    vocab_size = NUM_CELLS + 1
    max_tokens = MAX_POINTS
    #: evaluation runs in the fast backend: 32 episodes at a time
    eval_batch_size = 32
    #: the fast backend shards its envs over worker processes (`ued.environments.carracing_workers`); by
    #: default for evaluation and for CUDA training (where the env is the bottleneck), while CPU training
    #: stays in-process: there the CNN update takes ~85% of the loop and each worker process costs ~200 MB
    #: (a PAIRED run: 2.4 GB in-process vs 3.3 GB with 4 workers, at the same speed; since then the parent
    #: steps one shard itself, so 2 shards per student take one worker process, not 2)
    shards_envs = True
    #: the published F1 benchmark averages 20 of the file's 21 circuits, leaving LagunaSeca out (the UED
    #: papers' F1 tables); `ued eval --tracks` plays and lists it, outside the overall row
    mean_excludes = frozenset({"LagunaSeca"})
    #: `load_levels` reads JSON track files (`load_track_file`) and `x,y x,y ...` text files
    level_file_patterns = ("*.json", "*.txt")
    default_student = "carracing-cnn"
    #: episodes per held-out track, as dcd's eval.py (`--num_episodes 100`); the fast backend makes it feasible
    eval_episodes = 100
    #: CarRacing evaluation is slow: no periodic evaluation unless asked (`--eval-interval`)
    periodic_eval_steps = None
    default_suite = "carracing-transfer"
    #: published teacher settings for tracks (the teacher configs' own defaults are the maze values):
    #: dcd's `cr_robust_plr` replay settings, its `cr_paired` adversary (a feed-forward sketch network, z of
    #: 4, PPO at the students' lr 3e-4 with 8 epochs, 4 minibatches, gamma 0.99, lambda 0.9, a smooth-L1 value
    #: loss and normalised regrets) and the CLUTR code's CarRacing teacher (z of 4, a linear layer of 8,
    #: the same PPO, normalised regrets)
    teacher_defaults: ClassVar[dict[str, dict[str, Any]]] = {
        **{
            name: {"buffer_size": 8000, "prioritization": "power", "temperature": 1.0, "staleness_coef": 0.7}
            for name in ("plr", "accel")
        },
        "paired": {
            "noise_dim": 4,
            "conv_channels": [8, 16],
            "kernel_size": 2,
            "time_embedding": 8,
            "hidden_size": 0,
            "head_sizes": [256],
            "critic_sizes": [],
            "activation": "relu",
            "actor_gains": [1.0, 1.0],
            "normalize_reward": True,
            "ppo": _TEACHER_PPO,
        },
        "clutr": {"noise_dim": 4, "body_size": 8, "normalize_reward": True, "ppo": _TEACHER_PPO},
    }

    def __init__(
        self,
        max_episode_steps: int = DEFAULT_MAX_EPISODE_STEPS,
        thin_centerlines: bool = False,
        lap_complete_percent: float = 1.0,
        camera: str = "dcd",
    ):
        """`max_episode_steps`: the frame limit of an episode on a sketch track (`TrackLevel`; gymnasium's
        CarRacing-v3: 1000). `Centerline` tracks (F1 files) keep their own published limits.
        `thin_centerlines`, `lap_complete_percent`: ued's earlier track rules, off by default (module
        docstring); results with them are not comparable with published F1 results. `camera`: "dcd"
        (published) or "gymnasium" (module docstring)."""
        steps = max_episode_steps
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise UsageError(
                f"carracing option max_episode_steps must be a positive number of frames, got {steps!r}; "
                f"e.g. {DEFAULT_MAX_EPISODE_STEPS} (gymnasium's CarRacing-v3)"
            )
        if not isinstance(thin_centerlines, bool):
            raise UsageError(
                f"carracing option thin_centerlines must be true or false, got {thin_centerlines!r}"
            )
        lap = lap_complete_percent
        if isinstance(lap, bool) or not isinstance(lap, (int, float)) or not 0 < lap <= 1:
            raise UsageError(
                f"carracing option lap_complete_percent must be a fraction in (0, 1], got {lap!r}; 1.0 "
                "(the default, dcd's rule): a lap needs every tile; gymnasium's default is 0.95"
            )
        if camera not in CAMERAS:
            raise UsageError(
                f"carracing option camera must be one of {', '.join(map(repr, CAMERAS))}, got {camera!r}; "
                '"dcd" (the default) is the published one'
            )
        self.max_episode_steps = max_episode_steps
        self.thin_centerlines = thin_centerlines
        self.lap_complete_percent = float(lap)
        self.camera = camera

    @property
    def options(self) -> dict[str, Any]:
        return {
            "max_episode_steps": self.max_episode_steps,
            "thin_centerlines": self.thin_centerlines,
            "lap_complete_percent": self.lap_complete_percent,
            "camera": self.camera,
        }

    @property
    def level_options(self) -> dict[str, Any]:
        """None of the options changes the sketch levels (they change episodes, F1 tiling and frames)."""
        return {}

    # ----- tokens -------------------------------------------------------------------------------
    def _cells(self, tokens: Sequence[int] | np.ndarray) -> list[Cell]:
        toks = [int(t) for t in np.asarray(tokens, dtype=np.int64).reshape(-1)]
        if len(toks) > self.max_tokens:
            raise ValueError(f"got {len(toks)} tokens, the carracing family takes at most {self.max_tokens}")
        if any(not 0 <= t < self.vocab_size for t in toks):
            raise ValueError(f"carracing tokens must be in [0, {self.vocab_size}), got {toks}")
        cells = []
        for i, t in enumerate(toks):
            if t == SKIP:
                if i < MIN_POINTS:
                    cells.append(FIRST_FOUR_DEFAULT[i])
            else:
                cells.append((t % GRID, t // GRID))
        return cells

    def decode(self, tokens: Sequence[int] | np.ndarray) -> TrackLevel:
        """Tokens -> level (skip rules in the module docstring); missing tokens count as skips."""
        toks = list(np.asarray(tokens, dtype=np.int64).reshape(-1))
        toks += [SKIP] * (MIN_POINTS - len(toks))
        return TrackLevel(tuple(self._cells(toks)))

    def encode(self, level: TrackLevel) -> np.ndarray:
        """Level -> its points' cell indices in counter-clockwise order, padded with SKIP."""
        tokens = np.full(self.max_tokens, SKIP, dtype=np.int64)
        for i, (x, y) in enumerate(level.points):
            tokens[i] = y * GRID + x
        return tokens

    def canonical(self, tokens: Sequence[int] | np.ndarray) -> np.ndarray:
        """The canonical form of a token sequence: `encode(decode(tokens))`."""
        return self.encode(self.decode(tokens))

    # ----- generation ---------------------------------------------------------------------------
    def sample(self, rng: np.random.Generator) -> TrackLevel:
        """dcd's DR tracks with PLR (its uniformly random adversary, `cr_plr` / `cr_robust_plr`): 12 cells
        drawn uniformly with replacement (repeats merge); not repaired, so a track may cross itself, as
        there. Only a draw of fewer than 3 distinct cells (about 1e-18), which cannot make a road, is
        repaired. (dcd's `cr_dr` draws 12 continuous points off the grid instead.)"""
        cells = rng.integers(NUM_CELLS, size=MAX_POINTS)
        level = TrackLevel(tuple((int(c) % GRID, int(c) // GRID) for c in cells))
        return level if self.can_play(level) else self.repair(level)

    def mutate(self, level: TrackLevel, rng: np.random.Generator, num_edits: int = 1) -> TrackLevel:
        """ACCEL's editor for tracks: `num_edits` times, move a random control point to one of its 8
        neighbouring cells (clipped to the grid; a move onto another point merges them), then `repair`."""
        pts = list(level.points) or list(DEFAULT_LEVEL.points)
        for _ in range(int(num_edits)):
            i = int(rng.integers(len(pts)))
            dx, dy = [(a, b) for a in (-1, 0, 1) for b in (-1, 0, 1) if (a, b) != (0, 0)][
                int(rng.integers(8))
            ]
            pts[i] = (min(max(pts[i][0] + dx, 0), GRID - 1), min(max(pts[i][1] + dy, 0), GRID - 1))
        return self.repair(TrackLevel(tuple(pts)))

    def is_valid(self, level: TrackLevel) -> bool:
        return is_valid_track(level)

    def can_play(self, level: TrackLevel) -> bool:
        """A road needs a closed curve through at least 3 distinct points (it may cross itself)."""
        return len(level.points) >= 3

    def repair(self, level: TrackLevel) -> TrackLevel:
        return repair_track(level)

    # ----- the PAIRED adversary's editor --------------------------------------------------------
    def editor_view(self, tokens: Sequence[int] | np.ndarray) -> np.ndarray:
        """float32 (1, 10, 10): 1 at the cells of the points written so far ([0, y, x])."""
        view = np.zeros(self.editor_view_shape, dtype=np.float32)
        for x, y in self._cells(tokens):
            view[0, y, x] = 1.0
        return view

    @property
    def editor_view_shape(self) -> tuple[int, int, int]:
        return (1, GRID, GRID)

    def allowed_tokens(self, tokens: Sequence[int] | np.ndarray) -> np.ndarray:
        """dcd's CarRacing adversary (`use_skip` false): never skip, never reuse a control point, so it
        writes exactly 12 distinct points. (dcd's mask indexes the sketch transposed, so it can repeat an
        off-diagonal cell; ued masks the cell itself.)"""
        allowed = np.ones(self.vocab_size, dtype=bool)
        allowed[SKIP] = False
        toks = np.asarray(tokens, dtype=np.int64).reshape(-1)
        allowed[toks[toks < SKIP]] = False
        return allowed

    # ----- students -----------------------------------------------------------------------------
    def make_env(
        self,
        level: TrackLevel | Centerline | None = None,
        *,
        eval_mode: bool = False,
        render_mode: str | None = None,
    ) -> Any:
        """The student env on `level` (a sampled level by default). `eval_mode=True`: the game's own reward
        (no shaping, no early termination), for zero-shot evaluation on held-out tracks."""
        if level is None:
            level = self.sample(np.random.default_rng(0))
        return make_student_env(
            level,
            reward_shaping=not eval_mode,
            render_mode=render_mode,
            max_episode_steps=self.max_episode_steps,
            lap_complete_percent=self.lap_complete_percent,
            camera=self.camera,
        )

    def make_vector_env(
        self, num_envs: int, *, seed: int = 0, device: str = "cpu", evaluation: bool = False
    ) -> Any:
        """The fast backend (`BatchedCarRacingEnv`: gymnasium's physics stepped for many sub-envs per
        process, the observed frames drawn by a batched torch renderer) on `num_envs` sampled levels, in one
        worker process per available core for evaluation and CUDA and in-process for CPU training
        (`shards_envs`); `evaluation=True`: the game's own reward (no shaping, no early stop), as the
        published F1 returns use. The reference is `make_reference_vector_env` (`--backend gym`)."""
        from ued.environments.carracing_workers import default_workers

        workers = default_workers(num_envs) if evaluation or str(device) != "cpu" else 1
        return self.make_sharded_vector_env(
            num_envs, workers, seed=seed, device=device, evaluation=evaluation
        )

    def make_sharded_vector_env(
        self, num_envs: int, workers: int, *, seed: int = 0, device: str = "cpu", evaluation: bool = False
    ) -> Any:
        """The fast backend of `make_vector_env` in `workers` worker processes (1: in-process; bit-identical
        results either way, `ued.environments.carracing_workers`)."""
        from ued.environments.carracing_workers import fast_carracing_env

        rng = np.random.default_rng(seed)
        return fast_carracing_env(
            [self.sample(rng) for _ in range(num_envs)],
            workers=workers,
            device=device,
            reward_shaping=not evaluation,
            max_episode_steps=self.max_episode_steps,
            lap_complete_percent=self.lap_complete_percent,
            camera=self.camera,
        )

    def make_render_env(self, level: TrackLevel | Centerline) -> Any:
        """The evaluation env (the game's own reward) drawing rgb_array frames."""
        return self.make_env(level, eval_mode=True, render_mode="rgb_array")

    def make_reference_vector_env(
        self, num_envs: int, *, seed: int = 0, device: str = "cpu", evaluation: bool = False
    ) -> Any:
        """The reference backend (`--backend gym`): gymnasium's AsyncVectorEnv of `make_env` (one process
        per env, each rendering every frame), wrapped as a `ued.vecenv.GymLevelVectorEnv`."""
        return GymLevelVectorEnv(
            self, num_envs, seed=seed, device=device, asynchronous=True, env_kwargs={"eval_mode": evaluation}
        )

    def episode_limit(self, level: TrackLevel | Centerline) -> int:
        """Frames per episode: a `Centerline`'s own limit, else the family's `max_episode_steps`."""
        if isinstance(level, Centerline):
            return level.max_episode_steps
        return self.max_episode_steps

    def default_ppo(self) -> PPOConfig:
        """dcd's CarRacing students (`cr_*.json`): 16 envs x 125 steps, lr 3e-4, gamma 0.99, lambda 0.9,
        8 epochs, 4 minibatches, normalised returns and an unclipped smooth-L1 value loss."""
        return PPOConfig(
            num_envs=16,
            num_steps=125,
            lr=3e-4,
            gamma=0.99,
            gae_lambda=0.9,
            epochs=8,
            num_minibatches=4,
            value_loss="smooth_l1",
            normalize_returns=True,
        )

    # ----- pictures and statistics --------------------------------------------------------------
    def render(self, level: TrackLevel | Centerline, size: int = 256) -> np.ndarray:
        """uint8 (size, size, 3): the road (grey) on grass, the start (white bar) and the control points."""
        return render_track(level, size)

    def level_stats(self, level: TrackLevel | Centerline) -> dict[str, float]:
        stats = track_geometry_stats(centerline_of(level))
        if isinstance(level, TrackLevel):
            stats["points"] = float(len(level.points))
        return stats

    def to_text(self, level: TrackLevel) -> str:
        """`x,y x,y ...`: the control points in counter-clockwise order."""
        return " ".join(f"{x},{y}" for x, y in level.points)

    def load_level_file(self, path: Path) -> list[tuple[str, TrackLevel | Centerline]]:
        """A `.json` track file (`load_track_file`: ued's designed tracks or the F1 centerline format, many
        named tracks per file), or a text file `x,y x,y ...` (one track, named by the file's stem)."""
        if path.suffix.lower() == ".json":
            return load_track_file(path, thin_centerlines=self.thin_centerlines)
        return super().load_level_file(path)

    def from_text(self, text: str) -> TrackLevel:
        """A level from `x,y x,y ...`: up to 12 cells, at least 3 distinct ones (`can_play`: a road needs
        them; the curve may cross itself, as generated levels may), so `to_text` round-trips every level
        the family plays. Anything else is a UsageError."""
        hint = "write 3..12 cells as 'x,y x,y ...', 0 <= x,y < 10"
        items = text.split()
        try:
            if len(items) > MAX_POINTS:
                raise ValueError(f"{len(items)} points, at most {MAX_POINTS}")
            pts = tuple(tuple(int(v) for v in item.split(",")) for item in items)
            if any(len(p) != 2 for p in pts):
                raise ValueError("each point needs two coordinates")
            level = TrackLevel(pts)  # type: ignore[arg-type]
        except ValueError as exc:
            raise UsageError(f"bad track text {text[:80]!r} ({exc}); {hint}") from None
        if not self.can_play(level):
            raise UsageError(
                f"track text {text[:80]!r} has {len(level.points)} distinct cells, a road needs 3; {hint}"
            )
        return level


__all__ = ["CarRacingFamily"]
