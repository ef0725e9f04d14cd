"""The PAIRED teacher: adversary network, regret as the adversary's reward, learning, checkpoints."""

from __future__ import annotations

import copy
import io
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
import torch

from ued.config import PPOConfig
from ued.editor import write_levels
from ued.errors import UsageError
from ued.levels import LevelFamily, LevelResults, make_family
from ued.models import EncoderPolicy, count_parameters, flatten_time
from ued.teachers import teacher_class
from ued.teachers.paired import PAIRED, AdversaryPolicy, PAIREDConfig

torch.set_num_threads(1)


# ----- a tiny level family: a level is 3 tokens out of 6 -----------------------------------------------------
@dataclass(frozen=True)
class ToyLevel:
    tokens: tuple[int, ...]


class ToyFamily(LevelFamily):
    """Levels are 3 tokens in 0..5; levels starting with token 5 are invalid (repair: first token -> 0)."""

    name = "toy-paired"
    vocab_size = 6
    max_tokens = 3

    def encode(self, level: ToyLevel) -> np.ndarray:
        return np.asarray(level.tokens, dtype=np.int64)

    def decode(self, tokens: Sequence[int] | np.ndarray) -> ToyLevel:
        toks = [int(t) for t in tokens] + [0] * (self.max_tokens - len(tokens))
        return ToyLevel(tuple(toks))

    def sample(self, rng: np.random.Generator) -> ToyLevel:
        return self.repair(self.decode(rng.integers(0, self.vocab_size, self.max_tokens)))

    def is_valid(self, level: ToyLevel) -> bool:
        return level.tokens[0] != 5

    def repair(self, level: ToyLevel) -> ToyLevel:
        return level if self.is_valid(level) else ToyLevel((0, *level.tokens[1:]))

    def editor_view(self, tokens: Sequence[int]) -> np.ndarray:
        view = np.zeros(self.editor_view_shape, dtype=np.float32)
        for i, t in enumerate(tokens):
            view[0, i, int(t)] = 1.0
        return view

    @property
    def editor_view_shape(self) -> tuple[int, int, int]:
        return (1, self.max_tokens, self.vocab_size)

    def make_env(self, level: Any = None):
        raise NotImplementedError

    def make_student(self, device: str = "cpu"):
        raise NotImplementedError

    def render(self, level: ToyLevel) -> np.ndarray:
        return np.zeros((4, 4, 3), dtype=np.uint8)


def level_results(per_level: list[list[float]]) -> LevelResults:
    best = np.array([max(r) for r in per_level])
    mean = np.array([np.mean(r) for r in per_level])
    n = len(per_level)
    return LevelResults(
        episode_returns=[np.asarray(r) for r in per_level],
        mean_return=mean,
        max_return=best,
        solved_rate=(best > 0).astype(float),
        positive_value_loss=np.zeros(n),
        mean_value=np.zeros(n),
    )


def small_config(**kw: Any) -> PAIREDConfig:
    ppo = kw.pop("ppo", PPOConfig(lr=3e-3, entropy_coef=0.005))
    return PAIREDConfig(**{"conv_channels": 8, "hidden_size": 32, "ppo": ppo, **kw})


# ----- tests --------------------------------------------------------------------------------------------------
def test_registered_and_published_defaults():
    """dcd train_scripts/grid_configs/minigrid/25_blocks/mg_25b_paired.json + arguments.py defaults."""
    assert teacher_class("paired") is PAIRED
    assert PAIRED.roles == ("protagonist", "antagonist")
    c = PAIREDConfig()
    assert (c.ppo.lr, c.ppo.gamma, c.ppo.epochs, c.ppo.num_minibatches, c.ppo.clip) == (
        1e-4,
        0.995,
        5,
        1,
        0.2,
    )
    assert (c.ppo.entropy_coef, c.ppo.max_grad_norm, c.noise_dim, c.regret) == (0.0, 0.5, 50, "paired")
    assert (c.conv_channels, c.hidden_size, c.input_fc, c.head_sizes, c.activation) == (
        (128,),
        256,
        (),
        (32,),
        "tanh",
    )
    assert c.repair_levels is False and c.normalize_reward is False and c.ppo.value_loss == "clipped"


