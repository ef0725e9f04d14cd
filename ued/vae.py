"""A recurrent VAE over level token sequences (CLUTR's task-manifold model).

The encoder reads a level's tokens (`family.encode`) with a bidirectional LSTM and outputs a Gaussian
posterior over a latent vector; the decoder is a multi-layer LSTM that writes the tokens back, one per step,
conditioned on the latent. The CLUTR teacher acts in the latent space and turns latents into levels with
`RecurrentVAE.decode_greedy` -> `family.decode` -> `family.repair`.

Training data come from the family itself (`family.encode(family.sample(rng))`), so any registered family
gets a VAE for free. Published sizes (CLUTR): token embedding 300, bidirectional LSTM 600 encoder, latent
64, 2-layer LSTM 800 decoder, about 1M random training sequences, KL annealing. These are the `VAEConfig`
defaults except the number of sequences (CPU default: 20 000) and the final KL weight (0.2: at 1, with the
budgets a CPU allows, random mazes collapse onto the prior: held-out token accuracy 5% after 800 steps
against 1.6% chance, 17% after 500 steps at 0.2, same network); `ued pretrain-vae` and tests use smaller
networks.

The VAE also records its *latent range*: per dimension, mean +- 3 std of the posterior means over the
training data. The teacher rescales its [0, 1] outputs to this range (the public reference left them in
[0, 1], a small corner of the latent space).
"""

from __future__ import annotations

import math
import os
from collections import Counter
from dataclasses import fields
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

from ued.config import VAEConfig, merge
from ued.errors import UsageError
from ued.io import atomic_write
from ued.levels import LevelFamily

FILE_FORMAT = "ued-vae"
FILE_VERSION = 1
#: VAEConfig fields (a VAE file's config may hold keys of other versions, which are ignored)
_VAE_FIELDS = {f.name for f in fields(VAEConfig)}


def kl_weight(step: int, total_steps: int, config: VAEConfig) -> float:
    """The KL weight (beta) at training step `step` of `total_steps`."""
    if config.kl_anneal == "constant":
        return float(config.kl_max)
    span = max(1.0, config.kl_anneal_fraction * total_steps)
    if config.kl_anneal == "linear":
        return float(config.kl_max * min(1.0, step / span))
    # logistic: ~0.0067 * kl_max at step 0, kl_max / 2 half-way through the span, ~0.993 * kl_max at its end
    return float(config.kl_max / (1.0 + math.exp(-10.0 * (step / span - 0.5))))


