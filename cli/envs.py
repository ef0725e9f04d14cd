"""`ued envs`: list the level families and held-out suites this installation knows."""

from __future__ import annotations

import click


@click.command("envs")
def envs() -> None:
    """List the registered level families (name, token vocabulary, tokens per level) and the held-out
    suites (name, family, number of entries, description, and the source's evaluation protocol).

    Families come with ued or from plugins (setup.cfg entry-point group `ued.environments`); use a family
    with `ued train --env NAME` and a suite with `ued eval RUN_DIR --suite NAME`.
    """
    from ued.environments.suites import SUITES
    from ued.levels import PLUGIN_ERRORS, family_names, make_family
    from ued.models import STUDENTS

    click.echo("families:")
    click.echo(f"  {'name':<12} {'vocab':>6} {'max_tokens':>10}  {'student':<14} default suite")
    for name in family_names():
        family = make_family(name)
        click.echo(
            f"  {name:<12} {family.vocab_size:>6} {family.max_tokens:>10}  {family.default_student or '-':<14} "
            f"{family.default_suite or '-'}"
        )
    for name, why in sorted(PLUGIN_ERRORS.items()):
        click.echo(f"  {name:<12} (broken plugin: {why})")
    click.echo("student networks: " + ", ".join(sorted(STUDENTS)))
    click.echo("suites:")
    click.echo(f"  {'name':<20} {'family':<12} {'levels':>6}  description (protocol)")
    for name in sorted(SUITES):
        suite = SUITES[name]
        click.echo(f"  {name:<20} {suite.family:<12} {len(suite.levels()):>6}  {suite.description}")
        if suite.protocol:
            click.echo(f"  {'':<20} {'':<12} {'':>6}  protocol: {suite.protocol}")


COMMANDS = [envs]