@pytest.mark.parametrize(
    "name,view,vocab,tokens", [("maze", (3, 15, 15), 169, 52), ("carracing", (1, 10, 10), 101, 12)]
)
def test_published_adversary_architecture_is_generic_over_families(name, view, vocab, tokens):
    """dcd models/multigrid_models.py (MultigridNetwork as the adversary): conv 128 -> LSTM 256 -> tanh 32."""
    import importlib

    importlib.import_module(f"ued.environments.{name}")
    fam = make_family(name)
    assert (fam.editor_view_shape, fam.vocab_size, fam.max_tokens) == (view, vocab, tokens)
    net = AdversaryPolicy.for_family(fam)
    assert net.convs[0].out_channels == 128 and net.core.hidden_size == 256 and net.noise_dim == 50
    h, w = view[1] - 2, view[2] - 2
    assert net.core.input_size == 128 * h * w + 10 + 50 and net.actor[0].out_features == 32
    assert isinstance(net.actor[1], torch.nn.Tanh) and len(net.actor) == 3
    paired = AdversaryPolicy.for_family(
        fam, input_fc=(32, 32), head_sizes=(), conv_channels=(4,), activation="relu"
    )
    assert paired.core.input_size == 32 and len(paired.actor) == 1  # the original PAIRED networks
    mask = torch.ones(2, vocab, dtype=torch.bool)
    mask[:, 3] = False
    obs = {
        "image": torch.zeros(2, *view),
        "time_step": torch.tensor([0, tokens]),
        "noise": torch.rand(2, 50),
        "mask": mask,
    }
    dist, value, state = net(obs, net.initial_state(2), torch.ones(2))
    assert dist.probs.shape == (2, vocab) and value.shape == (2,) and state[0].shape == (1, 2, 256)
    assert float(dist.probs[:, 3].max()) == 0.0 and torch.isfinite(dist.entropy()).all()


def test_carracing_adversary_is_dcds_sketch_network():
    """dcd models/car_racing_models.py: convs 1->8->16 (k 2), time one-hot -> 8, z of 4, no LSTM, actor
    Linear(1036, 256) + ReLU + Linear(256, 101), critic Linear(1036, 1); cr_paired.json PPO."""
    import importlib

    from ued.config import TrainConfig
    from ued.run import teacher_config_for

    importlib.import_module("ued.environments.carracing")
    fam = make_family("carracing")
    c = teacher_config_for(fam, TrainConfig(env="carracing", teacher="paired"))
    assert (c.ppo.lr, c.ppo.epochs, c.ppo.num_minibatches, c.ppo.value_loss) == (3e-4, 8, 4, "smooth_l1")
    assert c.normalize_reward and c.noise_dim == 4
    net = AdversaryPolicy.for_family(
        fam,
        noise_dim=c.noise_dim,
        conv_channels=c.conv_channels,
        kernel_size=c.kernel_size,
        time_embedding=c.time_embedding,
        hidden_size=c.hidden_size,
        head_sizes=c.head_sizes,
        critic_sizes=c.critic_sizes,
        activation=c.activation,
    )
    assert not net.is_recurrent and net.actor[0].in_features == 1036 and net.actor[0].out_features == 256
    assert len(net.critic) == 1 and net.critic[0].in_features == 1036
    assert fam.allowed_tokens([]).sum() == 100 and not fam.allowed_tokens([5, 7])[[5, 7, 100]].any()


def test_tiny_views_are_padded():
    net = AdversaryPolicy((2, 1, 4), vocab_size=7, max_tokens=3, conv_channels=(4,), hidden_size=0)
    obs = {
        "image": torch.zeros(3, 2, 1, 4),
        "time_step": torch.zeros(3, dtype=torch.long),
        "noise": torch.rand(3, 50),
    }
    dist, value, _ = net(obs, None, torch.ones(3))
    assert dist.probs.shape == (3, 7) and value.shape == (3,) and not net.is_recurrent


