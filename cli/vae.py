"""`ued pretrain-vae`: train CLUTR's recurrent VAE on random levels of a family and save it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from ued.cli.train import parse_options
from ued.config import VAEConfig
from ued.errors import UsageError

#: the published VAE settings, the options' defaults
_DEFAULTS = VAEConfig()


def parse_env_options(pairs: tuple[str, ...]) -> dict[str, Any]:
    """KEY=VALUE strings -> dict, values read as in `ued train --env-option` (TOML/JSON literals, else
    strings)."""
    return parse_options(pairs, "--env-option", "max_walls=25")


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
@click.option("--steps", type=int, default=10_000, show_default=True, help="Gradient steps.")
@click.option(
    "--sequences",
    type=int,
    default=_DEFAULTS.sequences,
    show_default=True,
    help="Random training levels (published: about 1M).",
)
@click.option(
    "--held-out",
    type=int,
    default=_DEFAULTS.held_out,
    show_default=True,
    help="Extra random levels for the reconstruction report.",
)
@click.option("--batch-size", type=int, default=_DEFAULTS.batch_size, show_default=True)
@click.option("--lr", type=float, default=_DEFAULTS.lr, show_default=True, help="Adam learning rate.")
@click.option(
    "--embed-dim", type=int, default=_DEFAULTS.embed_dim, show_default=True, help="Token embedding."
)
@click.option(
    "--hidden", type=int, default=_DEFAULTS.hidden, show_default=True, help="Encoder bidirectional LSTM size."
)
@click.option("--latent", type=int, default=_DEFAULTS.latent, show_default=True, help="Latent dimensions.")
@click.option(
    "--decoder-hidden",
    type=int,
    default=_DEFAULTS.decoder_hidden,
    show_default=True,
    help="Decoder LSTM size.",
)
@click.option("--decoder-layers", type=int, default=_DEFAULTS.decoder_layers, show_default=True)
@click.option(
    "--kl-max",
    type=float,
    default=_DEFAULTS.kl_max,
    show_default=True,
    help="Final KL weight (below 1 keeps more of each level in the latent).",
)
@click.option(
    "--kl-anneal",
    type=click.Choice(["logistic", "linear", "constant"]),
    default=_DEFAULTS.kl_anneal,
    show_default=True,
    help="KL weight schedule.",
)
@click.option(
    "--word-dropout",
    type=float,
    default=_DEFAULTS.word_dropout,
    show_default=True,
    help="Probability of hiding a decoder input token.",
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", default="cpu", show_default=True, help="torch device (cpu, cuda, ...).")
@click.option(
    "--threads",
    type=int,
    default=None,
    help="torch CPU threads (default: 1 on --device cpu, as `ued train`). The published sizes ran 1.9x "
    "faster on 2 idle cores, but more threads than free cores are far slower.",
)
@click.option(
    "--log-dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Write TensorBoard scalars (reconstruction, KL, beta) here.",
)
@click.option("--quiet", is_flag=True, help="No progress bar.")
def pretrain_vae(
    env_name: str,
    env_options: tuple[str, ...],
    out_path: Path,
    steps: int,
    sequences: int,
    held_out: int,
    batch_size: int,
    lr: float,
    embed_dim: int,
    hidden: int,
    latent: int,
    decoder_hidden: int,
    decoder_layers: int,
    kl_max: float,
    kl_anneal: str,
    word_dropout: float,
    seed: int,
    device: str,
    threads: int | None,
    log_dir: Path | None,
    quiet: bool,
) -> None:
    """Train CLUTR's recurrent VAE on random levels of --env and write it to --out, then print its held-out
    reconstruction accuracy next to chance.

    Defaults are the published sizes (embedding 300, encoder 600, latent 64, decoder 2 x 800), which take
    hours on a CPU; the first example trains a mid-size one in about 5 minutes on one busy CPU core (held-out
    tracks: 71% of tokens right, chance 36%); 52-token mazes cost about 4x more per step.

    \b
    Examples:
      ued pretrain-vae --env carracing --out vae-car.pt --steps 1500 --embed-dim 64 --hidden 256 \\
          --decoder-hidden 256
      ued pretrain-vae --env maze --out vae-maze.pt --steps 2000 --embed-dim 32 --hidden 64 \\
          --decoder-hidden 128 --batch-size 32 --word-dropout 0.25
      ued train --teacher clutr --env maze --teacher-option vae_path=vae-maze.pt --run-dir runs/clutr

    The VAE fits only the environment options it was trained with: give `ued train` the same --env and
    --env-option values (a config file may instead set vae_path in its [teacher] table).
    """

    from ued.levels import make_family
    from ued.threads import apply_threads
    from ued.vae import pretrain_vae as train_vae
    from ued.vae import save_vae

    apply_threads(threads, device)
    options = parse_env_options(env_options)
    family = make_family(env_name, **options)
    config = VAEConfig(
        embed_dim=embed_dim,
        hidden=hidden,
        latent=latent,
        decoder_hidden=decoder_hidden,
        decoder_layers=decoder_layers,
        sequences=sequences,
        held_out=held_out,
        batch_size=batch_size,
        lr=lr,
        kl_max=kl_max,
        kl_anneal=kl_anneal,
        word_dropout=word_dropout,
    )
    if held_out < 0:
        raise UsageError(f"--held-out must be >= 0 (got {held_out})")
    vae, report = train_vae(
        family,
        config,
        steps=steps,
        seed=seed,
        progress=not quiet,
        log_dir=str(log_dir) if log_dir else None,
        device=device,
    )
    save_vae(out_path, vae, config, family.name, options, report)
    click.echo(f"wrote {out_path}")
    if "token_accuracy" in report:
        click.echo(
            f"held-out reconstruction ({report['held_out_levels']} levels): "
            f"tokens {report['token_accuracy']:.1%} (chance {report['chance_token_accuracy']:.1%}), "
            f"tokens in any position {report['token_overlap']:.1%} "
            f"(chance {report['chance_token_overlap']:.1%}), "
            f"whole levels {report['level_accuracy']:.1%} (chance {report['chance_level_accuracy']:.1%})"
        )
    click.echo(
        f"final loss: reconstruction {report['final_reconstruction_loss']:.2f} nats/level, "
        f"KL {report['final_kl']:.2f}; latent dims in use: {report['latent_active_dims']}/{latent}"
    )


COMMANDS = [pretrain_vae]
