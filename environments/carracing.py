"""The CarRacing level family: closed tracks through control points on a 10x10 sketch grid (dcd / CLUTR).

A `TrackLevel` is 4..12 distinct cells of a 10x10 sketch grid, kept sorted counter-clockwise around their
centroid. The track is a closed smooth curve (cubic Bezier segments through the sorted points) scaled to
gymnasium's CarRacing playfield, raced by a PPO student from 96x96 pixels (`ued.environments.carracing_env`).

Tokens (`vocab_size` 101, `max_tokens` 12): token i is a control point, cell index `y * 10 + x` (0..99), or
`SKIP` (100) = no point. Decoding follows the PAIRED track adversary:
- a skip is honoured only after the first 4 tokens; a skip at position i < 4 stands for the fixed cell
  `FIRST_FOUR_DEFAULT[i]` (the corners of a square), so an all-skip sequence decodes to a square loop;
- duplicate cells are dropped, and the points are sorted counter-clockwise around their centroid.

Validity and repair: a level is valid when it has 4..12 distinct points, its sorted polygon encloses an
area of at least `MIN_AREA` cells (collinear points do not) and its centerline does not cross itself.
`repair` is deterministic and bounded (at most 21 candidate levels are checked):
1. a valid level is returned unchanged;
2. else the first level, in counter-clockwise order, with one point removed that is valid (>= 4 points left);
3. else the level with 1, 2, ... 8 cells of `DEFAULT_RING` added (own points dropped from the end to stay at
   12), the first valid one;
4. else `DEFAULT_LEVEL` (the 8-cell ring, a rounded octagon).

Held-out tracks: the suite `carracing-transfer` (`environments/tracks/*.json`, designed for ued) and any
file in the F1 format (`load_track_file`), whose centerline polylines become `Centerline` levels with their
own episode limit and playfield. `ued eval RUN --tracks FILE.json` (or `--levels`) reads either format
through `CarRacingFamily.load_levels`; evaluation plays the game's own reward (no shaping, no early stop).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.distributions import Independent

from ued.environments.suites import Suite, register_suite
from ued.errors import UsageError
from ued.levels import LevelFamily, register_family
from ued.models import EncoderPolicy, beta_from_params, init_orthogonal, mlp

# gymnasium 1.4 CarRacing geometry (gymnasium/envs/box2d/car_racing.py): SCALE 6, PLAYFIELD 2000/SCALE,
# TRACK_DETAIL_STEP 21/SCALE (length of one road tile). Repeated here so that levels need no Box2D import.
SCALE = 6.0
PLAYFIELD = 2000 / SCALE
TRACK_DETAIL_STEP = 21 / SCALE
#: frames (physics steps) per episode on generated tracks: gymnasium's CarRacing-v3 limit
DEFAULT_MAX_EPISODE_STEPS = 1000

GRID = 10
NUM_CELLS = GRID * GRID
SKIP = NUM_CELLS
MIN_POINTS, MAX_POINTS = 4, 12
#: world units per sketch cell: dcd maps cell c to (c + 1) * PLAYFIELD / 10
CELL_SIZE = PLAYFIELD / GRID
#: smallest polygon area (in cells^2) of a valid level: rules out collinear point sets
MIN_AREA = 1.0
#: Bezier handle length as a fraction of the chord (dcd's `rad` = 0.2)
BEZIER_RAD = 0.2
#: Bezier samples per world unit of the longest chord (a dense curve, then thinned to tiles)
BEZIER_DENSITY = 1.0

FIRST_FOUR_DEFAULT = ((1, 1), (8, 1), (8, 8), (1, 8))
DEFAULT_RING = ((3, 1), (6, 1), (8, 3), (8, 6), (6, 8), (3, 8), (1, 6), (1, 3))

Cell = tuple[int, int]


def sort_ccw(points: Sequence[Cell]) -> tuple[Cell, ...]:
    """Distinct cells sorted counter-clockwise around their centroid (angle from -pi, ties by distance).

    Exact integer arithmetic before `atan2`, so the order depends only on the set of cells."""
    pts = sorted({(int(x), int(y)) for x, y in points})
    n = len(pts)
    if n == 0:
        return ()
    sx, sy = sum(p[0] for p in pts), sum(p[1] for p in pts)

    def key(p: Cell) -> tuple[float, int, Cell]:
        dx, dy = n * p[0] - sx, n * p[1] - sy
        return (math.atan2(dy, dx), dx * dx + dy * dy, p)

    return tuple(sorted(pts, key=key))


@dataclass(frozen=True)
class TrackLevel:
    """Control points of a track: distinct (x, y) cells of the 10x10 sketch grid, 0 <= x, y < 10.

    The constructor canonicalizes: duplicates are dropped and the points sorted counter-clockwise around
    their centroid, so equal point sets give equal (and equally hashed) levels. At most 12 points; fewer
    than 4 (or collinear) points make an invalid level that `CarRacingFamily.repair` fixes.
    """

    points: tuple[Cell, ...]

    def __post_init__(self) -> None:
        pts = tuple((int(x), int(y)) for x, y in self.points)
        bad = [p for p in pts if not (0 <= p[0] < GRID and 0 <= p[1] < GRID)]
        if bad:
            raise ValueError(f"track control points must be cells of the {GRID}x{GRID} grid, got {bad}")
        pts = sort_ccw(pts)
        if len(pts) > MAX_POINTS:
            raise ValueError(f"a track has at most {MAX_POINTS} control points, got {len(pts)}")
        object.__setattr__(self, "points", pts)

    def area(self) -> float:
        """Area of the sorted control polygon, in cells^2 (shoelace formula)."""
        if len(self.points) < 3:
            return 0.0
        p = np.asarray(self.points, dtype=np.float64)
        q = np.roll(p, -1, axis=0)
        return float(abs(np.sum(p[:, 0] * q[:, 1] - q[:, 0] * p[:, 1])) / 2.0)


@dataclass(frozen=True)
class Centerline:
    """An external track: a closed centerline polyline in CarRacing world units (e.g. a real circuit).

    `xy` holds the kept points after thinning (one road tile between consecutive points); `playfield` is the
    half-size of the field (leaving it ends the episode), `max_episode_steps` the episode limit in frames.
    """

    name: str
    xy: tuple[tuple[float, float], ...]
    max_episode_steps: int = DEFAULT_MAX_EPISODE_STEPS
    playfield: float = PLAYFIELD
    full_zoom: float = 0.25


# ----- geometry ----------------------------------------------------------------------------------------
def bezier_loop(points: np.ndarray, rad: float = BEZIER_RAD, samples: int | None = None) -> np.ndarray:
    """Closed smooth curve through `points` [n, 2] (in order): one cubic Bezier segment per pair of
    consecutive points, the tangent at a point along the sum of its two unit chords, handles `rad` * chord
    long. Returns [n * samples, 2] (each segment's end point left out: it starts the next one); by default
    `samples` gives about `BEZIER_DENSITY` points per world unit on the longest segment."""
    p = np.asarray(points, dtype=np.float64)
    d = np.roll(p, -1, axis=0) - p
    length = np.linalg.norm(d, axis=1, keepdims=True)
    u = d / np.maximum(length, 1e-9)
    tangent = u + np.roll(u, 1, axis=0)
    norm = np.linalg.norm(tangent, axis=1, keepdims=True)
    tangent = np.where(norm > 1e-6, tangent / np.maximum(norm, 1e-9), u)  # a reversal: follow the chord
    b0, b3 = p, np.roll(p, -1, axis=0)
    b1 = b0 + rad * length * tangent
    b2 = b3 - rad * length * np.roll(tangent, -1, axis=0)
    if samples is None:
        samples = max(16, math.ceil(BEZIER_DENSITY * float(length.max()) * (1 + 2 * rad)))
    t = np.linspace(0.0, 1.0, samples, endpoint=False)[None, :, None]
    curve = (
        (1 - t) ** 3 * b0[:, None]
        + 3 * (1 - t) ** 2 * t * b1[:, None]
        + 3 * (1 - t) * t**2 * b2[:, None]
        + t**3 * b3[:, None]
    )
    return curve.reshape(-1, 2)


def thin_closed(xy: np.ndarray, step: float = TRACK_DETAIL_STEP) -> np.ndarray:
    """Keep points of the closed polyline `xy` [n, 2] about `step` apart along it (the point nearest each
    multiple of length / round(length / step)): consecutive kept points span one road tile."""
    xy = np.asarray(xy, dtype=np.float64)
    seg = np.linalg.norm(np.diff(np.vstack([xy, xy[:1]]), axis=0), axis=1)
    cum = np.concatenate([[0.0], np.cumsum(seg)[:-1]])
    total = float(seg.sum())
    n = max(round(total / step), 3)
    targets = np.arange(n) * (total / n)
    idx = np.clip(np.searchsorted(cum, targets), 0, len(xy) - 1)
    prev = np.clip(idx - 1, 0, len(xy) - 1)
    idx = np.where(np.abs(cum[prev] - targets) < np.abs(cum[idx] - targets), prev, idx)
    kept = xy[np.unique(idx)]
    # a glitch in the source (a point doubling back) can leave two kept points almost together: keep a
    # point only if it is at least half a tile from the last kept one (and from the first, closing the loop)
    out = [kept[0]]
    x0, y0 = kept[0]
    for x, y in kept[1:].tolist():
        if math.hypot(x - out[-1][0], y - out[-1][1]) >= step / 2 and math.hypot(x - x0, y - y0) >= step / 2:
            out.append((x, y))
    return np.asarray(out, dtype=np.float64)


def polyline_crosses(xy: np.ndarray) -> bool:
    """Whether the closed polyline `xy` [n, 2] crosses itself (two non-adjacent segments intersect properly)."""
    a = np.asarray(xy, dtype=np.float64)
    d = np.roll(a, -1, axis=0) - a
    b = a + d
    n = len(a)
    # side[p][i, j] = cross(d_i, p_j - a_i): the side of segment i on which point p_j lies
    base = d[:, 0] * a[:, 1] - d[:, 1] * a[:, 0]
    side_a = np.outer(d[:, 0], a[:, 1]) - np.outer(d[:, 1], a[:, 0]) - base[:, None]
    side_b = np.outer(d[:, 0], b[:, 1]) - np.outer(d[:, 1], b[:, 0]) - base[:, None]
    straddle = side_a * side_b < 0  # segment j's ends on both sides of segment i's line
    i, j = np.triu_indices(n, k=2)
    keep = ~((i == 0) & (j == n - 1))  # the closing segment touches the first one
    i, j = i[keep], j[keep]
    return bool(np.any(straddle[i, j] & straddle[j, i]))


def level_centerline(level: TrackLevel) -> np.ndarray:
    """World-unit centerline of a level [n, 2], one point per road tile, centred on the origin, starting
    half-way between the first two control points and running counter-clockwise."""
    if len(level.points) < 3:
        raise ValueError(f"a track needs at least 3 control points, got {len(level.points)}")
    world = (np.asarray(level.points, dtype=np.float64) + 1.0) * CELL_SIZE
    curve = bezier_loop(world)
    curve = np.roll(curve, -(len(curve) // len(world)) // 2, axis=0)
    curve -= (curve.min(axis=0) + curve.max(axis=0)) / 2.0
    return thin_closed(curve)


def centerline_of(level: TrackLevel | Centerline) -> np.ndarray:
    """The road's centerline [n, 2] in world units for either kind of level."""
    if isinstance(level, Centerline):
        return np.asarray(level.xy, dtype=np.float64)
    return level_centerline(level)


def track_geometry_stats(xy: np.ndarray) -> dict[str, float]:
    """Length, tiles and curvature (radians per world unit, from heading changes between tiles)."""
    d = np.diff(np.vstack([xy, xy[:1]]), axis=0)
    seg = np.linalg.norm(d, axis=1)
    heading = np.arctan2(d[:, 1], d[:, 0])
    turn = np.angle(np.exp(1j * (np.roll(heading, -1) - heading)))
    curvature = np.abs(turn) / np.maximum(seg, 1e-9)
    return {
        "length": float(seg.sum()),
        "tiles": float(len(xy)),
        "total_turning": float(np.abs(turn).sum()),
        "mean_abs_curvature": float(curvature.mean()),
        "max_abs_curvature": float(curvature.max()),
        "sharp_turn_fraction": float(np.mean(np.abs(turn) > 0.31 * 0.5)),
    }


def _check_valid(level: TrackLevel) -> bool:
    if not MIN_POINTS <= len(level.points) <= MAX_POINTS or level.area() < MIN_AREA:
        return False
    return not polyline_crosses(level_centerline(level))


DEFAULT_LEVEL = TrackLevel(DEFAULT_RING)


def repair_track(level: TrackLevel) -> TrackLevel:
    """The documented deterministic repair (module docstring): at most 21 candidates, then DEFAULT_LEVEL."""
    if _check_valid(level):
        return level
    pts = list(level.points)
    if len(pts) > MIN_POINTS:
        for k in range(len(pts)):
            candidate = TrackLevel(tuple(pts[:k] + pts[k + 1 :]))
            if _check_valid(candidate):
                return candidate
    missing = [c for c in DEFAULT_RING if c not in pts]
    for n_add in range(1, len(missing) + 1):
        own = pts[: MAX_POINTS - n_add]
        candidate = TrackLevel(tuple(own) + tuple(missing[:n_add]))
        if _check_valid(candidate):
            return candidate
    return DEFAULT_LEVEL


def _usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


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
    #: evaluation runs one process per sub-env and rendering is ~98% of the cost: a few per usable core
    #: (more than the cores, so that chunks of episodes of unequal length keep every core busy)
    eval_batch_size = min(32, max(8, 2 * _usable_cores()))
    #: `load_levels` reads JSON track files (`load_track_file`) and `x,y x,y ...` text files
    level_file_patterns = ("*.json", "*.txt")

    def __init__(self, max_episode_steps: int = DEFAULT_MAX_EPISODE_STEPS):
        """`max_episode_steps`: the frame limit of an episode on a sketch track (`TrackLevel`; gymnasium's
        CarRacing-v3: 1000). `Centerline` tracks (F1 files) keep their own published limits."""
        steps = max_episode_steps
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise UsageError(
                f"carracing option max_episode_steps must be a positive number of frames, got {steps!r}; "
                f"e.g. {DEFAULT_MAX_EPISODE_STEPS} (gymnasium's CarRacing-v3)"
            )
        self.max_episode_steps = max_episode_steps

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
        """4..12 points at distinct random cells (uniform), repaired if they cannot make a track."""
        n = int(rng.integers(MIN_POINTS, MAX_POINTS + 1))
        cells = rng.choice(NUM_CELLS, size=n, replace=False)
        return self.repair(TrackLevel(tuple((int(c) % GRID, int(c) // GRID) for c in cells)))

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
        return _check_valid(level)

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
        from ued.environments.carracing_env import make_student_env

        if level is None:
            level = self.sample(np.random.default_rng(0))
        return make_student_env(
            level,
            reward_shaping=not eval_mode,
            render_mode=render_mode,
            max_episode_steps=self.max_episode_steps,
        )

    def make_vector_env(
        self, num_envs: int, *, seed: int = 0, device: str = "cpu", evaluation: bool = False
    ) -> Any:
        """gymnasium's AsyncVectorEnv of `make_env` (one process per env: pixel rendering is ~98% of the
        cost), wrapped as a `ued.vecenv.GymLevelVectorEnv`; `evaluation=True`: `make_env(eval_mode=True)`
        envs (the game's own reward, no shaping, no early stop), as the published F1 returns use."""
        from ued.vecenv import GymLevelVectorEnv

        return GymLevelVectorEnv(
            self, num_envs, seed=seed, device=device, asynchronous=True, env_kwargs={"eval_mode": evaluation}
        )

    def episode_limit(self, level: TrackLevel | Centerline) -> int:
        """Frames per episode: a `Centerline`'s own limit, else the family's `max_episode_steps`."""
        if isinstance(level, Centerline):
            return level.max_episode_steps
        return self.max_episode_steps

    def make_student(self, device: str = "cpu") -> CarRacingPolicy:
        return CarRacingPolicy().to(device)

    def default_ppo(self) -> Any:
        """dcd's CarRacing students: 16 envs x 125 steps, lr 3e-4, gamma 0.99, lambda 0.9, 8 epochs, 4
        minibatches."""
        from ued.config import PPOConfig

        return PPOConfig(
            num_envs=16, num_steps=125, lr=3e-4, gamma=0.99, gae_lambda=0.9, epochs=8, num_minibatches=4
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
            return load_track_file(path)
        return super().load_level_file(path)

    def from_text(self, text: str) -> TrackLevel:
        try:
            pts = tuple(tuple(int(v) for v in item.split(",")) for item in text.split())
            if any(len(p) != 2 for p in pts):
                raise ValueError("each point needs two coordinates")
            return TrackLevel(pts)  # type: ignore[arg-type]
        except ValueError as exc:
            raise UsageError(f"bad track text {text!r} ({exc}); write cells as 'x,y x,y ...', 0 <= x,y < 10")


# ----- pictures ----------------------------------------------------------------------------------------
def render_track(level: TrackLevel | Centerline, size: int = 256) -> np.ndarray:
    """uint8 (size, size, 3) top view: the road (grey, true width) on grass, a white bar at the start line
    and, for a `TrackLevel`, its control points (red; the first one larger)."""
    from PIL import Image, ImageDraw

    xy = centerline_of(level)
    half_width = 40 / SCALE  # gymnasium's TRACK_WIDTH (half the road's width)
    extent = float(np.abs(xy).max()) + 3 * half_width
    if isinstance(level, TrackLevel):  # one scale for all sketch tracks, so sizes compare
        extent = max(extent, PLAYFIELD / 2)
    scale = size / (2 * extent)

    def px(p: np.ndarray) -> list[tuple[float, float]]:
        p = np.atleast_2d(p)
        return [(float((x + extent) * scale), float((extent - y) * scale)) for x, y in p]

    image = Image.new("RGB", (size, size), (102, 204, 102))
    draw = ImageDraw.Draw(image)
    d = np.roll(xy, -1, axis=0) - np.roll(xy, 1, axis=0)
    normal = np.stack([-d[:, 1], d[:, 0]], axis=1) / np.maximum(
        np.linalg.norm(d, axis=1, keepdims=True), 1e-9
    )
    left, right = px(xy + half_width * normal), px(xy - half_width * normal)
    for i in range(len(xy)):  # one quad per road tile, as the env draws them
        quad = [left[i - 1], left[i], right[i], right[i - 1]]
        draw.polygon(quad, fill=(102, 102, 102), outline=(102, 102, 102))
    draw.line([left[0], right[0]], fill=(255, 255, 255), width=max(1, round(scale * 2)))
    if isinstance(level, TrackLevel):
        world = (np.asarray(level.points, dtype=np.float64) + 1.0) * CELL_SIZE
        curve = bezier_loop(world)
        world -= (curve.min(axis=0) + curve.max(axis=0)) / 2.0
        for i, (x, y) in enumerate(px(world)):
            r = max(2.0, size / 80) * (1.6 if i == 0 else 1.0)
            draw.ellipse([x - r, y - r, x + r, y + r], fill=(220, 30, 30))
    return np.asarray(image, dtype=np.uint8)


# ----- track files ---------------------------------------------------------------------------------------
TRACKS_DIR = Path(__file__).resolve().parent / "tracks"


def _centerline_from_entry(entry: dict[str, Any], where: str) -> Centerline:
    try:
        xy = np.asarray(entry["xy"], dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise UsageError(f"{where}: 'xy' must be a list of [x, y] numbers ({exc})") from None
    if xy.ndim != 2 or xy.shape[1] != 2 or len(xy) < 8:
        raise UsageError(f"{where}: 'xy' must be at least 8 [x, y] points, got shape {xy.shape}")
    if not np.all(np.isfinite(xy)):
        raise UsageError(f"{where}: 'xy' holds NaN or infinite coordinates; fix the file")
    seg = np.linalg.norm(np.diff(xy, axis=0), axis=1)
    gap = float(np.linalg.norm(xy[-1] - xy[0]))
    if gap > max(2 * TRACK_DETAIL_STEP, 5 * float(np.median(seg))):
        raise UsageError(
            f"{where}: the centerline does not close (its last point is {gap:.1f} units from "
            "the first); list a closed loop, ending next to where it starts"
        )
    bounds = float(entry.get("bounds", 2000.0))
    max_steps = int(entry.get("max_episode_steps", DEFAULT_MAX_EPISODE_STEPS))
    if bounds <= 0 or max_steps <= 0:
        raise UsageError(f"{where}: 'bounds' and 'max_episode_steps' must be positive")
    kept = thin_closed(xy)
    kept = kept - (kept.min(axis=0) + kept.max(axis=0)) / 2.0  # centred on the origin, as dcd does
    playfield = bounds / SCALE
    reach = float(np.abs(kept).max())
    if reach + 40 / SCALE > playfield:
        raise UsageError(
            f"{where}: the track reaches {reach:.0f} units from its centre but the playfield is "
            f"only {playfield:.0f} (bounds / {SCALE:g}); raise 'bounds' to at least "
            f"{(reach + 10) * SCALE:.0f}"
        )
    return Centerline(
        str(entry["name"]),
        tuple(map(tuple, kept.tolist())),
        max_steps,
        playfield,
        float(entry.get("full_zoom", 0.25)),
    )


def load_track_file(path: str | Path) -> list[tuple[str, TrackLevel | Centerline]]:
    """Named held-out tracks from a JSON file: `{"tracks": [...]}` where each entry has a `name` and either
    `points` (control-point cells, a `TrackLevel`) or `xy` (a closed centerline polyline in world units, the
    F1 format: with `max_episode_steps` in frames, `bounds` = playfield half-size * 6, `full_zoom`).
    Centerlines are thinned to one point per road tile. Malformed files raise `UsageError`."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise UsageError(
            f"track file {str(path)!r} does not exist; give the path of a .json track file"
        ) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UsageError(f"cannot read track file {str(path)!r} as JSON ({exc})") from None
    tracks = data.get("tracks") if isinstance(data, dict) else None
    if not isinstance(tracks, list) or not tracks:
        raise UsageError(f'{path}: expected {{"tracks": [{{"name": ..., "points" or "xy": ...}}, ...]}}')
    out: list[tuple[str, TrackLevel | Centerline]] = []
    for i, entry in enumerate(tracks):
        where = f"{path} track {i}"
        if not isinstance(entry, dict) or "name" not in entry:
            raise UsageError(f"{where}: each track needs a 'name' and 'points' or 'xy'")
        where = f"{path} track {entry['name']!r}"
        if "xy" in entry:
            out.append((str(entry["name"]), _centerline_from_entry(entry, where)))
        elif "points" in entry:
            try:
                level = TrackLevel(tuple(tuple(p) for p in entry["points"]))
            except (TypeError, ValueError) as exc:
                raise UsageError(
                    f"{where}: bad 'points' ({exc}); list [x, y] cells, 0 <= x, y < 10"
                ) from None
            if not _check_valid(level):
                raise UsageError(
                    f"{where}: its points cannot make a closed track (need 4..12 distinct, "
                    "non-collinear cells whose curve does not cross itself)"
                )
            out.append((str(entry["name"]), level))
        else:
            raise UsageError(f"{where}: needs 'points' (sketch cells) or 'xy' (a centerline)")
    names = [n for n, _ in out]
    if len(set(names)) != len(names):
        raise UsageError(f"{path}: track names must be unique, got {names}")
    return out


def transfer_tracks() -> list[tuple[str, TrackLevel | Centerline]]:
    """The held-out suite `carracing-transfer`: every track of `environments/tracks/*.json`, by file name."""
    out: list[tuple[str, TrackLevel | Centerline]] = []
    for file in sorted(TRACKS_DIR.glob("*.json")):
        out += load_track_file(file)
    return out


register_suite(
    Suite(
        name="carracing-transfer",
        family="carracing",
        description="held-out tracks designed for ued: straights, hairpins, chicane, S-curves, star, ...",
        loader=transfer_tracks,
    )
)


# ----- the student network ---------------------------------------------------------------------------------
class CarRacingPolicy(EncoderPolicy):
    """The dcd CarRacing student: 6 conv layers (8, 16, 32, 64, 128, 256 channels; 96x96 -> 1x1), actor and
    critic MLPs (100), and a Beta distribution per action dim (alpha, beta = 1 + softplus) over [0, 1]^3.

    Observations: uint8 [B, 12, 96, 96] (4 stacked RGB frames, channel-first), scaled to [-1, 1] here.
    Actions: [B, 3] in [0, 1] (steer, gas, brake before the env's mapping to steer in [-1, 1]). Feed-forward:
    `is_recurrent` False and the state is None.
    """

    def __init__(self, in_channels: int = 12, hidden: int = 100, num_actions: int = 3):
        super().__init__(
            256,
            0,
            actor=mlp(256, [hidden], 2 * num_actions, out_gain=0.01),
            critic=mlp(256, [hidden], 1, out_gain=1.0),
        )
        chans = [in_channels, 8, 16, 32, 64, 128, 256]
        kernels, strides = [4, 3, 3, 3, 3, 3], [2, 2, 2, 2, 1, 1]
        layers: list[nn.Module] = []
        for c_in, c_out, k, s in zip(chans[:-1], chans[1:], kernels, strides):
            layers += [init_orthogonal(nn.Conv2d(c_in, c_out, k, stride=s)), nn.ReLU()]
        self.conv = nn.Sequential(*layers, nn.Flatten())

    def encode(self, obs: torch.Tensor) -> torch.Tensor:
        return self.conv(obs.float() / 127.5 - 1.0)

    def distribution(self, params: torch.Tensor) -> Independent:
        return _ClampedBeta(beta_from_params(params))


class _ClampedBeta(Independent):
    """`beta_from_params`' Independent Beta whose log_prob clamps actions into (0, 1): a float32 sample can
    round to exactly 0 or 1, where the Beta density would give -inf / nan."""

    EPS = 1e-6

    def __init__(self, dist: Independent):
        super().__init__(dist.base_dist, dist.reinterpreted_batch_ndims, validate_args=False)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        return super().log_prob(value.clamp(self.EPS, 1.0 - self.EPS))


__all__ = [
    "DEFAULT_LEVEL",
    "CarRacingFamily",
    "CarRacingPolicy",
    "Centerline",
    "TrackLevel",
    "load_track_file",
    "render_track",
    "transfer_tracks",
]