def learned_storage(teacher):
    """The rollout storage of the teacher's next PPO step (captured as it is handed to PPO)."""
    seen = []
    original = teacher.ppo.update
    teacher.ppo.update = lambda storage: seen.append(storage) or original(storage)
    return seen


def test_update_gives_regret_as_the_last_tokens_reward():
    fam = ToyFamily()
    teacher = PAIRED(fam, small_config(), seed=0)
    proposal = teacher.propose(4)
    written = proposal.context
    assert proposal.levels == [fam.decode(t) for t in written.tokens]  # played as written, not repaired
    prot = level_results([[0.0], [0.5, 0.1], [0.9], [0.2]])
    ant = level_results([[0.8, 0.0], [0.4], [0.3], [0.6]])
    seen = learned_storage(teacher)
    metrics = teacher.update(proposal, {"protagonist": prot, "antagonist": ant}).scalars
    expected = np.array([0.8, 0.1, 0.0, 0.4])
    storage = seen[0]
    torch.testing.assert_close(storage.rewards[-1], torch.tensor(expected, dtype=torch.float32))
    assert storage.rewards[:-1].eq(0).all() and storage.ends[-1].eq(1).all() and storage.ends[:-1].eq(0).all()
    assert metrics["regret_mean"] == pytest.approx(expected.mean())
    assert metrics["regret_max"] == pytest.approx(0.8)
    assert metrics["protagonist_return"] == pytest.approx(np.mean([0.0, 0.3, 0.9, 0.2]))
    assert metrics["antagonist_return"] == pytest.approx(np.mean([0.4, 0.4, 0.3, 0.6]))
    for key in ("adversary_entropy", "adversary_value_loss", "valid_written"):
        assert np.isfinite(metrics[key])
    assert 0 < metrics["adversary_entropy"] <= np.log(fam.vocab_size) + 1e-6


def test_flexible_regret_and_reward_normalisation():
    fam = ToyFamily()
    prot = level_results([[0.9, 0.1], [0.0]])
    ant = level_results([[0.3], [0.8, 0.0]])
    flexible = PAIRED(fam, small_config(regret="flexible"), seed=0)
    metrics = flexible.update(flexible.propose(2), {"protagonist": prot, "antagonist": ant}).scalars
    assert metrics["regret_mean"] == pytest.approx((0.6 + 0.8) / 2)
    plain = PAIRED(fam, small_config(normalize_reward=True), seed=0)
    seen = learned_storage(plain)
    metrics = plain.update(plain.propose(2), {"protagonist": prot, "antagonist": ant}).scalars
    assert metrics["regret_mean"] == pytest.approx(0.4)
    from ued.normalize import RunningMeanStd

    stats = RunningMeanStd()
    stats.update(np.array([0.0, 0.8]))
    expected = torch.tensor([0.0, 0.8 / stats.std], dtype=torch.float32)  # no clip (dcd)
    torch.testing.assert_close(seen[0].rewards[-1], expected)


def test_bad_settings_and_misuse_fail_clearly():
    fam = ToyFamily()
    with pytest.raises(UsageError, match="regret"):
        small_config(regret="minimax")
    teacher = PAIRED(fam, small_config(), seed=0)
    res = level_results([[0.0], [0.0]])
    proposal = teacher.propose(2)
    with pytest.raises(ValueError, match="antagonist"):
        teacher.update(proposal, {"protagonist": res})
    with pytest.raises(ValueError, match="expected 2"):
        teacher.update(
            proposal, {"protagonist": level_results([[0.0]]), "antagonist": level_results([[0.0]])}
        )


