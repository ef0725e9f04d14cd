"""Track files: every bad input is one UsageError line naming the file, the track and the field, raised
before anything big is allocated; never another exception, a hang or a huge allocation."""

from __future__ import annotations

import json
import math
import time
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ued.environments.carracing import CarRacingFamily
from ued.environments.track_files import MAX_CENTERLINE_POINTS, load_track_file
from ued.environments.tracks import MIN_TRACK_LENGTH, Centerline, TrackLevel
from ued.errors import UsageError


def ring_xy(radius: float = 100.0, points: int = 200, centre: tuple[float, float] = (0.0, 0.0)) -> list:
    """A closed circle: `points` distinct points, then the first one again (it closes the loop)."""
    angles = np.linspace(0, 2 * np.pi, points + 1)
    xy = radius * np.stack([np.cos(angles), np.sin(angles)], axis=1) + np.asarray(centre)
    xy[-1] = xy[0]
    return xy.tolist()


def figure_eight(points: int = 400) -> list:
    t = np.linspace(0, 2 * np.pi, points, endpoint=False) + 0.1234  # no vertex on the crossing
    return (150 * np.stack([np.sin(t), np.sin(t) * np.cos(t)], axis=1)).tolist()


def entry(**fields: Any) -> dict:
    """A valid centerline entry with `fields` replaced (a value of `...` removes the field)."""
    out = {"name": "ring", "xy": ring_xy(), "bounds": 2000, "max_episode_steps": 1500, "full_zoom": 0.2}
    out.update(fields)
    return {k: v for k, v in out.items() if v is not ...}


def cells(**fields: Any) -> dict:
    out = {"name": "square", "points": [[0, 0], [9, 0], [9, 9], [0, 9]]}
    out.update(fields)
    return {k: v for k, v in out.items() if v is not ...}


def repeated_point() -> list:
    xy = ring_xy()
    return xy[:10] + [xy[9]] + xy[10:]


def closing_point_then_one_more() -> list:
    """..., p0, p1: the kept points (all but the last) end with p0, so the closing tile has no length."""
    xy = ring_xy()
    return xy + [xy[1]]


