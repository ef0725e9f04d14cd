"""What a training run writes to TensorBoard: per-role returns and PPO losses, teacher metrics, level
statistics, speed, and picture grids of levels."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
from torch.utils.tensorboard import SummaryWriter

from ued.episodes import record_episode, resize_frame, save_gif
from ued.evaluation import PeriodicEvaluation, held_out_levels
from ued.levels import LevelFamily, Procedural, entry_rng
from ued.run import Run, StepOutcome


def level_grid(images: list[np.ndarray], columns: int = 4, pad: int = 4) -> np.ndarray:
    """Tile RGB pictures (H, W, 3) of any sizes into one uint8 image, white padding between them."""
    h = max(im.shape[0] for im in images)
    w = max(im.shape[1] for im in images)
    rows = math.ceil(len(images) / columns)
    cols = min(columns, len(images))
    grid = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad, 3), 255, dtype=np.uint8)
    for i, im in enumerate(images):
        r, c = divmod(i, columns)
        y, x = pad + r * (h + pad), pad + c * (w + pad)
        grid[y : y + im.shape[0], x : x + im.shape[1]] = im[..., :3]
    return grid


def log_step(writer: SummaryWriter, run: Run, outcome: StepOutcome) -> None:
    """Scalars of one update at step `run.steps`."""
    step = run.steps
    for role, res in outcome.results.items():
        writer.add_scalar(f"{role}/mean_return", float(res.mean_return.mean()), step)
        writer.add_scalar(f"{role}/solved_rate", float(res.solved_rate.mean()), step)
        writer.add_scalar(f"{role}/max_return", float(res.max_return.mean()), step)
        writer.add_scalar(f"{role}/mean_value", float(res.mean_value.mean()), step)
        writer.add_scalar(f"{role}/positive_value_loss", float(res.positive_value_loss.mean()), step)
        for key, value in outcome.student_metrics.get(role, {}).items():
            writer.add_scalar(f"{role}/{key}", value, step)
    for key, value in outcome.teacher_report.scalars.items():
        writer.add_scalar(f"teacher/{key}", float(value), step)
    stats: dict[str, list[float]] = {}
    for level in outcome.proposal.levels:
        for key, value in run.family.level_stats(level).items():
            stats.setdefault(key, []).append(float(value))
    for key, values in stats.items():
        writer.add_scalar(
            f"levels/{key}", float(np.nanmean(values)) if not np.isnan(values).all() else math.nan, step
        )
    # share of updates so far in which the students took a PPO step (below 1 for Robust PLR and ACCEL)
    writer.add_scalar("teacher/train_students_share", run.trained_updates / max(1, run.update), step)
    writer.add_scalar("perf/steps_per_second", run.steps_per_update / outcome.seconds, step)
    writer.add_scalar("perf/rollout_seconds", outcome.rollout_seconds, step)
    writer.add_scalar("perf/update_seconds", outcome.seconds, step)
    if run.followup_steps:  # steps played outside the budget (ACCEL's children)
        writer.add_scalar("perf/followup_steps", run.followup_steps, step)


def log_images(writer: SummaryWriter, family: LevelFamily, step: int, outcome: StepOutcome) -> None:
    """Picture grids: the levels just proposed, and the teacher's pictures (e.g. PLR's top buffer levels);
    small pictures are enlarged by a whole factor (`resize_frame`) so that a grid is readable."""
    named: dict[str, list[Any]] = {"proposed": outcome.proposal.levels[:8], **outcome.teacher_report.pictures}
    for name, levels in named.items():
        if levels:
            grid = level_grid([resize_frame(family.render(level)) for level in levels])
            writer.add_image(f"levels/{name}", grid, step, dataformats="HWC")


def log_episode(writer: SummaryWriter, run: Run, run_dir: Path, held_out: PeriodicEvaluation | None) -> None:
    """The protagonist playing the first level of the periodic evaluation (`held_out_levels` when that is
    off): RUN/videos/<level>-<steps>.gif and a film strip of 8 frames under episodes/<level>.
    (TensorBoard's own video panel needs moviepy, which ued does not install.)"""
    levels = held_out.levels if held_out is not None else held_out_levels(run.config, run.family)[0]
    name, entry = levels[0]
    level = entry.sample(entry_rng(run.config.seed, 0)) if isinstance(entry, Procedural) else entry
    policy = run.students["protagonist"].policy
    frames = record_episode(policy, run.family, level, seed=run.config.seed)
    save_gif(frames, run_dir / "videos" / f"{name}-{run.steps}.gif")
    picks = np.linspace(0, len(frames) - 1, num=min(8, len(frames))).round().astype(int)
    writer.add_image(
        f"episodes/{name}", level_grid([frames[i] for i in picks], columns=8), run.steps, dataformats="HWC"
    )


__all__ = ["level_grid", "log_episode", "log_images", "log_step"]