def test_adversary_learns_to_write_levels_where_only_the_antagonist_succeeds():
    """Synthetic students: the antagonist solves exactly the levels whose first token is 2, the protagonist
    never solves anything; the adversary's regret must rise well above its untrained level (1/6)."""
    fam = ToyFamily()
    teacher = PAIRED(fam, small_config(), seed=0)
    regrets = []
    for _ in range(40):
        proposal = teacher.propose(16)
        ant = level_results([[1.0 if lvl.tokens[0] == 2 else 0.0] for lvl in proposal.levels])
        prot = level_results([[0.0] for _ in proposal.levels])
        report = teacher.update(proposal, {"protagonist": prot, "antagonist": ant})
        regrets.append(report.scalars["regret_mean"])
    first, last = np.mean(regrets[:5]), np.mean(regrets[-5:])
    assert first < 0.4
    assert last > 0.7 and last > first + 0.4


def test_state_dict_round_trip_resumes_exactly():
    fam = ToyFamily()
    teacher = PAIRED(fam, small_config(normalize_reward=True), seed=3)
    res = level_results([[0.5], [0.0], [1.0]])
    teacher.update(teacher.propose(3), {"protagonist": level_results([[0.0]] * 3), "antagonist": res})
    buf = io.BytesIO()
    torch.save(teacher.state_dict(), buf)
    buf.seek(0)
    state = torch.load(buf, weights_only=True)
    resumed = PAIRED(fam, small_config(normalize_reward=True), seed=99)
    resumed.load_state_dict(state)
    assert resumed.regret_reward.state_dict() == teacher.regret_reward.state_dict()
    for a, b in zip(resumed.adversary.parameters(), teacher.adversary.parameters()):
        assert torch.equal(a, b)
    a, b = teacher.propose(8), resumed.propose(8)
    assert a.levels == b.levels
    # optimizer state came back too: the same update gives the same parameters
    results = {"protagonist": level_results([[0.0]] * 8), "antagonist": level_results([[1.0]] * 8)}
    teacher.update(a, results)
    resumed.update(b, results)
    for a, b in zip(resumed.adversary.parameters(), teacher.adversary.parameters()):
        torch.testing.assert_close(a, b)


def test_same_seed_same_adversary_and_levels():
    fam = ToyFamily()
    a, b = PAIRED(fam, small_config(), seed=5), PAIRED(fam, small_config(), seed=5)
    assert count_parameters(a.adversary) == count_parameters(b.adversary)
    assert all(torch.equal(p, q) for p, q in zip(a.adversary.parameters(), b.adversary.parameters()))
    assert a.propose(6).levels == b.propose(6).levels
    c = PAIRED(fam, small_config(), seed=6)
    assert any(not torch.equal(p, q) for p, q in zip(a.adversary.parameters(), c.adversary.parameters()))


def test_paired_trains_end_to_end_through_the_runner_and_resumes(tmp_path):
    from ued.checkpoint import load_checkpoint
    from ued.config import TrainConfig
    from ued.runner import train

    run_dir = tmp_path / "paired"
    config = {
        "teacher": "paired",
        "teacher_options": {
            "conv_channels": 8,
            "ppo": {"lr": 1e-3},
        },  # a small adversary keeps the test quick
        "env": "maze",
        "num_envs": 4,
        "num_steps": 16,
        "run_dir": str(run_dir),
        "image_interval": 1,
    }
    summary = train(TrainConfig(total_steps=2 * 4 * 16, **config), progress=False)
    assert summary["updates"] == 2 and summary["steps"] == 128
    state = load_checkpoint(run_dir / "checkpoint.pt")
    assert set(state["students"]) == {"protagonist", "antagonist"}
    adversary = state["teacher"]["adversary"]
    assert adversary["convs.0.weight"].shape[0] == 8 and state["teacher"]["ppo"]["optimizer"]["state"]
    before = {k: v.clone() for k, v in adversary.items() if isinstance(v, torch.Tensor)}
    summary = train(TrainConfig(total_steps=3 * 4 * 16, **config), resume=True, progress=False)
    assert summary["updates"] == 3
    after = load_checkpoint(run_dir / "checkpoint.pt")["teacher"]["adversary"]
    assert any(not torch.equal(before[k], after[k]) for k in before)  # the adversary kept learning


