"""The recurrent VAE: learning, the latent range, files, and decoding any latent to a playable level."""

from __future__ import annotations

import contextlib
import importlib
import itertools
import signal
from typing import Any

import numpy as np
import pytest
import torch

from ued.editor import finish_level
from ued.errors import UsageError
from ued.levels import LevelFamily, make_family
from ued.vae import (
    RecurrentVAE,
    VAEConfig,
    kl_weight,
    load_vae,
    pretrain_vae,
    read_vae_file,
    save_vae,
)

torch.set_num_threads(1)

# a low final KL weight keeps the 4 nats of a tiny level in the latent (at weight 1 the prior wins)
TINY = VAEConfig(
    embed_dim=16,
    hidden=32,
    latent=8,
    decoder_hidden=32,
    sequences=200,
    held_out=100,
    batch_size=32,
    lr=3e-3,
    kl_max=0.1,
)


class TinyFamily(LevelFamily):
    """Levels are 3 distinct cells of 8, tokens sorted (56 levels): small enough to learn in seconds."""

    name = "tiny"
    vocab_size = 8
    max_tokens = 3

    def encode(self, level: Any) -> np.ndarray:
        return np.array(sorted(level), dtype=np.int64)

    def decode(self, tokens: Any) -> Any:
        return tuple(sorted({int(t) for t in tokens}))

    def sample(self, rng: np.random.Generator) -> Any:
        return tuple(sorted(int(c) for c in rng.choice(8, size=3, replace=False)))

    def is_valid(self, level: Any) -> bool:
        return len(level) == 3

    def repair(self, level: Any) -> Any:
        cells = list(level)
        for c in range(8):
            if len(cells) == 3:
                break
            if c not in cells:
                cells.append(c)
        return tuple(sorted(cells))

    def tokens_key(self, level: Any) -> bytes:
        return np.array(level, dtype=np.int64).tobytes()

    def editor_view(self, tokens: Any) -> np.ndarray:
        return np.zeros((1, 1, 8), dtype=np.float32)

    @property
    def editor_view_shape(self) -> tuple[int, int, int]:
        return (1, 1, 8)

    def make_env(self, level: Any = None) -> Any:
        raise NotImplementedError

    def make_student(self, device: str = "cpu") -> Any:
        raise NotImplementedError

    def render(self, level: Any) -> np.ndarray:
        return np.zeros((8, 8, 3), dtype=np.uint8)


@contextlib.contextmanager
def time_limit(seconds: int):
    """Fail (instead of hanging) when the block runs longer than `seconds`."""

    def fail(signum, frame):
        raise TimeoutError(f"took longer than {seconds} s")

    old = signal.signal(signal.SIGALRM, fail)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


@pytest.fixture(scope="module")
def trained():
    return pretrain_vae(TinyFamily(), TINY, steps=300, seed=0, progress=False)


def test_kl_weight_rises_to_its_maximum():
    c = VAEConfig(kl_max=0.5)
    betas = [kl_weight(s, 1000, c) for s in range(0, 1001, 50)]
    assert betas[0] < 0.01 and abs(betas[-1] - 0.5) < 0.01
    assert all(a <= b for a, b in itertools.pairwise(betas))
    assert kl_weight(0, 1000, VAEConfig(kl_anneal="constant", kl_max=1.0)) == 1.0
    assert kl_weight(
        250, 1000, VAEConfig(kl_anneal="linear", kl_anneal_fraction=0.5, kl_max=1.0)
    ) == pytest.approx(0.5)


def test_vae_learns_to_reconstruct_held_out_levels(trained):
    vae, report = trained
    assert report["held_out_levels"] == 100
    # chance = each position's most frequent token; a decoder ignoring the latent cannot do much better
    assert report["chance_token_accuracy"] < 0.5
    assert report["token_accuracy"] > report["chance_token_accuracy"] + 0.3
    assert report["level_accuracy"] > report["chance_level_accuracy"] + 0.3
    # tokens found anywhere: at least the positional matches, and clearly above chance too
    assert report["token_overlap"] >= report["token_accuracy"]
    assert report["token_overlap"] > report["chance_token_overlap"] + 0.2
    # the same measured by hand on a fixed set
    family = TinyFamily()
    levels = [(0, 1, 2), (1, 4, 7), (2, 5, 6), (0, 3, 7), (4, 5, 6)]
    tokens = torch.as_tensor(np.stack([family.encode(lv) for lv in levels]))
    mu, _ = vae.encode(tokens)
    decoded = [family.decode(row) for row in vae.decode_greedy(mu).numpy()]
    assert sum(d == lv for d, lv in zip(decoded, levels)) >= 3


def test_token_overlap_forgives_a_shifted_sorted_list():
    from ued.vae import _overlap

    truth = np.array([[1, 2, 3, 4], [5, 5, 6, 7]])
    shifted = np.array([[2, 3, 4, 9], [5, 6, 6, 8]])  # positionally: 0/4 and 1/4 right
    assert _overlap(shifted, truth) == pytest.approx((3 / 4 + 2 / 4) / 2)
    assert _overlap(truth, truth) == 1.0


def test_latent_range_covers_the_posterior_means(trained):
    vae, report = trained
    family = TinyFamily()
    rng = np.random.default_rng(123)
    tokens = torch.as_tensor(np.stack([family.encode(family.sample(rng)) for _ in range(300)]))
    mu = vae.encode(tokens)[0].detach()
    assert torch.all(vae.latent_high > vae.latent_low)
    inside = ((mu >= vae.latent_low) & (mu <= vae.latent_high)).float().mean()
    assert inside > 0.95
    # mean +- 3 std: wider than the spread of the means, not the [0, 1] box
    assert torch.allclose(vae.latent_high - vae.latent_low, 6 * mu.std(0), rtol=0.3, atol=1e-3)
    assert report["latent_active_dims"] >= 1


