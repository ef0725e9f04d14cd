"""`ued eval`: zero-shot transfer of a trained student to held-out levels."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import click

from ued.errors import UsageError

EVAL_FORMAT = "ued-eval"


def _check_result_path(path: Path) -> None:
    """Refuse (before any work) to replace a file that is not an earlier ued eval result."""
    if path.exists():
        try:
            old = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            old = None
        if not isinstance(old, dict) or old.get("format") != EVAL_FORMAT:
            raise UsageError(f"{path} exists and is not a ued eval result; choose another --json path")


def _write_result(path: Path, data: dict) -> None:
    """Write the JSON result atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2)
        f.write("\n")
    os.replace(tmp, path)


@click.command("eval")
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.option(
    "--suite",
    default=None,
    help="held-out suite to play (`ued envs` lists them) [default: the run's family's transfer suite, "
    "e.g. maze-transfer]",
)
@click.option(
    "--levels",
    "levels_path",
    type=click.Path(),
    default=None,
    help="a level file (e.g. a maze .txt) or a folder of them, instead of a suite",
)
@click.option("--episodes", type=int, default=10, show_default=True, help="episodes per level")
@click.option(
    "--student",
    "role",
    default="protagonist",
    show_default=True,
    help="which trained student to evaluate (protagonist, or antagonist for PAIRED runs)",
)
@click.option("--deterministic", is_flag=True, help="take the most likely action (published: stochastic)")
@click.option("--seed", type=int, default=0, show_default=True, help="evaluation seed")
@click.option(
    "--threads",
    type=int,
    default=1,
    show_default=True,
    help="torch CPU threads (evaluation steps small batches, fastest on one thread)",
)
@click.option("--device", default="cpu", show_default=True, help="torch device (cpu, cuda, ...)")
@click.option(
    "--json",
    "json_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="also write the per-level results and the overall row to this JSON file",
)
def eval_command(
    run_dir: str,
    suite: str | None,
    levels_path: str | None,
    episodes: int,
    role: str,
    deterministic: bool,
    seed: int,
    threads: int,
    device: str,
    json_path: str | None,
) -> None:
    """Evaluate the student trained in RUN_DIR, zero-shot, on held-out levels nobody trained on; prints
    each level's mean return and solved rate (return > 0) and their mean over levels.

    \b
    Examples:
      ued eval runs/dr --suite maze-transfer --episodes 100
      ued eval runs/paired --student antagonist --json results.json
      ued eval runs/dr --levels my_mazes/
    """
    from ued.evaluation import evaluate, format_table, load_level_files, load_student, overall

    if suite is not None and levels_path is not None:
        raise UsageError("give either --suite or --levels, not both")
    if episodes < 1:
        raise UsageError(f"--episodes must be at least 1, got {episodes}")
    if threads < 1:
        raise UsageError(f"--threads must be at least 1, got {threads}")
    import torch

    torch.set_num_threads(threads)
    if json_path is not None:
        _check_result_path(Path(json_path))
    policy, family, config = load_student(run_dir, role, device=device)
    if levels_path is not None:
        named_levels = load_level_files(family, levels_path)
        source = str(levels_path)
    else:
        from ued.environments.suites import get_suite
        from ued.evaluation import default_suite

        suite = suite or default_suite(config.env)
        s = get_suite(suite)
        if s.family != config.env:
            raise UsageError(
                f"suite {suite!r} holds {s.family} levels but the run trained on {config.env}; "
                "choose a suite of that family (`ued envs` lists them)"
            )
        named_levels = s.levels()
        source = suite
    rows = evaluate(policy, family, named_levels, episodes, seed, device, deterministic=deterministic)
    total = overall(rows)
    click.echo(
        f"{role} of {run_dir} on {source} ({episodes} episodes per level, "
        f"{'deterministic' if deterministic else 'stochastic'} policy)"
    )
    click.echo(format_table(rows, total))
    if json_path is not None:
        _write_result(
            Path(json_path),
            {
                "format": EVAL_FORMAT,
                "run_dir": str(run_dir),
                "student": role,
                "source": source,
                "episodes": episodes,
                "seed": seed,
                "deterministic": deterministic,
                "levels": [r.as_dict() for r in rows],
                "overall": total.as_dict(),
            },
        )


COMMANDS = [eval_command]
