"""Gymnasium CarRacing on a given track, and the student env built on it (dcd's CarRacing setup).

`TrackRacingEnv` subclasses gymnasium's `CarRacing` and overrides only track creation: the road is built
from the centerline of a `TrackLevel` (Bezier curve through its control points) or a `Centerline` (an
external polyline, e.g. a real circuit). It relies on private parts of gymnasium 1.4's
`gymnasium/envs/box2d/car_racing.py` (pinned by setup.cfg to gymnasium < 1.5):
- `_create_track()` must fill `self.road` (Box2D static bodies with `color`, `road_visited`,
  `road_friction`, `idx`, sensor fixtures), `self.road_poly` ((vertices, color) pairs drawn each frame) and
  `self.track` ((alpha, beta, x, y) per tile; the car starts at `track[0][1:4]`, heading beta + pi/2), and
  return True. `reset` loops `while not _create_track()`: ours never returns False (it raises instead), so a
  track can never be retried forever;
- the module constant `PLAYFIELD` bounds the field (leaving it ends the episode with -100) and the drawn
  background; a `Centerline` with a larger playfield swaps it in around `step` / `render`;
- the lap rule of its `FrictionDetector`: with `lap_complete_percent` >= 1.0 (our default, dcd's rule) an
  episode ends with a lap only when every tile has been visited (`tile_visited_count == len(track)`); a
  value p < 1 also ends it on touching tile 0 after more than p of the tiles (gymnasium's default 0.95).

Road tiles: one per centerline point, tile i between points i - 1 and i. On a `Centerline` (F1 circuits)
they are laid as dcd lays them (`tracks.road_betas`: the road perpendicular to the chord to the next
point, kerbs where the angle between tiles exceeds its mean over the track for 4 tiles in a row, the car
facing against the point order); on a `TrackLevel` as gymnasium 1.4 lays its own (perpendicular to the
central difference, gymnasium's kerb rule, the car facing along the counter-clockwise point order, so
that it drives counter-clockwise as in dcd). Grass squares are playfield / 20 wide (dcd; gymnasium's
GRASS_DIM on its own playfield).

`CarRacingStudentEnv` is what students play (see its docstring for spaces and rewards).
"""

from __future__ import annotations

import contextlib
import math
from collections import deque
from collections.abc import Iterator
from typing import Any

import gymnasium as gym
import numpy as np
from Box2D.b2 import fixtureDef, polygonShape
from gymnasium import spaces
from gymnasium.envs.box2d import car_racing as _gym_car_racing
from gymnasium.envs.box2d.car_racing import (
    BORDER,
    BORDER_MIN_COUNT,
    TRACK_DETAIL_STEP,
    TRACK_TURN_RATE,
    TRACK_WIDTH,
    CarRacing,
)
from gymnasium.utils import EzPickle

from ued.environments.tracks import (
    DEFAULT_MAX_EPISODE_STEPS,
    PLAYFIELD,
    Centerline,
    TrackLevel,
    centerline_of,
    road_betas,
)

ACTION_REPEAT = 8
FRAME_STACK = 4
#: early termination: the episode ends when the mean of the last 100 (shaped, per-frame) rewards is <= this
#: (up to 1e-9: a car standing still earns float differences of -0.1 that may average just above it)
EARLY_STOP_MEAN = -0.1
EARLY_STOP_WINDOW = 100
#: a polygon whose bounding box lies this many pixels off the drawing surface draws nothing (gfxdraw rounds
#: coordinates to whole pixels and antialiases one pixel further)
OFFSCREEN_PX = 4
#: the cameras of the observed frame (`TrackRacingEnv(camera=...)`, the carracing option `camera`)
CAMERAS = ("dcd", "gymnasium")
#: the zoom of a frame once zoomed in (gymnasium's and dcd's ZOOM * SCALE: pixels per world unit)
FULL_ZOOM = _gym_car_racing.ZOOM * _gym_car_racing.SCALE
#: above this speed (world units per second) dcd's camera turns with the car's velocity, not its hull
CAMERA_FOLLOW_SPEED = 0.5


