"""Track files: named held-out tracks in JSON (ued's designed tracks, or the F1 centerline format of the
published CarRacing benchmark), and the `carracing-transfer` suite of the tracks shipped with ued."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from ued.environments.suites import Suite, register_suite
from ued.environments.tracks import (
    DEFAULT_MAX_EPISODE_STEPS,
    SCALE,
    TRACK_DETAIL_STEP,
    Centerline,
    TrackLevel,
    is_valid_track,
    thin_closed,
)
from ued.errors import UsageError

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
            if not is_valid_track(level):
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