class RecurrentVAE(nn.Module):
    """Sequence VAE: tokens [B, T] -> (mu, logvar) [B, D] -> z -> token logits [B, T, V].

    Token ids: 0..vocab_size-1 are the family's tokens; `vocab_size` is the decoder's start token and
    `vocab_size + 1` the "hidden" token used by word dropout.
    """

    def __init__(self, vocab_size: int, max_tokens: int, config: VAEConfig):
        super().__init__()
        self.vocab_size = int(vocab_size)
        self.max_tokens = int(max_tokens)
        self.config = config
        self.start_token = self.vocab_size
        self.hidden_token = self.vocab_size + 1
        c = config
        self.embed = nn.Embedding(self.vocab_size + 2, c.embed_dim)
        self.encoder = nn.LSTM(c.embed_dim, c.hidden, batch_first=True, bidirectional=True)
        self.to_posterior = nn.Linear(4 * c.hidden, 2 * c.latent)  # final (h, c) of both directions
        self.to_state = nn.Linear(c.latent, 2 * c.decoder_layers * c.decoder_hidden)
        self.decoder = nn.LSTM(
            c.embed_dim + c.latent, c.decoder_hidden, num_layers=c.decoder_layers, batch_first=True
        )
        self.to_logits = nn.Linear(c.decoder_hidden, self.vocab_size)
        # latent range (filled in by `pretrain_vae` from the posterior means of the training data)
        self.register_buffer("latent_low", torch.full((c.latent,), -3.0))
        self.register_buffer("latent_high", torch.full((c.latent,), 3.0))

    @property
    def latent_dim(self) -> int:
        return self.config.latent

    def encode(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """tokens int64 [B, T] -> posterior (mu, logvar), each float [B, latent]."""
        _, (h, c) = self.encoder(self.embed(tokens))
        summary = torch.cat([h[0], h[1], c[0], c[1]], dim=-1)
        mu, logvar = self.to_posterior(summary).chunk(2, dim=-1)
        return mu, logvar.clamp(-10.0, 10.0)

    def _initial_state(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        layers, size = self.config.decoder_layers, self.config.decoder_hidden
        state = torch.tanh(self.to_state(z)).view(z.shape[0], 2, layers, size)
        h = state[:, 0].transpose(0, 1).contiguous()
        c = state[:, 1].transpose(0, 1).contiguous()
        return h, c

    def decode_logits(
        self,
        z: torch.Tensor,
        tokens: torch.Tensor,
        word_dropout: float = 0.0,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Teacher-forced decoding: z [B, D], target tokens [B, T] -> logits [B, T, vocab_size]."""
        batch, length = tokens.shape
        start = torch.full((batch, 1), self.start_token, dtype=torch.long, device=tokens.device)
        inputs = torch.cat([start, tokens[:, :-1]], dim=1)
        if word_dropout > 0.0:
            drop = torch.rand(inputs.shape, generator=generator, device=inputs.device) < word_dropout
            drop[:, 0] = False
            inputs = inputs.masked_fill(drop, self.hidden_token)
        x = torch.cat([self.embed(inputs), z.unsqueeze(1).expand(batch, length, z.shape[-1])], dim=-1)
        out, _ = self.decoder(x, self._initial_state(z))
        return self.to_logits(out)

    @torch.no_grad()
    def decode_greedy(self, z: torch.Tensor) -> torch.Tensor:
        """Latents [B, D] -> tokens int64 [B, max_tokens], choosing the most likely token at each step.

        Exactly `max_tokens` decoder steps (it cannot loop); NaN/inf latents are mapped to finite values.
        """
        z = torch.nan_to_num(z.float(), nan=0.0, posinf=1e6, neginf=-1e6)
        z = z.to(self.to_state.weight.device)
        batch = z.shape[0]
        state = self._initial_state(z)
        token = torch.full((batch,), self.start_token, dtype=torch.long, device=z.device)
        out = torch.empty((batch, self.max_tokens), dtype=torch.long, device=z.device)
        for t in range(self.max_tokens):
            x = torch.cat([self.embed(token), z], dim=-1).unsqueeze(1)
            y, state = self.decoder(x, state)
            token = self.to_logits(y[:, 0]).argmax(dim=-1)
            out[:, t] = token
        return out

    def forward(
        self, tokens: torch.Tensor, generator: torch.Generator | None = None, word_dropout: float = 0.0
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """tokens [B, T] -> (logits [B, T, V], mu [B, D], logvar [B, D]) with a reparameterised sample."""
        mu, logvar = self.encode(tokens)
        eps = torch.randn(mu.shape, generator=generator, device=mu.device)
        z = mu + eps * torch.exp(0.5 * logvar)
        return self.decode_logits(z, tokens, word_dropout, generator), mu, logvar


def vae_loss(
    logits: torch.Tensor, tokens: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """(reconstruction, KL): token cross-entropy summed over the sequence and KL(q(z|x) || N(0, I)) summed
    over dimensions, both averaged over the batch."""
    recon = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tokens.reshape(-1), reduction="sum")
    kl = -0.5 * torch.sum(1.0 + logvar - mu.pow(2) - logvar.exp())
    return recon / tokens.shape[0], kl / tokens.shape[0]


def generate_sequences(family: LevelFamily, n: int, rng: np.random.Generator) -> np.ndarray:
    """n random levels of `family`, encoded: int64 [n, max_tokens]."""
    out = np.empty((n, family.max_tokens), dtype=np.int64)
    for i in range(n):
        out[i] = family.encode(family.sample(rng))
    return out


def _batched(fn, data: torch.Tensor, batch: int = 512) -> list[torch.Tensor]:
    return [fn(data[i : i + batch]) for i in range(0, data.shape[0], batch)]


@torch.no_grad()
def latent_range(vae: RecurrentVAE, tokens: torch.Tensor, range_std: float) -> dict[str, torch.Tensor]:
    """Per-dimension statistics of the posterior means over `tokens`: mean, std, min, max, low, high."""
    mu = torch.cat(_batched(lambda x: vae.encode(x)[0], tokens))
    mean, std = mu.mean(0), mu.std(0) if mu.shape[0] > 1 else torch.zeros(mu.shape[1])
    return {
        "mean": mean,
        "std": std,
        "min": mu.min(0).values,
        "max": mu.max(0).values,
        "low": mean - range_std * std,
        "high": mean + range_std * std,
    }


def _level_keys(family: LevelFamily, tokens: np.ndarray) -> list[bytes]:
    return [family.tokens_key(family.decode(row)) for row in tokens]


def _overlap(pred: np.ndarray, truth: np.ndarray) -> float:
    """Mean over rows of |multiset(pred row) & multiset(truth row)| / row length."""
    shared = [sum((Counter(a.tolist()) & Counter(b.tolist())).values()) for a, b in zip(pred, truth)]
    return float(np.mean(shared) / truth.shape[1]) if truth.shape[0] else 0.0


@torch.no_grad()
def reconstruction_report(
    vae: RecurrentVAE, family: LevelFamily, held_out: np.ndarray, train: np.ndarray
) -> dict[str, float]:
    """Held-out reconstruction with the posterior mean and greedy decoding, next to a chance baseline.

    - `token_accuracy`: share of positions where the greedy decode equals the input token;
    - `level_accuracy`: share of levels that decode (after `family.decode`) to the same level;
    - `token_overlap`: share of the tokens found anywhere in the decode (multiset intersection / length),
      which, unlike `token_accuracy`, does not count every later token wrong after one missed or extra
      token in a sorted list (maze walls) or a rotated cycle (track points);
    - `chance_*`: the same for always writing each position's most frequent training token (what a decoder
      that ignores the latent would do at best, roughly).
    """
    vae.eval()
    x = torch.as_tensor(held_out, dtype=torch.long, device=vae.latent_low.device)
    mu = torch.cat(_batched(lambda b: vae.encode(b)[0], x))
    pred = torch.cat(_batched(vae.decode_greedy, mu)).cpu().numpy()
    token_acc = float((pred == held_out).mean())
    truth_keys = _level_keys(family, held_out)
    level_acc = float(np.mean([a == b for a, b in zip(_level_keys(family, pred), truth_keys)]))
    # chance: each position's most frequent token in the training data
    mode = np.array([np.bincount(col, minlength=family.vocab_size).argmax() for col in train.T])
    chance_token = float((held_out == mode[None, :]).mean())
    mode_key = family.tokens_key(family.decode(mode))
    chance_level = float(np.mean([k == mode_key for k in truth_keys]))
    return {
        "token_accuracy": token_acc,
        "level_accuracy": level_acc,
        "token_overlap": _overlap(pred, held_out),
        "chance_token_accuracy": chance_token,
        "chance_level_accuracy": chance_level,
        "chance_token_overlap": _overlap(np.broadcast_to(mode, held_out.shape), held_out),
        "held_out_levels": int(held_out.shape[0]),
    }


def pretrain_vae(
    family: LevelFamily,
    config: VAEConfig | None = None,
    steps: int = 10_000,
    seed: int = 0,
    progress: bool = True,
    log_dir: str | None = None,
    device: str = "cpu",
) -> tuple[RecurrentVAE, dict[str, Any]]:
    """Train a `RecurrentVAE` on `config.sequences` random levels of `family` for `steps` Adam steps.

    Returns the VAE (in eval mode, latent range filled in) and a report of plain numbers: the held-out
    reconstruction (`reconstruction_report`), the final losses, and the latent range statistics.
    With `log_dir`, writes TensorBoard scalars vae/reconstruction, vae/kl, vae/beta, vae/loss.
    """
    config = config or VAEConfig()
    if steps < 1:
        raise UsageError(f"VAE pretraining needs at least 1 step (got {steps})")
    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(int(seed))
    torch.manual_seed(int(seed))  # parameter initialisation
    train_np = generate_sequences(family, config.sequences, rng)
    held_np = generate_sequences(family, config.held_out, rng) if config.held_out > 0 else train_np[:0]
    train = torch.as_tensor(train_np, dtype=torch.long)

    vae = RecurrentVAE(family.vocab_size, family.max_tokens, config).to(device)
    optim = torch.optim.Adam(vae.parameters(), lr=config.lr)
    writer = None
    if log_dir:
        writer = SummaryWriter(log_dir)
    bar = tqdm(range(steps), desc=f"pretrain VAE ({family.name})", disable=not progress, unit="step")
    recon_ema = kl_ema = None
    vae.train()
    for step in bar:
        idx = torch.randint(0, train.shape[0], (config.batch_size,), generator=gen)
        batch = train[idx].to(device)
        logits, mu, logvar = vae(
            batch, generator=gen if device == "cpu" else None, word_dropout=config.word_dropout
        )
        recon, kl = vae_loss(logits, batch, mu, logvar)
        beta = kl_weight(step, steps, config)
        loss = recon + beta * kl
        optim.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(vae.parameters(), config.max_grad_norm)
        optim.step()
        r, k = recon.item(), kl.item()
        recon_ema = r if recon_ema is None else 0.98 * recon_ema + 0.02 * r
        kl_ema = k if kl_ema is None else 0.98 * kl_ema + 0.02 * k
        if writer is not None and (step % 10 == 0 or step == steps - 1):
            writer.add_scalar("vae/reconstruction", r, step)
            writer.add_scalar("vae/kl", k, step)
            writer.add_scalar("vae/beta", beta, step)
            writer.add_scalar("vae/loss", loss.item(), step)
        if progress:  # tqdm shows steps/s (s/step when slower); losses are running averages
            bar.set_postfix(
                recon=f"{recon_ema:.2f}", kl=f"{kl_ema:.2f}", beta=f"{beta:.3f}", refresh=step % 10 == 0
            )
    bar.close()
    vae.eval()

    stats = latent_range(vae, train[: min(train.shape[0], 20_000)].to(device), config.range_std)
    vae.latent_low.copy_(stats["low"])
    vae.latent_high.copy_(stats["high"])
    report: dict[str, Any] = {
        "family": family.name,
        "steps": int(steps),
        "seed": int(seed),
        "final_reconstruction_loss": float(recon_ema),
        "final_kl": float(kl_ema),
        "latent_mean_std": float(stats["std"].mean()),
        "latent_active_dims": int((stats["std"] > 0.01).sum()),
    }
    if held_np.shape[0] > 0:
        report.update(reconstruction_report(vae, family, held_np, train_np))
    if writer is not None:
        for key in ("token_accuracy", "level_accuracy", "chance_token_accuracy"):
            if key in report:
                writer.add_scalar(f"vae/heldout_{key}", report[key], steps)
        writer.close()
    return vae, report


# ----- files --------------------------------------------------------------------------------------
def save_vae(
    path: str | os.PathLike,
    vae: RecurrentVAE,
    config: VAEConfig,
    family_name: str,
    family_options: dict[str, Any] | None = None,
    report: dict[str, Any] | None = None,
) -> None:
    """Write the VAE atomically (`ued.io.atomic_write`): weights, config and family as plain data."""
    path = os.fspath(path)
    payload = {
        "format": FILE_FORMAT,
        "version": FILE_VERSION,
        "family": family_name,
        "family_options": dict(family_options or {}),
        "vocab_size": vae.vocab_size,
        "max_tokens": vae.max_tokens,
        "config": config.to_dict(),
        "state_dict": {k: v.detach().cpu() for k, v in vae.state_dict().items()},
        "report": dict(report or {}),
    }
    atomic_write(path, lambda f: torch.save(payload, f))


def read_vae_file(path: str | os.PathLike) -> dict[str, Any]:
    """The raw contents of a VAE file; UsageError if it is missing, corrupt or not a ued VAE."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise UsageError(
            f"VAE file {path!r} not found; create one with `ued pretrain-vae --env ENV --out {path}`"
        )
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001  (any failure to unpickle means an unreadable file)
        raise UsageError(
            f"cannot read VAE file {path!r} ({type(exc).__name__}); it is corrupt or not a ued "
            "VAE: recreate it with `ued pretrain-vae`"
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != FILE_FORMAT:
        raise UsageError(f"{path!r} is not a ued VAE file; create one with `ued pretrain-vae`")
    if payload.get("version") != FILE_VERSION:
        raise UsageError(
            f"VAE file {path!r} has version {payload.get('version')}, this ued reads version "
            f"{FILE_VERSION}; recreate it with `ued pretrain-vae`"
        )
    return payload


def load_vae(path: str | os.PathLike, family: LevelFamily, device: str = "cpu") -> RecurrentVAE:
    """Load a VAE saved by `save_vae` for `family` (eval mode). Its `report`, `family_name` and
    `family_options` attributes hold the saved metadata. UsageError if the file does not fit the family."""
    payload = read_vae_file(path)
    if payload["family"] != family.name:
        raise UsageError(
            f"VAE file {os.fspath(path)!r} was trained for environment {payload['family']!r}, not "
            f"{family.name!r}; create one with `ued pretrain-vae --env {family.name}`"
        )
    if payload["vocab_size"] != family.vocab_size or payload["max_tokens"] != family.max_tokens:
        raise UsageError(
            f"VAE file {os.fspath(path)!r} was trained for {payload['family']!r} levels of {payload['max_tokens']} "
            f"tokens over {payload['vocab_size']} values (options {payload['family_options']}), but this "
            f"environment has {family.max_tokens} tokens over {family.vocab_size}; retrain it with the same "
            "environment options"
        )
    try:
        config = merge(VAEConfig(), {k: v for k, v in payload["config"].items() if k in _VAE_FIELDS})
        vae = RecurrentVAE(family.vocab_size, family.max_tokens, config)
        vae.load_state_dict(payload["state_dict"])
    except Exception as exc:  # noqa: BLE001  (wrong shapes, missing keys, bad config values)
        raise UsageError(
            f"VAE file {os.fspath(path)!r} is damaged ({type(exc).__name__}: {exc}); recreate it "
            "with `ued pretrain-vae`"
        ) from None
    vae.report = dict(payload.get("report", {}))
    vae.family_name = payload["family"]
    vae.family_options = dict(payload.get("family_options", {}))
    return vae.to(device).eval()


__all__ = [
    "RecurrentVAE",
    "VAEConfig",
    "generate_sequences",
    "kl_weight",
    "latent_range",
    "load_vae",
    "pretrain_vae",
    "read_vae_file",
    "reconstruction_report",
    "save_vae",
    "vae_loss",
]
