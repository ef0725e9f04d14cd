"""`ued render`: draw levels (a held-out suite, level files, random samples, or what a trained teacher
proposes) as PNG pictures, or a trained student's episode on a level as an animated GIF (`--episode`)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import click

from ued.errors import UsageError


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name) or "level"


def _episode_level(
    family: Any, config: Any, episode: str, suite_name: str | None, levels_path: Path | None, seed: int
) -> tuple[str, Any]:
    """(name, level) for `--episode`: a level name of --levels PATH, of --suite NAME or of the run's default
    suite, or else the path of a file holding one level. A procedural entry is drawn with
    `entry_rng(seed, position)`, as the first episode of `ued eval --seed` and `ued render --suite` draw it."""
    from ued.environments.suites import resolve_suite
    from ued.levels import draw_levels, entry_rng

    if levels_path is not None:
        named, source = family.load_levels(levels_path), str(levels_path)
    else:
        suite = resolve_suite(config.env, suite_name)
        named, source = suite.levels(), f"suite {suite.name}"
    names = [name for name, _ in named]
    if episode in names:
        k = names.index(episode)
        return episode, draw_levels(named[k][1], 1, entry_rng(seed, k))[0]
    path = Path(episode)
    if path.exists():
        in_file = family.load_levels(path)
        if len(in_file) != 1:
            listed = ", ".join(name for name, _ in in_file[:20]) + (", ..." if len(in_file) > 20 else "")
            raise UsageError(
                f"{path} holds {len(in_file)} levels ({listed}); pick one: --levels {path} --episode NAME"
            )
        return in_file[0]
    raise UsageError(
        f"unknown level {episode!r}: neither a level of {source} ({', '.join(names)}) nor a level file; "
        "give one of those names, --suite NAME for another suite, or the path of a level file"
    )


def _render_episode(
    run_dir: Path | None,
    episode: str,
    suite_name: str | None,
    levels_path: Path | None,
    num_samples: int | None,
    student: str,
    seed: int,
    out: Path,
    max_frames: int,
    fps: float,
    deterministic: bool,
) -> None:
    """`ued render --run RUN --episode LEVEL --out EP.gif`: one episode of the run's student as a GIF."""
    if run_dir is None:
        raise UsageError("--episode plays a trained student: give its run directory with --run RUN_DIR")
    if num_samples is not None:
        raise UsageError("--episode plays one level of a suite or a level file; --sample does not combine")
    if out.suffix.lower() != ".gif":
        raise UsageError(f"with --episode, --out is the animation to write and must end in .gif, got {out}")
    if out.is_dir():
        raise UsageError(f"--out {out} is a folder; with --episode give a file name ending in .gif")
    if max_frames < 2:
        raise UsageError(f"--max-frames must be at least 2 (an animation), got {max_frames}")
    if not fps > 0:
        raise UsageError(f"--fps must be positive, got {fps}")
    if seed < 0:
        raise UsageError(f"--seed must be >= 0, got {seed}")
    import torch

    from ued.episodes import play_episode, save_gif
    from ued.evaluation import load_student

    torch.set_num_threads(1)  # one env, a batch of one: one thread is fastest
    policy, family, config = load_student(run_dir, student, "cpu")
    name, level = _episode_level(family, config, episode, suite_name, levels_path, seed)
    played = play_episode(
        policy, family, level, seed=seed, deterministic=deterministic, max_frames=max_frames
    )
    save_gif(played.frames, out, fps)
    click.echo(str(out))
    ending = "solved" if played.total_return > 0 else "not solved"
    if not played.finished:
        ending += f", cut at --max-frames {max_frames}"
    h, w = played.frames[0].shape[:2]
    click.echo(
        f"{student} of {run_dir} on {name}: {len(played.rewards)} steps, return {played.total_return:.3f} "
        f"({ending}); {len(played.frames)} frames of {w}x{h} at {fps:g} fps",
        err=True,
    )


