"""The CarRacing family: tokens, repair, track building, the student env, held-out tracks, the policy."""

from __future__ import annotations

import json
import math
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.envs.box2d import car_racing as gym_car_racing

from ued.environments import track_files
from ued.environments import tracks as cr
from ued.environments.carracing import CarRacingFamily
from ued.environments.carracing_env import (
    FULL_ZOOM,
    TrackRacingEnv,
    camera_view,
)
from ued.environments.carracing_env import _gym_playfield as gym_playfield
from ued.environments.carracing_policy import CarRacingPolicy
from ued.environments.track_files import load_track_file
from ued.environments.tracks import DEFAULT_LEVEL, SKIP, TRACK_DETAIL_STEP, Centerline, TrackLevel
from ued.errors import UsageError
from ued.models import make_student

F1_FILE = Path(__file__).resolve().parents[2] / "shared" / "data" / "f1_tracks.json"
FAMILY = CarRacingFamily()


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Small convs on a shared 2-core machine run ~20x faster on one thread than on two."""
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(saved)


def assert_closed_track(env: TrackRacingEnv) -> None:
    """The built road is a loop of tiles about one tile length apart, the car on tile 0."""
    xy = np.array([t[2:4] for t in env.track])
    gaps = np.linalg.norm(np.diff(np.vstack([xy, xy[:1]]), axis=0), axis=1)
    assert len(env.track) == len(env.road) >= 20
    assert gaps.max() < 2.0 * TRACK_DETAIL_STEP and gaps.min() > 0.4 * TRACK_DETAIL_STEP
    assert np.linalg.norm(np.asarray(env.car.hull.position) - xy[0]) < 1.0  # after one physics step


# ----- tokens -------------------------------------------------------------------------------------------
def test_encode_decode_round_trip_and_canonical_order():
    rng = np.random.default_rng(0)
    for _ in range(30):
        level = FAMILY.sample(rng)
        tokens = FAMILY.encode(level)
        assert tokens.shape == (12,) and tokens.dtype == np.int64
        assert FAMILY.decode(tokens) == level
        n = len(level.points)
        assert np.all(tokens[n:] == SKIP) and np.all(tokens[:n] < 100)
    # the order of the points does not matter, duplicates are dropped
    a = TrackLevel(((0, 0), (9, 0), (9, 9), (0, 9), (9, 0)))
    b = TrackLevel(((9, 9), (0, 9), (0, 0), (9, 0)))
    assert a == b and hash(a) == hash(b) and len(a.points) == 4
    # counter-clockwise around the centroid: signed area > 0
    p = np.array(a.points, dtype=float)
    q = np.roll(p, -1, axis=0)
    assert np.sum(p[:, 0] * q[:, 1] - q[:, 0] * p[:, 1]) > 0


def test_skip_tokens():
    # skips among the first four tokens stand for fixed corners; later ones are honoured
    assert FAMILY.decode([SKIP] * 12).points == TrackLevel(cr.FIRST_FOUR_DEFAULT).points
    assert FAMILY.is_valid(FAMILY.decode([SKIP] * 12))
    level = FAMILY.decode([0, 9, 99, 90, SKIP, SKIP, 45] + [SKIP] * 5)
    assert set(level.points) == {(0, 0), (9, 0), (9, 9), (0, 9), (5, 4)}
    assert FAMILY.decode([]) == FAMILY.decode([SKIP] * 12)
    with pytest.raises(ValueError):
        FAMILY.decode([101])
    with pytest.raises(ValueError):
        FAMILY.decode([0] * 13)


def test_text_form_and_editor_view():
    level = FAMILY.sample(np.random.default_rng(3))
    assert FAMILY.from_text(FAMILY.to_text(level)) == level
    with pytest.raises(UsageError):
        FAMILY.from_text("1,2 3")
    view = FAMILY.editor_view([12, SKIP])  # cell (2, 1), then the default second corner
    assert view.shape == FAMILY.editor_view_shape == (1, 10, 10) and view.dtype == np.float32
    assert view[0, 1, 2] == 1 and view[0, 1, 8] == 1 and view.sum() == 2


# ----- validity and repair --------------------------------------------------------------------------------
ADVERSARIAL = {
    "all skip": [SKIP] * 12,
    "all same cell": [55] * 12,
    "collinear row": [30, 31, 32, 33, 34, 35, 36, 37, 38, 39, SKIP, SKIP],
    "collinear diagonal": [0, 11, 22, 33, 44, 55, 66, 77, 88, 99, SKIP, SKIP],
    "two cells": [0, 99, 0, 99] + [SKIP] * 8,
    "three cells": [0, 9, 90, 0] + [SKIP] * 8,
    "adjacent square": [0, 1, 10, 11] + [SKIP] * 8,
    "column then skips": [5, 15, 25, 35, SKIP, 45, 55] + [SKIP] * 5,
}


@pytest.mark.parametrize("name", sorted(ADVERSARIAL))
def test_adversarial_tokens_repair_to_valid_levels(name, monkeypatch):
    checks = []
    real_check = cr.is_valid_track
    monkeypatch.setattr(cr, "is_valid_track", lambda lvl: checks.append(lvl) or real_check(lvl))
    level = FAMILY.repair(FAMILY.decode(ADVERSARIAL[name]))
    assert len(checks) <= 21  # bounded: the documented number of candidates
    assert real_check(level) and 4 <= len(level.points) <= 12
    assert FAMILY.repair(FAMILY.decode(ADVERSARIAL[name])) == level  # deterministic


def test_invalid_levels_are_detected():
    assert not FAMILY.is_valid(TrackLevel(((0, 0), (1, 1), (2, 2), (3, 3))))  # collinear
    assert not FAMILY.is_valid(TrackLevel(((0, 0), (5, 5), (9, 0))))  # three points
    assert FAMILY.is_valid(DEFAULT_LEVEL)
    assert FAMILY.repair(DEFAULT_LEVEL) == DEFAULT_LEVEL
    with pytest.raises(ValueError):
        TrackLevel(((10, 0), (0, 0), (5, 5), (0, 5)))
    # a self-crossing polyline is detected
    assert cr.polyline_crosses(np.array([[0, 0], [1, 1], [1, 0], [0, 1]], dtype=float))
    assert not cr.polyline_crosses(np.array([[0, 0], [1, 0], [1, 1], [0, 1]], dtype=float))


def test_bezier_tangents_and_start_are_dcds():
    """dcd bezier.py `get_bezier_curve(rad=0.2, edgy=0.2)` as car_racing_bezier.py calls it: the points in
    `ccw_sort` order (clockwise: least atan2(dx, dy) about their mean first), the angle at a point w * out +
    (1 - w) * in of the chords' angles in [0, 2 pi) (+ pi when they differ by more than pi), w = 1/2 +
    arctan(0.2) / pi; the track (and the car) starts at the first sorted point."""
    w = 0.5 + math.atan(0.2) / math.pi
    square = TrackLevel(((1, 1), (8, 1), (8, 8), (1, 8)))  # ours: counter-clockwise from (1, 1)
    world = (np.array(square.points, dtype=float) + 1) * cr.CELL_SIZE
    # dcd walks (1, 1) -> (1, 8) -> (8, 8) -> (8, 1); at (1, 1) out = pi / 2 (up), in = pi (leftwards)
    a = w * math.pi / 2 + (1 - w) * math.pi
    assert cr.bezier_tangents(world)[0] == pytest.approx([-math.cos(a), -math.sin(a)])  # our direction
    # at (8, 1): out = pi (to (1, 1)), in = 3 pi / 2 (down from (8, 8))
    a = w * math.pi + (1 - w) * 1.5 * math.pi
    assert cr.bezier_tangents(world)[1] == pytest.approx([-math.cos(a), -math.sin(a)])
    # at (8, 8): out = 3 pi / 2 (down to (8, 1)), in = 0 (from (1, 8)): they differ by more than pi
    a = w * 1.5 * math.pi + (1 - w) * 0.0 + math.pi
    assert cr.bezier_tangents(world)[2] == pytest.approx([-math.cos(a), -math.sin(a)])
    bisector = cr.bezier_tangents(world, edgy=0.0)[0]
    assert bisector == pytest.approx([math.sqrt(0.5), -math.sqrt(0.5)])  # edgy 0: the chords' bisector
    assert cr.start_point(square) == 0
    line = cr.level_centerline(square)
    centre = (cr.bezier_loop(world).min(axis=0) + cr.bezier_loop(world).max(axis=0)) / 2
    assert line[0] == pytest.approx(world[0] - centre)  # the car starts on the first point
    kite = TrackLevel(((4, 0), (9, 5), (5, 9), (0, 4)))
    assert kite.points[cr.start_point(kite)] == (4, 0)  # just left of straight down from the mean
    tied = TrackLevel(((6, 0), (1, 4), (2, 2), (1, 2)))  # (2, 2) and (1, 2) lie in one direction
    assert tied.points[cr.start_point(tied)] == (1, 2)  # the farther one
    line = TrackLevel(((1, 1), (1, 2), (1, 3)))  # collinear, a point on the mean: still a start, no error
    assert line.points[cr.start_point(line)] in line.points


def test_hundred_random_levels_build_closed_tracks():
    rng = np.random.default_rng(1)
    env = TrackRacingEnv(DEFAULT_LEVEL)
    raw_invalid = 0
    for _ in range(100):
        n = int(rng.integers(4, 13))
        cells = rng.choice(100, size=n, replace=False)
        raw = TrackLevel(tuple((int(c) % 10, int(c) // 10) for c in cells))
        raw_invalid += not FAMILY.is_valid(raw)
        level = FAMILY.repair(raw)
        assert FAMILY.is_valid(level)
        env.reset(options={"level": level})
        assert env.level == level
        assert_closed_track(env)
    env.close()


def test_sample_is_seeded_and_mutate_stays_valid():
    a = [FAMILY.sample(np.random.default_rng(7)) for _ in range(2)]
    assert a[0] == a[1]
    levels = [FAMILY.sample(np.random.default_rng(s)) for s in range(20)]
    assert len(set(levels)) > 15 and {len(lvl.points) for lvl in levels} > {4, 12} - {4, 12}
    rng = np.random.default_rng(0)
    for level in levels[:5]:
        mutated = FAMILY.mutate(level, rng, num_edits=2)
        assert FAMILY.is_valid(mutated)


def test_level_stats_and_render():
    level = TrackLevel(((0, 0), (9, 0), (9, 9), (0, 9)))
    stats = FAMILY.level_stats(level)
    assert stats["points"] == 4
    assert stats["length"] == pytest.approx(4 * 9 * cr.CELL_SIZE, rel=0.1)  # the control square's perimeter
    assert stats["total_turning"] == pytest.approx(2 * math.pi, rel=0.05)
    image = FAMILY.render(level, size=128)
    assert image.shape == (128, 128, 3) and image.dtype == np.uint8
    grey = np.all(image == 102, axis=-1).mean()
    assert 0.05 < grey < 0.5  # some road, mostly grass


# ----- the env ----------------------------------------------------------------------------------------
def test_check_env_student_and_base():
    from gymnasium.utils.env_checker import check_env

    env = FAMILY.make_env(DEFAULT_LEVEL)
    with pytest.warns(UserWarning, match="different from the unwrapped"):
        check_env(env, skip_render_check=True)
    check_env(env.unwrapped, skip_render_check=True)
    env.close()


def test_student_env_shapes_action_mapping_and_level_switch():
    env = FAMILY.make_env(DEFAULT_LEVEL)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (12, 96, 96) and obs.dtype == np.uint8
    assert env.observation_space.contains(obs)
    assert all(np.array_equal(obs[:3], obs[3 * k : 3 * k + 3]) for k in range(4))  # stack of the first frame
    obs2, *_ = env.step(np.array([0.0, 1.0, 0.0], dtype=np.float32))
    base = env.unwrapped
    assert base.frames == 8  # action repeat
    assert np.array_equal(obs2[:9], obs[3:])  # the stack shifted by one frame
    assert base.car.wheels[0].steer == pytest.approx(1.0)  # a[0] = 0 -> steer -1 (gymnasium steers -a[0])
    env.step(np.array([1.0, 0.0, 0.0], dtype=np.float32))
    assert base.car.wheels[0].steer == pytest.approx(-1.0)
    # a new level by assignment, kept through resets
    other = TrackLevel(((0, 3), (0, 6), (9, 3), (9, 6)))
    base.level = other
    env.reset()
    first = len(base.track)
    env.reset()
    assert base.level == other and len(base.track) == first != len(TrackRacingEnv(DEFAULT_LEVEL).level.points)
    env.close()


def test_vector_env_set_levels_reaches_the_track():
    from ued.vecenv import GymLevelVectorEnv

    venv = GymLevelVectorEnv(FAMILY, 2, seed=0)  # synchronous: same envs as make_vector_env, no processes
    square = TrackLevel(((0, 0), (9, 0), (9, 9), (0, 9)))
    venv.set_levels([DEFAULT_LEVEL, square])
    obs = venv.reset(seed=0)
    assert obs.shape == (2, 12, 96, 96) and obs.dtype == torch.uint8
    envs = [e.unwrapped for e in venv._venv.envs]
    assert [e.level for e in envs] == [DEFAULT_LEVEL, square]
    assert len(envs[1].track) == pytest.approx(FAMILY.level_stats(square)["tiles"])
    venv.close()


def test_each_episode_starts_with_fresh_tile_colours():
    """The road geometry is built once per level, but gymnasium recolours the tiles a wheel touches in place:
    a second episode on the same level starts with the colours (and drawn road) of a first one, and a
    touched tile's colour is the one its drawn polygon shows."""
    env = TrackRacingEnv(DEFAULT_LEVEL)
    env.reset(seed=0)
    fresh = [tuple(t.color) for t in env.road]
    poly_colors = [tuple(c) for _, c in env.road_poly]
    for _ in range(60):
        env.step(np.array([0.0, 1.0, 0.0]))
    touched = [i for i, t in enumerate(env.road) if tuple(t.color) != fresh[i]]
    assert touched  # gymnasium recoloured the tiles under the car...
    drawn = {id(c) for _, c in env.road_poly}
    assert all(id(env.road[i].color) in drawn for i in touched)  # ...and draws them recoloured
    env.reset(seed=0)
    assert [tuple(t.color) for t in env.road] == fresh
    assert [tuple(c) for _, c in env.road_poly] == poly_colors
    env.close()


