"""Race tracks as levels: control points on a 10x10 sketch grid (`TrackLevel`, dcd / CLUTR) or external
centerlines (`Centerline`, e.g. real circuits), and their geometry: the smooth closed curve through the
points, road tiles, self-crossing checks, validity and the deterministic repair.

A `TrackLevel` is 4..12 distinct cells of a 10x10 sketch grid, kept sorted counter-clockwise around their
centroid. The track is a closed smooth curve (cubic Bezier segments through the sorted points) scaled to
gymnasium's CarRacing playfield.

Validity and repair: a level is valid when it has 4..12 distinct points, its sorted polygon encloses an
area of at least `MIN_AREA` cells (collinear points do not) and its centerline does not cross itself.
`repair_track` is deterministic and bounded (at most 21 candidate levels are checked):
1. a valid level is returned unchanged;
2. else the first level, in counter-clockwise order, with one point removed that is valid (>= 4 points left);
3. else the level with 1, 2, ... 8 cells of `DEFAULT_RING` added (own points dropped from the end to stay at
   12), the first valid one;
4. else `DEFAULT_LEVEL` (the 8-cell ring, a rounded octagon).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

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


def is_valid_track(level: TrackLevel) -> bool:
    """Whether `level` makes a closed track: 4..12 points, a polygon of some area, a centerline that does not
    cross itself."""
    if not MIN_POINTS <= len(level.points) <= MAX_POINTS or level.area() < MIN_AREA:
        return False
    return not polyline_crosses(level_centerline(level))


DEFAULT_LEVEL = TrackLevel(DEFAULT_RING)


def repair_track(level: TrackLevel) -> TrackLevel:
    """The documented deterministic repair (module docstring): at most 21 candidates, then DEFAULT_LEVEL."""
    if is_valid_track(level):
        return level
    pts = list(level.points)
    if len(pts) > MIN_POINTS:
        for k in range(len(pts)):
            candidate = TrackLevel(tuple(pts[:k] + pts[k + 1 :]))
            if is_valid_track(candidate):
                return candidate
    missing = [c for c in DEFAULT_RING if c not in pts]
    for n_add in range(1, len(missing) + 1):
        own = pts[: MAX_POINTS - n_add]
        candidate = TrackLevel(tuple(own) + tuple(missing[:n_add]))
        if is_valid_track(candidate):
            return candidate
    return DEFAULT_LEVEL
