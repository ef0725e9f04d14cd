"""The CLUTR teacher: latent range, PPO on regret, checkpoints, VAE files, and tiny runs through the runner."""

from __future__ import annotations

import importlib
import io
import json

import numpy as np
import pytest
import torch

from ued.config import CLUTRConfig, VAEConfig
from ued.errors import UsageError
from ued.levels import LevelResults, make_family
from ued.teachers import TEACHERS
from ued.teachers.clutr import CLUTR, VAE_CACHE_NAME, default_pretrain_steps
from ued.vae import pretrain_vae, save_vae

torch.set_num_threads(1)

TINY_VAE = VAEConfig(
    embed_dim=8, hidden=16, latent=4, decoder_hidden=16, sequences=100, held_out=20, batch_size=16
)


def tiny_config(**kwargs) -> CLUTRConfig:
    return CLUTRConfig(pretrain=TINY_VAE, pretrain_steps=20, body_size=16, noise_dim=8, **kwargs)


def results(returns: np.ndarray) -> LevelResults:
    r = np.asarray(returns, dtype=np.float64)
    return LevelResults(
        [np.array([v]) for v in r], r, r, (r > 0).astype(float), np.zeros_like(r), np.zeros_like(r)
    )


@pytest.fixture(scope="module")
def maze():
    return make_family("maze", max_walls=6)


@pytest.fixture(scope="module")
def vae_file(tmp_path_factory, maze):
    vae, report = pretrain_vae(maze, TINY_VAE, steps=20, seed=0, progress=False)
    path = tmp_path_factory.mktemp("vae") / "maze.pt"
    save_vae(path, vae, TINY_VAE, "maze", {"max_walls": 6}, report)
    return path


def test_clutr_is_registered():
    assert TEACHERS["clutr"] is CLUTR
    assert CLUTR.roles == ("protagonist", "antagonist")


def test_teacher_output_spans_the_vae_latent_range(maze, vae_file):
    teacher = CLUTR(maze, tiny_config(vae_path=str(vae_file)), seed=0)
    low = torch.tensor([-5.0, -1.0, 2.0, -0.2])
    high = torch.tensor([7.0, 1.0, 9.0, 0.2])
    teacher.vae.latent_low.copy_(low)
    teacher.vae.latent_high.copy_(high)
    assert torch.allclose(teacher.to_latent(torch.zeros(4)), low)
    assert torch.allclose(teacher.to_latent(torch.ones(4)), high)
    proposal = teacher.propose(256)
    assert len(proposal.levels) == 256 and all(maze.is_valid(lv) for lv in proposal.levels)
    z = teacher.to_latent(proposal.context.unit)
    width = high - low
    assert torch.all(z >= low) and torch.all(z <= high)
    # the samples reach both ends of every dimension, far outside the reference's [0, 1]
    assert torch.all(z.min(0).values < low + 0.15 * width)
    assert torch.all(z.max(0).values > high - 0.15 * width)
    assert float(z[:, 0].min()) < -3.0 and float(z[:, 2].max()) > 7.0


def test_pretrained_range_is_from_the_posterior_means(maze, vae_file):
    teacher = CLUTR(maze, tiny_config(vae_path=str(vae_file)), seed=0)
    vae = teacher.vae
    rng = np.random.default_rng(5)
    tokens = torch.as_tensor(np.stack([maze.encode(maze.sample(rng)) for _ in range(200)]))
    mu = vae.posterior_latent(tokens)  # activated (4 tanh) means: the decoder's input space
    centre = (vae.latent_low + vae.latent_high) / 2
    assert torch.allclose(centre, mu.mean(0), atol=0.5 * float(mu.std(0).max()) + 1e-4)
    assert torch.all(vae.latent_high - vae.latent_low > 0)


def test_teacher_learns_to_raise_a_rewarded_latent(maze, vae_file):
    """Regret = the teacher's own first latent (in [0, 1]): PPO must push that dimension up."""
    config = tiny_config(vae_path=str(vae_file))
    config.ppo.lr = 3e-3
    teacher = CLUTR(maze, config, seed=0)
    before = float(teacher.propose(256).context.unit[:, 0].mean())
    for _ in range(25):
        proposal = teacher.propose(64)
        target = proposal.context.unit[:, 0].numpy()
        metrics = teacher.update(
            proposal, {"protagonist": results(np.zeros(64)), "antagonist": results(target)}
        ).scalars
    after = float(teacher.propose(256).context.unit[:, 0].mean())
    assert after > before + 0.1
    for key in (
        "regret_mean",
        "teacher_entropy",
        "valid_written",
        "latent_std",
        "latent_coverage",
        "unique_levels",
    ):
        assert key in metrics and np.isfinite(metrics[key])
    assert metrics["regret_mean"] == pytest.approx(float(target.mean()))