def gymnasium_zoom(t: Any) -> Any:
    """gymnasium's zoom at time `t` (s) of the episode, rising to `FULL_ZOOM` over the first second (a float
    or an array)."""
    return 0.1 * _gym_car_racing.SCALE * np.maximum(1 - t, 0) + FULL_ZOOM * np.minimum(t, 1)


def camera_view(camera: str, hull_angle: float, velocity: Any, t: float) -> tuple[float, float]:
    """(angle, zoom) of a frame: the world turned by `angle` (radians) and scaled by `zoom` around the car.
    "dcd" (dcd's `CarRacingBezier.render`, `animate_zoom=False`): `FULL_ZOOM` from the first frame, the
    view turned to the heading of the car's velocity [2] above `CAMERA_FOLLOW_SPEED`, else to its hull's;
    "gymnasium" (CarRacing-v3): the hull's heading, zooming in over the first second (`gymnasium_zoom`)."""
    if camera == "dcd":
        vx, vy = float(velocity[0]), float(velocity[1])
        if math.hypot(vx, vy) > CAMERA_FOLLOW_SPEED:
            return math.atan2(vx, vy), FULL_ZOOM
        return -hull_angle, FULL_ZOOM
    return -hull_angle, float(gymnasium_zoom(t))


@contextlib.contextmanager
def _gym_playfield(value: float) -> Iterator[None]:
    """Temporarily set gymnasium's module-level PLAYFIELD (read by CarRacing.step and _render_road)."""
    saved = _gym_car_racing.PLAYFIELD
    _gym_car_racing.PLAYFIELD = value
    try:
        yield
    finally:
        _gym_car_racing.PLAYFIELD = saved


def _kerbs(beta: np.ndarray, threshold: float) -> list[bool]:
    """Red-white kerbs [n]: on tiles where the road angle changed by more than `threshold` between each of
    the last `BORDER_MIN_COUNT` pairs of tiles, all the same way, and on the tiles before them (the rule
    of gymnasium and dcd, with gymnasium's or dcd's threshold)."""
    n = len(beta)
    step = beta - np.roll(beta, 1)  # step[i] = beta[i] - beta[i - 1], around the loop
    border = [False] * n
    for i in range(n):
        good, oneside = True, 0
        for neg in range(BORDER_MIN_COUNT):
            good &= abs(step[i - neg]) > threshold
            oneside += np.sign(step[i - neg])
        border[i] = bool(good and abs(oneside) == BORDER_MIN_COUNT)
    for i in range(n):
        if border[i]:
            for neg in range(BORDER_MIN_COUNT):
                border[i - neg] = True
    return border