def test_fast_road_rendering_matches_gymnasium():
    from gymnasium.envs.box2d.car_racing import CarRacing

    fast, slow = FAMILY.make_env(DEFAULT_LEVEL), FAMILY.make_env(DEFAULT_LEVEL)
    slow.unwrapped._render_road = lambda *args: CarRacing._render_road(slow.unwrapped, *args)
    assert np.array_equal(fast.reset(seed=0)[0], slow.reset(seed=0)[0])
    for action in ([0.5, 1.0, 0.0], [0.9, 0.6, 0.0], [0.2, 0.3, 0.1]):
        a = np.array(action, dtype=np.float32)
        assert np.array_equal(fast.step(a)[0], slow.step(a)[0])
    fast.close()
    slow.close()


def test_gymnasium_camera_draws_gymnasiums_frames():
    """`TrackRacingEnv._render` with camera="gymnasium" is gymnasium's `_render`, pixel for pixel (zooming in
    over the first second, the view turned to the hull)."""
    from gymnasium.envs.box2d.car_racing import CarRacing

    env = TrackRacingEnv(DEFAULT_LEVEL, camera="gymnasium")
    env.reset(seed=0)
    rng = np.random.default_rng(1)
    for t in range(84):  # 1.7 s: zooming in, then at full zoom
        env.step(np.array([rng.uniform(-1, 1), 1.0, 0.0]))
        if t % 12 == 0:
            with gym_playfield(env.playfield):
                theirs = CarRacing._render(env, "state_pixels")
            assert np.array_equal(env._render("state_pixels"), theirs)
    env.close()


