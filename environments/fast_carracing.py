"""A fast vector backend for the carracing family: Box2D physics for all sub-envs in one process, and only
the observed frames rendered, by a batched torch renderer.

`BatchedCarRacingEnv` plays the game of `CarRacingStudentEnv(TrackRacingEnv(level))` (the reference
backend, `--backend gym`): the same gymnasium car and world code steps each sub-env (`PhysicsTrackEnv`,
a `TrackRacingEnv` whose per-frame `state_pixels` render is switched off and whose car steps with
`FastCar`, gymnasium's dynamics to the bit), so physics, game rewards, tile counts, terminations and
truncations are identical to the reference for the same actions.

## Rendering
gymnasium draws every frame into a 1000x800 window (road and grass polygons, car, indicator bar, reward
text) and area-averages it down to 96x96. Here:
- each track is drawn once, by pygame as gymnasium draws it (background, grass squares, road tiles, kerbs),
  into a texture of `TEXELS_PER_UNIT` texels per world unit over the playfield, with a mip pyramid (2x2
  averages) for zoomed-out frames (gymnasium's camera, the first second); env i's textures are its own
  (textures[lvl][i]), so its frames never depend on the other envs;
- the frame after each action repeat is one `grid_sample` of the env's texture, car-centred (the car at
  (48, 72) of the 96x96 frame), rotated and zoomed as the reference's camera (`TrackRacingEnv.view`: dcd's
  by default, turned to the car's velocity; gymnasium's, turned to its hull); the sampling grid is affine
  in the pixel position, from the mip level whose texel is nearest the frame pixel;
- the car (wheels, wheel stripes, hull, in gymnasium's drawing order) is composited from quads computed
  for all envs at once from a few Box2D reads per car (`car_state`, `car_quads`): 3x3 point samples per
  pixel, in a box around the car, each quad filling an interval of samples per sample row
  (`car_samples`); at full zoom, in a view turned to the hull, the hull is one cached picture;
- the bottom bar: black, the six indicators as exact rectangle coverage, and the reward text as pygame
  draws it (cached per text).

The grass rule of the reward shaping ("-0.05 on a frame whose mean green exceeds 185") is decided on the
rendered frame for the last frame of each action repeat and, for the frames in between (which nobody
observes), from a 24x21 bilinear sample (one grid_sample, by the frame's own affine map) of the view's
green at a coarse mip level plus the bar's and the car's known shares. Every env plays its frames of a step
first; then the green of all those frames is estimated in one call, and the rule and the early stop are
applied to all frames of all envs at once (`_shape`). An episode's first frame is drawn once per level and
start state, and copied after (`_first_frames`).
tests/test_fast_carracing.py measures how closely frames and grass decisions agree with the reference.

`ued.environments.carracing_workers` runs shards of this env in the parent and worker processes (one per
core), with bit-identical results.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from gymnasium import spaces
from gymnasium.envs.box2d import car_dynamics as _car
from gymnasium.envs.box2d import car_racing as _gcr

from ued.environments.carracing_env import (
    ACTION_REPEAT,
    EARLY_STOP_MEAN,
    EARLY_STOP_WINDOW,
    FRAME_STACK,
    FULL_ZOOM,
    TrackRacingEnv,
)
from ued.environments.fast_car import FastCar
from ued.environments.tracks import DEFAULT_MAX_EPISODE_STEPS, PLAYFIELD, Centerline, TrackLevel
from ued.vecenv import LevelVectorEnv

#: texels per world unit of a track texture at mip level 0 on the sketch tracks' playfield (the 96x96 view at
#: full zoom has 1.55 x 1.94 pixels per unit, so a texel is about a view pixel); every texture has the same
#: `TEX_SIZE` texels across, so a bigger playfield (F1 circuits) gets fewer per unit
TEXELS_PER_UNIT = 2.0
TEX_SIZE = round(2 * PLAYFIELD * TEXELS_PER_UNIT)
#: mip levels below level 0 (the first second's zoom-out shows the whole field in ~60 pixels)
MIP_LEVELS = 6
OBS = _gcr.STATE_W  # 96
WINDOW_W, WINDOW_H = _gcr.WINDOW_W, _gcr.WINDOW_H
SX, SY = OBS / WINDOW_W, OBS / WINDOW_H  # window pixel -> frame pixel
#: rows of the frame covered by the black indicator bar (window rows 700..800)
BAR_ROWS = 12
#: the car box (frame pixels, x0, y0, width, height): a square around the car's centre (48, 72) that holds
#: it at any heading of dcd's camera (at full zoom its polygons lie within 5.6 pixels of the centre); and
#: point samples per pixel side
CAR_BOX = (41, 65, 14, 14)
CAR_SS = 3
#: the coarse view of the grass rule: columns x rows of samples over the frame's top 84 rows
GRASS_GRID = (24, 21)
GRASS_THRESHOLD = 185.0
#: pygame's smoothscale (two fixed-point passes, each truncating) darkens flat colours by 2 (204 -> 202)
SMOOTHSCALE_LOSS = 2.0
#: mean green the grass rule adds to the rendered frame's and to the coarse estimate's, so that both are
#: unbiased against gymnasium's frames (measured on DR tracks under random actions, tests/test_fast_carracing.py)
FRAME_GREEN_BIAS = 0.24
COARSE_GREEN_BIAS = 0.78


class PhysicsTrackEnv(TrackRacingEnv):
    """`TrackRacingEnv` stepping physics only: `step` returns no frame (None) and no info, and the car steps
    with `FastCar` (gymnasium's dynamics, bit for bit, with fewer Python calls)."""

    #: the road geometry key (`TrackRacingEnv._geometry_for`) that the bodies in `road` were made for
    _road_for: Any = None

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        out = super().reset(seed=seed, options=options)
        FastCar.faster(self.car)
        return out

    def _destroy(self) -> None:
        """gymnasium's `_destroy` less the road, whose bodies stay in the world (`_road_bodies`)."""
        if self.car is not None:
            self.car.destroy()
            self.car = None

    def _road_bodies(self, tiles: list, colors: list) -> list:
        """The road bodies already in the world again, unvisited and with fresh colours, when they were made
        for this track (the world's bodies end up in the order gymnasium's destroy-and-rebuild leaves them);
        else new ones in place of them. Saves ~3 ms per reset (hundreds of Box2D bodies)."""
        if self.road and self._road_for == self._geometry_for:
            for t, color in zip(self.road, colors):
                t.color = color
                t.road_visited = False
            return self.road
        for t in self.road or []:
            self.world.DestroyBody(t)
        self._road_for = self._geometry_for
        return super()._road_bodies(tiles, colors)

    def step(self, action: np.ndarray | None):
        """gymnasium's step API over `play` (no frame: None, no info)."""
        if action is None:  # reset's first step
            return super().step(action)
        played, terminated, truncated = self.play(*np.asarray(action, dtype=np.float64).tolist())
        return None, played[0][0], terminated, truncated, {}

    def play(
        self, steer: float, gas: float, brake: float, frames: int = 1
    ) -> tuple[list[tuple[float, ...]], bool, bool]:
        """Up to `frames` frames of one control, each gymnasium 1.4's `CarRacing.step` then
        `TrackRacingEnv.step`'s frame limit, with the same float operations in the same order
        (tests/test_fast_car.py), less the frame, the info and the module PLAYFIELD swap (the env's own
        `playfield` is read instead); the game's end stops it early. Returns each played frame's
        (reward, *`pose()`) and the last one's (terminated, truncated)."""
        if frames < 1:
            raise ValueError(f"play needs frames >= 1, got {frames}")
        car, world, hull = self.car, self.world, self.car.hull
        dt = 1.0 / _gcr.FPS
        car.steer(-steer)  # steering and brakes are set, not accumulated: once is every frame
        car.brake(brake)
        played = []
        for _ in range(frames):
            car.gas(gas)
            car.step(dt)
            world.Step(dt, 6 * 30, 2 * 30)
            self.t += dt
            self.reward -= 0.1
            car.fuel_spent = 0.0
            step_reward = self.reward - self.prev_reward
            self.prev_reward = self.reward
            terminated = self.tile_visited_count == len(self.track) or self.new_lap
            position = hull.position
            x, y = position.x, position.y
            if abs(x) > self.playfield or abs(y) > self.playfield:
                terminated, step_reward = True, -100
            self.frames += 1
            truncated = self.frames >= self.max_episode_steps and not terminated
            played.append((step_reward, *self.pose()))
            if terminated or truncated:
                break
        return played, terminated, truncated

    def pose(self) -> tuple[float, float, float, float, float]:
        """The state a frame is drawn from, less the car's polygons: (x, y, heading, zoom, steering angle), the
        heading and zoom from the env's camera (`TrackRacingEnv.view`: the world turns by -heading)."""
        position = self.car.hull.position
        angle, zoom = self.view()
        return (position.x, position.y, -angle, zoom, self.car.wheels[0].joint.angle)

    def _render(self, mode: str):
        if mode == "state_pixels":
            return None
        return super()._render(mode)


# ----- track textures ---------------------------------------------------------------------------------
def track_texture(env: TrackRacingEnv, size: int = TEX_SIZE) -> tuple[list[torch.Tensor], float]:
    """The mip pyramid (float32 (3, S, S) tensors, S halving) of `env`'s built track over its playfield,
    drawn as gymnasium's `_render_road` draws it (aa-outlined filled polygons: background, grass squares,
    road tiles and kerbs), and the playfield half-size."""
    import pygame
    from pygame import gfxdraw

    bound = float(env.playfield)
    scale = size / (2 * bound)
    surf = pygame.Surface((size, size))
    surf.fill(tuple(int(c) for c in env.bg_color))

    def draw(poly: Any, color: Any) -> None:
        pts = [((x + bound) * scale, (y + bound) * scale) for x, y in poly]
        color = [int(c) for c in color]
        gfxdraw.aapolygon(surf, pts, color)
        gfxdraw.filled_polygon(surf, pts, color)

    k = bound / 20.0
    for x in range(-20, 20, 2):
        for y in range(-20, 20, 2):
            draw(
                [(k * x + k, k * y), (k * x, k * y), (k * x, k * y + k), (k * x + k, k * y + k)],
                env.grass_color,
            )
    for poly, color in env.road_poly:
        draw(poly, color)
    # surfarray is [x, y, c]: texel (row y, column x) after the permute
    img = torch.from_numpy(np.array(pygame.surfarray.pixels3d(surf))).permute(2, 1, 0).float().contiguous()
    mips = [img]
    for _ in range(MIP_LEVELS):
        mips.append(F.avg_pool2d(mips[-1][None], 2, ceil_mode=True)[0])
    return mips, bound


# ----- the bar ------------------------------------------------------------------------------------------
def _coverage_1d(lo: np.ndarray, hi: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Fraction of each cell [edges[i], edges[i+1]] covered by [lo, hi] (rows of lo/hi: [K] -> [K, cells])."""
    a = np.minimum(lo, hi)[:, None]
    b = np.maximum(lo, hi)[:, None]
    left, right = edges[None, :-1], edges[None, 1:]
    return np.clip(np.minimum(b, right) - np.maximum(a, left), 0, None) / (right - left)


_X_EDGES = np.arange(OBS + 1) / SX
_Y_EDGES = (OBS - BAR_ROWS + np.arange(BAR_ROWS + 1)) / SY
_IND_COLORS = np.array(
    [(255, 255, 255), (0, 0, 255), (0, 0, 255), (51, 0, 255), (51, 0, 255), (0, 255, 0), (255, 0, 0)],
    dtype=np.float32,
)


def indicator_values(car: Any) -> list[float]:
    """The 7 indicator values gymnasium draws (speed, 4 wheel omegas, steering, angular velocity)."""
    v = car.hull.linearVelocity
    w = car.wheels
    return [
        math.sqrt(v[0] * v[0] + v[1] * v[1]),
        w[0].omega,
        w[1].omega,
        w[2].omega,
        w[3].omega,
        w[0].joint.angle,
        car.hull.angularVelocity,
    ]


#: gymnasium's indicators: horizontal place (in window_w / 40), drawn upwards (speed, 4 wheel omegas) or
#: sideways (steering, angular velocity), and the scale of each value
_IND_PLACE = np.array([5.0, 7.0, 8.0, 9.0, 10.0, 20.0, 30.0])
_IND_UPWARDS = np.array([True] * 5 + [False] * 2)
_IND_SCALE = np.array([0.02, 0.01, 0.01, 0.01, 0.01, -10.0, -0.8])


def indicator_rects(values: np.ndarray) -> np.ndarray:
    """[N, 7, 4] window rectangles (x0, x1, y0, y1) of gymnasium's indicators from `indicator_values` [N, 7]
    (a value of |v| <= 1e-4 draws nothing: an empty rectangle)."""
    s, h = WINDOW_W / 40.0, WINDOW_H / 40.0
    val = values * _IND_SCALE
    x0 = np.broadcast_to(_IND_PLACE * s, val.shape)
    x1 = np.where(_IND_UPWARDS, (_IND_PLACE + 1) * s, (_IND_PLACE + val) * s)
    y0 = np.where(_IND_UPWARDS, WINDOW_H - (h + h * val), WINDOW_H - 4 * h)
    y1 = np.broadcast_to(np.where(_IND_UPWARDS, WINDOW_H - h, WINDOW_H - 2 * h), val.shape)
    rects = np.stack([x0, x1, y0, y1], axis=-1)
    rects[np.abs(values) <= 1e-4] = 0.0
    return rects


def draw_bar(values: np.ndarray, texts: list[np.ndarray]) -> np.ndarray:
    """uint8 [N, 3, 12, 96]: the bottom bar (black, indicators as exact area coverage, reward text) of the
    indicator `values` [N, 7] and `reward_text`s."""
    n = len(values)
    rects = indicator_rects(values).reshape(n * 7, 4)
    cx = _coverage_1d(rects[:, 0], rects[:, 1], _X_EDGES).reshape(n, 7, OBS)
    cy = _coverage_1d(rects[:, 2], rects[:, 3], _Y_EDGES).reshape(n, 7, BAR_ROWS)
    # bar[n, c, y, x] = sum over indicators k of colour[k, c] cy[n, k, y] cx[n, k, x]: one product per env
    coloured_rows = cy.transpose(0, 2, 1)[:, None] * _IND_COLORS.T.astype(np.float64)[None, :, None, :]
    bar = np.matmul(coloured_rows.reshape(n, 3 * BAR_ROWS, 7), cx).reshape(n, 3, BAR_ROWS, OBS)
    np.minimum(bar, 255.0, out=bar)
    bar -= SMOOTHSCALE_LOSS
    np.maximum(bar, 0.0, out=bar)
    text = np.stack(texts)  # [N, 3, 12, TEXT_COLS]
    corner = bar[:, :, :, : text.shape[-1]]
    np.maximum(corner, text, out=corner)
    bar = bar.astype(np.float32)
    np.round(bar, out=bar)
    return bar.astype(np.uint8)


TEXT_COLS = 16
_text_cache: dict[str, np.ndarray] = {}
_font: Any = None


def reward_text(reward: float) -> np.ndarray:
    """float32 [3, 12, TEXT_COLS]: gymnasium's reward text (f"{reward:04.0f}", 42 px, white on black,
    centred at window (60, 750)) as the bar's left corner of the 96x96 frame."""
    key = f"{reward:04.0f}"
    out = _text_cache.get(key)
    if out is None:
        import pygame

        global _font
        if _font is None:
            pygame.font.init()
            _font = pygame.font.Font(pygame.font.get_default_font(), 42)
        strip = pygame.Surface((WINDOW_W, WINDOW_H // 8))  # window rows 700..800
        text = _font.render(key, True, (255, 255, 255), (0, 0, 0))
        rect = text.get_rect()
        rect.center = (60, int(WINDOW_H - WINDOW_H * 2.5 / 40.0) - (WINDOW_H - WINDOW_H // 8))
        strip.blit(text, rect)
        small = pygame.transform.smoothscale(strip, (OBS, BAR_ROWS))
        arr = np.array(pygame.surfarray.pixels3d(small)).transpose(2, 1, 0).astype(np.float32)
        out = np.ascontiguousarray(arr[:, :, :TEXT_COLS])
        if len(_text_cache) < 10000:
            _text_cache[key] = out
    return out


# ----- the car -----------------------------------------------------------------------------------------
_QUADS = {3: ((0, 1, 2, 2),), 8: ((0, 1, 2, 3), (0, 3, 4, 7), (4, 5, 6, 7))}


#: what `car_state` reads of a car: hull x, y, angle, then per wheel x, y, angle, phase
CAR_STATE = 3 + 4 * 4
#: quads of a car in gymnasium's drawing order: per wheel its body and its white stripe, then the hull's
#: 4 fixtures as 6 quads (its octagon as 3)
WHEEL_QUADS, HULL_QUADS = 8, 6


def car_state(car: Any) -> list[float]:
    """[CAR_STATE] floats of `car` (Box2D bodies and wheel phases) that its picture depends on."""
    hull = car.hull
    out = [*hull.position, hull.angle]
    for w in car.wheels:
        out += [*w.position, w.angle, w.phase]
    return out


_CAR_LOCAL: dict[str, Any] = {}


def _car_local() -> dict[str, Any]:
    """Body-local quads and colours of gymnasium's car (read once from a canonical car)."""
    if not _CAR_LOCAL:
        car = _canonical_car()
        wheel = np.array(car.wheels[0].fixtures[0].shape.vertices)  # [4, 2]
        hull = []
        for f in car.hull.fixtures:
            verts = np.array(f.shape.vertices)
            hull += [verts[list(q)] for q in _QUADS.get(len(verts), ((0, 1, 2, 3),))]
        rgb = [tuple(int(c * 255) for c in obj.color) for obj in (car.wheels[0], car.hull)]
        colors = [rgb[0], _car.WHEEL_WHITE] * 4 + [rgb[1]] * HULL_QUADS
        _CAR_LOCAL.update(wheel=wheel, hull=np.array(hull), colors=np.array(colors, dtype=float))
    return _CAR_LOCAL


def car_quads(state: np.ndarray, hull: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """World quads [n, M, 4, 2], colours [n, M, 3] and which are drawn [n, M] of cars in `state`
    [n, CAR_STATE], in gymnasium's drawing order (`Car.draw`: each wheel, its stripe when visible, the hull
    where `hull` [n] says); M = 14, or 8 (wheels only) where no car needs its hull."""
    local = _car_local()
    n = len(state)
    wheels = state[:, 3:].reshape(n, 4, 4)
    phase = wheels[..., 3]
    s1, s2 = np.sin(phase), np.sin(phase + 1.2)
    c1 = np.where(s1 > 0, np.sign(np.cos(phase)), np.cos(phase))
    c2 = np.where(s2 > 0, np.sign(np.cos(phase + 1.2)), np.cos(phase + 1.2))
    w, r = _car.WHEEL_W * _car.SIZE, _car.WHEEL_R * _car.SIZE
    xs = np.broadcast_to(np.array([-w, w, w, -w]), (n, 4, 4))
    ys = np.stack([r * c1, r * c1, r * c2, r * c2], axis=-1)
    stripe = np.stack([xs, ys], axis=-1)  # [n, 4 wheels, 4, 2]
    body = np.broadcast_to(local["wheel"], (n, 4, 4, 2))
    quads = np.stack([body, stripe], axis=2).reshape(n, WHEEL_QUADS, 4, 2)
    poses = np.repeat(wheels[..., :3], 2, axis=1)  # [n, 8, 3]
    drawn = np.stack([np.ones((n, 4), dtype=bool), ~((s1 > 0) & (s2 > 0))], axis=2).reshape(n, WHEEL_QUADS)
    if hull.any():
        quads = np.concatenate([quads, np.broadcast_to(local["hull"], (n, HULL_QUADS, 4, 2))], axis=1)
        poses = np.concatenate([poses, np.repeat(state[:, None, :3], HULL_QUADS, axis=1)], axis=1)
        drawn = np.concatenate([drawn, np.repeat(hull[:, None], HULL_QUADS, axis=1)], axis=1)
    m = quads.shape[1]
    cos, sin = np.cos(poses[..., 2])[..., None], np.sin(poses[..., 2])[..., None]
    x, y = quads[..., 0], quads[..., 1]
    world = np.stack([cos * x - sin * y + poses[..., :1], sin * x + cos * y + poses[..., 1:2]], axis=-1)
    return world, np.broadcast_to(local["colors"][:m], (n, m, 3)), drawn


MAX_VERTS = 4


def _edge_coefficients(polys: np.ndarray) -> np.ndarray:
    """[N, M, V, 2] convex polygons (frame pixels) -> [V, 3, N, M] half-plane coefficients (a, b, c) of their
    edges with a x + b y + c >= 0 inside (either orientation; repeated vertices give an always-true 0 row);
    edges first, so that reductions over them are between contiguous blocks."""
    p0 = np.moveaxis(polys, 2, 0)  # [V, N, M, 2]
    p1 = np.roll(p0, -1, axis=0)
    a = -(p1[..., 1] - p0[..., 1])
    b = p1[..., 0] - p0[..., 0]
    c = -(a * p0[..., 0] + b * p0[..., 1])
    coef = np.stack([a, b, c], axis=1)
    area = np.sum(p0[..., 0] * p1[..., 1] - p1[..., 0] * p0[..., 1], axis=0)  # 2x signed area [N, M]
    return coef * np.where(area >= 0, 1.0, -1.0)


_BOX_X0, _BOX_Y0, _BOX_W, _BOX_H = CAR_BOX
_sub = (np.arange(CAR_SS) + 0.5) / CAR_SS
_PY = (_BOX_Y0 + np.arange(_BOX_H)[:, None] + _sub[None, :]).reshape(-1)  # [H*SS]: y of each sample row


def car_samples(polys: np.ndarray, drawn: np.ndarray) -> np.ndarray:
    """int64 [N, rows, cols] over the car box's point samples (`CAR_SS` per pixel side): 1 + the index of the
    top-most drawn polygon of `polys` [N, M, MAX_VERTS, 2] (frame pixels; `drawn` [N, M]) holding each
    sample, 0 where none does. Row by row: each convex polygon holds the samples of an interval of columns
    on a sample row, and the top-most of several is the highest bit of the sum of 2^index over them."""
    n, m = polys.shape[:2]
    rows, cols = _BOX_H * CAR_SS, _BOX_W * CAR_SS
    coef = _edge_coefficients(polys)  # [V, 3, N, M]: inside where a x + b y + c >= -1e-6 on every edge
    a, b, c = (coef[:, k, :, :, None] for k in range(3))  # [V, N, M, 1]
    t = b * _PY + c  # [V, N, M, rows]
    with np.errstate(divide="ignore", invalid="ignore"):
        bound = (-t - 1e-6) / a  # x bound of each edge on each row
    lo = np.where(a > 0, bound, -np.inf).max(axis=0)  # [N, M, rows]
    hi = np.where(a < 0, bound, np.inf).min(axis=0)
    on_row = np.where(a == 0, t >= -1e-6, True).all(axis=0) & drawn[:, :, None]
    # sample column j sits at x = X0 + (j + 0.5) / CAR_SS
    j0 = np.ceil((lo - _BOX_X0) * CAR_SS - 0.5).clip(0, cols)
    j1 = np.floor((hi - _BOX_X0) * CAR_SS - 0.5).clip(-1, cols - 1)
    length = np.where(on_row, j1 - j0 + 1, 0).clip(0).astype(np.int64).ravel()
    first = ((np.arange(n)[:, None, None] * rows + np.arange(rows)) * cols + j0).astype(np.int64).ravel()
    ends = np.cumsum(length)
    index = np.repeat(first - ends + length, length) + np.arange(ends[-1] if len(ends) else 0)
    bit = np.repeat(np.broadcast_to(2.0 ** np.arange(m)[:, None], (n, m, rows)).ravel(), length)
    held = np.bincount(index, weights=bit, minlength=n * rows * cols)
    return np.frexp(held)[1].reshape(n, rows, cols).astype(np.int64)  # 2^k <= held < 2^(k+1) -> k + 1


_PIXEL_OF_SAMPLE = (
    (np.arange(_BOX_H * CAR_SS)[:, None] // CAR_SS) * _BOX_W + np.arange(_BOX_W * CAR_SS)[None, :] // CAR_SS
).ravel()


def draw_cars(frames: torch.Tensor, polys: np.ndarray, colors: np.ndarray, drawn: np.ndarray) -> None:
    """Composite cars into `frames` [N, 3, H >= 79, 96] in place: `polys` [N, M, MAX_VERTS, 2] frame-pixel
    polygons, `colors` [N, M, 3], `drawn` [N, M] which of them are drawn; later polygons paint over
    earlier ones, as pygame draws them (fill without antialiasing: CAR_SS x CAR_SS point samples per pixel)."""
    n, m = polys.shape[:2]
    top = car_samples(polys, drawn).reshape(n, -1)
    pixels = _BOX_H * _BOX_W
    key = (np.arange(n)[:, None] * pixels + _PIXEL_OF_SAMPLE) * (m + 1) + top
    counts = np.bincount(key.ravel(), minlength=n * pixels * (m + 1)).reshape(n, pixels, m + 1) / CAR_SS**2
    # paint[n, c, p] = sum over polygons k of colors[n, k, c] counts[n, p, k] (matmul: einsum's loop is 14x slower)
    paint = np.matmul(np.asarray(colors, dtype=float).transpose(0, 2, 1), counts[..., 1:].transpose(0, 2, 1))
    uncovered = torch.from_numpy(counts[..., 0]).float().reshape(n, 1, _BOX_H, _BOX_W)
    region = frames[:, :, _BOX_Y0 : _BOX_Y0 + _BOX_H, _BOX_X0 : _BOX_X0 + _BOX_W]
    region.mul_(uncovered).add_(torch.from_numpy(paint).float().reshape(n, 3, _BOX_H, _BOX_W))


# ----- the vector env ----------------------------------------------------------------------------------
def _mip_levels(bound: np.ndarray, zoom: np.ndarray, texel_px: float) -> np.ndarray:
    """int64 [n]: the mip level whose texel is nearest `texel_px` frame pixels, per env of playfield
    half-size `bound` [n] at view `zoom` [n] (a frame pixel is 1 / (zoom * SX) world units)."""
    ratio = TEX_SIZE / (2 * bound) * texel_px / (zoom * SX)  # level-0 texels per wanted sample spacing
    return np.clip(np.round(np.log2(np.maximum(ratio, 1.0))), 0, MIP_LEVELS).astype(np.int64)


#: what `PhysicsTrackEnv.pose` reads of an env: car x, y, the view's heading (the hull's angle when the
#: camera follows the hull), the view's zoom, the front-left wheel's steering angle
POSE = 5


#: window offsets (x - 500, y - 200 before gymnasium's vertical flip) of the frame's pixel centres, as
#: affine maps (a, b) of affine_grid's normalised coordinates (pixel centres (2 k + 1) / 96 - 1)
_NORM = (2 * np.arange(OBS) + 1) / OBS - 1
_U = (np.arange(OBS) + 0.5) / SX - WINDOW_W / 2
_V = (WINDOW_H - (np.arange(OBS) + 0.5) / SY) - WINDOW_H / 4
_VIEW_AFFINE = tuple(tuple(np.polyfit(_NORM, c, 1)) for c in (_U, _V))
_XN = torch.from_numpy(_NORM).float()[None, :]  # [1, 96]: x of each column
_YN = torch.from_numpy(_NORM).float()[: OBS - BAR_ROWS, None]  # [84, 1]: y of each row above the bar
#: normalised frame coordinates of the grass rule's coarse samples: columns [1, 24], rows [21, 1] (the centres of
#: a 24 x 21 grid of 4 x 4 pixel cells over the frame above the bar)
_GXN = torch.from_numpy((np.arange(GRASS_GRID[0]) + 0.5) * (2 / GRASS_GRID[0]) - 1).float()[None, :]
_GYN = torch.from_numpy((np.arange(GRASS_GRID[1]) + 0.5) * (2 * (OBS - BAR_ROWS) / GRASS_GRID[1] / OBS) - 1)
_GYN = _GYN.float()[:, None]


def _sampling_grid(theta: torch.Tensor, xn: torch.Tensor, yn: torch.Tensor) -> torch.Tensor:
    """grid_sample's grid [n, rows, cols, 2]: the affine maps `theta` [n, 6] at the frame points of columns
    `xn` [1, cols] and rows `yn` [rows, 1] (as affine_grid computes it, by broadcasting)."""
    theta = theta[:, :, None, None]
    grid = torch.empty((len(theta), yn.shape[0], xn.shape[1], 2))
    torch.add(theta[:, 0] * xn + theta[:, 1] * yn, theta[:, 2], out=grid[..., 0])
    torch.add(theta[:, 3] * xn + theta[:, 4] * yn, theta[:, 5], out=grid[..., 1])
    return grid


def _frame_sum(values: np.ndarray, counted: np.ndarray) -> np.ndarray:
    """[N]: the sum over frames k of `values` [K, N] where `counted` [K, N], added frame by frame (the order the
    rewards come in, so the float64 sums are the same bits whatever N is; numpy's own sum is pairwise)."""
    total = np.zeros(values.shape[1])
    for k in range(len(values)):
        total += np.where(counted[k], values[k], 0.0)
    return total


def _canonical_car() -> Any:
    """A car at rest at the origin, pointing up, in a world of its own: the cached car pictures are drawn
    from it, so that they never depend on which env (or shard) asked first."""
    import Box2D

    return _car.Car(Box2D.b2World((0, 0)), 0.0, 0.0, 0.0)


def student_spaces(frame_stack: int = FRAME_STACK) -> tuple[spaces.Box, spaces.Box]:
    """(observation, action) spaces of one student env: uint8 [3 * frame_stack, 96, 96], float [3] in [0, 1]."""
    obs = spaces.Box(0, 255, (3 * frame_stack, OBS, OBS), dtype=np.uint8)
    return obs, spaces.Box(0.0, 1.0, (3,), dtype=np.float32)


class BatchedCarRacingEnv(LevelVectorEnv):
    """N CarRacing student envs in one process (module docstring): physics by gymnasium, frames by torch.

    Observation uint8 [N, 12, 96, 96] (4 RGB frames, oldest first), action float [N, 3] in [0, 1]
    (steer 2a-1, gas, brake), rewards as `CarRacingStudentEnv`'s (`reward_shaping`: dcd's training
    shaping; False: the game's own, for evaluation). A finished sub-env restarts on its level.
    """

    #: `ued bench` profiles the observed frames and the grass rule's coarse view as "rendering"
    profile_sections: ClassVar[dict[str, str]] = {"_render": "rendering", "_coarse_green": "rendering"}

    def __init__(
        self,
        levels: Sequence[TrackLevel | Centerline],
        *,
        device: str = "cpu",
        reward_shaping: bool = True,
        max_episode_steps: int = DEFAULT_MAX_EPISODE_STEPS,
        lap_complete_percent: float = 1.0,
        action_repeat: int = ACTION_REPEAT,
        frame_stack: int = FRAME_STACK,
        camera: str = "dcd",
    ):
        self.num_envs = len(levels)
        self.device = torch.device(device)
        self.reward_shaping = reward_shaping
        self.action_repeat = action_repeat
        self.frame_stack = frame_stack
        self.single_observation_space, self.single_action_space = student_spaces(frame_stack)
        self.envs = [
            PhysicsTrackEnv(
                lvl,
                lap_complete_percent=lap_complete_percent,
                track_max_episode_steps=max_episode_steps,
                camera=camera,
            )
            for lvl in levels
        ]
        self.levels = list(levels)
        # the textures, one (N, 3, tile, tile) tensor per mip level: env i's texture fills [i, :, 1:-1, 1:-1],
        # tile = size + 2 (a black border, as the field's edge in gymnasium's window); env i samples
        # textures[lvl][i], so its frames never depend on the other envs (nor on how they are sharded)
        self._tile = [(TEX_SIZE + (1 << lvl) - 1) // (1 << lvl) + 2 for lvl in range(MIP_LEVELS + 1)]
        self._textures = [torch.zeros((self.num_envs, 3, t, t)) for t in self._tile]
        self._tex_level: list[Any] = [None] * self.num_envs
        self._bound = np.ones(self.num_envs)
        self._history = np.zeros((self.num_envs, EARLY_STOP_WINDOW))
        self._hpos = np.zeros(self.num_envs, dtype=np.int64)
        self._obs = torch.zeros((self.num_envs, 3 * frame_stack, OBS, OBS), dtype=torch.uint8)
        self._car_full = None
        self._hull: tuple[torch.Tensor, torch.Tensor] | None = None
        self._first: dict[tuple, torch.Tensor] = {}  # `_first_frames`' frames, by what they are drawn from
        #: grass decisions of the last step's frames, for tests: [N, action_repeat] (nan: frame not played)
        self.last_green = np.full((self.num_envs, action_repeat), np.nan)

    # ----- levels --------------------------------------------------------------------------------
    def set_levels(self, levels: Sequence[Any]) -> None:
        if len(levels) != self.num_envs:
            raise ValueError(f"expected {self.num_envs} levels, got {len(levels)}")
        for lvl in levels:
            if not isinstance(lvl, (TrackLevel, Centerline)):
                raise TypeError(f"carracing plays a TrackLevel or a Centerline, got {type(lvl).__name__}")
        self.levels = list(levels)
        for env, lvl in zip(self.envs, levels):
            env.level = lvl

    def _reset_env(self, i: int, seed: int | None = None) -> None:
        env = self.envs[i]
        env.reset(seed=seed)
        if self._tex_level[i] != env.level:
            twin = next((j for j, lvl in enumerate(self._tex_level) if lvl == env.level), None)
            mips = (
                [tex[twin, :, 1:-1, 1:-1] for tex in self._textures]
                if twin is not None
                else track_texture(env)[0]
            )
            for tex, mip in zip(self._textures, mips):
                tex[i, :, 1:-1, 1:-1] = mip
            self._tex_level[i] = env.level
            self._bound[i] = float(env.playfield)
        self._history[i] = 0.0
        self._hpos[i] = 0

    def reset(self, seed: int | None = None) -> torch.Tensor:
        for i in range(self.num_envs):
            self._reset_env(i, None if seed is None else seed + i)
        frames = self._render(list(range(self.num_envs)))
        self._obs = frames.repeat(
            1, self.frame_stack, 1, 1
        )  # a new tensor: earlier observations stay as given
        return self._obs.to(self.device)

    # ----- rendering -----------------------------------------------------------------------------
    def _poses(self, idx: Sequence[int]) -> np.ndarray:
        """float64 [len(idx), POSE]: each env's car pose and steering angle, read from Box2D (`pose`)."""
        return np.array([self.envs[i].pose() for i in idx]).reshape(len(idx), POSE)

    def _texture_affine(self, idx: Sequence[int], poses: np.ndarray, levels: np.ndarray) -> torch.Tensor:
        """float32 [len(idx), 6]: per env of `idx` at `poses` [len(idx), POSE], the affine map (two rows of 3)
        from a frame's normalised pixel coordinates (xn, yn, 1) to grid_sample's coordinates in its texture
        at mip `levels` [len(idx)]."""
        bound = self._bound[idx]
        z = poses[:, 3]
        size = np.array(self._tile)[levels] - 2
        # world (x, y) = car + rotate(angle) (window offset / z); window offset = (ax xn + bx, ay yn + by) of
        # the normalised frame coordinates (xn, yn); texture coordinate = world * size / (tile * bound)
        k = size / (size + 2) / bound
        cos, sin = np.cos(poses[:, 2]), np.sin(poses[:, 2])
        (ax, bx), (ay, by) = _VIEW_AFFINE
        x, y = poses[:, 0], poses[:, 1]
        row_u = [k * cos * ax / z, -k * sin * ay / z, k * (x + (cos * bx - sin * by) / z)]
        row_v = [k * sin * ax / z, k * cos * ay / z, k * (y + (sin * bx + cos * by) / z)]
        return torch.from_numpy(np.stack(row_u + row_v, 1)).float()

    def _views(self, idx: Sequence[int], poses: np.ndarray) -> torch.Tensor:
        """float32 [len(idx), 3, 84, 96]: the textures under the frames of envs `idx` at `poses`
        [len(idx), POSE] above the bar (which covers the rest), each from the mip level whose texel is
        nearest a frame pixel at the env's zoom.
        A frame is an affine map of its texture: each env's sampling grid is affine in the pixel position."""
        n = len(idx)
        levels = _mip_levels(self._bound[idx], poses[:, 3], 1.0)
        grid = _sampling_grid(self._texture_affine(idx, poses, levels), _XN, _YN)  # [n, 84, 96, 2]
        if n == self.num_envs and len(set(levels.tolist())) == 1 and list(idx) == list(range(n)):
            tex = self._textures[int(levels[0])]  # every env, in order, at one level: one call
            return F.grid_sample(tex, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        out = torch.empty((n, 3, OBS - BAR_ROWS, OBS))
        for j, (i, lvl) in enumerate(zip(idx, levels.tolist())):
            tex = self._textures[lvl][i : i + 1]
            out[j] = F.grid_sample(
                tex, grid[j : j + 1], mode="bilinear", padding_mode="zeros", align_corners=False
            )[0]
        return out

    #: at most this many first frames are kept (27 KB each)
    FIRST_FRAMES = 256

    def _first_frames(self, idx: Sequence[int]) -> torch.Tensor:
        """uint8 [len(idx), 3, 96, 96]: the frames of the envs `idx` just reset, as `_render` draws them. A
        reset puts the car where its level puts it, so episodes on a level mostly begin with the same frame:
        one drawn before from the same level and the same numbers (pose, car, indicators, reward text) is
        copied, not drawn again (a render of a few envs costs as much as one of all of them)."""
        poses = self._poses(idx)
        keys = []
        for i, pose in zip(idx, poses.tolist()):
            env = self.envs[i]
            state = (*pose, *car_state(env.car), *indicator_values(env.car))
            keys.append((env.level, f"{env.reward:04.0f}", *state))
        frames = [self._first.get(key) for key in keys]
        new = list({key: j for j, key in enumerate(keys) if frames[j] is None}.values())  # one per key
        if new:
            for j, frame in zip(new, self._render([idx[j] for j in new], poses[new])):
                frames[j] = frame.clone()
                while self._first and len(self._first) >= self.FIRST_FRAMES:
                    del self._first[next(iter(self._first))]  # the oldest
                if self.FIRST_FRAMES > 0:
                    self._first[keys[j]] = frames[j]
            drawn = {keys[j]: frames[j] for j in new}
            frames = [drawn[key] if frame is None else frame for key, frame in zip(keys, frames)]
        return torch.stack(frames)

    def _render(self, idx: Sequence[int], poses: np.ndarray | None = None) -> torch.Tensor:
        """uint8 [len(idx), 3, 96, 96]: the current frame of the envs `idx` (at `poses`, read if None), as
        gymnasium's state_pixels."""
        if poses is None:
            poses = self._poses(idx)
        frames = self._views(idx, poses)
        # the car: world quads -> frame pixels, for all envs at once
        # at full zoom, in a view that turns with the hull, the hull is the same picture in every frame: cached
        cars = [self.envs[i].car for i in idx]
        numbers = np.array([car_state(car) + indicator_values(car) for car in cars]).reshape(len(idx), -1)
        state = numbers[:, :CAR_STATE]
        full = (poses[:, 3] == FULL_ZOOM) & (poses[:, 2] == state[:, 2])
        quads, colors, drawn = car_quads(state, ~full)
        view = np.stack([poses[:, 0], poses[:, 1], -poses[:, 2], poses[:, 3]], axis=1)
        draw_cars(frames, self._to_frame(quads, view), colors, drawn)
        js = np.flatnonzero(full)
        if len(js):
            js = torch.from_numpy(js)
            cov, paint = self._hull_layer()
            x0, y0, w, h = CAR_BOX
            region = frames[js, :, y0 : y0 + h, x0 : x0 + w]
            frames[js, :, y0 : y0 + h, x0 : x0 + w] = region * (1 - cov) + paint
        out = torch.empty((len(idx), 3, OBS, OBS), dtype=torch.uint8)
        out[:, :, : OBS - BAR_ROWS] = frames.sub_(SMOOTHSCALE_LOSS).round_().clamp_(0, 255)
        # the bar
        texts = [reward_text(self.envs[i].reward) for i in idx]
        out[:, :, OBS - BAR_ROWS :, :] = torch.from_numpy(draw_bar(numbers[:, CAR_STATE:], texts))
        return out

    @staticmethod
    def _to_frame(world: np.ndarray, pose: np.ndarray) -> np.ndarray:
        """World points [n, ..., 2] -> frame pixels, per env `pose` [n, >=4] (x, y, view angle, zoom)."""
        shape = (len(pose),) + (1,) * (world.ndim - 2)
        cx, cy, a, z = (pose[:, k].reshape(shape) for k in range(4))
        dx, dy = world[..., 0] - cx, world[..., 1] - cy
        sx = (dx * np.cos(a) - dy * np.sin(a)) * z + WINDOW_W / 2
        sy = (dx * np.sin(a) + dy * np.cos(a)) * z + WINDOW_H / 4
        return np.stack([sx * SX, (WINDOW_H - sy) * SY], axis=-1)

    def _canonical_car_quads(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """`car_quads` of the canonical car (hull included) in frame pixels at full zoom: [1, 14, 4, 2],
        colours [1, 14, 3], drawn [1, 14]; what the cached car pictures are drawn from."""
        car = _canonical_car()
        quads, colors, drawn = car_quads(np.array([car_state(car)]), np.array([True]))
        pose = np.array([[*car.hull.position, -car.hull.angle, FULL_ZOOM]])
        return self._to_frame(quads, pose), colors, drawn

    def _hull_layer(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The hull at full zoom in the car box: coverage [H, W] and premultiplied colour [3, H, W]."""
        if self._hull is None:
            quads, colors, _ = self._canonical_car_quads()
            pp, colors = quads[:, WHEEL_QUADS:], colors[:, WHEEL_QUADS:]  # the hull alone
            drawn = np.ones(pp.shape[:2], dtype=bool)
            x0, y0, w, h = CAR_BOX
            ones = torch.ones((1, 3, OBS, OBS))
            draw_cars(ones, pp, np.zeros_like(colors), drawn)
            paint = torch.zeros((1, 3, OBS, OBS))
            draw_cars(paint, pp, colors, drawn)
            cov = 1 - ones[0, 0, y0 : y0 + h, x0 : x0 + w]
            self._hull = (cov, paint[0, :, y0 : y0 + h, x0 : x0 + w])
        return self._hull

    def _car_green_share(self) -> float:
        """Sum over the frame of the car's coverage at full zoom (pixels), for the coarse grass rule."""
        if self._car_full is None:
            quads, colors, drawn = self._canonical_car_quads()
            frame = torch.full((1, 3, OBS, OBS), 1.0)
            draw_cars(frame, quads, np.zeros_like(colors), drawn)
            self._car_full = float((1.0 - frame[0, 1]).sum())
        return self._car_full

    def _coarse_green(self, poses: np.ndarray, wanted: np.ndarray) -> np.ndarray:
        """Estimated mean green [K, N] of frames at `poses` [K, N, POSE] (frame k of env i; those not `wanted`
        [K, N] are skipped and their estimates meaningless), for the grass rule: the view's green sampled
        bilinearly on the `GRASS_GRID` by the observed frame's affine map, at the mip level whose texel is
        nearest the grid's spacing; plus the bar's green, less the car's. One grid_sample per mip level, with
        env i's frames as rows of batch entry i (its own texture). Samples within half a texel outside the
        field blend with the texture's black border, as the observed frame's do."""
        k, n = wanted.shape
        ks, js = np.nonzero(wanted)
        levels = _mip_levels(self._bound[js], poses[ks, js, 3], OBS / GRASS_GRID[0])
        theta = self._texture_affine(js, poses[ks, js], levels)
        views = torch.zeros((n, k, GRASS_GRID[1], GRASS_GRID[0]))
        for lvl in np.unique(levels).tolist():
            at = levels == lvl
            batch = torch.zeros((n, k, 6))
            batch[:, :, 2] = batch[:, :, 5] = 2.0  # off the texture: reads 0
            batch[js[at], ks[at]] = theta[at]
            grid = _sampling_grid(batch.view(n * k, 6), _GXN, _GYN).view(
                n, k * GRASS_GRID[1], GRASS_GRID[0], 2
            )
            green = F.grid_sample(
                self._textures[lvl][:, 1:2], grid, mode="bilinear", padding_mode="zeros", align_corners=False
            )
            views += green.view(views.shape)
        views = views.transpose(0, 1).double().numpy()  # [K, N, rows, cols]
        z = poses[..., 3]
        top = np.clip(views - SMOOTHSCALE_LOSS, 0, None).mean(axis=(2, 3)) * (OBS - BAR_ROWS)
        # the steering indicator (`indicator_rects`' 6th: 10 x angle wide, 2 units high) is the bar's only green
        steer = np.where(np.abs(poses[..., 4]) > 1e-4, poses[..., 4], 0.0)
        bar_green = 255.0 * np.abs(10.0 * steer * WINDOW_W / 40.0) * SX * (2 * WINDOW_H / 40.0) * SY
        car = self._car_green_share()
        centre = views[..., -5, GRASS_GRID[0] // 2]  # the view's green near the car
        zooms = z / FULL_ZOOM
        total = top * OBS + bar_green - car * zooms**2 * centre
        return total / (OBS * OBS) + COARSE_GREEN_BIAS

    # ----- stepping ------------------------------------------------------------------------------
    def _shape(
        self, rewards: np.ndarray, green: np.ndarray, last: np.ndarray, game_over: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """dcd's training shaping of one step's frames, for all envs at once: frame k of env i earns
        `rewards` [K, N], +100 on the game's last frame (`game_over` [N] on frame `last` [N]), -0.05 where its
        mean `green` [K, N] exceeds `GRASS_THRESHOLD`; the early stop (the mean of the last
        `EARLY_STOP_WINDOW` shaped rewards <= `EARLY_STOP_MEAN`) ends the episode on its frame, and later
        frames count for nothing. Returns the step's shaped return [N] and which envs the early stop ended
        [N]; moves each env's reward window on and writes `last_green`."""
        k, n = rewards.shape
        frame = np.arange(k)[:, None]
        played = frame <= last
        ends = game_over & (frame == last)
        shaped = rewards + np.where(ends, 100.0, 0.0)
        shaped -= np.where(green > GRASS_THRESHOLD, 0.05, 0.0)
        everyone = np.arange(n)
        windows = np.repeat(self._history[None], k, axis=0)  # [K, N, window]: after frame k
        for j in range(k):
            windows[j:, everyone, (self._hpos + j) % EARLY_STOP_WINDOW] = shaped[j]
        stop = played & ~ends & (windows.mean(axis=2) <= EARLY_STOP_MEAN + 1e-9)
        over = ends | stop
        end = np.where(over.any(axis=0), over.argmax(axis=0), last)  # each env's last counted frame
        counted = frame <= end
        self._history = windows[end, everyone]
        self._hpos += end + 1
        self.last_green[:, :k] = np.where(counted, green, np.nan).T
        return _frame_sum(shaped, counted), stop[end, everyone]

    def step(self, actions: torch.Tensor):
        """One student step: each env plays its action for `action_repeat` physics frames (fewer where its
        game ends). Every env plays its frames first, then the grass rule and the early stop are applied to
        all frames of all envs at once (`_shape`); an env that the early stop ends at frame k played its
        later frames for nothing (physics does not depend on rewards, and the env is reset), and they count
        for nothing."""
        a = np.clip(actions.detach().cpu().numpy().astype(np.float64).reshape(self.num_envs, 3), 0.0, 1.0)
        game = np.stack([2.0 * a[:, 0] - 1.0, a[:, 1], a[:, 2]], axis=1)
        n, frames_per_step = self.num_envs, self.action_repeat
        rewards = np.zeros((frames_per_step, n))
        poses = np.zeros((frames_per_step, n, POSE))
        last = np.full(n, frames_per_step - 1)  # the frame each env's game ended on, or its last
        game_over = np.zeros(n, dtype=bool)  # the game's own end: lap, off the field, frame limit
        game_truncated = np.zeros(n, dtype=bool)
        for i, (env, control) in enumerate(zip(self.envs, game.tolist())):
            played, term, trunc = env.play(*control, frames_per_step)
            if term or trunc:
                last[i], game_over[i], game_truncated[i] = len(played) - 1, True, trunc and not term
            frames = np.array(played)
            rewards[: len(played), i] = frames[:, 0]
            poses[: len(played), i] = frames[:, 1:]
        everyone = np.arange(n)
        observed = self._render(list(range(n)), poses[last, everyone])  # the frame each env ends the step on
        terminated = game_over & ~game_truncated
        truncated = game_truncated.copy()
        self.last_green[:] = np.nan
        if not self.reward_shaping:
            total = _frame_sum(rewards, np.arange(frames_per_step)[:, None] <= last)
        else:
            # the grass rule reads each frame's mean green: the observed frame's, else the coarse estimate
            green = np.zeros((frames_per_step, n))
            green[last, everyone] = observed[:, 1].float().mean(dim=(1, 2)).numpy() + FRAME_GREEN_BIAS
            before = np.arange(frames_per_step - 1)[:, None] < last[None, :]  # [repeat - 1, n]
            if before.any():
                green[:-1][before] = self._coarse_green(poses[:-1], before)[before]
            total, stopped = self._shape(rewards, green, last, game_over)
            terminated |= stopped
            truncated &= ~stopped
        self._obs = torch.cat([self._obs[:, 3:], observed], dim=1)
        done = np.flatnonzero(terminated | truncated)
        if len(done):
            for i in done:
                self._reset_env(int(i))
            first = self._first_frames(done.tolist())
            self._obs[done] = first.repeat(1, self.frame_stack, 1, 1)
        d = self.device
        return (
            self._obs.to(d),
            torch.as_tensor(total, dtype=torch.float32, device=d),
            torch.as_tensor(terminated, device=d),
            torch.as_tensor(truncated, device=d),
        )

    def close(self) -> None:
        for env in self.envs:
            env.close()


__all__ = ["BatchedCarRacingEnv", "PhysicsTrackEnv", "student_spaces", "track_texture"]