class TrackRacingEnv(CarRacing):
    """gymnasium's CarRacing (continuous actions) on the track of `level`.

    `reset(options={"level": lvl})` switches the track; assigning `env.level = lvl` makes later resets use
    it. Episodes are truncated after `track_max_episode_steps` frames on a `TrackLevel` (default 1000,
    gymnasium's) and after its own `max_episode_steps` on a `Centerline`. A lap is complete when every tile
    has been visited (`lap_complete_percent` 1.0, dcd; see the module docstring for p < 1).
    """

    def __init__(
        self,
        level: TrackLevel | Centerline,
        render_mode: str | None = None,
        lap_complete_percent: float = 1.0,
        domain_randomize: bool = False,
        track_max_episode_steps: int = DEFAULT_MAX_EPISODE_STEPS,
        camera: str = "dcd",
    ):
        if camera not in CAMERAS:
            raise ValueError(f"unknown camera {camera!r}; choose one of: {', '.join(CAMERAS)}")
        super().__init__(
            render_mode=render_mode,
            lap_complete_percent=lap_complete_percent,
            domain_randomize=domain_randomize,
            continuous=True,
        )
        EzPickle.__init__(
            self, level, render_mode, lap_complete_percent, domain_randomize, track_max_episode_steps, camera
        )
        self.level = level
        self.camera = camera
        self.playfield = PLAYFIELD
        self.track_max_episode_steps = int(track_max_episode_steps)
        self.max_episode_steps = self.track_max_episode_steps
        self.frames = 0
        self._centerline: np.ndarray | None = None
        self._built_for: Any = None
        self._geometry_for: Any = None
        self._geometry: tuple[list, list, list] = ([], [], [])

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        if options and options.get("level") is not None:
            self.level = options["level"]
        level = self.level
        if not isinstance(level, (TrackLevel, Centerline)):
            raise TypeError(f"TrackRacingEnv plays a TrackLevel or a Centerline, got {type(level).__name__}")
        if self._built_for != level:
            xy = centerline_of(level)
            if len(xy) < 3:
                raise ValueError(f"a track needs at least 3 centerline points, got {len(xy)}")
            self._centerline = xy
            self._built_for = level
        if isinstance(level, Centerline):
            self.playfield, self.max_episode_steps = level.playfield, level.max_episode_steps
        else:
            self.playfield, self.max_episode_steps = PLAYFIELD, self.track_max_episode_steps
        self.frames = 0
        with _gym_playfield(self.playfield):
            return super().reset(seed=seed, options=options)

    def _create_track(self) -> bool:
        """Road tiles along the level's centerline (module docstring), as gymnasium 1.4's `_create_track`
        builds them: `self.road` (new Box2D bodies), `self.road_poly`, `self.track`. The geometry is
        computed once per level (`_road_geometry`); each reset makes only the bodies."""
        key = (
            self._built_for,
            tuple(np.asarray(self.road_color).tolist()),
        )  # colours change with domain_randomize
        if self._geometry_for != key:
            self._geometry = self._road_geometry()
            self._geometry_for = key
        track, tiles, road_poly = self._geometry
        # fresh colour arrays each episode: gymnasium recolours a tile in place when a wheel touches it, and
        # the tile and its `road_poly` entry share the array (that is how the touched tile is drawn)
        colors = [color.copy() for _, color in tiles]
        self.road = self._road_bodies(tiles, colors)
        self.road_poly = [
            (vertices, colors[i] if i is not None else color) for vertices, color, i in road_poly
        ]
        self.track = track
        return True

    def _road_bodies(self, tiles: list, colors: list) -> list:
        """The road's Box2D static bodies, one sensor per tile (`tiles`: (fixture definition, colour)), as
        gymnasium makes them, with this episode's colour arrays `colors`."""
        road = []
        for i, (fixture, _) in enumerate(tiles):
            t = self.world.CreateStaticBody(fixtures=fixture)
            t.userData = t
            t.color = colors[i]
            t.road_visited = False
            t.road_friction = 1.0
            t.idx = i
            t.fixtures[0].sensor = True
            road.append(t)
        return road

    def _road_geometry(self) -> tuple[list, list, list]:
        """(track, tiles, road_poly) of the level: `track` (alpha, beta, x, y) per tile, `tiles` (fixture
        definition, colour) per tile, `road_poly` (vertices, colour, tile index or None for a kerb) of tiles
        and kerbs in drawing order."""
        xy = self._centerline
        assert xy is not None
        n = len(xy)
        if isinstance(self.level, Centerline):
            beta = road_betas(self.level)
            alpha = beta - math.pi / 2
            abs_step = np.abs(np.diff(beta))  # dcd: mean over consecutive tiles, not around the loop
            border = _kerbs(beta, float(abs_step.mean()) if n > 1 else math.inf)
        else:
            d = np.roll(xy, -1, axis=0) - np.roll(xy, 1, axis=0)  # central difference: heading at each point
            beta = np.unwrap(np.arctan2(d[:, 1], d[:, 0])) - math.pi / 2
            alpha = np.arctan2(xy[:, 1], xy[:, 0])
            border = _kerbs(beta, TRACK_TURN_RATE * 0.2)
        track = [(float(a), float(b), float(x), float(y)) for a, b, (x, y) in zip(alpha, beta, xy)]

        tiles, road_poly = [], []
        for i in range(n):
            _, beta1, x1, y1 = track[i]
            _, beta2, x2, y2 = track[i - 1]
            c1, s1, c2, s2 = math.cos(beta1), math.sin(beta1), math.cos(beta2), math.sin(beta2)
            road1_l = (x1 - TRACK_WIDTH * c1, y1 - TRACK_WIDTH * s1)
            road1_r = (x1 + TRACK_WIDTH * c1, y1 + TRACK_WIDTH * s1)
            road2_l = (x2 - TRACK_WIDTH * c2, y2 - TRACK_WIDTH * s2)
            road2_r = (x2 + TRACK_WIDTH * c2, y2 + TRACK_WIDTH * s2)
            vertices = [road1_l, road1_r, road2_r, road2_l]
            color = self.road_color + 0.01 * (i % 3) * 255
            # gymnasium sets its one `fd_tile`'s vertices per tile; a definition per tile makes the same shapes
            tiles.append((fixtureDef(shape=polygonShape(vertices=vertices)), color))
            road_poly.append((vertices, color, i))
            if border[i]:
                side = np.sign(beta2 - beta1)
                w0, w1 = side * TRACK_WIDTH, side * (TRACK_WIDTH + BORDER)
                kerb = [
                    (x1 + w0 * c1, y1 + w0 * s1),
                    (x1 + w1 * c1, y1 + w1 * s1),
                    (x2 + w1 * c2, y2 + w1 * s2),
                    (x2 + w0 * c2, y2 + w0 * s2),
                ]
                road_poly.append((kerb, (255, 255, 255) if i % 2 == 0 else (255, 0, 0), None))
        return track, tiles, road_poly

    def step(self, action: np.ndarray | None):
        with _gym_playfield(self.playfield):
            obs, reward, terminated, truncated, info = super().step(action)
        if action is not None:
            self.frames += 1
            if self.frames >= self.max_episode_steps and not terminated:
                truncated = True
        return obs, reward, terminated, truncated, info

    def render(self):
        with _gym_playfield(self.playfield):
            return super().render()

    def view(self) -> tuple[float, float]:
        """(angle, zoom) of the current frame from the env's `camera` (`camera_view`)."""
        hull = self.car.hull
        return camera_view(self.camera, hull.angle, hull.linearVelocity, self.t)

    def _render(self, mode: str):
        """gymnasium 1.4's `_render` (the same steps and drawing calls: road, car, vertical flip, indicators,
        reward text), with the view from `view()`; with `camera="gymnasium"` the same frames
        (tests/test_carracing.py)."""
        g = _gym_car_racing
        assert mode in self.metadata["render_modes"]
        g.pygame.font.init()
        if self.screen is None and mode == "human":
            g.pygame.display.init()
            self.screen = g.pygame.display.set_mode((g.WINDOW_W, g.WINDOW_H))
        if self.clock is None:
            self.clock = g.pygame.time.Clock()
        if "t" not in self.__dict__:
            return None  # reset() not called yet
        self.surf = g.pygame.Surface((g.WINDOW_W, g.WINDOW_H))
        angle, zoom = self.view()
        x, y = self.car.hull.position
        shift = g.pygame.math.Vector2((-x * zoom, -y * zoom)).rotate_rad(angle)
        trans = (g.WINDOW_W / 2 + shift[0], g.WINDOW_H / 4 + shift[1])
        self._render_road(zoom, trans, angle)
        self.car.draw(self.surf, zoom, trans, angle, mode not in ["state_pixels_list", "state_pixels"])
        self.surf = g.pygame.transform.flip(self.surf, False, True)
        self._render_indicators(g.WINDOW_W, g.WINDOW_H)
        font = g.pygame.font.Font(g.pygame.font.get_default_font(), 42)
        text = font.render(f"{self.reward:04.0f}", True, (255, 255, 255), (0, 0, 0))
        box = text.get_rect()
        box.center = (60, g.WINDOW_H - g.WINDOW_H * 2.5 / 40.0)
        self.surf.blit(text, box)
        if mode == "human":
            g.pygame.event.pump()
            self.clock.tick(self.metadata["render_fps"])
            self.screen.fill(0)
            self.screen.blit(self.surf, (0, 0))
            g.pygame.display.flip()
            return None
        if mode == "rgb_array":
            return self._create_image_array(self.surf, (g.VIDEO_W, g.VIDEO_H))
        if mode == "state_pixels":
            return self._create_image_array(self.surf, (g.STATE_W, g.STATE_H))
        return self.isopen

    def _render_road(self, zoom: float, translation: Any, angle: float) -> None:
        """gymnasium 1.4's `_render_road` (background, grass patches, road and kerbs, in that order and with
        its on-screen test), with the per-polygon transform and test done for all polygons at once in
        numpy instead of one Python loop per polygon, and polygons whose bounding box lies more than
        `OFFSCREEN_PX` pixels off the surface skipped (they draw no pixel): the same picture, drawn ~2x
        faster (~4x on the 0.4-unit tiles of the F1 circuits)."""
        g = _gym_car_racing
        bounds = g.PLAYFIELD
        field = [(bounds, bounds), (bounds, -bounds), (-bounds, -bounds), (-bounds, bounds)]
        self._draw_colored_polygon(self.surf, field, self.bg_color, zoom, translation, angle, clip=False)
        k = bounds / 20.0  # dcd's grass squares; gymnasium's GRASS_DIM on its own playfield
        if getattr(self, "_grass_polys", None) is None or self._grass_polys[0] != k:
            self._grass_polys = (
                k,
                np.array(
                    [
                        [(k * x + k, k * y), (k * x, k * y), (k * x, k * y + k), (k * x + k, k * y + k)]
                        for x in range(-20, 20, 2)
                        for y in range(-20, 20, 2)
                    ]
                ),
            )
        if getattr(self, "_road_arrays", None) is None or self._road_arrays[0] is not self.road_poly:
            self._road_arrays = (
                self.road_poly,
                np.array([poly for poly, _ in self.road_poly], dtype=np.float64),
            )
        cos, sin = math.cos(angle), math.sin(angle)
        # gymnasium's on-screen margin (MAX_SHAPE_DIM), for the grass squares of this playfield
        margin = max(k, TRACK_WIDTH, TRACK_DETAIL_STEP) * math.sqrt(2) * g.ZOOM * g.SCALE
        lo, hi_w, hi_h = -margin, g.WINDOW_W + margin, g.WINDOW_H + margin

        def draw(polys: np.ndarray, colors: Any) -> None:
            sx = (polys[..., 0] * cos - polys[..., 1] * sin) * zoom + translation[0]
            sy = (polys[..., 0] * sin + polys[..., 1] * cos) * zoom + translation[1]
            visible = np.any((sx >= lo) & (sx <= hi_w) & (sy >= lo) & (sy <= hi_h), axis=1)
            w, h = self.surf.get_width() + OFFSCREEN_PX, self.surf.get_height() + OFFSCREEN_PX
            visible &= (sx.max(axis=1) >= -OFFSCREEN_PX) & (sx.min(axis=1) <= w)
            visible &= (sy.max(axis=1) >= -OFFSCREEN_PX) & (sy.min(axis=1) <= h)
            for i in np.flatnonzero(visible):
                poly = list(zip(sx[i].tolist(), sy[i].tolist()))
                color = colors(i)
                g.gfxdraw.aapolygon(self.surf, poly, color)
                g.gfxdraw.filled_polygon(self.surf, poly, color)

        grass_color = self.grass_color
        draw(self._grass_polys[1], lambda i: grass_color)
        road_poly = self.road_poly
        if road_poly:
            draw(self._road_arrays[1], lambda i: [int(c) for c in road_poly[i][1]])