def test_dcd_camera_is_zoomed_in_from_the_start_and_follows_the_velocity():
    """dcd's camera (car_racing_bezier.py `render`, animate_zoom=False): full zoom from the first frame, the
    view turned to the velocity's heading above 0.5 units/s, else to the hull's."""
    from gymnasium.envs.box2d.car_racing import CarRacing

    assert camera_view("dcd", 0.3, (0.0, 0.0), 0.0) == (-0.3, FULL_ZOOM)
    assert camera_view("dcd", 0.3, (0.3, 0.39), 0.0) == (-0.3, FULL_ZOOM)  # 0.49 units/s: the hull's
    assert camera_view("dcd", 0.3, (0.3, 0.4), 0.0) == (-0.3, FULL_ZOOM)  # 0.5: still the hull's (dcd: > 0.5)
    # a car sliding backwards (heading 0 faces +y): the view turns half round, to the velocity
    assert camera_view("dcd", 0.0, (0.0, -3.0), 2.0) == (math.pi, FULL_ZOOM)
    assert camera_view("dcd", 0.3, (3.0, -4.0), 0.5) == (math.atan2(3.0, -4.0), FULL_ZOOM)
    assert camera_view("gymnasium", 0.3, (3.0, -4.0), 0.0) == (-0.3, pytest.approx(0.1 * 6.0))
    assert camera_view("gymnasium", 0.3, (3.0, -4.0), 1.5) == (-0.3, FULL_ZOOM)
    assert FULL_ZOOM == 2.7 * 6.0  # dcd and gymnasium: ZOOM * SCALE

    env = TrackRacingEnv(DEFAULT_LEVEL)  # the default camera is dcd's
    env.reset(seed=0)
    first = env._render("state_pixels")
    env.t = 1.0  # the standing car at gymnasium's full zoom: the same picture
    with gym_playfield(env.playfield):
        assert np.array_equal(first, CarRacing._render(env, "state_pixels"))
    env.t = 0.0
    env.car.hull.linearVelocity = (-5.0, 0.0)  # sliding to the left: the view turns 90 degrees
    assert env.view() == (math.atan2(-5.0, 0.0), FULL_ZOOM)
    assert not np.array_equal(env._render("state_pixels"), first)
    env.close()