def test_state_dict_round_trip(maze, vae_file):
    teacher = CLUTR(maze, tiny_config(vae_path=str(vae_file)), seed=0)
    proposal = teacher.propose(8)
    teacher.update(proposal, {"protagonist": results(np.zeros(8)), "antagonist": results(np.ones(8))})
    buffer = io.BytesIO()
    torch.save(teacher.state_dict(), buffer)  # plain tensors, numbers, lists and dicts only
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    # a teacher built with a different VAE resumes with the checkpoint's VAE
    other = CLUTR(maze, tiny_config(), seed=3)
    other.load_state_dict(state)
    a, b = teacher.propose(16), other.propose(16)
    assert [maze.tokens_key(x) for x in a.levels] == [maze.tokens_key(x) for x in b.levels]
    assert torch.equal(a.context.unit, b.context.unit)


def test_bad_settings_and_vae_files(maze, vae_file, tmp_path):
    with pytest.raises(UsageError, match="regret"):
        tiny_config(vae_path=str(vae_file), regret="nope")
    missing = CLUTR(maze, tiny_config(vae_path=str(tmp_path / "none.pt")))  # a resume may not need it
    with pytest.raises(UsageError, match="not found.*ued pretrain-vae"):
        missing.propose(2)
    with pytest.raises(UsageError, match="not found"):
        missing.state_dict()
    with pytest.raises(UsageError, match="tokens"):  # trained for mazes of 6 walls
        CLUTR(make_family("maze", max_walls=10), tiny_config(vae_path=str(vae_file)))
    foreign = tmp_path / "foreign.pt"
    foreign.write_text("hello")
    with pytest.raises(UsageError):
        CLUTR(maze, tiny_config(vae_path=str(foreign)))


def test_default_pretraining_does_the_same_decoder_work_for_any_level_length():
    assert CLUTRConfig().pretrain_steps is None
    assert default_pretrain_steps(make_family("maze")) == 500  # 52 tokens
    assert default_pretrain_steps(make_family("maze", max_walls=24)) == 1000
    assert default_pretrain_steps(make_family("maze", max_walls=0)) == 5000  # capped


def test_relative_vae_path_is_resolved_when_the_teacher_is_built(maze, vae_file, monkeypatch):
    monkeypatch.chdir(vae_file.parent)
    teacher = CLUTR(maze, tiny_config(vae_path=vae_file.name), seed=0)
    assert teacher.vae_path == str(vae_file.resolve())
    assert teacher.vae is not None and len(teacher.propose(2).levels) == 2


def test_checkpoint_vae_replaces_a_missing_file_or_another_latent_size(maze, vae_file, tmp_path):
    teacher = CLUTR(maze, tiny_config(vae_path=str(vae_file)), seed=0)
    proposal = teacher.propose(8)
    teacher.update(proposal, {"protagonist": results(np.zeros(8)), "antagonist": results(np.ones(8))})
    state = teacher.state_dict()
    wide = VAEConfig(**{**TINY_VAE.__dict__, "latent": 6})
    for other in (
        CLUTR(maze, tiny_config(vae_path=str(tmp_path / "gone.pt")), seed=3),
        CLUTR(maze, CLUTRConfig(pretrain=wide, pretrain_steps=5, body_size=16, noise_dim=8), seed=3),
    ):
        other.load_state_dict(state)
        assert other.vae.latent_dim == 4 and other.policy.latent_dim == 4
        a, b = teacher.propose(16), other.propose(16)
        assert [maze.tokens_key(x) for x in a.levels] == [maze.tokens_key(x) for x in b.levels]
        assert torch.equal(a.context.unit, b.context.unit)
        teacher.load_state_dict(state)  # back to the same point for the next comparison


