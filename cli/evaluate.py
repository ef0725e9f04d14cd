"""`ued eval`: zero-shot transfer of a trained student to held-out levels."""

from __future__ import annotations

import json
import time
from pathlib import Path

import click

from ued.cli.train import parse_options
from ued.errors import UsageError
from ued.io import check_writable

EVAL_FORMAT = "ued-eval"
#: an earlier result larger than this is not one of ours (nor read into memory to find out)
MAX_RESULT_BYTES = 256 * 2**20


def invalid_level_names(family: object, named_levels: list[tuple[str, object]]) -> list[str]:
    """The names of the levels `family.is_valid` rejects (e.g. unsolvable mazes); a level it cannot judge
    (is_valid raises, e.g. a CarRacing F1 centerline, which has no control points) is not named."""
    names = []
    for name, level in named_levels:
        try:
            valid = bool(family.is_valid(level))
        except Exception:  # noqa: BLE001  (a level kind is_valid does not cover: nothing to warn about)
            valid = True
        if not valid:
            names.append(name)
    return names


def _check_result_path(path: Path) -> None:
    """Refuse (before any work) a path that cannot be written, or that holds a file other than an earlier
    ued eval result."""
    check_writable(path, "--json")
    if path.exists():
        try:
            if path.stat().st_size > MAX_RESULT_BYTES:
                raise OSError("too large for a ued eval result")
            old = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            old = None
        if not isinstance(old, dict) or old.get("format") != EVAL_FORMAT:
            raise UsageError(f"{path} exists and is not a ued eval result; choose another --json path")


#: seconds between `ued eval`'s progress lines
PROGRESS_SECONDS = 10.0


