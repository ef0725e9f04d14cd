"""A recurrent VAE over level token sequences (CLUTR's task-manifold model), its training data, training,
quality report and files.

The encoder reads a level's tokens (`family.encode`: `max_tokens` tokens in `0..vocab_size-1`) through a
shared embedding, optional highway layers and a bidirectional LSTM, and gives a Gaussian posterior
(mu, logvar) over a latent vector. A sample z = mu + eps * std goes through the latent activation (none, or
4 tanh(z)) and the decoder, a multi-layer LSTM that reads [embedding of the previous token, z] at every step
(from a zero or latent-made initial state), writes the tokens back. Every choice is a `VAEConfig` field, so
the published VAE (`vae_preset("published")`), ued's CPU preset and ued's small start-up VAE are all
options of the one `RecurrentVAE`. The CLUTR teacher acts in the decoder's input space: `decode_greedy`
takes activated latents, and the teacher's latent range (per dimension, mean +- 3 std) is measured on
activated posterior means.

Deviation from CLUTR kept on purpose: sequences have a fixed length (`max_tokens`, no pad or end tokens;
ued's families pad inside their own vocabulary), so the encoder reads them forward with no padding (CLUTR:
variable length, reversed and left-padded: with a bidirectional encoder the reversal only swaps the two
directions' roles) and the mean cross-entropy runs over `max_tokens` positions (CLUTR: the batch's longest
sequence plus an end token, pad positions included).

Training data (`LevelStream`) come from the family itself: chunk k of the training levels is drawn from
`numpy.random.default_rng([seed, 0, k])` with `family.sample`, each epoch visits the chunks and their rows
in an order drawn from the seed and the epoch, and a held-out set from its own stream is removed from the
training levels. Every batch is a pure function of (seed, step): nothing but the chunks in use is held in
memory, and a resumed run (`pretrain_vae(..., resume=True)`) continues bit for bit.
"""

from __future__ import annotations

import math
import os
import time
from collections import Counter, OrderedDict
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ued.config import VAEConfig, merge
from ued.errors import UsageError
from ued.io import atomic_write
from ued.levels import LevelFamily

FILE_FORMAT = "ued-vae"
#: 2: the architecture options of VAEConfig; version-1 files (ued's earlier fixed architecture) still load
FILE_VERSION = 2
CHECKPOINT_FORMAT = "ued-vae-checkpoint"
CHECKPOINT_VERSION = 1
#: VAEConfig fields (a VAE file's config may hold keys of other versions, which are ignored)
_VAE_FIELDS = {f.name for f in fields(VAEConfig)}
#: what a version-1 file's config meant for the options it predates
_V1_OPTIONS = {
    "highway_layers": 0,
    "encoder_state": "hidden_cell",
    "latent_activation": "none",
    "logvar_clamp": 10.0,
    "decoder_init": "latent",
    "embed_dropout": 0.0,
    "recon_weight": 1.0,
    "recon_reduction": "sum",
}
#: VAEConfig fields that shape the network (`--init` needs them equal; training settings may change)
_ARCHITECTURE = {
    "embed_dim",
    "highway_layers",
    "hidden",
    "encoder_state",
    "latent",
    "latent_activation",
    "logvar_clamp",
    "decoder_hidden",
    "decoder_layers",
    "decoder_init",
}
#: ued's pretrained VAEs, one per built-in family at its default options (`shipped_vae_file`)
SHIPPED_DIR = Path(__file__).parent / "vaes"
#: training levels per generated chunk (`LevelStream`)
CHUNK_SIZE = 4096
#: training levels the latent range and the chance baseline are measured on
RANGE_LEVELS = 20_000
#: scale of the "tanh4" latent activation (CLUTR scripts/train_vae.sh --activation-scalar 4)
TANH_SCALE = 4.0
# independent numpy streams of a pretraining seed
_TRAIN_STREAM, _HELD_OUT_STREAM, _ORDER_STREAM = 0, 1, 2


def kl_weight(step: int, total_steps: int, config: VAEConfig) -> float:
    """The KL weight (beta) at training step `step` of `total_steps` (`VAEConfig.kl_anneal`)."""
    if config.kl_anneal == "constant":
        return float(config.kl_max)
    if config.kl_anneal == "tanh":  # CLUTR RVAE/utils/functional.py, at fixed steps
        return float(config.kl_max * (math.tanh((step - config.kl_center) / config.kl_width) + 1.0) / 2.0)
    span = max(1.0, config.kl_anneal_fraction * total_steps)
    if config.kl_anneal == "linear":
        return float(config.kl_max * min(1.0, step / span))
    # logistic: ~0.0067 * kl_max at step 0, kl_max / 2 half-way through the span, ~0.993 * kl_max at its end
    return float(config.kl_max / (1.0 + math.exp(-10.0 * (step / span - 0.5))))