def test_bad_camera_option_is_a_clear_error():
    with pytest.raises(UsageError, match="camera"):
        CarRacingFamily(camera="drone")


def test_skipping_offscreen_polygons_changes_no_pixel(monkeypatch):
    """The F1-sized road (0.5-unit tiles, playfield 500, dcd's 25-unit grass squares) drawn with and
    without the off-screen skip of `_render_road`."""
    from ued.environments import carracing_env

    line = ring(radius=300.0, points=3700)
    fast, slow = TrackRacingEnv(line), TrackRacingEnv(line)
    frames = [fast.reset(seed=0)[0]]
    monkeypatch.setattr(carracing_env, "OFFSCREEN_PX", 10**6)
    ref = [slow.reset(seed=0)[0]]
    for action in ([0.0, 1.0, 0.0], [-0.6, 0.5, 0.0], [0.3, 0.2, 0.3]):
        monkeypatch.setattr(carracing_env, "OFFSCREEN_PX", 4)
        frames.append(fast.step(np.array(action))[0])
        monkeypatch.setattr(carracing_env, "OFFSCREEN_PX", 10**6)
        ref.append(slow.step(np.array(action))[0])
    assert all(np.array_equal(a, b) for a, b in zip(frames, ref))
    assert fast._grass_polys[0] == pytest.approx(line.playfield / 20)
    fast.close()
    slow.close()


