"""`ued train`: train students against a teacher on a level family, or resume a run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from ued.config import (
    BACKENDS,
    TrainConfig,
    config_from_dict,
    field_docs,
    load_config,
    preset_description,
    preset_names,
    preset_path,
)
from ued.errors import UsageError
from ued.io import read_input_text

_DOCS = field_docs(TrainConfig)
#: config-file tables whose `name` key picks the component and whose other keys are its options
_TABLES = {
    "env": ("env", "env_options"),
    "teacher": ("teacher", "teacher_options"),
    "student": ("student", "student_options"),
}


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
    text = read_input_text(path, "config file", "give a TOML or JSON file of settings")
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
        elif key in ("env_options", "teacher_options", "student_options") and isinstance(value, dict):
            out.setdefault(key, {}).update(value)
        else:
            out[key] = value
    return out


def parse_value(text: str) -> Any:
    """A command-line option value: a TOML or JSON literal when it is one (25, 3e-4, true, "quoted",
    [1, 2], {lr = 1e-4}, null), else the text itself as a string (vae-maze.pt, paired)."""
    try:
        value = _toml().loads(f"v = {text}")["v"]
    except (UsageError, ValueError):
        try:
            value = json.loads(text)
        except ValueError:
            return text
    return value if _plain(value) else text  # e.g. a TOML date stays the text


def _plain(value: Any) -> bool:
    """True for values config.json can hold: None, bool, numbers, strings, lists and dicts of them."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return True
    if isinstance(value, list):
        return all(_plain(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _plain(v) for k, v in value.items())
    return False


def parse_options(pairs: tuple[str, ...] | list[str], flag: str, example: str) -> dict[str, Any]:
    """Repeated `--flag KEY=VALUE` strings -> a dict (values by `parse_value`); a dotted key sets a nested
    option (ppo.lr=1e-4 -> {"ppo": {"lr": 1e-4}}); later pairs win."""
    options: dict[str, Any] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        parts = [part.strip().replace("-", "_") for part in key.split(".")]
        if not sep or not all(parts):
            raise UsageError(f"{flag} {pair!r} is not KEY=VALUE; e.g. {flag} {example}")
        node = options
        for part in parts[:-1]:
            if not isinstance(node.get(part), dict):
                node[part] = {}
            node = node[part]
        node[parts[-1]] = parse_value(text.strip())
    return options


def deep_update(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """`base` with `overrides` merged in, nested dicts merged key by key (overrides win); a new dict."""
    out = dict(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_update(out[key], value)
        else:
            out[key] = value
    return out


def _help(name: str, extra: str = "") -> str:
    return (_DOCS.get(name, "") + extra).strip()


@click.command("train")
@click.option("--teacher", default=None, help=_help("teacher", " [default: dr]"))
@click.option("--env", default=None, help=_help("env", " [default: maze]"))
@click.option(
    "--env-option",
    "env_option",
    multiple=True,
    metavar="KEY=VALUE",
    help="option of the level family, repeatable (maze: --env-option max_walls=25); merged over the config "
    'file\'s [env] table. Values are TOML/JSON literals (25, 0.5, true, "text") or else plain strings.',
)
@click.option(
    "--teacher-option",
    "teacher_option",
    multiple=True,
    metavar="KEY=VALUE",
    help="teacher setting, repeatable (--teacher-option replay_prob=0.8, --teacher-option ppo.lr=3e-4); "
    "merged over the config file's [teacher] table. An unknown key is refused with the list of valid ones.",
)
@click.option("--student", default=None, help=_help("student"))
@click.option(
    "--total-steps",
    type=int,
    default=None,
    help=_help("total_steps", f" [default: {TrainConfig.total_steps}]"),
)
@click.option("--student-updates", type=int, default=None, help=_help("student_updates"))
@click.option("--run-dir", type=click.Path(file_okay=False), default=None, help=_help("run_dir"))
@click.option("--seed", type=int, default=None, help=_help("seed", " [default: 0]"))
@click.option("--num-envs", type=int, default=None, help=_help("num_envs"))
@click.option("--num-steps", type=int, default=None, help=_help("num_steps"))
@click.option("--device", default=None, help=_help("device", " [default: cpu]"))
@click.option("--threads", type=int, default=None, help=_help("threads"))
@click.option(
    "--keep-freed-memory/--return-freed-memory",
    default=None,
    help=_help("keep_freed_memory", " [default: keep]"),
)
@click.option(
    "--lr",
    type=float,
    default=None,
    help="the students' learning rate (ppo.lr; may change on --resume, e.g. lower after a divergence)",
)
@click.option(
    "--bf16",
    is_flag=True,
    default=None,
    help="run the students' LSTM in bfloat16 during PPO updates (faster on CPUs with bf16 support; "
    "published runs are fp32; same as `bf16 = true` in the config's [ppo] table)",
)
@click.option("--backend", type=click.Choice(BACKENDS), default=None, help=_help("backend"))
@click.option(
    "--checkpoint-interval", type=int, default=None, help=_help("checkpoint_interval", " [default: 10]")
)
@click.option("--log-interval", type=int, default=None, help=_help("log_interval", " [default: 1]"))
@click.option("--image-interval", type=int, default=None, help=_help("image_interval", " [default: 50]"))
@click.option("--eval-interval", type=int, default=None, help=_help("eval_interval"))
@click.option("--eval-suite", default=None, help=_help("eval_suite"))
@click.option("--eval-levels", type=click.Path(), default=None, help=_help("eval_levels"))
@click.option("--eval-episodes", type=int, default=None, help=_help("eval_episodes", " [default: 10]"))
@click.option("--video-interval", type=int, default=None, help=_help("video_interval", " [default: 0]"))
@click.option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False),
    default=None,
    help="TOML or JSON file of settings: top-level keys as these options (total_steps = 100000), "
    "[env] and [teacher] tables with a name and options, a [ppo] table; command-line options win.",
)
@click.option(
    "--preset",
    default=None,
    metavar="NAME",
    help="start from a published configuration shipped with ued (`ued presets` lists them, e.g. "
    "dcd-mg25b-paired); --config and the options here change it further",
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
    env_option: tuple[str, ...],
    teacher_option: tuple[str, ...],
    student: str | None,
    total_steps: int | None,
    student_updates: int | None,
    run_dir: str | None,
    seed: int | None,
    num_envs: int | None,
    num_steps: int | None,
    device: str | None,
    threads: int | None,
    keep_freed_memory: bool | None,
    lr: float | None,
    bf16: bool | None,
    backend: str | None,
    checkpoint_interval: int | None,
    log_interval: int | None,
    image_interval: int | None,
    eval_interval: int | None,
    eval_suite: str | None,
    eval_levels: str | None,
    eval_episodes: int | None,
    video_interval: int | None,
    config_file: str | None,
    preset: str | None,
    resume_dir: str | None,
    no_progress: bool,
) -> None:
    """Train PPO students on levels proposed by a teacher; TensorBoard logs, config.json and checkpoints
    go to the run directory.

    \b
    Examples:
      ued train --teacher dr --env maze --total-steps 200000 --run-dir runs/dr
      ued train --teacher paired --config paired.toml --seed 1
      ued train --teacher plr --env maze --env-option max_walls=25 --teacher-option replay_prob=0.8
      ued train --preset dcd-mg25b-paired --run-dir runs/paired   # a published configuration
      ued train --resume runs/dr --total-steps 400000     # continue, training for longer
      tensorboard --logdir runs
    """
    from ued.runner import TrainingInterrupted, train

    settings: dict[str, Any] = {}
    if resume_dir is not None:
        if run_dir is not None and Path(run_dir) != Path(resume_dir):
            raise UsageError("give either --resume DIR or --run-dir DIR, not two different directories")
        settings.update(load_config(resume_dir).to_dict())
    if preset is not None:
        settings.update(read_config_file(preset_path(preset)))
    if config_file is not None:
        file_settings = read_config_file(config_file)
        for key in ("env_options", "teacher_options", "student_options", "ppo"):
            if isinstance(settings.get(key), dict) and isinstance(file_settings.get(key), dict):
                file_settings[key] = deep_update(settings[key], file_settings[key])
        settings.update(file_settings)
    cli_values = {
        "teacher": teacher,
        "env": env,
        "student": student,
        "total_steps": total_steps,
        "student_updates": student_updates,
        "run_dir": resume_dir if resume_dir is not None else run_dir,
        "seed": seed,
        "num_envs": num_envs,
        "num_steps": num_steps,
        "device": device,
        "threads": threads,
        "keep_freed_memory": keep_freed_memory,
        "backend": backend,
        "checkpoint_interval": checkpoint_interval,
        "log_interval": log_interval,
        "image_interval": image_interval,
        "eval_interval": eval_interval,
        "eval_suite": eval_suite,
        "eval_levels": eval_levels,
        "eval_episodes": eval_episodes,
        "video_interval": video_interval,
    }
    settings.update({k: v for k, v in cli_values.items() if v is not None})
    for key, value in (("bf16", True if bf16 else None), ("lr", lr)):
        if value is not None:
            settings["ppo"] = {**(settings.get("ppo") or {}), key: value}
    for options_key, flag, pairs, example in (
        ("env_options", "--env-option", env_option, "max_walls=25"),
        ("teacher_options", "--teacher-option", teacher_option, "replay_prob=0.5"),
    ):
        if pairs:
            base = settings.get(options_key) or {}
            if not isinstance(base, dict):
                raise UsageError(f"{options_key} in {config_file} must be a table of KEY = VALUE settings")
            settings[options_key] = deep_update(base, parse_options(pairs, flag, example))
    config = config_from_dict(settings, where=str(config_file) if config_file else "config")
    try:
        summary = train(config, resume=resume_dir is not None, progress=not no_progress)
    except TrainingInterrupted as exc:  # Ctrl-C: the last completed update is checkpointed
        click.echo(exc.advice(), err=True)
        raise click.exceptions.Exit(130) from None
    click.echo(
        f"{summary['steps']} steps in {summary['updates']} updates ({summary['steps_per_second']:.0f} steps/s); "
        f"last mean return {summary['mean_return']:.3f}, solved rate {summary['solved_rate']:.2f}; "
        f"run saved in {summary['run_dir']}"
    )
    click.echo(
        f"next: `ued eval {summary['run_dir']}` (held-out transfer), "
        f"`tensorboard --logdir {summary['run_dir']}` (curves and level pictures)"
    )


@click.command("presets")
def presets_command() -> None:
    """List the published configurations shipped with ued: `ued train --preset NAME` trains with one
    (its settings and sources: docs/protocol.md)."""
    names = preset_names()
    width = max(len(n) for n in names)
    for name in names:
        click.echo(f"{name:<{width}}  {preset_description(name)}")


COMMANDS = [train_command, presets_command]
