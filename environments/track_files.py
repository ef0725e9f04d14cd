"""Track files: named held-out tracks in JSON (ued's designed tracks, or the F1 centerline format of the
published CarRacing benchmark), and the `carracing-transfer` suite of the tracks shipped with ued.

A centerline (`xy`) becomes a `Centerline` as dcd builds its F1 tracks (`car_racing_bezier.py`): the
polyline's last point is its closing point (the first point again, or the point before it, as in the F1
data), every other point carries one road tile (no thinning: ~5000 points, 4999 tiles for an F1 circuit),
and the track is centred on the middle of its bounding box. `thin_centerlines=True` instead keeps points
about one gymnasium tile (21/6 units) apart (`thin_closed`, ued's old tiling: numbers not comparable with
published F1 results).

Every bad input is one `UsageError` naming the file, the track and the field, checked before anything big
is allocated: types and ranges of `bounds` (0 < bounds <= `MAX_BOUNDS`), `max_episode_steps` (an integer,
1..`MAX_EPISODE_FRAMES`) and `full_zoom` (0 < zoom <= 10); 8..`MAX_CENTERLINE_POINTS` finite [x, y]
points inside the playfield; a closed loop with no repeated consecutive point, no self-crossing, at least
`MIN_TRACK_TILES` tiles (at most `MAX_TRACK_TILES`) and `MIN_TRACK_LENGTH` units long (see `tracks.py`).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from ued.environments.suites import Suite, register_suite
from ued.environments.tracks import (
    DEFAULT_MAX_EPISODE_STEPS,
    GRID,
    MAX_POINTS,
    MAX_TRACK_TILES,
    MIN_TRACK_LENGTH,
    MIN_TRACK_TILES,
    SCALE,
    TRACK_DETAIL_STEP,
    Centerline,
    TrackLevel,
    is_valid_track,
    polyline_crosses,
    thin_closed,
)
from ued.errors import UsageError
from ued.io import read_input_text

TRACKS_DIR = Path(__file__).resolve().parent / "tracks"
#: largest `bounds` (playfield half-size x 6) of a track file: 10x the F1 circuits' 3000
MAX_BOUNDS = 30_000.0
#: longest episode limit of a track file, in frames (the F1 circuits: 1500..3000)
MAX_EPISODE_FRAMES = 100_000
#: fewest and most points of a centerline (`xy`)
MIN_CENTERLINE_POINTS, MAX_CENTERLINE_POINTS = 8, MAX_TRACK_TILES + 1
#: gymnasium's TRACK_WIDTH: half the road's width
HALF_ROAD = 40 / SCALE


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _number(entry: dict[str, Any], key: str, default: float, upper: float, where: str) -> float:
    """A positive finite number <= `upper` (the field `key`, or `default` when absent)."""
    value = entry.get(key, default)
    if not _is_number(value) or not 0 < value <= upper:  # NaN fails the comparison
        raise UsageError(
            f"{where}: {key!r} must be a number in (0, {upper:g}], got {value!r}; e.g. {key}: {default!r}"
        )
    return float(value)


def _frames(entry: dict[str, Any], where: str) -> int:
    value = entry.get("max_episode_steps", DEFAULT_MAX_EPISODE_STEPS)
    in_range = _is_number(value) and 1 <= value <= MAX_EPISODE_FRAMES  # NaN fails the comparison
    if not in_range or not float(value).is_integer():
        raise UsageError(
            f"{where}: 'max_episode_steps' must be a whole number of frames in 1..{MAX_EPISODE_FRAMES}, "
            f"got {value!r}; e.g. max_episode_steps: {DEFAULT_MAX_EPISODE_STEPS}"
        )
    return int(value)


def _points_array(raw: Any, where: str) -> np.ndarray:
    """`xy` as float64 [n, 2]: a list of 8..MAX_CENTERLINE_POINTS [x, y] pairs of finite numbers."""
    if not isinstance(raw, list) or not MIN_CENTERLINE_POINTS <= len(raw) <= MAX_CENTERLINE_POINTS:
        got = f"{len(raw)} points" if isinstance(raw, list) else type(raw).__name__
        raise UsageError(
            f"{where}: 'xy' must be a list of {MIN_CENTERLINE_POINTS}..{MAX_CENTERLINE_POINTS} [x, y] "
            f"points, got {got}"
        )
    for k, p in enumerate(raw):
        if not (isinstance(p, list) and len(p) == 2 and _is_number(p[0]) and _is_number(p[1])):
            raise UsageError(f"{where}: 'xy' point {k} must be [x, y] with two numbers, got {p!r:.60}")
    try:
        xy = np.asarray(raw, dtype=np.float64)
    except OverflowError:  # an integer beyond the float range
        xy = np.array([[float(v) if abs(v) < 1e308 else math.inf for v in p] for p in raw])
    if not np.all(np.isfinite(xy)):
        k = int(np.flatnonzero(~np.isfinite(xy).all(axis=1))[0])
        raise UsageError(f"{where}: 'xy' point {k} is {raw[k]!r:.60} (NaN or infinite); fix the file")
    return xy


def _centerline_from_entry(entry: dict[str, Any], where: str, thin: bool = False) -> Centerline:
    """The `Centerline` of one `xy` track entry (the module docstring gives the rules and checks)."""
    xy = _points_array(entry["xy"], where)
    bounds = _number(entry, "bounds", 2000.0, MAX_BOUNDS, where)
    max_steps = _frames(entry, where)
    full_zoom = _number(entry, "full_zoom", 0.25, 10.0, where)
    playfield = bounds / SCALE
    # the playfield first: nothing below allocates more than a few arrays of len(xy)
    centre = xy.min(axis=0) / 2 + xy.max(axis=0) / 2  # no overflow near the float limit
    with np.errstate(over="ignore"):
        reach = float(np.max(np.abs(xy - centre)))
    if not reach + HALF_ROAD <= playfield:
        raise UsageError(
            f"{where}: the track reaches {reach:.4g} units from its centre but the playfield is only "
            f"{playfield:.0f} (bounds / {SCALE:g}); raise 'bounds' to at least "
            f"{min((reach + 10) * SCALE, MAX_BOUNDS * 10):.4g} (at most {MAX_BOUNDS:g}) or shrink the track"
        )
    xy = xy - centre
    seg = np.linalg.norm(np.diff(xy, axis=0), axis=1)
    if np.any(seg == 0):
        k = int(np.flatnonzero(seg == 0)[0])
        raise UsageError(
            f"{where}: 'xy' point {k + 1} repeats point {k} (a zero-length road tile); drop the repeat"
        )
    gap = float(np.linalg.norm(xy[-1] - xy[0]))
    if gap > max(2 * TRACK_DETAIL_STEP, 5 * float(np.median(seg))):
        raise UsageError(
            f"{where}: the centerline does not close (its last point is {gap:.1f} units from "
            "the first); list a closed loop, ending next to where it starts"
        )
    length = float(seg.sum()) + gap
    if length < MIN_TRACK_LENGTH:
        raise UsageError(
            f"{where}: the track is only {length:.1f} units long, a track needs at least "
            f"{MIN_TRACK_LENGTH:g} (20 car lengths): a smaller loop lies under the car and ends a lap at once"
        )
    if thin:
        if round(length / TRACK_DETAIL_STEP) > MAX_TRACK_TILES:
            raise UsageError(
                f"{where}: thinned to {TRACK_DETAIL_STEP:.2f}-unit tiles the track would have "
                f"{round(length / TRACK_DETAIL_STEP)} tiles, more than {MAX_TRACK_TILES}; shrink it"
            )
        kept = thin_closed(xy + centre)  # ued's old tiling, centred on the kept points as before
        kept = kept - (kept.min(axis=0) + kept.max(axis=0)) / 2.0
        last_heading = None
    else:
        kept = xy[:-1]  # dcd: the last point closes the loop; the last tile aims at it
        d = xy[-1] - xy[-2]
        last_heading = math.atan2(d[1], d[0])
        if not np.any(kept[-1] != kept[0]):
            raise UsageError(
                f"{where}: 'xy' point {len(xy) - 2} repeats point 0 (the last point closes the loop, so "
                "that is a zero-length road tile); list the first point again at most once, at the end"
            )
    if len(kept) < MIN_TRACK_TILES:
        raise UsageError(
            f"{where}: the centerline leaves {len(kept)} road tiles, a track needs at least {MIN_TRACK_TILES}"
        )
    if polyline_crosses(kept):
        raise UsageError(f"{where}: the centerline crosses itself; a track must be a simple closed loop")
    return Centerline(
        entry["name"], tuple(map(tuple, kept.tolist())), max_steps, playfield, full_zoom, last_heading
    )


def _level_from_points(raw: Any, where: str) -> TrackLevel:
    """A `TrackLevel` from `points`: a list of up to 12 [x, y] integer cells of the 10x10 sketch grid."""
    hint = f"list up to {MAX_POINTS} [x, y] cells, integers 0 <= x, y < {GRID}"
    if not isinstance(raw, list) or len(raw) > MAX_POINTS:
        got = f"{len(raw)} points" if isinstance(raw, list) else type(raw).__name__
        raise UsageError(f"{where}: bad 'points' (got {got}); {hint}")
    for p in raw:
        ok = isinstance(p, list) and len(p) == 2
        if not ok or not all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v < GRID for v in p):
            raise UsageError(f"{where}: bad 'points' (point {p!r:.40}); {hint}")
    level = TrackLevel(tuple((x, y) for x, y in raw))
    if not is_valid_track(level):
        raise UsageError(
            f"{where}: its points cannot make a closed track (need 4..12 distinct, "
            "non-collinear cells whose curve does not cross itself)"
        )
    return level


def load_track_file(
    path: str | Path, *, thin_centerlines: bool = False
) -> list[tuple[str, TrackLevel | Centerline]]:
    """Named held-out tracks from a JSON file: `{"tracks": [...]}` where each entry has a `name` and either
    `points` (control-point cells, a `TrackLevel`) or `xy` (a closed centerline polyline in world units, the
    F1 format: with `max_episode_steps` in frames, `bounds` = playfield half-size * 6, `full_zoom`).
    Centerlines keep one road tile per point (dcd), or are thinned to ~3.5-unit tiles with
    `thin_centerlines` (module docstring). Malformed files raise `UsageError`."""
    path = Path(path)
    text = read_input_text(path, "track file", "give the path of a .json track file")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(f"cannot read track file {str(path)!r} as JSON ({exc})") from None
    except RecursionError:
        raise UsageError(f"cannot read track file {str(path)!r} as JSON (nested too deeply)") from None
    tracks = data.get("tracks") if isinstance(data, dict) else None
    if not isinstance(tracks, list) or not tracks:
        raise UsageError(f'{path}: expected {{"tracks": [{{"name": ..., "points" or "xy": ...}}, ...]}}')
    out: list[tuple[str, TrackLevel | Centerline]] = []
    for i, entry in enumerate(tracks):
        where = f"{path} track {i}"
        if not isinstance(entry, dict) or "name" not in entry:
            raise UsageError(f"{where}: each track needs a 'name' and 'points' or 'xy'")
        name = entry["name"]
        if not isinstance(name, str) or not name.strip():
            raise UsageError(f"{where}: 'name' must be a non-empty string, got {name!r:.40}")
        where = f"{path} track {name!r}"
        if ("xy" in entry) == ("points" in entry):
            both = "not both" if "xy" in entry else "one of them"
            raise UsageError(f"{where}: needs 'points' (sketch cells) or 'xy' (a centerline), {both}")
        if "xy" in entry:
            out.append((name, _centerline_from_entry(entry, where, thin=thin_centerlines)))
        else:
            out.append((name, _level_from_points(entry["points"], where)))
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