def test_early_stop_only_with_reward_shaping():
    brake = np.array([0.5, 0.0, 1.0], dtype=np.float32)
    shaped = FAMILY.make_env(DEFAULT_LEVEL)
    shaped.reset(seed=0)
    for step in range(1, 20):
        _, _, terminated, truncated, info = shaped.step(brake)
        if terminated:
            break
    assert terminated and info.get("early_stop") and not truncated
    assert 100 <= shaped.unwrapped.frames <= 8 * 16  # the +tile reward of the start leaves the window
    raw = FAMILY.make_env(DEFAULT_LEVEL, eval_mode=True)
    raw.reset(seed=0)
    rewards = [raw.step(brake)[1:3] for _ in range(16)]
    assert not any(t for _, t in rewards)
    assert rewards[-1][0] == pytest.approx(-0.8, abs=1e-6)  # the game's own -0.1 per frame
    shaped.close()
    raw.close()


def test_centerline_playfield_and_frame_limit():
    angles = np.linspace(0, 2 * np.pi, 800, endpoint=False)
    xy = 400.0 * np.stack([np.cos(angles), np.sin(angles)], axis=1)  # beyond gymnasium's 333 playfield
    entry = {"name": "big", "xy": xy.tolist(), "bounds": 3000, "max_episode_steps": 20}
    line = track_files._centerline_from_entry(entry, "test")
    env = FAMILY.make_env(line, eval_mode=True)
    env.reset(seed=0)
    assert env.unwrapped.car.hull.position[0] > 333
    _, reward, terminated, truncated, _ = env.step(np.array([0.5, 0.0, 0.0], dtype=np.float32))
    assert not terminated and not truncated and reward > -100
    assert gym_car_racing.PLAYFIELD == pytest.approx(2000 / 6)  # restored after the step
    _, _, terminated, truncated, _ = env.step(np.array([0.5, 0.0, 0.0], dtype=np.float32))
    _, _, terminated, truncated, _ = env.step(np.array([0.5, 0.0, 0.0], dtype=np.float32))
    assert truncated and not terminated and env.unwrapped.frames == 20  # 20-frame limit mid action repeat
    env.close()


# ----- track files ------------------------------------------------------------------------------------
def test_transfer_suite():
    from ued.environments.suites import get_suite

    suite = get_suite("carracing-transfer")
    assert suite.family == "carracing"
    levels = suite.levels()
    names = [n for n, _ in levels]
    assert len(levels) >= 8 and len(set(names)) == len(names)
    assert all(isinstance(lvl, TrackLevel) and FAMILY.is_valid(lvl) for _, lvl in levels)
    assert len({lvl for _, lvl in levels}) == len(levels)