@click.command("render")
@click.option(
    "--suite",
    "suite_name",
    default=None,
    help="Draw every level of this held-out suite (see `ued envs`); a procedural entry (a new layout per "
    "episode) is drawn once with --seed, as the first episode of `ued eval --seed` plays it.",
)
@click.option(
    "--levels",
    "levels_path",
    type=click.Path(path_type=Path),
    default=None,
    help="Draw a level file or every level file in a folder (maze: *.txt; carracing: *.txt or JSON track files).",
)
@click.option(
    "--env", "env_name", default="maze", show_default=True, help="Family for --sample; needed with --levels."
)
@click.option(
    "--sample",
    "num_samples",
    type=int,
    default=None,
    help="Draw this many random levels of --env (domain randomization).",
)
@click.option(
    "--run",
    "run_dir",
    type=click.Path(path_type=Path),
    default=None,
    help="Draw levels the trained teacher of this run directory proposes now (with --count), or with "
    "--episode play its trained student.",
)
@click.option(
    "--episode",
    default=None,
    metavar="LEVEL",
    help="With --run: play one episode of the trained student on LEVEL and write it as an animated GIF to "
    "--out: a level name of the run's held-out suite (or of --suite NAME, or of the level files of "
    "--levels PATH), or the path of a level file.",
)
@click.option(
    "--student",
    type=click.Choice(["protagonist", "antagonist"]),
    default="protagonist",
    show_default=True,
    help="Which trained student plays --episode (PAIRED and CLUTR runs have an antagonist).",
)
@click.option(
    "--max-frames",
    type=int,
    default=1000,
    show_default=True,
    help="--episode: stop the animation after this many frames (one per step).",
)
@click.option("--fps", type=float, default=10.0, show_default=True, help="--episode: frames per second.")
@click.option(
    "--deterministic", is_flag=True, help="--episode: take the most likely action instead of sampling."
)
@click.option("--count", type=int, default=16, show_default=True, help="Levels to draw with --run.")
@click.option(
    "--seed",
    type=int,
    default=0,
    show_default=True,
    help="Seed for --sample and procedural suite entries; with --episode, of the env, the student's actions "
    "and a procedural level's draw.",
)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(path_type=Path),
    required=True,
    help="Folder for the pictures, one NAME.png per level (created if missing); with --episode, the .gif "
    "file to write.",
)
def render(
    suite_name: str | None,
    levels_path: Path | None,
    env_name: str,
    num_samples: int | None,
    run_dir: Path | None,
    episode: str | None,
    student: str,
    max_frames: int,
    fps: float,
    deterministic: bool,
    count: int,
    seed: int,
    out_dir: Path,
) -> None:
    """Write one PNG picture per level to --out: the levels of a held-out suite (--suite), level files
    (--levels), random levels (--sample N --seed S), or the levels a trained teacher proposes (--run).
    Give exactly one of the four. With --run RUN --episode LEVEL: an animated GIF of one episode of the
    run's trained student on LEVEL instead.

    \b
    Examples:
      ued render --suite maze-transfer --out pictures/
      ued render --levels my_maze.txt --env maze --out pictures/
      ued render --env maze --sample 8 --seed 1 --out pictures/
      ued render --run runs/paired --count 16 --out pictures/   # what the trained teacher writes now
      ued render --run runs/dr --episode SixteenRooms --out sixteen.gif   # the student plays a level
      ued render --run runs/car --episode my_track.txt --max-frames 200 --out lap.gif
    """
    if episode is not None:
        _render_episode(
            run_dir,
            episode,
            suite_name,
            levels_path,
            num_samples,
            student,
            seed,
            out_dir,
            max_frames,
            fps,
            deterministic,
        )
        return
    import numpy as np
    from PIL import Image

    from ued.levels import make_family

    chosen = [
        opt
        for opt, value in (
            ("--suite", suite_name),
            ("--levels", levels_path),
            ("--sample", num_samples),
            ("--run", run_dir),
        )
        if value is not None
    ]
    if len(chosen) != 1:
        raise UsageError(
            f"give exactly one of --suite, --levels, --sample, --run (got {', '.join(chosen) or 'none'})"
        )
    if suite_name is not None:
        from ued.environments.suites import get_suite
        from ued.levels import draw_levels, entry_rng

        if seed < 0:
            raise UsageError(f"--seed must be >= 0, got {seed}")
        suite = get_suite(suite_name)
        family = make_family(suite.family)
        levels = [
            (name, draw_levels(entry, 1, entry_rng(seed, k))[0])
            for k, (name, entry) in enumerate(suite.levels())
        ]
    elif levels_path is not None:
        if click.get_current_context().get_parameter_source("env_name") is click.core.ParameterSource.DEFAULT:
            raise UsageError(
                "--levels needs --env NAME, the family of these level files (`ued envs` lists them)"
            )
        family = make_family(env_name)
        levels = family.load_levels(levels_path)
    elif run_dir is not None:
        if count < 1:
            raise UsageError(f"--count must be at least 1, got {count}")
        from ued.baselines import teacher_levels

        family, proposed = teacher_levels(run_dir, count)
        levels = [(f"{run_dir.name}-{i:02d}", level) for i, level in enumerate(proposed)]
    else:
        if num_samples < 1:
            raise UsageError(f"--sample must be at least 1, got {num_samples}")
        family = make_family(env_name)
        rng = np.random.default_rng(seed)
        width = len(str(num_samples - 1))
        levels = [(f"{env_name}-{seed}-{i:0{width}d}", family.sample(rng)) for i in range(num_samples)]
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, level in levels:
        path = out_dir / f"{_safe(name)}.png"
        Image.fromarray(np.asarray(family.render(level), dtype=np.uint8)).save(path)
        click.echo(str(path))
    if run_dir is not None:
        from ued.tblog import level_grid

        grid = level_grid([family.render(level) for _, level in levels])
        Image.fromarray(grid).save(out_dir / "grid.png")
        click.echo(str(out_dir / "grid.png"))
    click.echo(f"wrote {len(levels)} pictures to {out_dir}", err=True)


COMMANDS = [render]
