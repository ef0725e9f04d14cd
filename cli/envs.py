"""`ued envs`: list the level families and held-out suites this installation knows."""

from __future__ import annotations

import click


@click.command("envs")
def envs() -> None:
    """List the registered level families (name, token vocabulary, tokens per level) and the held-out
    suites (name, family, number of entries, description, and the source's evaluation protocol).

    Families come with ued or from plugins (setup.cfg entry-point group `ued.environments`); use a family
    with `ued train --env NAME` and a suite with `ued eval RUN_DIR --suite NAME`. A plugin that fails to
    import or to build with its default options is listed as broken, with why; the others keep working
    (`ued check-family NAME` checks a family against the whole contract).
    """
    from ued.environments.suites import SUITE_PLUGIN_ERRORS, all_suites
    from ued.errors import UsageError
    from ued.levels import PLUGIN_ERRORS, family_names, make_family, one_line
    from ued.models import STUDENTS

    click.echo("families:")
    click.echo(f"  {'name':<12} {'vocab':>6} {'max_tokens':>10}  {'student':<14} default suite")
    for name in family_names():
        try:
            family = make_family(name)
            row = (
                f"  {name:<12} {family.vocab_size:>6} {family.max_tokens:>10}  "
                f"{family.default_student or '-':<14} {family.default_suite or '-'}"
            )
        except UsageError as exc:
            row = f"  {name:<12} (broken: {exc})"
        except Exception as exc:  # noqa: BLE001  (a plugin's attributes are third-party code)
            row = f"  {name:<12} (broken: {one_line(exc)}; `ued check-family {name}` says what to fix)"
        click.echo(row)
    for name, why in sorted(PLUGIN_ERRORS.items()):
        click.echo(f"  {name:<12} (broken plugin: {why})")
    click.echo("student networks: " + ", ".join(sorted(STUDENTS)))
    click.echo("suites:")
    click.echo(f"  {'name':<20} {'family':<12} {'levels':>6}  description (protocol)")
    suites = all_suites()
    for name in sorted(suites):
        suite = suites[name]
        try:
            count = str(len(suite.levels()))
        except Exception as exc:  # noqa: BLE001  (a plugin suite's loader is third-party code)
            click.echo(
                f"  {name:<20} {suite.family:<12} {'?':>6}  (broken: its levels fail to load: {one_line(exc)})"
            )
            continue
        click.echo(f"  {name:<20} {suite.family:<12} {count:>6}  {suite.description}")
        if suite.protocol:
            click.echo(f"  {'':<20} {'':<12} {'':>6}  protocol: {suite.protocol}")
    for name, why in sorted(SUITE_PLUGIN_ERRORS.items()):
        click.echo(f"  {name:<20} (broken: {why})")


COMMANDS = [envs]