needs_f1 = pytest.mark.skipif(
    not F1_FILE.is_file(), reason=f"reference data {F1_FILE} absent (../shared/data): F1 checks skipped"
)


def f1_entries() -> list[dict]:
    return json.loads(F1_FILE.read_text())["tracks"]


@needs_f1
def test_f1_file_holds_the_twenty_benchmark_tracks_and_laguna_seca():
    raw = f1_entries()
    names = [t["name"] for t in raw]
    assert len(names) == 21 and len(set(names)) == 21 and "LagunaSeca" in names  # dcd leaves it out: 20
    for t in raw:
        xy = np.asarray(t["xy"])
        assert xy.shape == (5000, 2) and t["bounds"] == 3000 and 1500 <= t["max_episode_steps"] <= 3000
        assert np.all(np.linalg.norm(np.diff(xy, axis=0), axis=1) > 0)  # no exact repeats to drop


@needs_f1
def test_f1_tracks_have_one_tile_per_centerline_point_and_their_own_limits():
    """dcd's F1 road: the polyline's points as they are (centred on the bounding-box middle), the last
    point closing the loop: 5000 points, 4999 tiles worth 1000/4999 each; the car starts at point 0
    facing against the point order; each track's frame limit; playfield 3000/6."""
    tracks = dict(load_track_file(F1_FILE))
    env = TrackRacingEnv(DEFAULT_LEVEL)
    for entry in [t for t in f1_entries() if t["name"] in ("Belgium", "Monaco", "Italy", "LagunaSeca")]:
        line = tracks[entry["name"]]
        raw = np.asarray(entry["xy"])
        centred = raw - (raw.min(axis=0) + raw.max(axis=0)) / 2
        assert isinstance(line, Centerline) and len(line.xy) == len(raw) - 1
        np.testing.assert_allclose(np.asarray(line.xy), centred[:-1], atol=1e-9)
        env.reset(options={"level": line})
        assert len(env.track) == len(env.road) == len(raw) - 1
        assert [t.idx for t in env.road] == list(range(len(raw) - 1))
        np.testing.assert_allclose([t[2:4] for t in env.track], centred[:-1], atol=1e-9)
        assert env.max_episode_steps == line.max_episode_steps == entry["max_episode_steps"]
        assert FAMILY.episode_limit(line) == entry["max_episode_steps"] and env.playfield == 500
        angle = env.car.hull.angle
        facing = np.array([-math.sin(angle), math.cos(angle)])
        assert facing @ (centred[1] - centred[0]) / np.linalg.norm(centred[1] - centred[0]) < -0.99
        visited = env.tile_visited_count
        assert 1 <= visited and env.reward == pytest.approx(visited * 1000 / (len(raw) - 1) - 0, abs=1e-9)
    env.close()


@needs_f1
def test_thin_option_restores_the_old_f1_tiling():
    raw = f1_entries()[0]
    thin = dict(CarRacingFamily(thin_centerlines=True).load_levels(F1_FILE))[raw["name"]]
    kept = cr.thin_closed(np.asarray(raw["xy"]))  # ued's tiling before dcd's became the default
    kept -= (kept.min(axis=0) + kept.max(axis=0)) / 2
    np.testing.assert_allclose(np.asarray(thin.xy), kept)
    length = FAMILY.level_stats(thin)["length"]
    assert len(thin.xy) == pytest.approx(length / TRACK_DETAIL_STEP, rel=0.05) and len(thin.xy) < 1000


def ring(radius: float = 100.0, points: int = 181) -> Centerline:
    angles = np.linspace(0, 2 * np.pi, points)[:-1]  # the last point closes: one tile per kept point
    xy = radius * np.stack([np.cos(angles), np.sin(angles)], axis=1)
    entry = {"name": "ring", "xy": np.vstack([xy, xy[:1]]).tolist(), "bounds": 2000, "max_episode_steps": 500}
    return track_files._centerline_from_entry(entry, "test")


def touch(env: TrackRacingEnv, tile) -> None:
    """A wheel's contact with `tile` begins (what Box2D reports when the car drives onto it)."""
    wheel = env.car.wheels[0]
    contact = type("Contact", (), {})()
    contact.fixtureA = type("Fixture", (), {"body": tile})()
    contact.fixtureB = type("Fixture", (), {"body": wheel})()
    env.world.contactListener._contact(contact, True)