def test_resume_from_another_directory_without_the_vae_file(maze, vae_file, tmp_path, monkeypatch):
    """A run trained with a relative vae_path resumes elsewhere, with the file moved away: the checkpoint
    holds the VAE."""
    import shutil

    from ued.config import load_config
    from ued.runner import train

    work, elsewhere = tmp_path / "work", tmp_path / "elsewhere"
    work.mkdir()
    elsewhere.mkdir()
    shutil.copy(vae_file, work / "vae-maze.pt")
    monkeypatch.chdir(work)
    from ued.config import TrainConfig

    config = TrainConfig(
        env="maze",
        env_options={"max_walls": 6},
        teacher="clutr",
        teacher_options={"vae_path": "vae-maze.pt", "body_size": 16, "noise_dim": 8},
        num_envs=2,
        num_steps=8,
        total_steps=32,
        run_dir=str(tmp_path / "run"),
        image_interval=0,
        checkpoint_interval=1,
        backend="gym",
        ppo={"epochs": 1},
        threads=1,
    )
    assert train(config, progress=False)["steps"] == 32
    monkeypatch.chdir(elsewhere)
    for i, remove in enumerate((False, True)):
        if remove:
            (work / "vae-maze.pt").unlink()
        resumed = load_config(tmp_path / "run")
        resumed.total_steps = 48 + 16 * i
        summary = train(resumed, resume=True, progress=False)
        assert summary["steps"] == 48 + 16 * i
    assert not (tmp_path / "run" / VAE_CACHE_NAME).exists()  # the given VAE is never copied or retrained


def test_automatic_vae_is_cached_and_reused(maze, tmp_path, capsys):
    first = CLUTR(maze, tiny_config(), workdir=tmp_path, seed=0)
    cache = tmp_path / VAE_CACHE_NAME
    assert cache.is_file()
    said = capsys.readouterr().err.splitlines()
    assert len(said) == 2 and "pretraining" in said[0] and str(cache) in said[0]
    assert "held-out" in said[1] and "chance" in said[1]
    with torch.no_grad():
        first.vae.to_logits.bias.add_(1.0)  # the cached file, not a fresh pretraining, must come back
    second = CLUTR(maze, tiny_config(), workdir=tmp_path, seed=0)
    assert not torch.equal(second.vae.to_logits.bias, first.vae.to_logits.bias)
    third = CLUTR(maze, tiny_config(), seed=0)  # same seed, no cache: a fresh, identical pretraining
    assert torch.equal(second.vae.to_logits.weight, third.vae.to_logits.weight)


@pytest.mark.parametrize("env", ["maze", "carracing"])
def test_tiny_clutr_run_through_the_runner(env, tmp_path):
    from ued.config import TrainConfig
    from ued.runner import train

    importlib.import_module(f"ued.environments.{env}")
    options = {"max_walls": 6} if env == "maze" else {}
    teacher_options = {
        "pretrain": {
            "embed_dim": 8,
            "hidden": 16,
            "latent": 4,
            "decoder_hidden": 16,
            "sequences": 60,
            "held_out": 10,
            "batch_size": 16,
        },
        "pretrain_steps": 10,
        "body_size": 16,
        "noise_dim": 8,
    }
    num_steps = 16 if env == "maze" else 2
    config = TrainConfig(
        env=env,
        env_options=options,
        teacher="clutr",
        teacher_options=teacher_options,
        num_envs=2,
        num_steps=num_steps,
        total_steps=2 * 2 * num_steps,
        seed=0,
        run_dir=str(tmp_path / "run"),
        image_interval=0,
        backend="gym",  # synchronous envs: no worker processes to start in a unit test
        ppo={"epochs": 1},
    )
    summary = train(config, progress=False)
    assert summary["steps"] >= 2 * 2 * num_steps
    # maze with 6 walls: no shipped VAE fits, so the fallback pretraining is cached in the run directory the
    # runner gave the teacher; carracing at its default options: ued's shipped VAE, nothing pretrained
    assert (tmp_path / "run" / VAE_CACHE_NAME).is_file() == (env == "maze")
    json.dumps(summary)


def test_shipped_vae_is_the_default_and_pretrain_the_fallback(capsys):
    from ued.vae import shipped_vae_file

    family = make_family("carracing")
    shipped = shipped_vae_file(family)
    assert shipped is not None
    # options that change episodes or frames, not the sketch levels, keep the shipped VAE; maze walls do not
    assert shipped_vae_file(make_family("carracing", camera="gymnasium", max_episode_steps=500)) == shipped
    assert shipped_vae_file(make_family("maze", max_walls=6)) is None
    teacher = CLUTR(family, CLUTRConfig(), seed=0)
    assert "pretraining" not in capsys.readouterr().err
    want = torch.load(shipped, weights_only=True)["state_dict"]["to_logits.weight"].float()
    assert torch.equal(teacher.vae.to_logits.weight, want)
    assert len(teacher.propose(4).levels) == 4
    own = CLUTR(family, tiny_config(vae_source="pretrain"), seed=0)
    err = capsys.readouterr().err
    assert "vae_source=pretrain" in err and "fallback" in err
    assert own.vae.latent_dim == TINY_VAE.latent
    with pytest.raises(UsageError, match="vae_source"):
        CLUTRConfig(vae_source="hub")