class _EvalCommand(click.Command):
    """`ued eval`, whose --help ends with the registered held-out suites (imported only to show them)."""

    def format_epilog(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        super().format_epilog(ctx, formatter)
        from ued.environments.suites import all_suites

        rows = [(name, f"{s.family}: {s.description}") for name, s in sorted(all_suites().items())]
        with formatter.section("Suites (--suite; `ued envs` adds each one's published protocol)"):
            formatter.write_dl(rows)


#: levels the run's teacher proposes for the training-distribution reference, and episodes on each
TRAINING_LEVELS, TRAINING_EPISODES = 32, 2


def _random_columns(row) -> dict:
    if row is None:
        return {}
    return {"random_mean_return": row.mean_return, "random_solved_rate": row.solved_rate}


def _training_levels(run_dir, family, policy, seed, device):
    """(the student's overall row, the random policy's, the number of levels) on the levels the run's
    teacher proposes now: the run's own training distribution."""
    from ued.baselines import random_baseline, teacher_levels
    from ued.evaluation import evaluate, overall

    _, proposed = teacher_levels(run_dir, TRAINING_LEVELS, device)
    named = [(f"training-{i:02d}", level) for i, level in enumerate(proposed)]
    student = overall(evaluate(policy, family, named, TRAINING_EPISODES, seed, device))
    rand = overall(random_baseline(family, named, TRAINING_EPISODES, seed, device))
    return student, rand, len(named)


@click.command("eval", cls=_EvalCommand)
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.option(
    "--suite",
    default=None,
    help="held-out suite to play (listed below) [default: the run's family's transfer suite, "
    "e.g. maze-transfer]; procedural entries play a new layout every episode, drawn from --seed",
)
@click.option(
    "--levels",
    "levels_path",
    type=click.Path(),
    default=None,
    help="a level file or a folder of them, instead of a suite: maze .txt files; CarRacing .json track "
    "files (ued's designed tracks or the F1 centerline format) or .txt control points",
)
@click.option(
    "--tracks",
    "tracks_path",
    type=click.Path(),
    default=None,
    help="a CarRacing JSON track file (e.g. the F1 circuits, each with its own episode limit) or a "
    "folder of them; the same as --levels, named for track files",
)
@click.option(
    "--env-option",
    "env_option",
    multiple=True,
    metavar="KEY=VALUE",
    help="override an option of the run's level family for this evaluation only, repeatable, parsed as "
    "`ued train --env-option` (carracing: thin_centerlines=true for ued's old ~3.5-unit F1 tiles, "
    "lap_complete_percent=0.95 for gymnasium's lap rule). Numbers with thin_centerlines or "
    "lap_complete_percent < 1 are NOT comparable with published F1 results (dcd: one tile per centerline "
    "point, a lap needs every tile).",
)
@click.option(
    "--episodes",
    type=int,
    default=None,
    help="episodes per level [default: the family's published count: maze 100, as dcd's eval.py; "
    "carracing 10, as 100 F1 episodes per track take hours on the reference env]",
)
@click.option(
    "--student",
    "role",
    default="protagonist",
    show_default=True,
    help="which trained student to evaluate (protagonist, or antagonist for PAIRED runs)",
)
@click.option("--deterministic", is_flag=True, help="take the most likely action (published: stochastic)")
@click.option(
    "--seed",
    type=int,
    default=0,
    show_default=True,
    help="evaluation seed (actions, and the layouts of procedural levels)",
)
@click.option(
    "--threads",
    type=int,
    default=1,
    show_default=True,
    help="torch CPU threads (evaluation steps small batches, fastest on one thread)",
)
@click.option("--device", default="cpu", show_default=True, help="torch device (cpu, cuda, ...)")
@click.option(
    "--baselines/--no-baselines",
    default=True,
    show_default=True,
    help="also play a uniformly random policy on the same levels (cached) and the student and the random "
    "policy on the levels the run's teacher proposes now (its own training distribution), to read the "
    "held-out numbers against",
)
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
    tracks_path: str | None,
    env_option: tuple[str, ...],
    episodes: int | None,
    role: str,
    deterministic: bool,
    seed: int,
    threads: int,
    device: str,
    baselines: bool,
    json_path: str | None,
) -> None:
    """Evaluate the student trained in RUN_DIR, zero-shot, on held-out levels nobody trained on; prints
    each level's mean return and solved rate (return > 0) and their mean over levels.

    \b
    Examples:
      ued eval runs/dr --suite maze-transfer --episodes 100
      ued eval runs/paired --student antagonist --json results.json
      ued eval runs/dr --levels my_mazes/
      ued eval runs/car_dr --tracks f1_tracks.json --episodes 1
      ued eval runs/car_dr --tracks f1_tracks.json --env-option lap_complete_percent=0.95

    CarRacing F1 tracks (--tracks) are played as published by dcd (100 episodes per track there: use
    --episodes 100): one road tile per centerline point, a lap only when every tile is visited, each
    track's own frame limit, the game's own reward, a stochastic policy.
    """
    from ued.baselines import random_baseline
    from ued.environments.suites import resolve_suite
    from ued.evaluation import evaluate, format_table, load_student, overall
    from ued.io import write_json
    from ued.threads import apply_threads

    if levels_path is not None and tracks_path is not None:
        raise UsageError("give either --levels or --tracks (the same option), not both")
    levels_flag = "--tracks" if tracks_path is not None else "--levels"
    levels_path = levels_path if levels_path is not None else tracks_path
    if suite is not None and levels_path is not None:
        raise UsageError(f"give either --suite or {levels_flag}, not both")
    if episodes is not None and episodes < 1:
        raise UsageError(f"--episodes must be at least 1, got {episodes}")
    apply_threads(threads, device)
    if json_path is not None:
        _check_result_path(Path(json_path))
    overrides = parse_options(env_option, "--env-option", "lap_complete_percent=0.95")
    policy, family, config = load_student(run_dir, role, device=device, env_options=overrides)
    episodes = episodes if episodes is not None else family.eval_episodes
    if levels_path is not None:
        named_levels = family.load_levels(levels_path)
        source = str(levels_path)
        invalid = invalid_level_names(family, named_levels)
        if invalid:
            click.echo(
                f"warning: {len(invalid)} of {len(named_levels)} levels are not valid {family.name} levels "
                f"(is_valid: e.g. unsolvable), played as written: {', '.join(invalid)}",
                err=True,
            )
    else:
        s = resolve_suite(config.env, suite)
        named_levels = s.levels()
        source = s.name
    shown = {"at": time.monotonic(), "done": -1}

    def progress(done: int, total: int) -> None:
        """A line on stderr at most every PROGRESS_SECONDS while episodes run (and when they are done)."""
        now = time.monotonic()
        if done != shown["done"] and (now - shown["at"] >= PROGRESS_SECONDS or done == total):
            click.echo(f"played {done}/{total} episodes", err=True)
            shown.update(at=now, done=done)

    rows = evaluate(
        policy, family, named_levels, episodes, seed, device, deterministic=deterministic, progress=progress
    )
    total = overall(rows, family.mean_excludes)
    click.echo(
        f"{role} of {run_dir} on {source} ({episodes} episodes per level, "
        f"{'deterministic' if deterministic else 'stochastic'} policy)"
    )
    if overrides:
        shown = ", ".join(f"{k}={v!r}" for k, v in sorted(overrides.items()))
        click.echo(f"family options overridden for this evaluation: {shown}")
    random_rows = training = None
    if baselines:
        random_rows = random_baseline(family, named_levels, episodes, seed, device)
        training = _training_levels(run_dir, family, policy, seed, device)
    click.echo(format_table(rows, total, random_rows, family.mean_excludes))
    if training is not None:
        student, rand, n = training
        click.echo(
            f"its own training levels ({n} the run's teacher proposes now, {TRAINING_EPISODES} episodes each): "
            f"solved {student.solved_rate:.2f} (return {student.mean_return:.3f}); "
            f"random policy solved {rand.solved_rate:.2f} (return {rand.mean_return:.3f})"
        )
    if json_path is not None:
        write_json(
            Path(json_path),
            {
                "format": EVAL_FORMAT,
                "run_dir": str(run_dir),
                "student": role,
                "source": source,
                "episodes": episodes,
                "seed": seed,
                "deterministic": deterministic,
                "env_options": family.options,
                "env_option_overrides": overrides,
                "levels": [
                    {**r.as_dict(), **_random_columns(random_rows[i] if random_rows else None)}
                    for i, r in enumerate(rows)
                ],
                "overall": {
                    **total.as_dict(),
                    **_random_columns(overall(random_rows, family.mean_excludes) if random_rows else None),
                    "excludes": sorted(family.mean_excludes & {r.name for r in rows}),
                },
                "training_levels": None
                if training is None
                else {
                    "levels": training[2],
                    "episodes": TRAINING_EPISODES,
                    "solved_rate": training[0].solved_rate,
                    "mean_return": training[0].mean_return,
                    **_random_columns(training[1]),
                },
            },
        )


COMMANDS = [eval_command]
