"""`ued render`: draw levels (a held-out suite, level files, or random samples) as PNG pictures."""

from __future__ import annotations

import re
from pathlib import Path

import click

from ued.errors import UsageError


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name) or "level"


def _teacher_levels(run_dir: Path, count: int) -> tuple[object, list]:
    """`count` levels that the trained teacher of a run proposes now (from its checkpoint): what PAIRED's
    adversary writes, what PLR replays, ..."""
    from ued.checkpoint import CHECKPOINT_NAME, load_checkpoint
    from ued.config import load_config
    from ued.run import build_family, teacher_config_for
    from ued.teachers import teacher_class

    config = load_config(run_dir)
    family = build_family(config)
    teacher = teacher_class(config.teacher)(family, teacher_config_for(family, config), seed=config.seed)
    teacher.load_state_dict(load_checkpoint(Path(run_dir) / CHECKPOINT_NAME)["teacher"])
    return family, teacher.propose(count).levels


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
    help="Draw levels the trained teacher of this run directory proposes now (with --count).",
)
@click.option("--count", type=int, default=16, show_default=True, help="Levels to draw with --run.")
@click.option(
    "--seed", type=int, default=0, show_default=True, help="Seed for --sample and procedural suite entries."
)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(path_type=Path),
    required=True,
    help="Folder for the pictures, one NAME.png per level (created if missing).",
)
def render(
    suite_name: str | None,
    levels_path: Path | None,
    env_name: str,
    num_samples: int | None,
    run_dir: Path | None,
    count: int,
    seed: int,
    out_dir: Path,
) -> None:
    """Write one PNG picture per level to --out: the levels of a held-out suite (--suite), level files
    (--levels), or random levels (--sample N --seed S). Give exactly one of the three.

    \b
    Examples:
      ued render --suite maze-transfer --out pictures/
      ued render --levels my_maze.txt --env maze --out pictures/
      ued render --env maze --sample 8 --seed 1 --out pictures/
      ued render --run runs/paired --count 16 --out pictures/   # what the trained teacher writes now
    """
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
        family, proposed = _teacher_levels(run_dir, count)
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
