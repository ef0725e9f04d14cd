"""`FastCar` against gymnasium's `Car`: the same actions give bit-identical bodies, wheels and rewards."""

from __future__ import annotations

import numpy as np
import pytest

from ued.environments.carracing_env import TrackRacingEnv
from ued.environments.fast_car import FastCar, _sign
from ued.environments.fast_carracing import PhysicsTrackEnv
from ued.environments.tracks import DEFAULT_LEVEL


def snapshot(env: TrackRacingEnv) -> list:
    """Every float the dynamics touch: bodies (pose, velocities), wheels' own state, joints, particles."""
    car = env.car
    out = [env.reward, env.tile_visited_count, car.fuel_spent, len(car.particles)]
    for body in [car.hull, *car.wheels]:
        out += [*body.position, body.angle, *body.linearVelocity, body.angularVelocity]
    for w in car.wheels:
        out += [w.gas, w.brake, w.steer, w.phase, w.omega, w.joint.angle, w.joint.motorSpeed]
    out += [tuple(p.poly) for p in car.particles]
    return out


def drive(fast: bool, actions: np.ndarray) -> list:
    env = TrackRacingEnv(DEFAULT_LEVEL)
    env.reset(seed=0)
    if fast:
        FastCar.faster(env.car)
    states = []
    for a in actions:
        _, r, term, trunc, _ = env.step(a)
        states.append([r, term, trunc, *snapshot(env)])
        if term or trunc:
            break
    env.close()
    return states


def test_fast_car_steps_bit_identically_to_gymnasiums():
    rng = np.random.default_rng(3)
    n = 600
    a = np.stack([rng.uniform(-1, 1, n), rng.uniform(0, 1, n), rng.uniform(0, 1, n) ** 3], axis=1)
    a[100:140, 2] = 0.95  # wheels blocked (omega = 0)
    a[200:260] = (1.0, 1.0, 0.0)  # full gas into a turn: skids, grass, particles
    a[300:320] = (-1.0, 0.0, 0.5)  # braking while turning
    a[400:] = (0.3, 0.0, 0.0)  # coasting: steering motor near its target
    reference, fast = drive(False, a), drive(True, a)
    assert len(reference) == len(fast) > 300
    assert fast == reference  # exact: floats compared with ==, NaNs would fail
    assert reference[-1][4 + 2] > 0  # particles were made (skids happened)


@pytest.mark.parametrize("x", [2.5, -0.1, 0.0, -0.0, float("inf"), -float("inf")])
def test_sign_is_numpys(x):
    assert _sign(x) == np.sign(x) and type(_sign(x)) is float


def test_sign_of_nan_is_nan():
    assert np.isnan(_sign(float("nan")))


def test_physics_env_steps_as_gymnasiums_step_to_the_bit():
    """`PhysicsTrackEnv.step` (its own CarRacing.step) against `TrackRacingEnv.step` (gymnasium's): the
    same rewards, flags and states, through a frame limit and a car leaving a shrunk playfield."""
    rng = np.random.default_rng(5)
    for limit, playfield in ((40, None), (1000, 12.0)):
        envs = [
            TrackRacingEnv(DEFAULT_LEVEL, track_max_episode_steps=limit),
            PhysicsTrackEnv(DEFAULT_LEVEL, track_max_episode_steps=limit),
        ]
        for env in envs:
            env.reset(seed=0)
            if playfield:
                env.playfield = playfield
        ended = None
        for t in range(400):
            a = np.array([rng.uniform(-1, 1), 1.0, 0.0])
            out = [env.step(a)[1:4] for env in envs]
            assert out[0] == out[1] and snapshot(envs[0]) == snapshot(envs[1])
            if out[0][1] or out[0][2]:
                ended = (t, out[0])
                break
        assert ended is not None
        if playfield:
            assert ended[1] == (-100, True, False)  # left the field
        else:
            assert ended[0] == limit - 1 and ended[1][1:] == (False, True)  # truncated at the frame limit
        for env in envs:
            env.close()


def test_playing_a_step_at_once_is_playing_its_frames_one_by_one():
    """`play(..., frames=k)` against k one-frame calls on a twin env: the same rewards, poses, flags and
    states, with the game ending inside a call (a frame limit of 50 in calls of 8); `frames` < 1 is refused."""
    envs = [PhysicsTrackEnv(DEFAULT_LEVEL, track_max_episode_steps=50) for _ in range(2)]
    for env in envs:
        env.reset(seed=0)
    rng = np.random.default_rng(3)
    for _ in range(7):
        control = (float(rng.uniform(-1, 1)), float(rng.uniform(0, 1)), float(rng.uniform(0, 0.3)))
        rows, term, trunc = envs[0].play(*control, 8)
        single = []
        for _ in range(8):
            played, t1, u1 = envs[1].play(*control)
            single += played
            if t1 or u1:
                break
        assert rows == single and (term, trunc) == (t1, u1)
        assert snapshot(envs[0]) == snapshot(envs[1])
        if term or trunc:
            break
    assert trunc and len(rows) == 50 - 6 * 8
    with pytest.raises(ValueError, match="frames"):
        envs[0].play(0.0, 0.0, 0.0, 0)


def test_physics_env_keeps_its_road_between_episodes_to_the_bit():
    """`PhysicsTrackEnv` keeps the road's bodies for the next episode on the same track (new ones for
    another track): the same rewards, flags, states and world as gymnasium's destroy-and-rebuild."""
    from ued.environments.tracks import TrackLevel

    other = TrackLevel(((1, 1), (8, 1), (8, 8), (1, 8), (4, 5)))
    rng = np.random.default_rng(7)
    envs = [
        TrackRacingEnv(DEFAULT_LEVEL, track_max_episode_steps=60),
        PhysicsTrackEnv(DEFAULT_LEVEL, track_max_episode_steps=60),
    ]
    road = None
    for episode, level in enumerate([DEFAULT_LEVEL, DEFAULT_LEVEL, other, other, DEFAULT_LEVEL]):
        for env in envs:
            env.level = level
            env.reset(seed=episode)
        same_track = episode in (1, 3)
        assert (envs[1].road[0] is road) == same_track  # kept on the same track, new on another
        road = envs[1].road[0]
        assert len(envs[0].world.bodies) == len(envs[1].world.bodies)
        assert [t.road_visited for t in envs[0].road] == [t.road_visited for t in envs[1].road]
        assert sum(t.road_visited for t in envs[1].road) <= 2  # where the car starts, after reset's step
        for _ in range(60):
            a = np.array([rng.uniform(-0.3, 0.3), 1.0, 0.0])
            out = [env.step(a)[1:4] for env in envs]
            assert out[0] == out[1] and snapshot(envs[0]) == snapshot(envs[1])
            if out[0][1] or out[0][2]:
                break
        assert envs[1].tile_visited_count > 0
        assert [t.road_visited for t in envs[0].road] == [t.road_visited for t in envs[1].road]
    for env in envs:
        env.close()