class CarRacingStudentEnv(gym.Wrapper):
    """The student's view of `TrackRacingEnv` (dcd's CarRacing wrapper, RGB frames).

    ## Observation
    uint8 (12, 96, 96): the last 4 frames (oldest first), each 3 RGB channels, channel-first; after a reset
    the first frame fills the stack. The policy scales it to [-1, 1].

    ## Action
    Box(0, 1, (3,)) float32, the Beta policy's space: steer = 2 * a[0] - 1 in [-1, 1] (-1 left), gas = a[1],
    brake = a[2]. Values outside [0, 1] are clipped. Each action is repeated for 8 frames (physics steps).

    ## Reward (per policy step: the sum over its frames)
    The game's: -0.1 per frame, +1000 / tiles per new tile, -100 for leaving the playfield. With
    `reward_shaping` (training, dcd): +100 on the frame where the game ends (cancels the -100), -0.05 per
    frame whose mean green channel exceeds 185 (grass fills the view), and the episode ends (terminated,
    `info["early_stop"]`) when the mean of the last 100 shaped frame rewards is <= -0.1.

    ## Episode end
    terminated: lap complete, off the playfield, or early stop; truncated: the level's frame limit.
    """

    def __init__(
        self,
        env: TrackRacingEnv,
        reward_shaping: bool = True,
        action_repeat: int = ACTION_REPEAT,
        frame_stack: int = FRAME_STACK,
    ):
        super().__init__(env)
        self.reward_shaping = reward_shaping
        self.action_repeat = action_repeat
        self.frame_stack = frame_stack
        h, w, c = env.observation_space.shape
        self.observation_space = spaces.Box(0, 255, (frame_stack * c, h, w), dtype=np.uint8)
        self.action_space = spaces.Box(0.0, 1.0, (3,), dtype=np.float32)
        self._frames: deque[np.ndarray] = deque(maxlen=frame_stack)
        self._history: deque[float] = deque(maxlen=EARLY_STOP_WINDOW)

    def _obs(self) -> np.ndarray:
        return np.concatenate(list(self._frames), axis=0)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        frame, info = self.env.reset(seed=seed, options=options)
        frame = np.ascontiguousarray(frame.transpose(2, 0, 1))
        self._frames.clear()
        self._frames.extend([frame] * self.frame_stack)
        self._history.clear()
        self._history.extend([0.0] * EARLY_STOP_WINDOW)
        return self._obs(), info

    def step(self, action: np.ndarray):
        a = np.clip(np.asarray(action, dtype=np.float64).reshape(3), 0.0, 1.0)
        game_action = np.array([2.0 * a[0] - 1.0, a[1], a[2]])
        total = 0.0
        terminated = truncated = False
        info: dict[str, Any] = {}
        frame = None
        for _ in range(self.action_repeat):
            frame, reward, terminated, truncated, info = self.env.step(game_action)
            reward = float(reward)
            if self.reward_shaping:
                if terminated or truncated:
                    reward += 100.0
                if frame[:, :, 1].mean() > 185.0:
                    reward -= 0.05
                self._history.append(reward)
                if not (terminated or truncated) and np.mean(self._history) <= EARLY_STOP_MEAN + 1e-9:
                    terminated = True
                    info = {**info, "early_stop": True}
            total += reward
            if terminated or truncated:
                break
        self._frames.append(np.ascontiguousarray(frame.transpose(2, 0, 1)))
        return self._obs(), total, terminated, truncated, info


def make_student_env(
    level: TrackLevel | Centerline,
    reward_shaping: bool = True,
    render_mode: str | None = None,
    max_episode_steps: int = DEFAULT_MAX_EPISODE_STEPS,
    lap_complete_percent: float = 1.0,
    camera: str = "dcd",
) -> CarRacingStudentEnv:
    """The student env on `level`: `CarRacingStudentEnv(TrackRacingEnv(level))`; `max_episode_steps` is the
    frame limit on `TrackLevel`s (a `Centerline` brings its own); `lap_complete_percent` the lap rule (1.0:
    every tile, dcd); `camera` the frames' camera (`CAMERAS`)."""
    env = TrackRacingEnv(
        level,
        render_mode=render_mode,
        lap_complete_percent=lap_complete_percent,
        track_max_episode_steps=max_episode_steps,
        camera=camera,
    )
    return CarRacingStudentEnv(env, reward_shaping=reward_shaping)