@pytest.mark.parametrize("level", [DEFAULT_LEVEL, "ring"], ids=["sketch track", "centerline"])
def test_a_lap_needs_every_tile(level):
    level = ring() if level == "ring" else level
    env = TrackRacingEnv(level)
    env.reset(seed=0)
    n = len(env.road)
    still = np.zeros(3)
    for tile in env.road[: n // 2] + env.road[n // 2 + 1 :]:  # all tiles but one
        touch(env, tile)
    assert env.tile_visited_count == n - 1
    for _ in range(3):
        _, _, terminated, truncated, _ = env.step(still)
        assert not terminated and not truncated
    touch(env, env.road[n // 2])
    _, _, terminated, _, info = env.step(still)
    assert terminated and info["lap_finished"]
    assert env.reward == pytest.approx(1000 - 0.1 * env.frames)
    env.close()


def test_lap_complete_percent_option_brings_back_gymnasiums_rule():
    """0.95: touching tile 0 again after more than 95% of the tiles ends the lap; 1.0 (default) does not."""
    ended = {}
    for percent in (0.95, 1.0):
        env = CarRacingFamily(lap_complete_percent=percent).make_env(DEFAULT_LEVEL, eval_mode=True).unwrapped
        env.reset(seed=0)
        assert env.lap_complete_percent == percent
        n = len(env.road)
        env.road[0].road_visited, env.tile_visited_count = (
            False,
            env.tile_visited_count - env.road[0].road_visited,
        )
        for tile in env.road[1 : n - 2]:  # two tiles left out (< 5%)
            touch(env, tile)
        touch(env, env.road[0])
        ended[percent] = env.step(np.zeros(3))[2]
        env.close()
    assert ended == {0.95: True, 1.0: False}
    assert FAMILY.options["lap_complete_percent"] == 1.0
    for bad in (
        {"lap_complete_percent": 0},
        {"lap_complete_percent": 1.5},
        {"lap_complete_percent": True},
        {"lap_complete_percent": "0.9"},
        {"thin_centerlines": "yes"},
        {"thin_centerlines": 1},
    ):
        with pytest.raises(UsageError, match=next(iter(bad))):
            CarRacingFamily(**bad)


@pytest.mark.parametrize(
    "content, message",
    [
        ("not json", "cannot read"),
        ('{"tracks": []}', "expected"),
        ('{"tracks": [{"points": [[0, 0]]}]}', "name"),
        ('{"tracks": [{"name": "a", "points": [[0, 0], [1, 1], [2, 2], [3, 3]]}]}', "closed track"),
        ('{"tracks": [{"name": "a", "points": [[0, 0], [1, 1], [2, 2], [30, 3]]}]}', "bad 'points'"),
        (
            '{"tracks": [{"name": "a", "xy": [[0, 0], [1, 0], [2, 0], [3, 0], [4, 0], [5, 0], [60, 0], [70, 0]]}]}',
            "does not close",
        ),
        ('{"tracks": [{"name": "a", "xy": "x"}]}', "'xy'"),
        ('{"tracks": [{"name": "a"}]}', "needs 'points'"),
    ],
)
def test_bad_track_files(tmp_path, content, message):
    path = tmp_path / "t.json"
    path.write_text(content)
    with pytest.raises(UsageError, match=message):
        load_track_file(path)
    with pytest.raises(UsageError, match="does not exist"):
        load_track_file(tmp_path / "missing.json")


def test_track_too_big_for_bounds(tmp_path):
    angles = np.linspace(0, 2 * np.pi, 400, endpoint=False)
    xy = 400.0 * np.stack([np.cos(angles), np.sin(angles)], axis=1)
    path = tmp_path / "t.json"
    path.write_text(json.dumps({"tracks": [{"name": "big", "xy": xy.tolist(), "bounds": 2000}]}))
    with pytest.raises(UsageError, match="raise 'bounds'"):
        load_track_file(path)


# ----- the student network --------------------------------------------------------------------------------
def test_policy_scales_pixels_as_dcd_into_channels_last_convs():
    # dcd's car_racing_models.py: x / 128 - 1 on the raw frames; ued feeds it channels-last (faster convs)
    torch.manual_seed(0)
    policy = CarRacingPolicy()
    obs = torch.randint(0, 256, (3, 12, 96, 96), dtype=torch.uint8)
    seen = []
    policy.conv[0].register_forward_pre_hook(lambda module, args: seen.append(args[0]))
    features = policy.encode(obs)
    assert torch.equal(seen[0], obs.float() / 128.0 - 1.0)
    assert seen[0].is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(features, policy.conv(obs.float() / 128.0 - 1.0), rtol=1e-5, atol=1e-5)


def test_policy_forward_and_evaluate_sequence_agree():
    torch.manual_seed(0)
    policy = make_student(FAMILY)
    assert isinstance(policy, CarRacingPolicy) and not policy.is_recurrent
    assert policy.initial_state(2) is None
    T, B = 3, 2
    obs = torch.randint(0, 256, (T, B, 12, 96, 96), dtype=torch.uint8)
    dones = torch.zeros(T, B)
    actions, log_probs, entropies, values = [], [], [], []
    with torch.no_grad():
        for t in range(T):
            dist, value, state = policy(obs[t], None, dones[t])
            assert state is None and value.shape == (B,)
            a = dist.sample()
            assert a.shape == (B, 3) and bool(((a >= 0) & (a <= 1)).all())
            actions.append(a)
            log_probs.append(dist.log_prob(a))
            entropies.append(dist.entropy())
            values.append(value)
        lp, ent, val = policy.evaluate_sequence(obs, None, dones, torch.stack(actions))
    assert lp.shape == ent.shape == val.shape == (T, B)
    assert torch.allclose(lp, torch.stack(log_probs), atol=1e-5)
    assert torch.allclose(ent, torch.stack(entropies), atol=1e-5)
    assert torch.allclose(val, torch.stack(values), atol=1e-5)
    # Beta(alpha, beta >= 1): finite log-probabilities even at the ends of [0, 1]
    edge = torch.tensor([[0.0, 1.0, 0.0], [1.0, 0.0, 1.0]])
    assert torch.isfinite(dist.log_prob(edge)).all()
    base = dist.base_dist
    assert bool((base.concentration1 >= 1).all() and (base.concentration0 >= 1).all())


def test_default_ppo_is_published():
    ppo = FAMILY.default_ppo()
    assert (
        ppo.num_envs,
        ppo.num_steps,
        ppo.lr,
        ppo.gamma,
        ppo.gae_lambda,
        ppo.epochs,
        ppo.num_minibatches,
    ) == (16, 125, 3e-4, 0.99, 0.9, 8, 4)


# ----- end to end -----------------------------------------------------------------------------------------
def test_tiny_dr_training_run(tmp_path):
    """2 envs x 8 steps, 1 update. The synchronous gym backend: the family's default (one process per env,
    `make_vector_env`) works the same but spawning processes costs ~15 s on a loaded 2-core machine."""
    from ued.config import TrainConfig
    from ued.runner import train

    config = TrainConfig(
        env="carracing",
        teacher="dr",
        total_steps=16,
        num_envs=2,
        num_steps=8,
        run_dir=str(tmp_path / "run"),
        image_interval=1,
        backend="gym",
    )
    summary = train(config, progress=False)
    assert summary["updates"] == 1 and summary["steps"] == 16
    assert math.isfinite(summary["mean_return"])
    assert (tmp_path / "run" / "checkpoint.pt").is_file()


def test_process_vector_env_matches_the_in_process_one():
    """The reference vector env of `--backend gym` (one process per env) gives the same observations and rewards as the
    synchronous reference for the same levels and actions: the path `ued train --env carracing` uses."""
    from ued.vecenv import GymLevelVectorEnv

    family = CarRacingFamily(max_episode_steps=80)
    rng = np.random.default_rng(3)
    levels = [family.sample(rng) for _ in range(2)]
    actions = torch.rand(6, 2, 3, generator=torch.Generator().manual_seed(0))
    outputs = []
    for venv in (family.make_reference_vector_env(2, seed=0), GymLevelVectorEnv(family, 2, seed=0)):
        try:
            assert isinstance(venv._venv, gym.vector.AsyncVectorEnv) == (len(outputs) == 0)
            venv.set_levels(levels)
            steps = [venv.reset(seed=5)]
            steps += [venv.step(a)[:2] for a in actions]
            outputs.append(steps)
        finally:
            venv.close()
    (first_async, *rest_async), (first_sync, *rest_sync) = outputs
    assert torch.equal(first_async, first_sync)
    for (obs_a, rew_a), (obs_s, rew_s) in zip(rest_async, rest_sync):
        assert torch.equal(obs_a, obs_s) and torch.allclose(rew_a, rew_s)
