"""`ued train`: train students against a teacher on a level family, or resume a run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from ued.errors import UsageError
from ued.runner import BACKENDS, TrainConfig, config_from_dict, field_docs, load_config

_DOCS = field_docs(TrainConfig)
#: config-file tables whose `name` key picks the component and whose other keys are its options
_TABLES = {"env": ("env", "env_options"), "teacher": ("teacher", "teacher_options")}


def _toml() -> Any:
    """The TOML reader: tomllib (Python 3.11+) or the tomli backport."""
    try:
        import tomllib
    except ModuleNotFoundError:
        try:
            import tomli as tomllib
        except ModuleNotFoundError:
            raise UsageError(
                "TOML config files need Python 3.11+ or `pip install tomli`; or use JSON"
            ) from None
    return tomllib


def read_config_file(path: str | Path) -> dict[str, Any]:
    """A TrainConfig dict from a TOML or JSON file.

    Top-level keys are TrainConfig fields; an `[env]` / `[teacher]` table gives the component's `name`
    and options (`[env] name = "maze"  max_walls = 25`), and `[ppo]` the students' PPO overrides."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read config file {path}: {exc}") from exc
    try:
        if path.suffix.lower() == ".toml":
            data = _toml().loads(text)
        elif path.suffix.lower() == ".json":
            data = json.loads(text)
        else:
            raise UsageError(f"config file {path} must end in .toml or .json")
    except (ValueError, json.JSONDecodeError) as exc:  # TOMLDecodeError is a ValueError
        raise UsageError(f"config file {path} is malformed: {exc}") from exc
    if not isinstance(data, dict):
        raise UsageError(f"config file {path} must hold a table of settings")
    out: dict[str, Any] = {}
    for key, value in data.items():
        key = key.replace("-", "_")
        if key in _TABLES and isinstance(value, dict):
            name_key, options_key = _TABLES[key]
            options = dict(value)
            if "name" in options:
                out[name_key] = options.pop("name")
            out.setdefault(options_key, {}).update(options)
        elif key in ("env_options", "teacher_options") and isinstance(value, dict):
            out.setdefault(key, {}).update(value)
        else:
            out[key] = value
    return out


def _help(name: str, extra: str = "") -> str:
    return (_DOCS.get(name, "") + extra).strip()


@click.command("train")
@click.option("--teacher", default=None, help=_help("teacher", " [default: dr]"))
@click.option("--env", default=None, help=_help("env", " [default: maze]"))
@click.option(
    "--total-steps",
    type=int,
    default=None,
    help=_help("total_steps", f" [default: {TrainConfig.total_steps}]"),
)
@click.option("--run-dir", type=click.Path(file_okay=False), default=None, help=_help("run_dir"))
@click.option("--seed", type=int, default=None, help=_help("seed", " [default: 0]"))
@click.option("--num-envs", type=int, default=None, help=_help("num_envs"))
@click.option("--num-steps", type=int, default=None, help=_help("num_steps"))
@click.option("--device", default=None, help=_help("device", " [default: cpu]"))
@click.option("--threads", type=int, default=None, help=_help("threads"))
@click.option("--backend", type=click.Choice(BACKENDS), default=None, help=_help("backend"))
@click.option(
    "--checkpoint-interval", type=int, default=None, help=_help("checkpoint_interval", " [default: 10]")
)
@click.option("--log-interval", type=int, default=None, help=_help("log_interval", " [default: 1]"))
@click.option("--image-interval", type=int, default=None, help=_help("image_interval", " [default: 50]"))
@click.option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False),
    default=None,
    help="TOML or JSON file of settings: top-level keys as these options (total_steps = 100000), "
    "[env] and [teacher] tables with a name and options, a [ppo] table; command-line options win.",
)
@click.option(
    "--resume",
    "resume_dir",
    type=click.Path(file_okay=False),
    default=None,
    help="continue the run in this directory from its checkpoint (its saved settings; --total-steps may "
    "extend it).",
)
@click.option("--no-progress", is_flag=True, help="no progress bar (e.g. in logs)")
def train_command(
    teacher: str | None,
    env: str | None,
    total_steps: int | None,
    run_dir: str | None,
    seed: int | None,
    num_envs: int | None,
    num_steps: int | None,
    device: str | None,
    threads: int | None,
    backend: str | None,
    checkpoint_interval: int | None,
    log_interval: int | None,
    image_interval: int | None,
    config_file: str | None,
    resume_dir: str | None,
    no_progress: bool,
) -> None:
    """Train PPO students on levels proposed by a teacher; TensorBoard logs, config.json and checkpoints
    go to the run directory.

    \b
    Examples:
      ued train --teacher dr --env maze --total-steps 200000 --run-dir runs/dr
      ued train --teacher paired --config paired.toml --seed 1
      ued train --resume runs/dr --total-steps 400000     # continue, training for longer
      tensorboard --logdir runs
    """
    from ued.runner import train

    settings: dict[str, Any] = {}
    if resume_dir is not None:
        if run_dir is not None and Path(run_dir) != Path(resume_dir):
            raise UsageError("give either --resume DIR or --run-dir DIR, not two different directories")
        base = load_config(resume_dir)
        settings.update({k: v for k, v in vars(base).items()})
    if config_file is not None:
        settings.update(read_config_file(config_file))
    cli_values = {
        "teacher": teacher,
        "env": env,
        "total_steps": total_steps,
        "run_dir": resume_dir if resume_dir is not None else run_dir,
        "seed": seed,
        "num_envs": num_envs,
        "num_steps": num_steps,
        "device": device,
        "threads": threads,
        "backend": backend,
        "checkpoint_interval": checkpoint_interval,
        "log_interval": log_interval,
        "image_interval": image_interval,
    }
    settings.update({k: v for k, v in cli_values.items() if v is not None})
    config = config_from_dict(settings, where=str(config_file) if config_file else "config")
    summary = train(config, resume=resume_dir is not None, progress=not no_progress)
    click.echo(
        f"{summary['steps']} steps in {summary['updates']} updates ({summary['steps_per_second']:.0f} steps/s); "
        f"last mean return {summary['mean_return']:.3f}, solved rate {summary['solved_rate']:.2f}; "
        f"run saved in {summary['run_dir']}"
    )


COMMANDS = [train_command]