def test_incremental_input_projection_matches_the_plain_adversary_with_gradients():
    # the published layout (conv -> LSTM) at small sizes: write real mazes, then evaluate them both ways
    torch.manual_seed(0)
    fam = make_family("maze")
    net = AdversaryPolicy.for_family(fam, conv_channels=(8,), hidden_size=16, time_embedding=4)
    written = write_levels(fam, net, 3, rng=np.random.default_rng(0))
    flat = flatten_time(written.obs)
    used = [*net.convs.parameters(), *net.time_step.parameters(), *net.core.parameters()]

    def features_and_grads(sequence_features):
        out = sequence_features(flat, written.state0, written.dones)
        probe = torch.linspace(-1, 1, out.numel()).view_as(out)
        return [out.detach(), *torch.autograd.grad((out * probe).sum(), used)]

    got = features_and_grads(net.sequence_features)
    plain = features_and_grads(lambda *a: EncoderPolicy.sequence_features(net, *a))
    for g, e in zip(got, plain, strict=True):
        # gradients are sums over thousands of steps x positions: float32 rounding, relative to their largest
        torch.testing.assert_close(g, e, rtol=1e-4, atol=1e-5 * max(1.0, e.abs().max().item()))
    # and PPO re-evaluates the log-probabilities the adversary wrote with
    with torch.no_grad():
        log_probs, _, values = net.evaluate_sequence(
            written.obs, written.state0, written.dones, written.actions
        )
    torch.testing.assert_close(log_probs, written.log_probs, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(values, written.values, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    "layout", [{}, {"hidden_size": 0}, {"input_fc": (8,)}], ids=["lstm", "ff", "input_fc"]
)
def test_a_checkpoint_with_channel_major_conv_features_is_converted_on_load(layout):
    # a state as ued wrote it before the position-major conv features: the same network, its conv-reading
    # columns (and their Adam moments) in channel-major order, and no extra state
    fam = ToyFamily()
    teacher = PAIRED(fam, small_config(**layout), seed=3)
    res = {"protagonist": level_results([[0.0]] * 3), "antagonist": level_results([[0.5], [0.0], [1.0]])}
    teacher.update(teacher.propose(3), res)
    state = copy.deepcopy(teacher.state_dict())
    C, G = teacher.adversary.conv_output_shape()

    def channel_major(w):
        head = w[:, : C * G].reshape(w.shape[0], G, C).transpose(1, 2).reshape(w.shape[0], C * G)
        return torch.cat([head, w[:, C * G :]], dim=1)

    names = [name for name, _ in teacher.adversary.named_parameters()]
    old = state["adversary"]
    del old["_extra_state"]
    for name in teacher.adversary.conv_feature_readers():
        old[name] = channel_major(old[name])
        moments = state["ppo"]["optimizer"]["state"][names.index(name)]
        moments["exp_avg"], moments["exp_avg_sq"] = (
            channel_major(moments["exp_avg"]),
            channel_major(moments["exp_avg_sq"]),
        )
    resumed = PAIRED(fam, small_config(**layout), seed=99)
    resumed.load_state_dict(state)
    for a, b in zip(resumed.adversary.parameters(), teacher.adversary.parameters(), strict=True):
        assert torch.equal(a, b)
    for key, value in teacher.ppo.optimizer.state_dict()["state"].items():
        got = resumed.ppo.optimizer.state_dict()["state"][key]
        assert all(torch.equal(got[k], v) for k, v in value.items())
    # weights saved with conv features in an order this ued does not know are refused
    state["adversary"] = {**resumed.adversary.state_dict(), "_extra_state": {"conv_features": "other"}}
    with pytest.raises(ValueError, match="another order"):
        PAIRED(fam, small_config(**layout), seed=0).load_state_dict(state)
