"""`ued bench`: speed of the students' environment backends and of the training loop, side by side
(the implementation is `ued.bench`; torch is imported only when the command runs)."""

from __future__ import annotations

import json
from typing import Any

import click

from ued.config import BACKENDS
from ued.errors import UsageError

#: the most envs the reference backend is benchmarked at unless --num-envs asks for more
REFERENCE_MAX_ENVS = 64


@click.command("bench")
@click.option("--env", "env_name", default="maze", show_default=True, help="level family to benchmark")
@click.option(
    "--backend",
    type=click.Choice(["all", *BACKENDS]),
    default="all",
    show_default=True,
    help="student env backend(s): default (the family's own: batched tensor mazes), gym (the gymnasium / minigrid reference), or all",
)
@click.option(
    "--num-envs",
    "num_envs",
    type=int,
    multiple=True,
    default=(),
    help="envs stepped at once in the env benchmark (repeatable); default: the family's published number "
    "and its eval_batch_size (maze 32 and 512, CarRacing 16 and 32), the reference backend only up to "
    f"{REFERENCE_MAX_ENVS} envs (CarRacing's runs one process per env)",
)
@click.option(
    "--steps",
    type=int,
    default=200,
    show_default=True,
    help="batched steps per env-benchmark run (the reference stops early after 5 s)",
)
@click.option(
    "--repeats",
    type=int,
    default=3,
    show_default=True,
    help="alternating runs per backend in the env benchmark (the median is kept)",
)
@click.option(
    "--train/--no-train",
    "do_train",
    default=True,
    show_default=True,
    help="also time the DR training loop (and PAIRED when available) with each backend",
)
@click.option(
    "--train-envs",
    type=int,
    default=None,
    help="envs of the training benchmark (default: the family's published number, maze 32, CarRacing 16; "
    "1024 for the GPU target); rollouts are the family's published length (maze 256, CarRacing 125)",
)
@click.option(
    "--updates",
    type=int,
    default=4,
    show_default=True,
    help="rollout+update cycles per training benchmark (the first is warm-up)",
)
@click.option(
    "--teachers",
    default="dr,paired",
    show_default=True,
    help="comma-separated teachers to time (skipped when not installed)",
)
@click.option(
    "--bf16/--no-bf16",
    default=False,
    show_default=True,
    help="also time training with the students' LSTM in bfloat16 (PPOConfig.bf16), next to fp32",
)
@click.option(
    "--device",
    type=click.Choice(["cpu", "cuda"]),
    default="cpu",
    show_default=True,
    help="device of the batched backend and of the networks",
)
@click.option(
    "--threads",
    type=int,
    default=None,
    help="torch CPU threads (default: torch's choice, the number of cores)",
)
@click.option(
    "--json",
    "json_path",
    type=click.Path(dir_okay=False, writable=True),
    default=None,
    help="also write all numbers to this JSON file",
)
def bench(
    env_name: str,
    backend: str,
    num_envs: tuple[int, ...],
    steps: int,
    repeats: int,
    do_train: bool,
    train_envs: int | None,
    updates: int,
    teachers: str,
    bf16: bool,
    device: str,
    threads: int | None,
    json_path: str | None,
) -> None:
    """Measure env steps/s of the student env backends (random actions, same number of envs, side by
    side) and the training loop's env steps/s with each backend, with a coarse profile of where the
    training time goes (students' rollout inference, env step, the env's own sections such as CarRacing's
    rendering, students' PPO update, the teacher's propose and update). A family whose env runs in worker
    processes (CarRacing) is measured in-process
    (default) and with one worker per core (default-Np). Targets: maze batched env >= 50x the minigrid
    reference; maze DR training loop (fp32) >= 1.5x jaxued side by side (benchmarks/peers/), >= 100,000
    env steps/s on a GPU with --train-envs 1024; CarRacing env >= 25x gymnasium's at 16 envs.

    \b
    Examples:
      ued bench                                   # everything, CPU
      ued bench --no-train --num-envs 32 --num-envs 1024
      ued bench --env carracing --no-train --threads 1
      ued bench --teachers dr,paired,clutr --backend default --threads 1
      ued bench --device cuda --train-envs 1024 --backend default --json gpu.json
    """
    import torch

    from ued.bench import bench_envs, bench_train
    from ued.levels import make_family
    from ued.threads import apply_threads

    if device == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda but torch sees no CUDA device; use --device cpu")
    if (
        steps < 1
        or repeats < 1
        or any(n < 1 for n in num_envs)
        or (train_envs is not None and train_envs < 1)
    ):
        raise UsageError("--steps, --repeats, --num-envs and --train-envs must be >= 1")
    if threads is not None:  # else torch's own choice, as --help says
        apply_threads(threads, device)
    family = make_family(env_name)
    published = family.default_ppo()
    train_envs = published.num_envs if train_envs is None else train_envs
    backends = list(BACKENDS) if backend == "all" else [backend]
    sizes = list(num_envs) or sorted({published.num_envs, family.eval_batch_size})
    skip_reference = () if num_envs else tuple(n for n in sizes if n > REFERENCE_MAX_ENVS)
    result: dict[str, Any] = {"env": env_name, "device": device, "torch_threads": torch.get_num_threads()}
    click.echo(
        f"ued bench --env {env_name} on {device} ({torch.get_num_threads()} torch threads); "
        "numbers from a shared machine are noisy, compare ratios from one run"
    )
    click.echo("environment steps/s (random actions):")
    rows = []
    for n in sizes:
        runs = [b for b in backends if not (b == "gym" and n in skip_reference)]
        rows += bench_envs(family, runs, [n], steps, device=device, repeats=repeats, echo=click.echo)
        if len(runs) == 2:
            speed = {r["backend"]: r["steps_per_s"] for r in rows if r["num_envs"] == n}
            for label in [k for k in speed if k != "gym"]:
                click.echo(f"  ratio {label}/gym at {n} envs: {speed[label] / speed['gym']:.1f}x")
        elif "gym" in backends:
            click.echo(f"  (reference backend not run at {n} envs; give --num-envs {n} to include it)")
    result["env_speed"] = rows
    if do_train:
        from ued.teachers import TEACHERS

        result["train"] = []
        click.echo(
            f"training env steps/s ({train_envs} envs x {published.num_steps} steps, "
            f"{updates} updates, profile = share of wall time):"
        )
        for teacher in [t.strip() for t in teachers.split(",") if t.strip()]:
            if teacher not in TEACHERS:
                click.echo(f"  {teacher}: not installed, skipped")
                continue
            speeds = {}
            for b, half in [(b, half) for half in ([False, True] if bf16 else [False]) for b in backends]:
                row = bench_train(
                    env_name,
                    teacher,
                    b,
                    updates=updates,
                    num_envs=train_envs,
                    num_steps=published.num_steps,
                    device=device,
                    bf16=half,
                    threads=threads,
                )
                result["train"].append(row)
                if not half:
                    speeds[b] = row["steps_per_s"]
                prof = "  ".join(
                    f"{k} {v:.0%}" for k, v in sorted(row["profile"].items(), key=lambda kv: -kv[1])
                )
                click.echo(
                    f"  {teacher:<7} {b:<9} {row['precision']:<5} {row['steps_per_s']:>10,.0f} steps/s   {prof}"
                )
            if len(speeds) == 2:
                click.echo(f"  ratio default/gym ({teacher}): {speeds['default'] / speeds['gym']:.2f}x")
    if json_path:
        from ued.io import write_json

        write_json(json_path, json.loads(json.dumps(result, default=float)), sort_keys=False)
        click.echo(f"wrote {json_path}")


COMMANDS = [bench]
