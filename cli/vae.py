"""`ued pretrain-vae` (train CLUTR's recurrent VAE on random levels of a family, resumable) and
`ued vae-report` (the quality figures and an interpolation picture of a VAE file)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from ued.cli.train import parse_options
from ued.config import VAE_PRESETS, VAEConfig, field_docs, merge, vae_preset
from ued.errors import UsageError

_FIELDS = ", ".join(field_docs(VAEConfig))
#: training levels `ued vae-report` measures the chance baseline on
REPORT_TRAIN_LEVELS = 5000

#: `--picture` of both commands
_picture_option = click.option(
    "--picture",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Write a PNG of levels decoded along a latent interpolation between two held-out levels.",
)


def parse_env_options(pairs: tuple[str, ...]) -> dict[str, Any]:
    """KEY=VALUE strings -> dict, values read as in `ued train --env-option` (TOML/JSON literals, else
    strings)."""
    return parse_options(pairs, "--env-option", "max_walls=25")


def resolve_vae_config(preset: str, pairs: tuple[str, ...], steps: int | None) -> VAEConfig:
    """The VAEConfig of `preset` with `--set KEY=VALUE` overrides and `--steps` applied (one UsageError
    line for an unknown preset, key or bad value)."""
    config = merge(vae_preset(preset), parse_options(pairs, "--set", "latent=32"), "--set")
    return config if steps is None else merge(config, {"steps": steps}, "--steps")


def quality_lines(report: dict[str, Any]) -> list[str]:
    """The report's figures as a few readable lines (held-out reconstruction, KL, prior validity)."""
    lines = []
    if "token_accuracy" in report:
        lines.append(
            f"held-out reconstruction ({report['held_out_levels']} levels): "
            f"tokens {report['token_accuracy']:.1%} (chance {report['chance_token_accuracy']:.1%}), "
            f"tokens in any position {report['token_overlap']:.1%} "
            f"(chance {report['chance_token_overlap']:.1%}), "
            f"whole levels {report['level_accuracy']:.1%} (chance {report['chance_level_accuracy']:.1%}); "
            f"KL {report['kl_per_level']:.1f} nats per level"
        )
    if "prior_valid" in report:
        lines.append(
            f"decoded latents valid before repair ({report['prior_samples']} each): prior samples "
            f"{report['prior_valid']:.1%}, uniform in the teacher's latent range {report['range_valid']:.1%}, "
            f"uniform in [0, 1] {report['unit_valid']:.1%} (random levels: {report['held_out_valid']:.1%})"
        )
    return lines


def resolve_vae_path(text: str | Path) -> Path:
    """A VAE file argument: a path, or `shipped:NAME` for ued's shipped VAE of family NAME."""
    from ued.vae import shipped_vae_path

    text = str(text)
    return shipped_vae_path(text.split(":", 1)[1]) if text.startswith("shipped:") else Path(text)


def _write_picture(path: Path, vae: Any, family: Any, held_out: Any) -> None:
    """An interpolation between the first two held-out levels, as a PNG (`ued.vae.interpolation_picture`)."""
    from ued.io import atomic_write
    from ued.vae import interpolation_picture

    if len(held_out) < 2:
        raise UsageError("an interpolation picture needs at least 2 held-out levels; raise held_out")
    picture = interpolation_picture(vae, family, held_out[0], held_out[1])
    from PIL import Image

    atomic_write(path, lambda f: Image.fromarray(picture).save(f, format="PNG"))


