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

Limits on any track (checked on track files by `track_files.py`, before anything is allocated): at least
`MIN_TRACK_TILES` road tiles and at most `MAX_TRACK_TILES`, a centerline at least `MIN_TRACK_LENGTH` long
(20 car lengths: a smaller loop lies under the car's road width and completes a lap at once; the smallest
sketch track, a one-cell square, is 138 units long), no zero-length tile, no self-crossing.
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
#: dcd's `edgy` (car_racing_bezier.py calls bezier.py's `get_bezier_curve` with 0.2): the weight of one
#: chord's angle in the tangent at a point, 1/2 + arctan(edgy) / pi (`bezier_tangents`)
BEZIER_EDGY = 0.2
#: Bezier samples per world unit of the longest chord (a dense curve, then thinned to tiles)
BEZIER_DENSITY = 1.0

#: length of gymnasium's car hull in world units (car_dynamics.py: y from -120 to +130, SIZE 0.02)
CAR_LENGTH = 5.0
#: shortest track (centerline length, world units): 20 car lengths
MIN_TRACK_LENGTH = 20 * CAR_LENGTH
#: fewest and most road tiles of a track (the F1 circuits have 4999; Box2D builds one body per tile)
MIN_TRACK_TILES, MAX_TRACK_TILES = 8, 20_000

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
        def cell(p: object) -> Cell:
            ok = isinstance(p, (tuple, list)) and len(p) == 2
            if not ok or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in p):
                raise ValueError(f"track control points must be (x, y) pairs of integers, got {p!r:.40}")
            return (int(p[0]), int(p[1]))

        pts = tuple(cell(p) for p in self.points)
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

    `xy` [n, 2] holds one point per road tile (tile i joins point i - 1 and point i, tile 0 closes the loop
    from the last point); `playfield` is the half-size of the field (leaving it ends the episode),
    `max_episode_steps` the episode limit in frames. The road is laid as dcd lays it: at point i the road is
    perpendicular to the chord to the next point, and the car starts at point 0 facing *against* the
    point order (dcd's beta = chord angle + pi/2; see `road_betas`). `last_heading` is the angle (radians)
    of the last point's chord: dcd reads a published polyline's last point as its closing point, keeps no
    tile for it but aims the last tile at it; None aims it back at point 0.
    """

    name: str
    xy: tuple[tuple[float, float], ...]
    max_episode_steps: int = DEFAULT_MAX_EPISODE_STEPS
    playfield: float = PLAYFIELD
    full_zoom: float = 0.25
    last_heading: float | None = None

    def __post_init__(self) -> None:
        steps = self.max_episode_steps
        if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1:
            raise ValueError(f"Centerline max_episode_steps must be a positive integer, got {steps!r}")
        for key in ("playfield", "full_zoom"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf:
                raise ValueError(f"Centerline {key} must be a positive finite number, got {value!r}")


# ----- geometry ----------------------------------------------------------------------------------------
def bezier_tangents(points: np.ndarray, edgy: float = BEZIER_EDGY) -> np.ndarray:
    """Unit tangents [n, 2] at `points` [n, 2] (counter-clockwise order) as dcd's `get_bezier_curve` sets
    them. dcd walks the points the other way round (its `ccw_sort` is clockwise); there, the angle at a
    point is w * (the outgoing chord's angle) + (1 - w) * (the incoming one's), both in [0, 2 pi), plus pi
    where they differ by more than pi, with w = 1/2 + arctan(edgy) / pi. edgy 0 bisects the two chords."""
    q = np.asarray(points, dtype=np.float64)[::-1]  # dcd's order
    d = np.roll(q, -1, axis=0) - q
    out = np.mod(np.arctan2(d[:, 1], d[:, 0]), 2 * math.pi)
    into = np.roll(out, 1)
    w = math.atan(edgy) / math.pi + 0.5
    angle = w * out + (1 - w) * into + math.pi * (np.abs(into - out) > math.pi)
    return -np.stack([np.cos(angle), np.sin(angle)], axis=1)[::-1]  # back to our order and direction


def bezier_loop(
    points: np.ndarray, rad: float = BEZIER_RAD, samples: int | None = None, edgy: float = BEZIER_EDGY
) -> np.ndarray:
    """Closed smooth curve through `points` [n, 2] (in order): one cubic Bezier segment per pair of
    consecutive points, tangents as dcd's (`bezier_tangents`), handles `rad` * chord long. Returns
    [n * samples, 2] (each segment's end point left out: it starts the next one); by default `samples`
    gives about `BEZIER_DENSITY` points per world unit on the longest segment."""
    p = np.asarray(points, dtype=np.float64)
    d = np.roll(p, -1, axis=0) - p
    length = np.linalg.norm(d, axis=1, keepdims=True)
    tangent = bezier_tangents(p, edgy)
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


def polyline_crosses(xy: np.ndarray, chunk: int = 1 << 18) -> bool:
    """Whether the closed polyline `xy` [n, 2] crosses itself (two non-adjacent segments intersect properly:
    each one's end points strictly on both sides of the other's line).

    Exact and memory-bounded: only pairs of segments whose extents overlap along one axis can cross, so the
    segments are sorted by their low end along the axis that leaves fewer such pairs, and the candidate
    pairs are tested `chunk` at a time (a 5000-point F1 circuit: a few thousand pairs, milliseconds; the
    worst case, every extent overlapping, is O(n^2) time in O(chunk) memory)."""
    a = np.asarray(xy, dtype=np.float64)
    n = len(a)
    if n < 4:
        return False
    d = np.roll(a, -1, axis=0) - a
    b = a + d
    # side of segment i on which point p_j lies: cross(d_i, p_j - a_i), as d_i x p_j - d_i x a_i
    base = d[:, 0] * a[:, 1] - d[:, 1] * a[:, 0]
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    best = None
    for axis in (0, 1):
        order = np.argsort(lo[:, axis], kind="stable")
        # sorted segment k overlaps sorted segments k + 1 .. k + count[k] along this axis
        count = np.searchsorted(lo[order, axis], hi[order, axis], side="right") - np.arange(n) - 1
        if best is None or count.sum() < best[1].sum():
            best = (order, count)
    order, count = best
    ends = np.cumsum(count)
    k0 = 0
    while k0 < n:
        k1 = max(int(np.searchsorted(ends, (ends[k0 - 1] if k0 else 0) + chunk, side="right")), k0 + 1)
        k1 = min(k1, n)
        reps = count[k0:k1]
        total = int(reps.sum())
        if total:
            ks = np.repeat(np.arange(k0, k1), reps)
            first = np.repeat(np.cumsum(reps) - reps, reps)
            ms = ks + 1 + (np.arange(total) - first)
            i, j = order[ks], order[ms]
            far = np.abs(i - j)
            keep = (far > 1) & (far != n - 1)  # neighbours share an end point (0 and n - 1 too)
            i, j = i[keep], j[keep]
            sa_ij = d[i, 0] * a[j, 1] - d[i, 1] * a[j, 0] - base[i]
            sb_ij = d[i, 0] * b[j, 1] - d[i, 1] * b[j, 0] - base[i]
            sa_ji = d[j, 0] * a[i, 1] - d[j, 1] * a[i, 0] - base[j]
            sb_ji = d[j, 0] * b[i, 1] - d[j, 1] * b[i, 0] - base[j]
            if np.any((sa_ij * sb_ij < 0) & (sa_ji * sb_ji < 0)):
                return True
        k0 = k1
    return False


def road_betas(line: Centerline) -> np.ndarray:
    """dcd's road angle at each point of a `Centerline` [n]: the angle of the chord to the next point
    (`last_heading` for the last one) + pi/2, not unwrapped. The road's edges at point i lie along
    (cos beta, sin beta), and the car starts at point 0 with angle beta[0]: facing against the point order
    (gymnasium's car drives along (-sin beta, cos beta))."""
    xy = np.asarray(line.xy, dtype=np.float64)
    d = np.roll(xy, -1, axis=0) - xy
    alpha = np.arctan2(d[:, 1], d[:, 0])
    if line.last_heading is not None:
        alpha[-1] = line.last_heading
    return alpha + math.pi / 2


def start_point(level: TrackLevel) -> int:
    """Index of the control point the car starts on: dcd's first point, the one of least
    atan2(dx, dy) about the points' mean (bezier.py `ccw_sort`; the track starts at its curve's first
    sample, car_racing_bezier.py). Points in one direction from the mean tie (dcd orders them by input
    order): the farthest, the last of them in our order, which starts our curve walked as dcd walks it."""
    pts = np.asarray(level.points, dtype=np.int64)
    rel = len(pts) * pts - pts.sum(axis=0)  # exact, as `sort_ccw`
    best = int(np.argmin(np.arctan2(rel[:, 0], rel[:, 1])))
    first = rel[best]
    same = (rel[:, 0] * first[1] - rel[:, 1] * first[0] == 0) & (rel @ first > 0)
    same[best] = True  # also when it lies on the mean (a degenerate, collinear level)
    return int(np.flatnonzero(same)[-1])


def level_centerline(level: TrackLevel) -> np.ndarray:
    """World-unit centerline of a level [n, 2], one point per road tile, centred on the origin, starting at
    the control point dcd starts on (`start_point`) and running counter-clockwise."""
    if len(level.points) < 3:
        raise ValueError(f"a track needs at least 3 control points, got {len(level.points)}")
    world = (np.asarray(level.points, dtype=np.float64) + 1.0) * CELL_SIZE
    curve = bezier_loop(world)
    curve = np.roll(curve, -(len(curve) // len(world)) * start_point(level), axis=0)
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
