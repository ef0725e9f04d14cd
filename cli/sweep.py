"""`ued sweep`: train every teacher x seed, on a local process pool or a Ray cluster; resumable."""

from __future__ import annotations

import sys

import click

from ued.cli.train import parse_options
from ued.errors import UsageError


def parse_seeds(text: str) -> int | list[int]:
    """`5` -> 5 seeds (0..4); `0,3,7` -> those seeds; `7,` -> seed 7 alone."""
    try:
        if "," in text:
            return [int(s) for s in text.split(",") if s.strip()]
        return int(text)
    except ValueError:
        raise UsageError(f"--seeds expects a count (5) or a list (0,3,7), got {text!r}") from None


@click.command("sweep")
@click.option("--teachers", required=True, help="comma-separated teacher names, e.g. dr,paired,clutr")
@click.option("--env", default="maze", show_default=True, help="level family every run trains on")
@click.option(
    "--seeds",
    default="3",
    show_default=True,
    help="number of seeds (0..n-1), or a list like 0,3,7 (one seed: 7,)",
)
@click.option("--total-steps", type=int, required=True, help="student environment steps per run")
@click.option(
    "--out", required=True, type=click.Path(file_okay=False), help="sweep folder (OUT/<teacher>/seed<k>)"
)
@click.option(
    "--backend",
    type=click.Choice(["local", "ray"]),
    default="local",
    show_default=True,
    help="local process pool, or one Ray task (1 CPU) per run",
)
@click.option("--address", default=None, help="Ray cluster address (default: start a local Ray)")
@click.option("--workers", type=int, default=None, help="runs at the same time [default: CPU cores]")
@click.option("--num-envs", type=int, default=None, help="student parallel environments per run")
@click.option("--num-steps", type=int, default=None, help="student rollout length per environment")
@click.option("--device", default=None, help="torch device of every run (cpu, cuda)")
@click.option(
    "--set",
    "settings",
    multiple=True,
    metavar="KEY=VALUE",
    help="any other training setting for every run (a TOML/JSON value; a dotted key sets one nested "
    "option), e.g. --set ppo.lr=3e-4",
)
def sweep(
    teachers, env, seeds, total_steps, out, backend, address, workers, num_envs, num_steps, device, settings
) -> None:
    """Train every teacher in --teachers with every seed, one run dir per cell (OUT/<teacher>/seed<k>),
    then compare them with `ued report OUT`.

    \b
    Run the same command again to resume: finished runs are skipped, killed runs continue from their
    checkpoint, and nothing finished is overwritten. A run that fails is reported and the others go on;
    the exit code is 1 when any run failed (its traceback is in its run dir, sweep-error.txt).

    \b
    Example:
      ued sweep --teachers dr,paired,clutr --env maze --seeds 5 --total-steps 2000000 --out runs/sweep
      ued sweep ... --backend ray --address auto     # on a Ray cluster sharing the file system
    """
    from ued.sweep import SweepConfig, run_sweep

    overrides = parse_options(settings, "--set", "num_envs=8")
    for key, value in (("num_envs", num_envs), ("num_steps", num_steps), ("device", device)):
        if value is not None:
            overrides[key] = value
    config = SweepConfig(
        teachers=[t.strip() for t in teachers.split(",") if t.strip()],
        out=out,
        env=env,
        seeds=parse_seeds(seeds),
        total_steps=total_steps,
        backend=backend,
        address=address,
        max_workers=workers,
        overrides=overrides,
    )

    def line(result, done: int, total: int) -> None:
        name = result.cell.name
        if result.status == "skipped":
            text = f"[{done}/{total}] {name}: already finished, skipped"
        elif result.status == "done":
            how = "resumed and finished" if result.resumed else "finished"
            text = f"[{done}/{total}] {name}: {how} in {result.seconds:.1f}s"
        else:
            text = f"[{done}/{total}] {name}: FAILED: {result.error}"
        click.echo(text, err=result.status == "failed")

    try:
        outcome = run_sweep(config, on_cell_done=line)
    except KeyboardInterrupt:
        click.echo(
            f"interrupted: running cells checkpointed their last update, queued cells not started; run the "
            f"same command to resume {out}",
            err=True,
        )
        sys.exit(130)
    if outcome.failed:
        click.echo(f"{len(outcome.failed)} of {len(outcome.results)} runs failed:", err=True)
        for r in outcome.failed:
            click.echo(f"  {r.cell.name}: {r.error} (see {r.cell.run_dir}/sweep-error.txt)", err=True)
        sys.exit(1)
    click.echo(f"all {len(outcome.results)} runs finished in {out}; next: ued report {out}")


COMMANDS = [sweep]