@click.command("pretrain-vae")
@click.option("--env", "env_name", default="maze", show_default=True, help="Level family (see `ued envs`).")
@click.option(
    "--env-option",
    "env_options",
    multiple=True,
    metavar="KEY=VALUE",
    help="Family option, repeatable (maze: max_walls=25); the VAE only fits this configuration.",
)
@click.option(
    "--out",
    "out_path",
    type=click.Path(path_type=Path, dir_okay=False),
    required=True,
    help="VAE file to write (train with it: `ued train --teacher clutr --teacher-option vae_path=FILE`, "
    "with the same --env and --env-option values).",
)
@click.option(
    "--preset",
    type=click.Choice(list(VAE_PRESETS)),
    default="published",
    show_default=True,
    help="published: CLUTR's VAE and training, exactly (1M steps; a GPU job); cpu: ued's shipped VAEs' "
    "settings; small: ued's start-up fallback (a toy). docs/clutr-vae.md has each one's figures.",
)
@click.option(
    "--set",
    "settings",
    multiple=True,
    metavar="KEY=VALUE",
    help=f"Override one VAE setting of the preset, repeatable (e.g. --set latent=32). Keys: {_FIELDS}.",
)
@click.option("--steps", type=int, default=None, help="Gradient steps (default: the preset's).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seeds the data, weights and noise.")
@click.option("--device", default="cpu", show_default=True, help="torch device (cpu, cuda, ...).")
@click.option(
    "--threads",
    type=int,
    default=None,
    help="torch CPU threads (default: every core this process may use on --device cpu, as `ued train`). "
    "More threads than free cores are far slower: on a busy machine use 1.",
)
@click.option(
    "--resume",
    is_flag=True,
    help="Continue from the checkpoint (OUT.ckpt) of an interrupted or shorter pretraining with the same "
    "settings (only --steps may grow); the result is bit-identical to an uninterrupted run.",
)
@click.option(
    "--init",
    "init",
    metavar="VAE",
    default=None,
    help="Continue training this VAE file (or shipped:NAME, ued's shipped one) with a fresh Adam state and "
    "these settings, e.g. a lower --set lr: its weights and step count are the start, so --steps is the "
    "total. The network, --seed, data settings and a fixed-step KL schedule must be the file's.",
)
@click.option(
    "--checkpoint-interval",
    type=click.IntRange(min=1),
    default=1000,
    show_default=True,
    help="Steps between checkpoints (OUT.ckpt, written atomically; also at the end and on Ctrl-C).",
)
@click.option(
    "--eval-interval",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Steps between held-out reconstruction measurements (progress bar and TensorBoard); 0: only at the "
    "end.",
)
@click.option(
    "--log-dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Write TensorBoard scalars (loss, reconstruction, KL, beta, accuracy) here.",
)
@click.option(
    "--half", is_flag=True, help="Store float16 weights (half the size; the report is measured so)."
)
@_picture_option
@click.option("--quiet", is_flag=True, help="No progress bar.")
def pretrain_vae(
    env_name: str,
    env_options: tuple[str, ...],
    out_path: Path,
    preset: str,
    settings: tuple[str, ...],
    steps: int | None,
    seed: int,
    device: str,
    threads: int | None,
    resume: bool,
    init: str | None,
    checkpoint_interval: int,
    eval_interval: int,
    log_dir: Path | None,
    half: bool,
    picture: Path | None,
    quiet: bool,
) -> None:
    """Train CLUTR's recurrent VAE on random levels of --env (streamed from the family's `sample`, a pure
    function of --seed) and write it to --out, then print its quality: held-out token and whole-level
    reconstruction next to chance, KL per level, and the share of decoded random latents that are valid.

    The default preset is the published one (CLUTR task_embed/clutr_RVAE: 1M steps of batch 32 on 1M
    random levels; hours on a GPU). Ctrl-C checkpoints; `--resume` continues.

    \b
    Examples:
      ued pretrain-vae --env carracing --out vae-car.pt --preset cpu --steps 6000
      ued pretrain-vae --env maze --out vae-maze.pt --device cuda --log-dir runs/vae-maze
      ued pretrain-vae --env maze --out vae-maze.pt --device cuda --resume     # after an interruption
      ued pretrain-vae --env maze --preset cpu --init shipped:maze --set lr=4e-4 --steps 200000 --out m.pt
      ued train --teacher clutr --env maze --teacher-option vae_path=vae-maze.pt --run-dir runs/clutr

    The VAE fits only the environment options it was trained with: give `ued train` the same --env and
    --env-option values (a config file may instead set vae_path in its [teacher] table).
    """
    from ued.io import check_writable
    from ued.levels import make_family
    from ued.runner import StopRequests
    from ued.threads import apply_threads, check_device
    from ued.vae import PretrainInterrupted, save_vae
    from ued.vae import pretrain_vae as train_vae

    check_device(device)
    apply_threads(threads, device)
    family = make_family(env_name, **parse_env_options(env_options))
    options = family.options  # every option, defaults included: the file says exactly what it fits
    config = resolve_vae_config(preset, settings, steps)
    checkpoint = out_path.with_name(out_path.name + ".ckpt")
    for path, flag in ((out_path, "--out"), (checkpoint, "--out"), (picture, "--picture")):
        if path is not None:
            check_writable(path, flag)
    init_path = resolve_vae_path(init) if init is not None else None
    if init_path is not None and (
        init_path.resolve() == out_path.resolve()
        or (init_path.exists() and out_path.exists() and init_path.samefile(out_path))
    ):
        raise UsageError(
            f"--init and --out are the same file {out_path}; copy the VAE to continue from first"
        )
    if not resume and checkpoint.exists():
        raise UsageError(
            f"{checkpoint} holds an earlier pretraining; continue it with --resume, or delete it to start again"
        )
    try:
        with StopRequests() as stops:
            vae, report = train_vae(
                family,
                config,
                seed=seed,
                progress=not quiet,
                log_dir=str(log_dir) if log_dir else None,
                device=device,
                checkpoint=checkpoint,
                checkpoint_interval=checkpoint_interval,
                resume=resume,
                eval_interval=eval_interval,
                family_options=options,
                should_stop=lambda: stops.requested,
                round_half=half,
                init=init_path,
            )
    except PretrainInterrupted as stop:
        raise UsageError(
            f"stopped at step {stop.step} of {config.steps}; checkpoint in {checkpoint}; continue with the same "
            "command and --resume"
        ) from None
    save_vae(out_path, vae, config, family.name, options, report, half=half)  # the report's options too
    began = f"; continued from {init} at step {report['init']['steps']}" if "init" in report else ""
    click.echo(
        f"wrote {out_path} ({report['steps']} steps, {report['wall_time_s']:.0f} s{began}; checkpoint "
        f"{checkpoint})"
    )
    for line in quality_lines(report):
        click.echo(line)
    click.echo(
        f"final loss: reconstruction {report['final_reconstruction_loss']:.2f} nats/level, "
        f"KL {report['final_kl']:.2f}; latent dims in use: {report['latent_active_dims']}/{config.latent}"
    )
    if picture is not None:
        from ued.vae import LevelStream

        held = LevelStream(family, seed, 1, min(config.held_out, 2), 1).held_out
        _write_picture(picture, vae, family, held)
        click.echo(f"wrote {picture} (levels decoded along a latent interpolation)")


