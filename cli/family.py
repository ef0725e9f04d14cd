"""`ued check-family` (a level family against the LevelFamily contract) and `ued new-family` (a working
template package for a new family)."""

from __future__ import annotations

import re
from pathlib import Path

import click

from ued.errors import UsageError

#: the template files (package data of ued.cli) -> where `ued new-family` writes them
TEMPLATE_DIR = Path(__file__).resolve().parent / "templates" / "family"
TEMPLATE_FILES = {
    "family.py.tmpl": "{module}.py",
    "setup.cfg.tmpl": "setup.cfg",
    "pyproject.toml.tmpl": "pyproject.toml",
    "conftest.py.tmpl": "conftest.py",
    "test_family.py.tmpl": "tests/test_{module}.py",
    "README.md.tmpl": "README.md",
}
NAME_PATTERN = re.compile(r"[a-z][a-z0-9]*(-[a-z0-9]+)*")


@click.command("check-family")
@click.argument("name")
@click.option(
    "--env-option",
    "env_options",
    multiple=True,
    metavar="KEY=VALUE",
    help="Family option, repeatable (maze: max_walls=25); checked with these options.",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the sampled levels and tokens.")
@click.option(
    "--samples", type=int, default=24, show_default=True, help="Levels and token sequences per check."
)
@click.option(
    "--vector-envs",
    type=int,
    default=2,
    show_default=True,
    help="Sub-envs of the make_vector_env check (1 keeps a one-process-per-env family in this process).",
)
@click.option("--no-env-checker", is_flag=True, help="Skip gymnasium's check_env (seconds for a pixel env).")
def check_family_command(
    name: str,
    env_options: tuple[str, ...],
    seed: int,
    samples: int,
    vector_envs: int,
    no_env_checker: bool,
) -> None:
    """Check level family NAME against the LevelFamily contract, on a few dozen seeded samples: decode of
    any in-range tokens, token and text round trips, repair, the PAIRED editor view and mask, the env
    (one observation space, honours the levels it is given, gymnasium's check_env), the vector env, the
    student network, the default suite and the options. Prints one line per check; each problem is one
    line naming the method and what to fix. Exit status 1 when a rule is broken.

    \b
    Examples:
      ued check-family corridor
      ued check-family maze --env-option max_walls=25 --samples 8
    """
    from ued.cli.train import parse_options
    from ued.levels import make_family
    from ued.testing import check_family
    from ued.threads import apply_threads

    if samples < 2:
        raise UsageError(f"--samples must be at least 2, got {samples}")
    if vector_envs < 1:
        raise UsageError(f"--vector-envs must be at least 1, got {vector_envs}")
    apply_threads(None, "cpu")
    options = parse_options(env_options, "--env-option", "max_walls=25")
    family = make_family(name, **options)
    cls = type(family)
    shown = ", ".join(f"{k}={v!r}" for k, v in family.options.items()) or "none"
    click.echo(f"checking environment {name!r} ({cls.__module__}.{cls.__qualname__}; options: {shown})")
    report = check_family(
        family,
        seed=seed,
        samples=samples,
        env_checker=not no_env_checker,
        vector_envs=vector_envs,
        raise_on_problems=False,
    )
    for line in report.passed:
        click.echo(f"  ok    {line}")
    for line in report.skipped:
        click.echo(f"  skip  {line}")
    for line in report.problems:
        click.echo(f"  FAIL  {line}")
    click.echo(report.summary())
    if not report.ok:
        raise click.exceptions.Exit(1)


def template_names(name: str) -> dict[str, str]:
    """The placeholders of the template for family `name` ("key-door"): __NAME__ "key-door", __MODULE__
    "key_door_family", __CLASS__ "KeyDoor"; UsageError for a name that is not lowercase-with-hyphens."""
    if not NAME_PATTERN.fullmatch(name):
        raise UsageError(
            f"family name {name!r} must be lowercase letters and digits, words joined by '-', starting with a "
            "letter; e.g. key-door"
        )
    words = name.split("-")
    return {
        "__NAME__": name,
        "__MODULE__": "_".join(words) + "_family",
        "__CLASS__": "".join(w[:1].upper() + w[1:] for w in words),
    }


def write_template(name: str, folder: Path) -> list[Path]:
    """Write the template package of family `name` into `folder` (new or empty); returns the files."""
    names = template_names(name)
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise UsageError(f"{folder} exists and is not an empty folder; choose a new folder for the package")
    written = []
    for template, target in TEMPLATE_FILES.items():
        text = (TEMPLATE_DIR / template).read_text(encoding="utf-8")
        for key, value in names.items():
            text = text.replace(key, value)
        path = folder / target.format(module=names["__MODULE__"])
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


@click.command("new-family")
@click.argument("name")
@click.argument("folder", type=click.Path(path_type=Path, file_okay=False))
def new_family_command(name: str, folder: Path) -> None:
    """Write a working template package for a new level family NAME into FOLDER: the level, a gymnasium
    env, a student network, the LevelFamily (tokens, sampling, repair, the PAIRED editor view), a text
    format, a held-out suite NAME-transfer, the entry point, and a test calling `ued.testing.check_family`.
    It passes `ued check-family NAME` as written; edit it into your own game.

    \b
    Example:
      ued new-family key-door key-door/ && pip install -e key-door/ && ued check-family key-door
    """
    from ued.levels import FAMILIES, family_names

    if name in family_names():
        cls = FAMILIES[name]
        raise UsageError(
            f"environment name {name!r} is taken by {cls.__module__}.{cls.__qualname__}; choose another name"
        )
    for path in write_template(name, folder):
        click.echo(str(path))
    click.echo(
        f"wrote family {name!r} to {folder}; next: pip install -e {folder} && ued check-family {name}",
        err=True,
    )


COMMANDS = [check_family_command, new_family_command]
