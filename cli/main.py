"""`ued` command group; each command lives in its own module of this package."""

from __future__ import annotations

import click

from ued.errors import UsageError


class InputError(click.ClickException):
    """A ued UsageError as click shows it: `error: ...` on one line, exit code 2."""

    exit_code = 2

    def show(self, file=None) -> None:
        click.echo(f"error: {self.format_message()}", err=True, file=file)


class UedGroup(click.Group):
    """Turns the library's UsageError into one clear line and exit code 2, never a traceback."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except UsageError as exc:
            raise InputError(str(exc)) from None


@click.group(cls=UedGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(package_name="ued")
def cli() -> None:
    """Unsupervised Environment Design: teachers generate levels, PPO students learn on them, and
    students are judged zero-shot on held-out levels.

    \b
    Typical use:
      ued train --teacher dr --env maze --total-steps 200000 --run-dir runs/dr
      ued eval runs/dr --suite maze-transfer
      tensorboard --logdir runs
    """


def _add_commands() -> None:
    import importlib

    # each module defines COMMANDS, a list of click commands; heavy imports happen inside the commands
    for name in ("envs", "family", "render", "train", "evaluate", "bench", "vae", "sweep", "report"):
        module = importlib.import_module(f"ued.cli.{name}")
        for command in module.COMMANDS:
            cli.add_command(command)


_add_commands()


def main() -> None:
    """Console entry point."""
    cli(prog_name="ued")


if __name__ == "__main__":
    main()