@click.command("vae-report")
@click.argument("vae_path", metavar="VAE", type=click.Path(path_type=Path, dir_okay=False))
@click.option(
    "--levels",
    type=click.IntRange(min=2),
    default=1000,
    show_default=True,
    help="Held-out random levels (the VAE's own held-out stream when --seed is its pretraining seed).",
)
@click.option(
    "--samples",
    type=click.IntRange(min=1),
    default=1000,
    show_default=True,
    help="Random latents decoded for the validity figures.",
)
@click.option("--seed", type=int, default=None, help="Default: the seed the VAE was pretrained with.")
@_picture_option
@click.option("--json", "json_path", type=click.Path(path_type=Path, dir_okay=False), default=None)
def vae_report(vae_path: Path, levels: int, samples: int, seed: int | None, picture: Path | None, json_path):
    """Measure a VAE file (from `ued pretrain-vae`, or ued's shipped ones: `ued vae-report shipped:maze`):
    held-out token accuracy and exact-level reconstruction next to chance, KL per level, and the share of
    decoded random latents (prior samples, the teacher's range, [0, 1]) that are valid before repair."""
    import torch

    from ued.io import check_writable, write_json
    from ued.levels import make_family
    from ued.vae import LevelStream, load_vae, read_vae_file, vae_quality

    torch.set_num_threads(1)
    vae_path = resolve_vae_path(vae_path)
    for path, flag in ((picture, "--picture"), (json_path, "--json")):
        if path is not None:
            check_writable(path, flag)
    payload = read_vae_file(vae_path)
    family = make_family(payload["family"], **dict(payload.get("family_options") or {}))
    vae = load_vae(vae_path, family)
    seed = int(vae.report.get("seed", 0)) if seed is None else seed
    stream = LevelStream(family, seed, REPORT_TRAIN_LEVELS, levels, 1)
    report = vae_quality(vae, family, stream.held_out, stream.first(REPORT_TRAIN_LEVELS), samples, seed)
    click.echo(
        f"{vae_path}: {family.name} {family.options}, {vae.report.get('steps', '?')} steps; seed {seed}"
    )
    for line in quality_lines(report):
        click.echo(line)
    if picture is not None:
        _write_picture(picture, vae, family, stream.held_out)
        click.echo(f"wrote {picture} (levels decoded along a latent interpolation)")
    if json_path is not None:
        write_json(json_path, {"vae": str(vae_path), "family": family.name, "seed": seed, **report})


COMMANDS = [pretrain_vae, vae_report]
