"""`ued report`: zero-shot transfer tables (with bootstrap CIs over seeds) and plots of a sweep."""

from __future__ import annotations

import click


@click.command("report")
@click.argument("sweep_dir", type=click.Path(file_okay=False))
@click.option(
    "--episodes",
    type=int,
    default=None,
    help="evaluation episodes per level [default: the env's published count, 100 for mazes and CarRacing "
    "(dcd eval.py), as `ued eval`]",
)
@click.option(
    "--suite",
    "suites",
    multiple=True,
    help="held-out suite (repeatable) [default: each run's env's suite, e.g. maze-transfer]",
)
@click.option(
    "--out", default=None, type=click.Path(file_okay=False), help="output folder [default: SWEEP_DIR/report]"
)
@click.option(
    "--seed", type=int, default=0, show_default=True, help="seed of the evaluation and the bootstrap"
)
@click.option(
    "--reps",
    type=int,
    default=2000,
    show_default=True,
    help="bootstrap replicates of every confidence interval",
)
@click.option("--no-plots", is_flag=True, help="write only the tables")
def report(sweep_dir, episodes, suites, out, seed, reps, no_plots) -> None:
    """Evaluate every finished run of a `ued sweep` folder on held-out levels and write a Markdown and CSV
    table per level and teacher, aggregates with 95% stratified-bootstrap confidence intervals over seeds
    (rliable: IQM of returns, mean solved rate), the probability of improvement of each pair of teachers,
    held-out transfer over training (from the runs' periodic evaluations), and PNG plots (learning and
    transfer curves, performance profiles, per-level solved rates, generated levels).

    Evaluations are cached in each run dir (eval-<suite>.json) and reused while the checkpoint is older.
    """
    import torch

    from ued.report import make_report

    torch.set_num_threads(1)  # evaluation batches are small: one thread is fastest and shares the machine
    result = make_report(
        sweep_dir,
        suites=list(suites) or None,
        episodes=episodes,
        out=out,
        seed=seed,
        bootstrap_reps=reps,
        plots=not no_plots,
        progress=lambda msg: click.echo(msg, err=True),
    )
    click.echo(result.aggregate_markdown())
    click.echo("")
    click.echo("wrote:")
    for path in result.files:
        click.echo(f"  {path}")
    for note in result.skipped:
        click.echo(f"  (no {note})")


COMMANDS = [report]
