"""The recurrent VAE: learning, the latent range, files, and decoding any latent to a playable level."""

from __future__ import annotations

import contextlib
import importlib
import itertools
import math
import signal
from typing import Any

import numpy as np
import pytest
import torch

from ued.config import VAE_PRESETS, merge, small_vae_config, vae_preset
from ued.editor import finish_level
from ued.errors import UsageError
from ued.levels import LevelFamily, make_family
from ued.vae import (
    LevelStream,
    PretrainInterrupted,
    RecurrentVAE,
    VAEConfig,
    kl_weight,
    load_vae,
    pretrain_vae,
    read_vae_file,
    save_vae,
)

torch.set_num_threads(1)

# ued's small architecture at tiny sizes; a low final KL weight keeps the 4 nats of a tiny level in the
# latent (at weight 1 the prior wins)
TINY = merge(
    small_vae_config(),
    dict(  # noqa: C408
        embed_dim=16,
        hidden=32,
        latent=8,
        decoder_hidden=32,
        sequences=200,
        held_out=16,
        batch_size=32,
        lr=3e-3,
        kl_max=0.1,
        word_dropout=0.0,
        steps=300,
    ),
)
# the published architecture (highway, cell-state posterior, 4 tanh latents, zero-state decoder, embedding
# dropout, 79 x mean cross-entropy, tanh KL schedule) at tiny sizes and a tiny-run KL schedule
TINY_PUBLISHED = merge(
    VAEConfig(),
    dict(  # noqa: C408
        embed_dim=16,
        hidden=32,
        latent=8,
        decoder_hidden=32,
        decoder_layers=1,
        sequences=200,
        held_out=16,
        lr=3e-3,
        kl_max=0.1,
        kl_center=100.0,
        kl_width=50.0,
        steps=400,
    ),
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
    return pretrain_vae(TinyFamily(), TINY, seed=0, progress=False)


def test_kl_weight_rises_to_its_maximum():
    # CLUTR RVAE/utils/functional.py kld_coef: (tanh((step - 3500) / 1000) + 1) / 2, whatever the run length
    c = VAEConfig()
    assert kl_weight(3500, 10**6, c) == pytest.approx(0.5)
    assert kl_weight(0, 10**6, c) == pytest.approx((math.tanh(-3.5) + 1) / 2)
    assert kl_weight(10**6, 10**6, c) == pytest.approx(1.0)
    assert kl_weight(3500, 5000, c) == kl_weight(3500, 10**6, c)
    c = VAEConfig(kl_max=0.5, kl_anneal="logistic")
    betas = [kl_weight(s, 1000, c) for s in range(0, 1001, 50)]
    assert betas[0] < 0.01 and abs(betas[-1] - 0.5) < 0.01
    assert all(a <= b for a, b in itertools.pairwise(betas))
    assert kl_weight(0, 1000, VAEConfig(kl_anneal="constant", kl_max=1.0)) == 1.0
    assert kl_weight(
        250, 1000, VAEConfig(kl_anneal="linear", kl_anneal_fraction=0.5, kl_max=1.0)
    ) == pytest.approx(0.5)


def test_vae_learns_to_reconstruct_held_out_levels(trained):
    vae, report = trained
    assert report["held_out_levels"] == 16  # of 56 levels: the rest are the training levels
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


def test_published_preset_is_clutrs_vae():
    """CLUTR task_embed/clutr_RVAE (RVAE/train.py, RVAE/utils/parameters.py, RVAE/model/*.py,
    RVAE/utils/functional.py) run by scripts/train_vae.sh."""
    c = vae_preset("published")
    assert c == VAEConfig() and next(iter(VAE_PRESETS)) == "published"
    assert (c.embed_dim, c.highway_layers, c.hidden, c.encoder_state, c.latent) == (300, 2, 600, "cell", 64)
    assert (c.latent_activation, c.logvar_clamp) == ("tanh4", 0.0)
    assert (c.decoder_hidden, c.decoder_layers, c.decoder_init) == (800, 2, "zero")
    assert (c.embed_dropout, c.word_dropout) == (0.3, 0.0)
    assert (c.recon_weight, c.recon_reduction) == (79.0, "mean")
    assert (c.kl_anneal, c.kl_max, c.kl_center, c.kl_width) == ("tanh", 1.0, 3500.0, 1000.0)
    assert (c.lr, c.max_grad_norm, c.batch_size, c.steps, c.sequences) == (
        5e-5,
        0.0,
        32,
        1_000_000,
        1_000_000,
    )


def test_published_architecture_learns_tiny_levels():
    _, report = pretrain_vae(TinyFamily(), TINY_PUBLISHED, seed=0, progress=False)
    assert report["token_accuracy"] > report["chance_token_accuracy"] + 0.3
    assert report["level_accuracy"] > report["chance_level_accuracy"] + 0.3


def test_level_stream_is_a_pure_function_of_the_seed():
    family = make_family("maze", max_walls=4)
    a = LevelStream(family, 7, sequences=50, held_out=10, batch_size=8, chunk_size=16)
    b = LevelStream(family, 7, sequences=50, held_out=10, batch_size=8, chunk_size=16)
    steps = [0, 5, 6, 7, 13, 3]  # across chunk and epoch boundaries, out of order
    assert all(np.array_equal(a.batch(t), b.batch(t)) for t in steps)
    assert np.array_equal(a.held_out, b.held_out)
    held = {row.tobytes() for row in a.held_out}
    seen = [row.tobytes() for t in range(7) for row in a.batch(t)][:50]  # epoch 0 holds every level once
    assert sorted(seen) == sorted(row.tobytes() for row in a.first(50)) and not held & set(seen)
    assert not np.array_equal(a.batch(0), LevelStream(family, 8, 50, 10, 8, 16).batch(0))


def stopped_at(calls: int, family: LevelFamily, config: Any, **kwargs: Any) -> int:
    """The step at which `pretrain_vae` stops when asked to after `calls` steps (its checkpoint written)."""
    asked = iter(range(1, 10_000))
    with pytest.raises(PretrainInterrupted) as stop:
        pretrain_vae(family, config, progress=False, should_stop=lambda: next(asked) == calls, **kwargs)
    return stop.value.step


def assert_same_weights(a: torch.nn.Module, b: torch.nn.Module) -> None:
    for (key, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(x, y), key


def test_interrupted_pretraining_resumes_bit_identically(tmp_path):
    family = make_family("maze", max_walls=4)
    config = merge(TINY, {"steps": 12, "sequences": 40, "held_out": 8, "batch_size": 8})
    whole, _ = pretrain_vae(family, config, seed=1, progress=False, checkpoint=tmp_path / "a.ckpt")
    assert stopped_at(5, family, config, seed=1, checkpoint=tmp_path / "b.ckpt") == 5
    resumed, _ = pretrain_vae(
        family, config, seed=1, progress=False, checkpoint=tmp_path / "b.ckpt", resume=True
    )
    assert_same_weights(whole, resumed)
    with pytest.raises(UsageError, match="lr"):  # another setting: refused, nothing overwritten
        before = (tmp_path / "b.ckpt").read_bytes()
        pretrain_vae(family, merge(config, {"lr": 1e-2}), seed=1, checkpoint=tmp_path / "b.ckpt", resume=True)
    assert (tmp_path / "b.ckpt").read_bytes() == before


def test_pretraining_continues_from_a_vae_file(tmp_path):
    """`init=`: the file's weights and step count are the start (fresh Adam, new settings), an interrupted
    continuation resumes bit for bit, and files that do not fit are refused with one line."""
    family = TinyFamily()
    tiny = merge(TINY, {"kl_anneal": "constant"})  # --init continues fixed-step KL schedules only
    first, report = pretrain_vae(family, merge(tiny, {"steps": 20}), seed=3, progress=False)
    save_vae(tmp_path / "v.pt", first, merge(tiny, {"steps": 20}), family.name, {}, report, half=True)
    still, _ = pretrain_vae(
        family, merge(tiny, {"lr": 1e-12}), steps=21, seed=3, progress=False, init=tmp_path / "v.pt"
    )
    fresh, _ = pretrain_vae(family, merge(tiny, {"lr": 1e-12}), steps=1, seed=3, progress=False)
    for key, value in first.state_dict().items():
        if not key.startswith("latent_"):  # weights: the file's (fp16), not a new initialisation
            assert torch.allclose(still.state_dict()[key], value.half().float(), atol=1e-6), key
            assert not torch.allclose(fresh.state_dict()[key], value.half().float(), atol=1e-3), key
    config = merge(tiny, {"lr": 1e-3, "steps": 30})
    whole, whole_report = pretrain_vae(
        family, config, seed=3, progress=False, init=tmp_path / "v.pt", checkpoint=tmp_path / "a.ckpt"
    )
    assert whole_report["steps"] == 30 and whole_report["init"]["steps"] == 20
    # steps count on from the file's 20
    assert stopped_at(4, family, config, seed=3, init=tmp_path / "v.pt", checkpoint=tmp_path / "b.ckpt") == 24
    before = (tmp_path / "b.ckpt").read_bytes()
    with pytest.raises(UsageError, match="--init"):  # the checkpoint began from the file: say so
        pretrain_vae(family, config, seed=3, progress=False, checkpoint=tmp_path / "b.ckpt", resume=True)
    other = tmp_path / "other.pt"
    save_vae(other, whole, config, family.name, {}, {**report, "steps": 20})
    with pytest.raises(UsageError, match="same --init"):  # another start file
        pretrain_vae(
            family, config, seed=3, progress=False, init=other, checkpoint=tmp_path / "b.ckpt", resume=True
        )
    assert (tmp_path / "b.ckpt").read_bytes() == before
    resumed, _ = pretrain_vae(
        family,
        config,
        seed=3,
        progress=False,
        init=tmp_path / "v.pt",
        checkpoint=tmp_path / "b.ckpt",
        resume=True,
    )
    assert_same_weights(whole, resumed)
    with pytest.raises(UsageError, match="already at step 20"):
        pretrain_vae(family, tiny, steps=20, seed=3, progress=False, init=tmp_path / "v.pt")
    refused = {  # what the network, the data and the schedule are: refused, named in the message
        "latent=8, not 4": (merge(tiny, {"latent": 4}), 3),
        "latent_activation='none', not 'tanh4'": (merge(tiny, {"latent_activation": "tanh4"}), 3),
        "seed=3, not 4": (tiny, 4),
        "held_out=16, not 20": (merge(tiny, {"held_out": 20}), 3),
        "batch_size=32, not 16": (merge(tiny, {"batch_size": 16}), 3),
        "not 'logistic'": (merge(tiny, {"kl_anneal": "logistic"}), 3),
    }
    for words, (bad, seed) in refused.items():
        with pytest.raises(UsageError, match=words):
            pretrain_vae(family, bad, steps=30, seed=seed, progress=False, init=tmp_path / "v.pt")
    maze = make_family("maze", max_walls=4)
    with pytest.raises(UsageError, match="--init: .*environment 'tiny', not 'maze'"):
        pretrain_vae(maze, tiny, steps=30, progress=False, init=tmp_path / "v.pt")


def test_pretrain_vae_command_sets_threads_and_reports(tmp_path):
    """`ued pretrain-vae` runs on every available core on cpu unless --threads says otherwise (as `ued train`)."""
    from click.testing import CliRunner

    from ued.cli.main import cli

    small = ["--env", "maze", "--env-option", "max_walls=4", "--preset", "small", "--steps", "3"]
    small += ["--set", "sequences=20", "--set", "held_out=5"]
    small += ["--set", "embed_dim=4", "--set", "hidden=4", "--set", "latent=2", "--set", "decoder_hidden=4"]
    from ued.threads import available_cores

    before = torch.get_num_threads()
    try:
        torch.set_num_threads(available_cores() + 1)
        out = tmp_path / "vae.pt"
        result = CliRunner().invoke(cli, ["pretrain-vae", *small, "--out", str(out), "--quiet"])
        assert result.exit_code == 0, result.output
        assert torch.get_num_threads() == available_cores() and out.is_file()
        assert "held-out reconstruction (5 levels)" in result.output and "chance" in result.output
        assert "valid before repair" in result.output
        assert read_vae_file(out)["config"]["latent"] == 2
        result = CliRunner().invoke(cli, ["pretrain-vae", *small, "--out", str(out), "--threads", "0"])
        assert result.exit_code == 2 and "--threads must be at least 1" in result.output
    finally:
        torch.set_num_threads(before)


def test_pretrain_vae_command_resumes_and_refuses_to_clobber(tmp_path):
    from click.testing import CliRunner

    from ued.cli.main import cli

    out = tmp_path / "vae.pt"
    args = ["pretrain-vae", "--env", "maze", "--env-option", "max_walls=4", "--preset", "small", "--quiet"]
    args += ["--set", "sequences=20", "--set", "held_out=5", "--set", "hidden=8", "--out", str(out)]
    first = CliRunner().invoke(cli, [*args, "--steps", "3"])
    assert first.exit_code == 0, first.output
    again = CliRunner().invoke(cli, [*args, "--steps", "5"])
    assert again.exit_code == 2 and "--resume" in again.output  # the earlier checkpoint is kept
    more = CliRunner().invoke(
        cli, [*args, "--steps", "5", "--resume", "--half", "--picture", str(tmp_path / "i.png")]
    )
    assert more.exit_code == 0, more.output
    assert read_vae_file(out)["report"]["steps"] == 5 and (tmp_path / "i.png").stat().st_size > 0
    bad = CliRunner().invoke(cli, [*args, "--steps", "5", "--resume", "--set", "latent=3"])
    assert bad.exit_code == 2 and "latent" in bad.output
    report = CliRunner().invoke(cli, ["vae-report", str(out), "--levels", "6", "--samples", "4"])
    assert report.exit_code == 0, report.output
    assert "held-out reconstruction (6 levels)" in report.output and "prior samples" in report.output
    same = CliRunner().invoke(cli, [*args, "--steps", "9", "--init", str(out)])
    assert same.exit_code == 2 and "same file" in same.output
    more = CliRunner().invoke(
        cli,
        [
            *args,
            "--steps",
            "7",
            "--init",
            str(out),
            "--set",
            "kl_anneal=constant",
            "--out",
            str(tmp_path / "w.pt"),
        ],
    )
    assert more.exit_code == 0, more.output
    assert (
        "continued from" in more.output and read_vae_file(tmp_path / "w.pt")["report"]["init"]["steps"] == 5
    )
    unknown = CliRunner().invoke(cli, [*args, "--set", "nope=1"])
    assert unknown.exit_code == 2 and "unknown --set key 'nope'" in unknown.output


def test_shipped_vaes_load_for_their_families():
    from ued.vae import SHIPPED_DIR, shipped_vae_file

    shipped = sorted(p.stem for p in SHIPPED_DIR.glob("*.pt"))
    assert "carracing" in shipped
    for name in shipped:
        family = family_of(name)
        path = shipped_vae_file(family)
        assert path is not None and path.stat().st_size < 5 * 2**20  # docs/clutr-vae.md's size budget
        vae = load_vae(path, family)
        assert vae.report["token_accuracy"] > 2 * vae.report["chance_token_accuracy"]
        z = vae.latent_low + torch.rand(8, vae.latent_dim, generator=torch.Generator().manual_seed(0)) * (
            vae.latent_high - vae.latent_low
        )
        for row in vae.decode_greedy(z).numpy():
            assert family.can_play(finish_level(family, row)[0])
    # another option of the family: no shipped VAE fits it
    assert shipped_vae_file(make_family("maze", max_walls=7)) is None