def test_save_load_round_trip(tmp_path, trained):
    vae, report = trained
    path = tmp_path / "sub" / "vae.pt"
    save_vae(path, vae, TINY, "tiny", {"opt": 1}, report)
    assert [p.name for p in path.parent.iterdir()] == ["vae.pt"]  # no temp files left behind
    raw = torch.load(path, weights_only=True)
    assert raw["config"]["latent"] == 8 and raw["family"] == "tiny"
    loaded = load_vae(path, TinyFamily())
    z = torch.randn(16, 8, generator=torch.Generator().manual_seed(0)) * 3
    assert torch.equal(loaded.decode_greedy(z), vae.decode_greedy(z))
    assert torch.equal(loaded.latent_low, vae.latent_low) and torch.equal(loaded.latent_high, vae.latent_high)
    assert loaded.report["token_accuracy"] == report["token_accuracy"]
    assert loaded.family_options == {"opt": 1}


def test_bad_vae_files_raise_usage_errors(tmp_path, trained):
    vae, _ = trained
    with pytest.raises(UsageError, match="not found"):
        load_vae(tmp_path / "missing.pt", TinyFamily())
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a torch file at all")
    with pytest.raises(UsageError, match="corrupt"):
        load_vae(garbage, TinyFamily())
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(3)}, foreign)
    with pytest.raises(UsageError, match="not a ued VAE"):
        read_vae_file(foreign)
    truncated = tmp_path / "truncated.pt"
    save_vae(truncated, vae, TINY, "tiny")
    truncated.write_bytes(truncated.read_bytes()[:200])
    with pytest.raises(UsageError):
        load_vae(truncated, TinyFamily())
    # a VAE of another family, or of the same family with other options
    good = tmp_path / "tiny.pt"
    save_vae(good, vae, TINY, "tiny")
    with pytest.raises(UsageError, match="trained for environment 'tiny'"):
        load_vae(good, make_family("maze", max_walls=1))
    other = TinyFamily()
    other.max_tokens = 4
    with pytest.raises(UsageError, match="tokens"):
        load_vae(good, other)


def family_of(env: str) -> LevelFamily:
    """A built-in family, importing its module first (registration does not depend on the package init)."""
    importlib.import_module(f"ued.environments.{env}")
    return make_family(env)


def _extreme_latents(dim: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.cat(
        [
            torch.randn(16, dim, generator=g),
            torch.randn(8, dim, generator=g) * 1e4,
            torch.zeros(1, dim),
            torch.full((1, dim), float("inf")),
            torch.full((1, dim), float("-inf")),
            torch.full((1, dim), float("nan")),
            torch.full((1, dim), 3.4e38),
        ]
    )


@pytest.mark.parametrize("env", ["maze", "carracing"])
def test_any_latent_decodes_to_a_playable_level(env):
    family = family_of(env)
    torch.manual_seed(0)
    config = VAEConfig(embed_dim=8, hidden=8, latent=6, decoder_hidden=16)
    vae = RecurrentVAE(family.vocab_size, family.max_tokens, config).eval()
    z = _extreme_latents(6)
    with time_limit(60):
        tokens = vae.decode_greedy(z)
        assert tokens.shape == (z.shape[0], family.max_tokens)
        assert int(tokens.min()) >= 0 and int(tokens.max()) < family.vocab_size
        for row in tokens.numpy():
            level, _ = finish_level(family, row)
            assert family.can_play(level)  # played as decoded (CLUTR), but always playable
            assert family.is_valid(finish_level(family, row, repair=True)[0])


@pytest.mark.parametrize("env", ["maze", "carracing"])
def test_degenerate_decoders_still_give_playable_levels(env):
    """A decoder that always writes the same token (too few cells, all on one spot) must not hang."""
    family = family_of(env)
    config = VAEConfig(embed_dim=8, hidden=8, latent=4, decoder_hidden=8)
    vae = RecurrentVAE(family.vocab_size, family.max_tokens, config).eval()
    with time_limit(60):
        for token in (0, family.vocab_size - 1, family.vocab_size // 2):
            with torch.no_grad():
                vae.to_logits.weight.zero_()
                vae.to_logits.bias.zero_()
                vae.to_logits.bias[token] = 10.0
            tokens = vae.decode_greedy(torch.randn(2, 4))
            assert torch.all(tokens == token)
            level, _ = finish_level(family, tokens[0].numpy())
            assert family.is_valid(level)


def test_pretrain_vae_command_sets_threads_and_reports(tmp_path):
    """`ued pretrain-vae` runs on 1 torch thread on cpu unless --threads says otherwise (as `ued train`)."""
    from click.testing import CliRunner

    from ued.cli.main import cli

    small = [
        "--env",
        "maze",
        "--env-option",
        "max_walls=4",
        "--steps",
        "3",
        "--sequences",
        "20",
        "--held-out",
        "5",
    ]
    small += ["--embed-dim", "4", "--hidden", "4", "--latent", "2", "--decoder-hidden", "4"]
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        out = tmp_path / "vae.pt"
        result = CliRunner().invoke(cli, ["pretrain-vae", *small, "--out", str(out), "--quiet"])
        assert result.exit_code == 0, result.output
        assert torch.get_num_threads() == 1 and out.is_file()
        assert "held-out reconstruction (5 levels)" in result.output and "chance" in result.output
        result = CliRunner().invoke(cli, ["pretrain-vae", *small, "--out", str(out), "--threads", "0"])
        assert result.exit_code == 2 and "--threads must be at least 1" in result.output
    finally:
        torch.set_num_threads(before)
