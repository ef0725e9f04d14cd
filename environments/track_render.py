"""Pictures of tracks: a top view of the road on grass, with the start line and the control points."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from ued.environments.tracks import (
    CELL_SIZE,
    PLAYFIELD,
    SCALE,
    Centerline,
    TrackLevel,
    bezier_loop,
    centerline_of,
    start_point,
)


def render_track(level: TrackLevel | Centerline, size: int = 256) -> np.ndarray:
    """uint8 (size, size, 3) top view: the road (grey, true width) on grass, a white bar at the start line
    and, for a `TrackLevel`, its control points (red; the one the car starts on larger)."""
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
        first = start_point(level)
        for i, (x, y) in enumerate(px(world)):
            r = max(2.0, size / 80) * (1.6 if i == first else 1.0)
            draw.ellipse([x - r, y - r, x + r, y + r], fill=(220, 30, 30))
    return np.asarray(image, dtype=np.uint8)