# ----- the model ----------------------------------------------------------------------------------
class Highway(nn.Module):
    """x [..., size] -> [..., size]: per layer, g * relu(A x) + (1 - g) * (B x) with the gate
    g = sigmoid(G x) (the highway of CLUTR's encoder inputs: an affine branch, not the identity)."""

    def __init__(self, size: int, layers: int):
        super().__init__()
        self.nonlinear = nn.ModuleList(nn.Linear(size, size) for _ in range(layers))
        self.linear = nn.ModuleList(nn.Linear(size, size) for _ in range(layers))
        self.gate = nn.ModuleList(nn.Linear(size, size) for _ in range(layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for nonlinear, linear, gate in zip(self.nonlinear, self.linear, self.gate):
            g = torch.sigmoid(gate(x))
            x = g * F.relu(nonlinear(x)) + (1.0 - g) * linear(x)
        return x


def _dropout(x: torch.Tensor, p: float, generator: torch.Generator | None) -> torch.Tensor:
    """Elementwise dropout with 1 / (1 - p) rescaling, drawn from `generator` (F.dropout takes none)."""
    keep = torch.rand(x.shape, generator=generator, device=x.device) >= p
    return x * keep / (1.0 - p)


class RecurrentVAE(nn.Module):
    """Sequence VAE: tokens int64 [B, T] -> (mu, logvar) [B, D] -> z [B, D] -> token logits [B, T, V].

    Token ids: 0..vocab_size-1 are the family's tokens; `vocab_size` is the decoder's start token and
    `vocab_size + 1` the "hidden" token of word dropout (both only in the embedding). Latents given to
    `decode_logits` / `decode_greedy` are *activated* (the decoder's input space); `encode` gives the
    pre-activation posterior, `posterior_latent` its activated mean.
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
        if c.highway_layers:
            self.highway = Highway(c.embed_dim, c.highway_layers)
        self.encoder = nn.LSTM(c.embed_dim, c.hidden, batch_first=True, bidirectional=True)
        summary = (2 if c.encoder_state == "cell" else 4) * c.hidden
        self.to_mu = nn.Linear(summary, c.latent)
        self.to_logvar = nn.Linear(summary, c.latent)
        if c.decoder_init == "latent":
            self.to_state = nn.Linear(c.latent, 2 * c.decoder_layers * c.decoder_hidden)
        self.decoder = nn.LSTM(
            c.embed_dim + c.latent, c.decoder_hidden, num_layers=c.decoder_layers, batch_first=True
        )
        self.to_logits = nn.Linear(c.decoder_hidden, self.vocab_size)
        # the teacher's latent range, activated units (`pretrain_vae` fills it in from posterior means)
        bound = TANH_SCALE if c.latent_activation == "tanh4" else 3.0
        self.register_buffer("latent_low", torch.full((c.latent,), -bound))
        self.register_buffer("latent_high", torch.full((c.latent,), bound))

    @property
    def latent_dim(self) -> int:
        return self.config.latent

    @property
    def device(self) -> torch.device:
        return self.to_logits.weight.device

    def encode(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """tokens int64 [B, T] -> pre-activation posterior (mu, logvar), each float [B, latent]."""
        x = self.embed(tokens)
        if self.config.highway_layers:
            x = self.highway(x)
        _, (h, c) = self.encoder(x)
        parts = [c[0], c[1]] if self.config.encoder_state == "cell" else [h[0], h[1], c[0], c[1]]
        summary = torch.cat(parts, dim=-1)
        logvar = self.to_logvar(summary)
        if self.config.logvar_clamp > 0:
            logvar = logvar.clamp(-self.config.logvar_clamp, self.config.logvar_clamp)
        return self.to_mu(summary), logvar

    def activate(self, z: torch.Tensor) -> torch.Tensor:
        """Pre-activation latents [B, D] -> the decoder's input space (`latent_activation`)."""
        return TANH_SCALE * torch.tanh(z) if self.config.latent_activation == "tanh4" else z

    @torch.no_grad()
    def posterior_latent(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens [B, T] -> activated posterior means [B, D] (what `decode_greedy` reconstructs from)."""
        return self.activate(self.encode(tokens.to(self.device))[0])

    def _initial_state(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
        if self.config.decoder_init == "zero":
            return None
        layers, size = self.config.decoder_layers, self.config.decoder_hidden
        state = torch.tanh(self.to_state(z)).view(z.shape[0], 2, layers, size)
        return state[:, 0].transpose(0, 1).contiguous(), state[:, 1].transpose(0, 1).contiguous()

    def decode_logits(
        self, z: torch.Tensor, tokens: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Teacher-forced decoding: activated z [B, D], target tokens [B, T] -> logits [B, T, vocab_size].
        In training mode, word dropout and embedding dropout (`config`) are drawn from `generator`."""
        batch, length = tokens.shape
        start = torch.full((batch, 1), self.start_token, dtype=torch.long, device=tokens.device)
        inputs = torch.cat([start, tokens[:, :-1]], dim=1)
        c = self.config
        if self.training and c.word_dropout > 0.0:
            drop = torch.rand(inputs.shape, generator=generator, device=inputs.device) < c.word_dropout
            drop[:, 0] = False
            inputs = inputs.masked_fill(drop, self.hidden_token)
        x = self.embed(inputs)
        if self.training and c.embed_dropout > 0.0:
            x = _dropout(x, c.embed_dropout, generator)
        x = torch.cat([x, z.unsqueeze(1).expand(batch, length, z.shape[-1])], dim=-1)
        out, _ = self.decoder(x, self._initial_state(z))
        return self.to_logits(out)

    @torch.no_grad()
    def decode_greedy(self, z: torch.Tensor) -> torch.Tensor:
        """Activated latents [B, D] -> tokens int64 [B, max_tokens], the most likely token at each step.

        Exactly `max_tokens` decoder steps (it cannot loop); NaN/inf latents are mapped to finite values
        (with "tanh4", into the activation's range [-4, 4])."""
        z = torch.nan_to_num(z.float(), nan=0.0, posinf=1e6, neginf=-1e6).to(self.device)
        if self.config.latent_activation == "tanh4":
            z = z.clamp(-TANH_SCALE, TANH_SCALE)
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
        self, tokens: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """tokens [B, T] -> (logits [B, T, V], mu [B, D], logvar [B, D]) with a reparameterised sample
        z = activate(mu + eps * std), eps from `generator`."""
        mu, logvar = self.encode(tokens)
        eps = torch.randn(mu.shape, generator=generator, device=mu.device)
        z = self.activate(mu + eps * torch.exp(0.5 * logvar))
        return self.decode_logits(z, tokens, generator), mu, logvar


def vae_loss(
    logits: torch.Tensor, tokens: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """(reconstruction, KL) per level: token cross-entropy summed over the sequence and KL(q(z|x) || N(0, I))
    summed over dimensions, both averaged over the batch (nats per level)."""
    recon = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tokens.reshape(-1), reduction="sum")
    return recon / tokens.shape[0], kl_per_level(mu, logvar).mean()


def kl_per_level(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, I)) summed over dimensions: [B, D] -> [B] nats."""
    return -0.5 * torch.sum(1.0 + logvar - mu.pow(2) - logvar.exp(), dim=-1)


def training_loss(recon: torch.Tensor, kl: torch.Tensor, beta: float, config: VAEConfig, length: int):
    """The loss minimised: recon_weight x (mean cross-entropy per position, or per level) + beta x KL, from
    the per-level `vae_loss` terms of levels of `length` tokens."""
    per_position = recon / length if config.recon_reduction == "mean" else recon
    return config.recon_weight * per_position + beta * kl


# ----- training data ------------------------------------------------------------------------------
def generate_sequences(family: LevelFamily, n: int, rng: np.random.Generator) -> np.ndarray:
    """n random levels of `family`, encoded: int64 [n, max_tokens]."""
    out = np.empty((n, family.max_tokens), dtype=np.int64)
    for i in range(n):
        out[i] = family.encode(family.sample(rng))
    return out


def _check_seed(seed: int) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise UsageError(f"the VAE pretraining seed must be an integer >= 0, got {seed!r}")
    return int(seed)


class LevelStream:
    """The levels of one pretraining, each a pure function of the seed (see the module docstring).

    - `held_out`: int64 [held_out, T], drawn from `default_rng([seed, 1])`; never in the training levels.
    - training level rows: chunk k (`CHUNK_SIZE` rows, the last one shorter) is drawn from
      `default_rng([seed, 0, k])`, skipping any level of the held-out set; `first(n)` gives the first n.
    - `batch(step)`: int64 [batch_size, T], rows step * batch_size onwards of the epochs' concatenation,
      epoch e visiting the chunks in the order `default_rng([seed, 2, e]).permutation(...)` and each chunk's
      rows in the order `default_rng([seed, 2, e, k]).permutation(...)`.
    At most a few chunks are held in memory at a time.
    """

    def __init__(
        self,
        family: LevelFamily,
        seed: int,
        sequences: int,
        held_out: int,
        batch_size: int,
        chunk_size: int = CHUNK_SIZE,
    ):
        self.family = family
        self.seed = _check_seed(seed)
        self.sequences = int(sequences)
        self.batch_size = int(batch_size)
        self.chunk_size = int(chunk_size)
        self.num_chunks = -(-self.sequences // self.chunk_size)
        self.held_out = self._draw(np.random.default_rng([self.seed, _HELD_OUT_STREAM]), int(held_out), set())
        self._held_keys = {row.tobytes() for row in self.held_out}
        self._chunks: OrderedDict[Any, np.ndarray] = OrderedDict()

    def _draw(self, rng: np.random.Generator, n: int, exclude: set[bytes]) -> np.ndarray:
        out = np.empty((n, self.family.max_tokens), dtype=np.int64)
        filled, tries = 0, 0
        while filled < n:
            tries += 1
            if tries > 20 * n + 1000:
                raise UsageError(
                    f"{self.family.name} has too few distinct random levels for {len(exclude)} held-out "
                    "levels never trained on; use a smaller held_out"
                )
            row = np.asarray(self.family.encode(self.family.sample(rng)), dtype=np.int64)
            if row.tobytes() in exclude:
                continue
            out[filled] = row
            filled += 1
        return out

    def _cached(self, key: Any, make: Callable[[], np.ndarray]) -> np.ndarray:
        if key in self._chunks:
            self._chunks.move_to_end(key)
            return self._chunks[key]
        value = make()
        self._chunks[key] = value
        while len(self._chunks) > 4:
            self._chunks.popitem(last=False)
        return value

    def chunk_rows(self, k: int) -> int:
        return min(self.chunk_size, self.sequences - k * self.chunk_size)

    def chunk(self, k: int) -> np.ndarray:
        """Training chunk k in generation order: int64 [chunk_rows(k), T]."""
        rng = np.random.default_rng([self.seed, _TRAIN_STREAM, k])
        return self._cached(("chunk", k), lambda: self._draw(rng, self.chunk_rows(k), self._held_keys))

    def first(self, n: int) -> np.ndarray:
        """The first n training levels in generation order: int64 [min(n, sequences), T]."""
        n = min(int(n), self.sequences)
        parts = [self.chunk(k) for k in range(-(-n // self.chunk_size))]
        return np.concatenate(parts)[:n] if parts else np.empty((0, self.family.max_tokens), np.int64)

    def _epoch(self, epoch: int) -> tuple[np.ndarray, np.ndarray]:
        order = np.random.default_rng([self.seed, _ORDER_STREAM, epoch]).permutation(self.num_chunks)
        sizes = np.array([self.chunk_rows(int(k)) for k in order])
        return order, np.concatenate([[0], np.cumsum(sizes)])

    def _shuffled(self, epoch: int, k: int) -> np.ndarray:
        def make() -> np.ndarray:
            perm = np.random.default_rng([self.seed, _ORDER_STREAM, epoch, k]).permutation(self.chunk_rows(k))
            return self.chunk(k)[perm]

        return self._cached(("shuffled", epoch, k), make)

    def batch(self, step: int) -> np.ndarray:
        """The training batch of step `step`: int64 [batch_size, T]."""
        rows, position = [], int(step) * self.batch_size
        need = self.batch_size
        while need:
            epoch, offset = divmod(position, self.sequences)
            order, starts = self._epoch(epoch)
            i = int(np.searchsorted(starts, offset, side="right") - 1)
            k = int(order[i])
            data = self._shuffled(epoch, k)
            start = offset - int(starts[i])
            take = min(need, data.shape[0] - start)
            rows.append(data[start : start + take])
            position += take
            need -= take
        return np.concatenate(rows)


# ----- measurements -------------------------------------------------------------------------------
def _batched(fn, data: torch.Tensor, batch: int = 512) -> list[torch.Tensor]:
    return [fn(data[i : i + batch]) for i in range(0, data.shape[0], batch)]


@torch.no_grad()
def latent_range(vae: RecurrentVAE, tokens: torch.Tensor, range_std: float) -> dict[str, torch.Tensor]:
    """Per-dimension statistics of the activated posterior means over `tokens` [N, T]: mean, std, min, max,
    and the teacher's range low, high = mean -+ range_std * std (inside (-4, 4) with "tanh4")."""
    mu = torch.cat(_batched(vae.posterior_latent, tokens))
    mean, std = mu.mean(0), mu.std(0) if mu.shape[0] > 1 else torch.zeros(mu.shape[1], device=mu.device)
    low, high = mean - range_std * std, mean + range_std * std
    if vae.config.latent_activation == "tanh4":
        low, high = low.clamp(min=-TANH_SCALE), high.clamp(max=TANH_SCALE)
    return {
        "mean": mean,
        "std": std,
        "min": mu.min(0).values,
        "max": mu.max(0).values,
        "low": low,
        "high": high,
    }


def _level_keys(family: LevelFamily, tokens: np.ndarray) -> list[bytes]:
    return [family.tokens_key(family.decode(row)) for row in tokens]


def _overlap(pred: np.ndarray, truth: np.ndarray) -> float:
    """Mean over rows of |multiset(pred row) & multiset(truth row)| / row length."""
    shared = [sum((Counter(a.tolist()) & Counter(b.tolist())).values()) for a, b in zip(pred, truth)]
    return float(np.mean(shared) / truth.shape[1]) if truth.shape[0] else 0.0


def _valid_share(family: LevelFamily, tokens: np.ndarray) -> float:
    return float(np.mean([family.is_valid(family.decode(row)) for row in tokens])) if len(tokens) else 0.0


@torch.no_grad()
def reconstruction_report(
    vae: RecurrentVAE, family: LevelFamily, held_out: np.ndarray, train: np.ndarray
) -> dict[str, float]:
    """Held-out reconstruction from the activated posterior mean with greedy decoding, next to chance.

    - `token_accuracy`: share of positions where the greedy decode equals the input token;
    - `level_accuracy`: share of levels that decode (after `family.decode`) to the same level;
    - `token_overlap`: share of the tokens found anywhere in the decode (multiset intersection / length),
      which, unlike `token_accuracy`, does not count every later token wrong after one missed or extra
      token in a sorted list (maze walls) or a rotated cycle (track points);
    - `kl_per_level`: mean KL(q(z|x) || N(0, I)) of the held-out levels, nats;
    - `chance_*`: the same for always writing each position's most frequent training token (what a decoder
      that ignores the latent would do at best, roughly).
    """
    vae.eval()
    x = torch.as_tensor(held_out, dtype=torch.long, device=vae.device)
    mu, logvar = (torch.cat(parts) for parts in zip(*_batched(vae.encode, x)))
    pred = torch.cat(_batched(vae.decode_greedy, vae.activate(mu))).cpu().numpy()
    truth_keys = _level_keys(family, held_out)
    level_acc = float(np.mean([a == b for a, b in zip(_level_keys(family, pred), truth_keys)]))
    mode = np.array([np.bincount(col, minlength=family.vocab_size).argmax() for col in train.T])
    mode_key = family.tokens_key(family.decode(mode))
    return {
        "token_accuracy": float((pred == held_out).mean()),
        "level_accuracy": level_acc,
        "token_overlap": _overlap(pred, held_out),
        "kl_per_level": float(kl_per_level(mu, logvar).mean()),
        "chance_token_accuracy": float((held_out == mode[None, :]).mean()),
        "chance_level_accuracy": float(np.mean([k == mode_key for k in truth_keys])),
        "chance_token_overlap": _overlap(np.broadcast_to(mode, held_out.shape), held_out),
        "held_out_levels": int(held_out.shape[0]),
    }


@torch.no_grad()
def prior_validity(vae: RecurrentVAE, family: LevelFamily, samples: int, seed: int) -> dict[str, float]:
    """Share of greedy decodes that are valid levels (`family.is_valid`, before any repair), for `samples`
    latents each: `prior_valid`, z ~ N(0, I) through the latent activation (the generative model's prior);
    `range_valid`, uniform in the teacher's latent range [latent_low, latent_high] (`latent_range="vae"`);
    `unit_valid`, uniform in [0, 1]^D (the CLUTR code's teacher, `latent_range="unit"`). Latents are drawn
    from a torch Generator seeded with `seed`."""
    gen = torch.Generator().manual_seed(int(seed))
    d = vae.latent_dim
    prior = vae.activate(torch.randn((samples, d), generator=gen))
    unit = torch.rand((samples, d), generator=gen)
    low, high = vae.latent_low.cpu(), vae.latent_high.cpu()
    out = {}
    for name, z in (("prior_valid", prior), ("range_valid", low + unit * (high - low)), ("unit_valid", unit)):
        tokens = torch.cat(_batched(vae.decode_greedy, z)).cpu().numpy() if samples else np.zeros((0, 1))
        out[name] = _valid_share(family, tokens)
    out["prior_samples"] = int(samples)
    return out


def vae_quality(
    vae: RecurrentVAE,
    family: LevelFamily,
    held_out: np.ndarray,
    train: np.ndarray,
    samples: int = 1000,
    seed: int = 0,
) -> dict[str, float]:
    """`reconstruction_report` on the held-out levels and `prior_validity` of `samples` latents, plus the
    share of held-out (random) levels that are valid, for comparison."""
    report = reconstruction_report(vae, family, held_out, train) if len(held_out) else {}
    report.update(prior_validity(vae, family, samples, seed))
    report["held_out_valid"] = _valid_share(family, held_out)
    return report


@torch.no_grad()
def interpolation_picture(
    vae: RecurrentVAE, family: LevelFamily, a: np.ndarray, b: np.ndarray, steps: int = 8, gap: int = 4
) -> np.ndarray:
    """uint8 [H, W, 3]: one row of tiles, level a (as given), the greedy decodes of `steps` activated
    latents evenly spaced from a's posterior mean to b's (as decoded: unrepaired), then level b. Tiles are
    `family.render` pictures, separated by `gap` white pixels."""
    ends = vae.posterior_latent(torch.as_tensor(np.stack([a, b]), dtype=torch.long))
    t = torch.linspace(0.0, 1.0, steps, device=ends.device)[:, None]
    tokens = vae.decode_greedy((1 - t) * ends[0] + t * ends[1]).cpu().numpy()
    levels = [family.decode(a), *(family.decode(row) for row in tokens), family.decode(b)]
    pictures = [np.asarray(family.render(level), dtype=np.uint8) for level in levels]
    height = max(p.shape[0] for p in pictures)
    width = sum(p.shape[1] for p in pictures) + gap * (len(pictures) - 1)
    out = np.full((height, width, 3), 255, dtype=np.uint8)
    x = 0
    for p in pictures:
        out[: p.shape[0], x : x + p.shape[1]] = p[..., :3]
        x += p.shape[1] + gap
    return out


# ----- training -----------------------------------------------------------------------------------
class PretrainInterrupted(Exception):
    """`pretrain_vae` stopped on request (`should_stop`) after writing its checkpoint at `step`."""

    def __init__(self, step: int, checkpoint: str | None):
        super().__init__(f"VAE pretraining stopped at step {step}")
        self.step, self.checkpoint = step, checkpoint


def _new_model(family: LevelFamily, config: VAEConfig, seed: int, device: str) -> RecurrentVAE:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)  # parameter initialisation, apart from the caller's global stream
        return RecurrentVAE(family.vocab_size, family.max_tokens, config).to(device)


def _checkpoint_payload(family, options, config, seed, step, vae, optim, gen, running, wall, init) -> dict:
    return {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "family": family.name,
        "family_options": dict(options),
        "vocab_size": family.vocab_size,
        "max_tokens": family.max_tokens,
        "config": config.to_dict(),
        "seed": int(seed),
        "step": int(step),
        "state_dict": {k: v.detach().cpu() for k, v in vae.state_dict().items()},
        "optimizer": optim.state_dict(),
        "generator": gen.get_state(),
        "running": {k: float(v) for k, v in running.items() if v is not None},
        "wall_time": float(wall),
        "init": init,
    }


def read_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """A pretraining checkpoint's contents; UsageError if it is missing, unreadable or not one."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise UsageError(f"no VAE pretraining checkpoint at {path!r}; start without --resume")
    payload = _load_plain(path, "VAE pretraining checkpoint")
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise UsageError(f"{path!r} is not a ued VAE pretraining checkpoint; delete it or pick another path")
    if payload.get("version") != CHECKPOINT_VERSION:
        raise UsageError(
            f"VAE checkpoint {path!r} has version {payload.get('version')}; delete it and restart"
        )
    return payload


def _init_words(init: dict | None) -> str:
    return "a random initialisation" if init is None else f"VAE sha256 {init['sha256'][:12]}"


def read_init(
    path: str | os.PathLike, family: LevelFamily, config: VAEConfig, seed: int
) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """The identity ({"file", "sha256", "steps", "wall_time_s"}) and float32 weights of a VAE file to
    continue a pretraining from (`pretrain_vae(init=...)`); UsageError unless it is a VAE of `family`'s
    levels with `config`'s architecture, data (seed, levels, held-out set, batch) and a fixed-step KL
    schedule, so that the data and the schedule carry on where it stopped."""
    import hashlib

    where = os.fspath(path)
    try:
        with torch.random.fork_rng(devices=[]):  # building it must not move the caller's random stream
            vae = load_vae(where, family)
    except UsageError as exc:
        raise UsageError(f"--init: {exc}") from None
    if not _same_levels(vae.family_options, family):
        raise UsageError(
            f"--init VAE {where!r} was trained on levels with options {vae.family_options!r}, not "
            f"{dict(family.options)!r}; give the options it was trained with"
        )
    report, trained = vae.report, vae.config.to_dict()
    steps = report.get("steps")
    if not isinstance(steps, int) or steps < 1:
        raise UsageError(f"--init VAE {where!r} records no training steps; it cannot be continued")
    mine, theirs = {**config.to_dict(), "seed": int(seed)}, {**trained, "seed": report.get("seed")}
    for key in sorted(_ARCHITECTURE) + ["seed", "sequences", "held_out", "batch_size"]:
        if mine[key] != theirs.get(key):
            raise UsageError(
                f"--init VAE {where!r} was trained with {key}={theirs.get(key)!r}, not {mine[key]!r}; continue "
                f"it with the same preset, --seed and --set values for the network and the data (only "
                "training settings such as lr may change)"
            )
    if config.kl_anneal in ("logistic", "linear"):
        raise UsageError(
            f"--init continues fixed-step KL schedules (tanh, constant), not {config.kl_anneal!r}, whose ramp "
            "spans a share of the total steps; --set kl_anneal=tanh or train without --init"
        )
    with open(where, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    state = {k: v.float() if v.is_floating_point() else v for k, v in vae.state_dict().items()}
    wall = float(report.get("wall_time_s", 0.0))
    return {"file": os.path.basename(where), "sha256": digest, "steps": steps, "wall_time_s": wall}, state


def _check_resume(
    payload: dict,
    family: LevelFamily,
    options: dict,
    config: VAEConfig,
    seed: int,
    path: str,
    init: dict | None,
):
    """UsageError unless the checkpoint was made by the same pretraining (family, options, settings, seed)."""
    mine = {
        "family": family.name,
        "vocab_size": family.vocab_size,
        "max_tokens": family.max_tokens,
        "seed": int(seed),
    }
    for key, value in mine.items():
        if payload.get(key) != value:
            raise UsageError(
                f"checkpoint {path!r} is of another pretraining ({key} {payload.get(key)!r}, not {value!r}); "
                "resume with the same command, or delete it to start again"
            )
    if not _same_levels(payload.get("family_options"), family):
        raise UsageError(
            f"checkpoint {path!r} is of another pretraining (family options {payload.get('family_options')!r}, "
            f"not {dict(options)!r}); resume with the same command, or delete it to start again"
        )
    if (payload.get("init") or {}).get("sha256") != (init or {}).get("sha256"):
        raise UsageError(
            f"checkpoint {path!r} started from {_init_words(payload.get('init'))}, not from "
            f"{_init_words(init)}; resume with the same --init, or delete it to start again"
        )
    saved = payload.get("config", {})
    for key, value in config.to_dict().items():
        if key != "steps" and saved.get(key) != value:
            raise UsageError(
                f"checkpoint {path!r} was trained with {key}={saved.get(key)!r}, not {value!r}; resume "
                "with the same settings (only --steps may change), or delete it to start again"
            )


def pretrain_vae(
    family: LevelFamily,
    config: VAEConfig | None = None,
    steps: int | None = None,
    seed: int = 0,
    progress: bool = True,
    log_dir: str | None = None,
    device: str = "cpu",
    *,
    checkpoint: str | os.PathLike | None = None,
    checkpoint_interval: int = 1000,
    resume: bool = False,
    eval_interval: int = 0,
    family_options: dict[str, Any] | None = None,
    should_stop: Callable[[], bool] | None = None,
    round_half: bool = False,
    report_samples: int = 1000,
    init: str | os.PathLike | None = None,
) -> tuple[RecurrentVAE, dict[str, Any]]:
    """Train a `RecurrentVAE` on the `LevelStream` of `family` for `steps` (default `config.steps`) Adam
    steps, from `seed`. Returns the VAE (eval mode, latent range filled in) and a report of plain numbers:
    `vae_quality` on the held-out levels, the final running losses and accuracy, the latent range
    statistics and the run's facts (steps, seed, data size, wall time).

    `checkpoint`: a file written atomically every `checkpoint_interval` steps and at the end (model,
    Adam, the noise generator, running averages and the step); `resume=True` continues from it, bit for
    bit the run that was not interrupted (it must be of the same family, options, settings and seed; only
    `steps` may grow). `should_stop()` is asked after every step: when true, the checkpoint is written and
    `PretrainInterrupted` raised. `log_dir`: TensorBoard scalars vae/loss, vae/reconstruction (nats per
    level), vae/kl, vae/beta, vae/token_accuracy (teacher-forced, training batches) and, every
    `eval_interval` steps, vae/heldout_token_accuracy and vae/heldout_level_accuracy. `round_half`: the
    report is measured with the weights rounded to float16 (as `save_vae(half=True)` stores them).
    `init`: a VAE file (same family, options and architecture) to continue training from with a fresh Adam
    state and these settings (e.g. a lower lr): its weights replace the random ones and the steps continue
    from its own, so the data, the KL schedule and `steps` (the total) carry on where it stopped.
    """
    from torch.utils.tensorboard import SummaryWriter
    from tqdm import tqdm

    config = config or VAEConfig()
    steps = int(config.steps if steps is None else steps)
    if steps < 1:
        raise UsageError(f"VAE pretraining needs at least 1 step (got {steps})")
    seed = _check_seed(seed)
    options = dict(family.options if family_options is None else family_options)
    path = os.fspath(checkpoint) if checkpoint is not None else None
    stream = LevelStream(family, seed, config.sequences, config.held_out, config.batch_size)
    vae = _new_model(family, config, seed, device)
    optim = torch.optim.Adam(vae.parameters(), lr=config.lr)
    gen = torch.Generator(device=device).manual_seed(seed)
    running: dict[str, float | None] = {"recon": None, "kl": None, "accuracy": None}
    start, wall, warm = 0, 0.0, None
    if init is not None:
        warm, state = read_init(init, family, config, seed)
        if warm["steps"] >= steps:
            raise UsageError(
                f"--init VAE {os.fspath(init)!r} is already at step {warm['steps']}; ask for more --steps "
                "(the total, counting its own)"
            )
        vae.load_state_dict(state)
        start = warm["steps"]
    if resume:
        if path is None:
            raise ValueError("resume=True needs a checkpoint path")
        payload = read_checkpoint(path)
        _check_resume(payload, family, options, config, seed, path, warm)
        if payload["step"] > steps:
            raise UsageError(
                f"checkpoint {path!r} is at step {payload['step']}, beyond the {steps} steps asked for"
            )
        try:
            vae.load_state_dict(payload["state_dict"])
            optim.load_state_dict(payload["optimizer"])
            gen.set_state(payload["generator"])
        except (RuntimeError, KeyError, ValueError, TypeError) as exc:
            raise UsageError(
                f"VAE checkpoint {path!r} is damaged ({type(exc).__name__}); delete it"
            ) from None
        running.update(payload.get("running", {}))
        start, wall = int(payload["step"]), float(payload.get("wall_time", 0.0))

    def save(step: int) -> None:
        if path is not None:
            payload = _checkpoint_payload(
                family, options, config, seed, step, vae, optim, gen, running, wall, warm
            )
            atomic_write(path, lambda f: torch.save(payload, f))

    writer = SummaryWriter(log_dir, purge_step=start if resume else None) if log_dir else None
    held = torch.as_tensor(stream.held_out, dtype=torch.long)
    bar = tqdm(
        range(start, steps),
        initial=start,
        total=steps,
        desc=f"pretrain VAE ({family.name})",
        disable=not progress,
        unit="step",
    )
    heldout_acc = None
    vae.train()
    began = time.perf_counter()
    for step in bar:
        batch = torch.as_tensor(stream.batch(step), dtype=torch.long).to(device)
        logits, mu, logvar = vae(batch, generator=gen)
        recon, kl = vae_loss(logits, batch, mu, logvar)
        beta = kl_weight(step, steps, config)
        loss = training_loss(recon, kl, beta, config, family.max_tokens)
        optim.zero_grad(set_to_none=True)
        loss.backward()
        if config.max_grad_norm > 0:
            nn.utils.clip_grad_norm_(vae.parameters(), config.max_grad_norm)
        optim.step()
        values = {
            "recon": recon.item(),
            "kl": kl.item(),
            "accuracy": (logits.argmax(-1) == batch).float().mean().item(),
        }
        for key, value in values.items():
            old = running[key]
            running[key] = value if old is None else 0.98 * old + 0.02 * value
        done = step + 1
        if eval_interval and (done % eval_interval == 0 or done == steps) and len(held):
            vae.eval()
            quick = reconstruction_report(vae, family, stream.held_out, stream.held_out[:1])
            vae.train()
            heldout_acc = quick["token_accuracy"]
            if writer is not None:
                writer.add_scalar("vae/heldout_token_accuracy", quick["token_accuracy"], done)
                writer.add_scalar("vae/heldout_level_accuracy", quick["level_accuracy"], done)
        if writer is not None and (step % 10 == 0 or done == steps):
            writer.add_scalar("vae/reconstruction", values["recon"], step)
            writer.add_scalar("vae/kl", values["kl"], step)
            writer.add_scalar("vae/beta", beta, step)
            writer.add_scalar("vae/loss", loss.item(), step)
            writer.add_scalar("vae/token_accuracy", values["accuracy"], step)
        if progress:  # running averages; the held-out accuracy of the last evaluation
            shown = {
                "recon": f"{running['recon']:.1f}",
                "kl": f"{running['kl']:.1f}",
                "acc": f"{running['accuracy']:.1%}",
                "beta": f"{beta:.3f}",
            }
            if heldout_acc is not None:
                shown["held"] = f"{heldout_acc:.1%}"
            bar.set_postfix(shown, refresh=step % 10 == 0)
        stop = should_stop is not None and should_stop()
        if (checkpoint_interval and done % checkpoint_interval == 0) or done == steps or stop:
            wall += time.perf_counter() - began
            began = time.perf_counter()
            save(done)
        if stop and done < steps:
            bar.close()
            if writer is not None:
                writer.close()
            raise PretrainInterrupted(done, path)
    bar.close()
    wall += time.perf_counter() - began
    vae.eval()

    if round_half:
        with torch.no_grad():
            for p in vae.parameters():
                p.copy_(p.half().float())
    train_sample = stream.first(RANGE_LEVELS)
    stats = latent_range(
        vae, torch.as_tensor(train_sample, dtype=torch.long, device=device), config.range_std
    )
    vae.latent_low.copy_(stats["low"])
    vae.latent_high.copy_(stats["high"])
    report: dict[str, Any] = {
        "family": family.name,
        "family_options": options,
        "steps": int(steps),
        "seed": int(seed),
        "sequences": int(config.sequences),
        "held_out": int(config.held_out),
        "wall_time_s": round(float(wall), 1),
        "device": str(device),
        "final_reconstruction_loss": float(running["recon"]),
        "final_kl": float(running["kl"]),
        "final_train_token_accuracy": float(running["accuracy"]),
        "latent_mean_std": float(stats["std"].mean()),
        "latent_active_dims": int((stats["std"] > 0.01).sum()),
        "weights": "float16" if round_half else "float32",
    }
    if warm is not None:
        report["init"] = warm
    report.update(vae_quality(vae, family, stream.held_out, train_sample, report_samples, seed))
    if writer is not None:
        for key in ("token_accuracy", "level_accuracy", "prior_valid", "range_valid"):
            if key in report:
                writer.add_scalar(f"vae/final_{key}", report[key], steps)
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
    half: bool = False,
) -> None:
    """Write the VAE atomically (`ued.io.atomic_write`): weights (float16 with `half`, the latent range
    always float32), config, family and report as plain data."""
    state = {}
    for key, value in vae.state_dict().items():
        value = value.detach().cpu()
        if half and value.is_floating_point() and not key.startswith("latent_"):
            value = value.half()
        state[key] = value
    payload = {
        "format": FILE_FORMAT,
        "version": FILE_VERSION,
        "family": family_name,
        "family_options": dict(family_options or {}),
        "vocab_size": vae.vocab_size,
        "max_tokens": vae.max_tokens,
        "config": config.to_dict(),
        "state_dict": state,
        "report": dict(report or {}),
    }
    atomic_write(os.fspath(path), lambda f: torch.save(payload, f))


def _load_plain(path: str, what: str) -> Any:
    """`torch.load(weights_only=True)` (tensors and plain data only: nothing in the file is executed);
    any failure is one UsageError."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001  (any failure to unpickle means an unreadable or unsafe file)
        raise UsageError(
            f"cannot read {what} {path!r} ({type(exc).__name__}); it is truncated, corrupt, not a ued file "
            "or holds objects other than tensors and plain data"
        ) from None


def read_vae_file(path: str | os.PathLike) -> dict[str, Any]:
    """The raw contents of a VAE file; UsageError if it is missing, corrupt or not a ued VAE."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise UsageError(
            f"VAE file {path!r} not found; create one with `ued pretrain-vae --env ENV --out {path}`"
        )
    payload = _load_plain(path, "VAE file")
    if not isinstance(payload, dict) or payload.get("format") != FILE_FORMAT:
        raise UsageError(f"{path!r} is not a ued VAE file; create one with `ued pretrain-vae`")
    if payload.get("version") not in (1, FILE_VERSION):
        raise UsageError(
            f"VAE file {path!r} has version {payload.get('version')}, this ued reads versions 1 and "
            f"{FILE_VERSION}; recreate it with `ued pretrain-vae`"
        )
    for key, kind in (("family", str), ("vocab_size", int), ("max_tokens", int), ("config", dict)):
        if not isinstance(payload.get(key), kind):
            raise UsageError(f"VAE file {path!r} is damaged (no {key}); recreate it with `ued pretrain-vae`")
    if not isinstance(payload.get("state_dict"), dict):
        raise UsageError(f"VAE file {path!r} is damaged (no weights); recreate it with `ued pretrain-vae`")
    return payload


def vae_from_parts(
    vocab_size: int, max_tokens: int, config: dict[str, Any], state_dict: dict[str, torch.Tensor]
) -> RecurrentVAE:
    """A `RecurrentVAE` (eval mode, float32) from a saved config dict and state dict, as VAE files and CLUTR
    checkpoints hold them; a config of ued's earlier fixed architecture (no `encoder_state`) is read as
    such. Raises RuntimeError / KeyError / UsageError for parts that do not fit."""
    state = {k: (v.float() if v.is_floating_point() else v) for k, v in state_dict.items()}
    if "encoder_state" not in config:  # version 1: one Linear to (mu, logvar)
        config = {**config, **_V1_OPTIONS}
        weight, bias = state.pop("to_posterior.weight"), state.pop("to_posterior.bias")
        state["to_mu.weight"], state["to_logvar.weight"] = weight.chunk(2, dim=0)
        state["to_mu.bias"], state["to_logvar.bias"] = bias.chunk(2, dim=0)
    vae_config = merge(VAEConfig(), {k: v for k, v in config.items() if k in _VAE_FIELDS})
    vae = RecurrentVAE(vocab_size, max_tokens, vae_config)
    vae.load_state_dict(state)
    return vae.eval()


def load_vae(path: str | os.PathLike, family: LevelFamily, device: str = "cpu") -> RecurrentVAE:
    """Load a VAE saved by `save_vae` for `family` (eval mode, float32). Its `report`, `family_name` and
    `family_options` attributes hold the saved metadata. UsageError if the file does not fit the family."""
    where = os.fspath(path)
    payload = read_vae_file(path)
    if payload["family"] != family.name:
        raise UsageError(
            f"VAE file {where!r} was trained for environment {payload['family']!r}, not "
            f"{family.name!r}; create one with `ued pretrain-vae --env {family.name}`"
        )
    if payload["vocab_size"] != family.vocab_size or payload["max_tokens"] != family.max_tokens:
        raise UsageError(
            f"VAE file {where!r} was trained for {payload['family']!r} levels of {payload['max_tokens']} "
            f"tokens over {payload['vocab_size']} values (options {payload.get('family_options')}), but this "
            f"environment has {family.max_tokens} tokens over {family.vocab_size}; retrain it with the same "
            "environment options"
        )
    try:
        vae = vae_from_parts(
            payload["vocab_size"], payload["max_tokens"], payload["config"], payload["state_dict"]
        )
    except Exception as exc:  # noqa: BLE001  (wrong shapes, missing keys, bad config values)
        raise UsageError(
            f"VAE file {where!r} is damaged ({type(exc).__name__}: {str(exc).splitlines()[0][:200]}); "
            "recreate it with `ued pretrain-vae`"
        ) from None
    vae.report = dict(payload.get("report", {}) or {})
    vae.family_name = payload["family"]
    vae.family_options = dict(payload.get("family_options", {}) or {})
    return vae.to(device).eval()


def shipped_vae_path(name: str) -> Path:
    """The file of ued's shipped VAE for the family called `name`; UsageError naming the shipped ones if
    there is none."""
    path = SHIPPED_DIR / f"{name}.pt"
    if not path.is_file():
        have = sorted(p.stem for p in SHIPPED_DIR.glob("*.pt"))
        raise UsageError(
            f"ued ships no VAE for {name!r} (it ships: {', '.join(have) or 'none'}); train one with "
            f"`ued pretrain-vae --env {name} --out FILE`"
        )
    return path


def shipped_vae_file(family: LevelFamily) -> Path | None:
    """ued's pretrained VAE file for `family` if it ships one trained at `family`'s `level_options`, else
    None."""
    path = SHIPPED_DIR / f"{family.name}.pt"
    if not path.is_file():
        return None
    return path if _same_levels(read_vae_file(path).get("family_options"), family) else None


def _same_levels(options: Any, family: LevelFamily) -> bool:
    """Whether family `options` (as a VAE file or checkpoint records them) give `family`'s levels: the same
    `level_options`."""
    saved = dict(options or {})
    return all(saved.get(key) == value for key, value in family.level_options.items())


__all__ = [
    "CHUNK_SIZE",
    "SHIPPED_DIR",
    "LevelStream",
    "PretrainInterrupted",
    "RecurrentVAE",
    "VAEConfig",
    "generate_sequences",
    "interpolation_picture",
    "kl_per_level",
    "kl_weight",
    "latent_range",
    "load_vae",
    "pretrain_vae",
    "prior_validity",
    "read_checkpoint",
    "read_init",
    "read_vae_file",
    "reconstruction_report",
    "save_vae",
    "shipped_vae_file",
    "shipped_vae_path",
    "training_loss",
    "vae_from_parts",
    "vae_loss",
    "vae_quality",
]