BAD_FIELDS = [
    # (case, track entry, words the message must hold)
    ("bounds string", entry(bounds="3000"), ["'bounds'", "'3000'"]),
    ("bounds null", entry(bounds=None), ["'bounds'", "None"]),
    ("bounds NaN", entry(bounds=math.nan), ["'bounds'", "nan"]),
    ("bounds Infinity", entry(bounds=math.inf), ["'bounds'", "inf"]),
    ("bounds boolean", entry(bounds=True), ["'bounds'", "True"]),
    ("bounds negative", entry(bounds=-3000), ["'bounds'", "-3000"]),
    ("bounds zero", entry(bounds=0), ["'bounds'"]),
    ("bounds huge", entry(bounds=1e12), ["'bounds'", "30000"]),
    ("steps string", entry(max_episode_steps="1500"), ["'max_episode_steps'", "'1500'"]),
    ("steps null", entry(max_episode_steps=None), ["'max_episode_steps'"]),
    ("steps NaN", entry(max_episode_steps=math.nan), ["'max_episode_steps'", "nan"]),
    ("steps Infinity", entry(max_episode_steps=math.inf), ["'max_episode_steps'", "inf"]),
    ("steps boolean", entry(max_episode_steps=True), ["'max_episode_steps'"]),
    ("steps negative", entry(max_episode_steps=-5), ["'max_episode_steps'", "-5"]),
    ("steps zero", entry(max_episode_steps=0), ["'max_episode_steps'"]),
    ("steps non-integral", entry(max_episode_steps=1500.5), ["'max_episode_steps'", "whole number"]),
    ("steps huge", entry(max_episode_steps=10**30), ["'max_episode_steps'", "100000"]),
    ("zoom string", entry(full_zoom="big"), ["'full_zoom'", "'big'"]),
    ("zoom null", entry(full_zoom=None), ["'full_zoom'"]),
    ("zoom NaN", entry(full_zoom=math.nan), ["'full_zoom'"]),
    ("zoom negative", entry(full_zoom=-0.2), ["'full_zoom'"]),
    ("zoom boolean", entry(full_zoom=False), ["'full_zoom'"]),
    ("xy string", entry(xy="x"), ["'xy'", "str"]),
    ("xy dict", entry(xy={"x": 1}), ["'xy'", "dict"]),
    ("xy null", entry(xy=None), ["'xy'"]),
    ("xy too few points", entry(xy=ring_xy(points=6)), ["'xy'", "7 points"]),
    ("xy too many points", entry(xy=[[0, 0]] * (MAX_CENTERLINE_POINTS + 1)), ["'xy'", "20002 points"]),
    ("xy string coordinates", entry(xy=[["1", "2"]] * 10), ["'xy' point 0", "two numbers"]),
    ("xy boolean coordinates", entry(xy=[[True, False]] * 10), ["'xy' point 0"]),
    ("xy three coordinates", entry(xy=[[1, 2, 3]] * 10), ["'xy' point 0"]),
    ("xy null coordinate", entry(xy=ring_xy()[:5] + [[None, 1]] + ring_xy()[5:]), ["'xy' point 5"]),
    ("xy NaN", entry(xy=ring_xy()[:5] + [[math.nan, 1]] + ring_xy()[5:]), ["'xy' point 5", "NaN"]),
    ("xy Infinity", entry(xy=ring_xy()[:3] + [[1, -math.inf]] + ring_xy()[3:]), ["'xy' point 3"]),
    ("xy int beyond floats", entry(xy=ring_xy()[:3] + [[10**400, 0]] + ring_xy()[3:]), ["'xy' point 3"]),
    ("xy 1e12 coordinates", entry(xy=ring_xy(radius=1e12)), ["playfield", "'bounds'"]),
    ("xy near the float limit", entry(xy=ring_xy(radius=1e308)), ["playfield"]),
    ("xy off centre", entry(xy=ring_xy(centre=(1e12, 0))), ["playfield"]),  # centred: fits
    ("xy repeated point", entry(xy=repeated_point()), ["'xy' point 10 repeats point 9", "zero-length"]),
    ("xy closes twice", entry(xy=closing_point_then_one_more()), ["repeats point 0"]),
    ("xy not closed", entry(xy=ring_xy()[:150]), ["does not close"]),
    ("xy crosses itself", entry(xy=figure_eight()), ["crosses itself"]),
    ("xy radius-3 circle", entry(xy=ring_xy(radius=3.0, points=40)), ["units long", f"{MIN_TRACK_LENGTH:g}"]),
    ("name number", entry(name=5), ["'name'", "5"]),
    ("name empty", entry(name=" "), ["'name'"]),
    ("name list", entry(name=["a"]), ["'name'"]),
    ("points float", cells(points=[[0, 0], [9, 0], [9, 9.5], [0, 9]]), ["'points'", "9.5"]),
    ("points boolean", cells(points=[[0, 0], [9, 0], [True, 9], [0, 9]]), ["'points'", "True"]),
    ("points string", cells(points="0,0 9,0"), ["'points'", "str"]),
    ("points string cell", cells(points=[["0", "0"], [9, 0], [9, 9], [0, 9]]), ["'points'"]),
    ("points off the grid", cells(points=[[0, 0], [9, 0], [9, 10], [0, 9]]), ["'points'", "0 <= x, y < 10"]),
    ("points too many", cells(points=[[i % 10, i // 10] for i in range(13)]), ["'points'", "13 points"]),
    ("points collinear", cells(points=[[0, 0], [1, 1], [2, 2], [3, 3]]), ["closed track"]),
    ("points and xy", cells(xy=ring_xy()), ["not both"]),
    ("neither points nor xy", cells(points=...), ["'points'", "'xy'", "one of them"]),
]


def write(tmp_path: Path, data: Any, name: str = "tracks.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return path


@pytest.mark.parametrize("thin", [False, True], ids=["published", "thinned"])
@pytest.mark.parametrize("case, track, words", BAD_FIELDS, ids=[c for c, _, _ in BAD_FIELDS])
def test_bad_field_is_one_line_naming_file_track_and_field(tmp_path, case, track, words, thin):
    if case == "xy off centre":  # tracks are centred on their bounding box: far away is fine
        ((_, line),) = load_track_file(write(tmp_path, {"tracks": [track]}), thin_centerlines=thin)
        assert max(abs(v) for p in line.xy for v in p) < 101
        return
    path = write(tmp_path, {"tracks": [track]})
    if case == "xy closes twice" and thin:  # thinning keeps points half a tile apart: no empty tile
        assert len(load_track_file(path, thin_centerlines=True)) == 1
        return
    tracemalloc.start()
    start = time.perf_counter()
    try:
        with pytest.raises(UsageError) as err:
            load_track_file(path, thin_centerlines=thin)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    message = str(err.value)
    assert "\n" not in message and message.startswith(f"{path} track {track.get('name')!r}"[:20])
    assert str(path) in message
    if isinstance(track.get("name"), str) and track["name"].strip():
        assert f"track {track['name']!r}" in message
    for word in words:
        assert word in message, f"{case}: {word!r} not in {message!r}"
    assert time.perf_counter() - start < 2.0 and peak < 64 * 2**20, f"{case}: slow or big ({peak} bytes)"


@pytest.mark.parametrize(
    "content, words",
    [
        (b"not json", ["cannot read"]),
        (b"", ["cannot read"]),
        (b"\xff\xfe\x00", ["cannot read"]),
        (b"[" * 100_000 + b"]" * 100_000, ["cannot read"]),
        (b"[]", ["expected"]),
        (b'{"tracks": {}}', ["expected"]),
        (b'{"tracks": []}', ["expected"]),
        (b'{"tracks": [5]}', ["track 0", "'name'"]),
        (b'{"tracks": [{"points": [[0, 0]]}]}', ["track 0", "'name'"]),
    ],
)
def test_bad_files_are_one_line(tmp_path, content, words):
    path = tmp_path / "t.json"
    path.write_bytes(content)
    with pytest.raises(UsageError) as err:
        load_track_file(path)
    message = str(err.value)
    assert str(path) in message and "\n" not in message
    assert all(word in message for word in words), message


def test_duplicate_names_and_good_files(tmp_path):
    with pytest.raises(UsageError, match="unique"):
        load_track_file(write(tmp_path, {"tracks": [entry(), entry()]}))
    tracks = load_track_file(write(tmp_path, {"tracks": [entry(max_episode_steps=1500.0), cells()]}))
    (_, line), (_, level) = tracks
    assert isinstance(line, Centerline) and isinstance(level, TrackLevel)
    assert line.max_episode_steps == 1500 and isinstance(line.max_episode_steps, int)
    assert len(line.xy) == 200 and line.playfield == pytest.approx(2000 / 6) and line.full_zoom == 0.2
    # an open polyline (no closing repeat) works too: its last point closes the loop, as in the F1 data
    open_ring = ring_xy()[:-1]
    ((_, line),) = load_track_file(write(tmp_path, {"tracks": [entry(xy=open_ring)]}))
    assert len(line.xy) == 199


def test_crossing_check_is_fast_on_big_tracks(tmp_path):
    """5000-point tracks (the F1 size): a simple one and one that crosses itself, each well under a second
    (the check used to build 5000 x 5000 arrays, ~1 GB)."""
    path = write(
        tmp_path,
        {
            "tracks": [
                entry(name="big", xy=ring_xy(300.0, 4999), bounds=3000),
                entry(name="eight", xy=figure_eight(5000), bounds=3000),
            ]
        },
    )
    start = time.perf_counter()
    with pytest.raises(UsageError, match="'eight'.*crosses itself"):
        load_track_file(path)
    assert time.perf_counter() - start < 2.0


def test_text_tracks_that_cannot_be_built_are_refused():
    family = CarRacingFamily()
    for text in ("1,1 2,2", "1,1 1,1 2,2 2,2", "1,1 8,1 8,8 1,8 " * 4, "1.5,2 3,4 5,6 7,8", "", "1,2,3"):
        with pytest.raises(UsageError, match="track text"):
            family.from_text(text)
    assert family.from_text("1,1 8,1 8,8 1,8") == TrackLevel(((1, 1), (8, 1), (8, 8), (1, 8)))
    crossing = family.from_text("0,0 9,9 0,9 9,0 5,1")  # playable as generated levels are, crossing or not
    assert family.from_text(family.to_text(crossing)) == crossing


def test_track_classes_refuse_bad_values():
    for points in (((0.5, 1), (2, 2), (3, 1)), ((True, 1),), (("1", 2),), ((1, 2, 3),)):
        with pytest.raises(ValueError, match="integers"):
            TrackLevel(points)
    for bad in ({"max_episode_steps": 0}, {"max_episode_steps": 1.5}, {"playfield": math.inf}):
        with pytest.raises(ValueError):
            Centerline("c", ((0.0, 0.0),), **bad)


# ----- fuzz -------------------------------------------------------------------------------------------------
def random_value(rng: np.random.Generator, depth: int = 0) -> Any:
    """A random JSON value (NaN and Infinity included, as Python's json reads them)."""
    kind = int(rng.integers(10 if depth < 3 else 7))
    if kind == 0:
        return None
    if kind == 1:
        return bool(rng.integers(2))
    if kind == 2:
        return int(rng.choice([0, 1, -1, 7, 12, 1500, 10**6, 10**18, -(10**30), 10**400]))
    if kind == 3:
        return float(rng.choice([0.0, -0.0, 0.5, -3.7, 1e-300, 1e12, 1e308, math.nan, math.inf, -math.inf]))
    if kind == 4:
        return float(rng.normal() * 10 ** rng.integers(0, 4))
    if kind == 5:
        return str(rng.choice(["", "x", "3000", "NaN", "1,2", " "]))
    if kind == 6:  # a plausible list of pairs
        n = int(rng.integers(0, 40))
        return (rng.normal(size=(n, 2)) * 10 ** rng.integers(0, 4)).round(int(rng.integers(0, 3))).tolist()
    if kind == 7:
        return [random_value(rng, depth + 1) for _ in range(int(rng.integers(0, 5)))]
    if kind == 8:
        return [
            [random_value(rng, depth + 1), random_value(rng, depth + 1)] for _ in range(int(rng.integers(9)))
        ]
    return {str(rng.choice(["xy", "name", "a"])): random_value(rng, depth + 1)}


def mutated_xy(rng: np.random.Generator) -> Any:
    xy = ring_xy(float(rng.choice([3.0, 50.0, 100.0, 400.0])), int(rng.integers(5, 300)))
    edit = int(rng.integers(6))
    if edit == 0 and len(xy) > 3:  # repeat a point
        k = int(rng.integers(1, len(xy) - 1))
        xy.insert(k, list(xy[k]))
    elif edit == 1:  # a random value at a random point
        xy[int(rng.integers(len(xy)))] = random_value(rng, 2)
    elif edit == 2:  # swap two points (may cross)
        i, j = rng.integers(len(xy), size=2)
        xy[i], xy[j] = xy[j], xy[i]
    elif edit == 3:
        xy = xy[: int(rng.integers(len(xy) + 1))]
    elif edit == 4:
        xy = (np.asarray(xy) * float(rng.choice([1e-6, 1e6, -1.0]))).tolist()
    return xy


def test_fuzz_track_entries_raise_usage_error_or_load(tmp_path):
    """~2 s of random values in each field (fixed seed): every file loads or raises UsageError."""
    rng = np.random.default_rng(1234)
    path = tmp_path / "fuzz.json"
    start, tried, loaded = time.perf_counter(), 0, 0
    while time.perf_counter() - start < 2.0 and tried < 3000:
        centerline = rng.random() < 0.7
        track = entry() if centerline else cells()
        fields = (
            ["name", "xy", "bounds", "max_episode_steps", "full_zoom"] if centerline else ["name", "points"]
        )
        fields += ["points" if centerline else "xy"] if rng.random() < 0.05 else []
        for field in rng.choice(fields, size=int(rng.integers(1, 3)), replace=False):
            if field == "xy" and rng.random() < 0.5:
                track["xy"] = mutated_xy(rng)
            elif rng.random() < 0.1:
                track.pop(field, None)
            else:
                track[field] = random_value(rng)
        data = {"tracks": [track]} if rng.random() < 0.95 else random_value(rng)
        path.write_text(json.dumps(data))
        try:
            result = load_track_file(path, thin_centerlines=bool(rng.integers(2)))
        except UsageError as exc:
            assert "\n" not in str(exc) and str(path) in str(exc)
        except Exception as exc:  # noqa: BLE001 - the point of the test
            pytest.fail(f"{type(exc).__name__}: {exc} for {json.dumps(data)[:300]}")
        else:
            loaded += 1
            assert all(isinstance(level, (TrackLevel, Centerline)) for _, level in result)
        tried += 1
    assert tried >= 100 and loaded >= 1
