"""Policy networks: the published maze student's shapes, and batched sequence evaluation == stepping."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ued import models, packed_linear
from ued.models import (
    EncoderPolicy,
    MazePolicy,
    beta_from_params,
    categorical,
    deterministic_action,
    lstm_sequence,
    mlp,
)

torch.set_num_threads(1)


def maze_obs(*batch: int, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        "image": torch.randint(0, 11, (*batch, 5, 5, 3), generator=g, dtype=torch.uint8),
        "direction": torch.randint(0, 4, tuple(batch), generator=g),
    }


def test_maze_policy_shapes_and_published_sizes():
    """dcd models/multigrid_models.py MultigridNetwork, models/common.py (its "(32, 32)" heads are one tanh
    layer of 32), util/__init__.py (image / 10), one-hot direction through Linear(4, 5)."""
    torch.manual_seed(0)
    policy = MazePolicy()
    assert policy.is_recurrent and policy.image_scale == 10.0
    assert policy.conv.out_channels == 16 and policy.conv.kernel_size == (3, 3)
    assert policy.core.hidden_size == 256 and policy.core.input_size == 16 * 9 + 5
    assert (policy.direction.in_features, policy.direction.out_features) == (4, 5)
    assert [m.out_features for m in policy.actor if isinstance(m, nn.Linear)] == [32, 7]
    assert [m.out_features for m in policy.critic if isinstance(m, nn.Linear)] == [32, 1]
    assert isinstance(policy.actor[1], nn.Tanh) and isinstance(policy.critic[1], nn.Tanh)
    state = policy.initial_state(4, "cpu")
    assert state[0].shape == (1, 4, 256)
    dist, value, state = policy(maze_obs(4), state, torch.ones(4))
    action = dist.sample()
    assert action.shape == (4,) and value.shape == (4,)
    assert dist.log_prob(action).shape == (4,) and dist.entropy().shape == (4,)
    # fresh policy: near-uniform over 7 actions (small output gain)
    assert torch.allclose(dist.entropy(), torch.full((4,), torch.log(torch.tensor(7.0)).item()), atol=0.05)


def test_done_resets_state_in_forward():
    torch.manual_seed(0)
    policy = MazePolicy(hidden_size=16)
    obs = maze_obs(3)
    state = policy.initial_state(3)
    _, _, state = policy(obs, state, torch.ones(3))
    _, _, state = policy(maze_obs(3, seed=1), state, torch.zeros(3))
    # env 1 starts a new episode: same output as from a zero state; env 0 continues: different
    _, v_reset, _ = policy(obs, state, torch.tensor([0.0, 1.0, 0.0]))
    _, v_fresh, _ = policy(obs, policy.initial_state(3), torch.ones(3))
    assert torch.allclose(v_reset[1], v_fresh[1])
    assert not torch.allclose(v_reset[0], v_fresh[0])


needs_onednn = pytest.mark.skipif(not packed_linear.AVAILABLE, reason="folded rollout steps: x86 oneDNN")


@needs_onednn
@pytest.mark.parametrize(
    "options",
    [{}, {"head_sizes": (32, 16), "activation": "relu"}, {"view_size": 7, "hidden_size": 48}],
    ids=["published", "deeper-relu-heads", "view-7"],
)
def test_maze_rollout_step_through_folded_weights_equals_the_layers(options, monkeypatch):
    torch.manual_seed(0)
    policy = MazePolicy(**options)
    for p in policy.parameters():  # weights of a trained size, not the near-zero initial heads
        p.data.normal_(0.0, 0.3)
    B, V = 9, policy.view_size
    g = torch.Generator().manual_seed(1)
    obs = {
        "image": torch.randint(0, 11, (B, V, V, 3), generator=g, dtype=torch.uint8),
        "direction": torch.arange(B) % 4,
    }
    state = tuple(torch.randn(1, B, policy.hidden_size, generator=g) for _ in range(2))
    done = (torch.arange(B) % 3 == 0).float()
    folds, fold = [], models._MazeRolloutWeights.of
    monkeypatch.setattr(models._MazeRolloutWeights, "of", lambda *a: folds.append(fold(*a)) or folds[-1])
    with torch.no_grad():
        dist0, value0, (h0, c0) = EncoderPolicy.forward(policy, obs, state, done)
        with packed_linear.frozen_weights():
            dist1, value1, (h1, c1) = policy(obs, state, done)
            dist2, _, (h2, _) = policy(obs, (h1, c1), torch.zeros(B))
        assert len(folds) == 1 and folds[0] is not None  # folded once per block, and used
        float_obs = {"image": obs["image"].float(), "direction": obs["direction"]}
        with packed_linear.frozen_weights():
            dist4 = policy(float_obs, state, done)[0]
        assert torch.equal(float_obs["image"], obs["image"].float())  # the caller's observation untouched
        torch.testing.assert_close(dist4.logits, dist1.logits)
        dist3, _, (h3, _) = EncoderPolicy.forward(policy, obs, (h0, c0), torch.zeros(B))
    for got, want in [(dist1.logits, dist0.logits), (value1, value0), (h1, h0), (c1, c0), (h2, h3)]:
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(dist2.logits, dist3.logits, rtol=1e-5, atol=1e-5)


def test_merged_heads_only_for_heads_of_one_shape():
    act = nn.Tanh
    assert models.MergedHeads.of(mlp(8, [4], 3, act), mlp(8, [4], 1, act)) is not None
    assert models.MergedHeads.of(mlp(8, [4, 4], 3, act), mlp(8, [4], 1, act)) is None
    assert models.MergedHeads.of(mlp(8, [4], 3, nn.Tanh), mlp(8, [4], 1, nn.ReLU)) is None
    assert models.MergedHeads.of(mlp(8, [4], 3, act), mlp(8, [4], 2, act)) is None  # 2 values
    assert models.MergedHeads.of(nn.Linear(8, 3), nn.Linear(8, 1)) is None  # not Sequential
    hooked = mlp(8, [4], 1, act)
    hooked[0].register_forward_hook(lambda module, inputs, output: output * 2)
    assert models.MergedHeads.of(mlp(8, [4], 3, act), hooked) is None  # a hook changes what the layer does
    leaky = [mlp(8, [4], 3, nn.LeakyReLU), mlp(8, [4], 1, nn.LeakyReLU)]
    assert models.MergedHeads.of(*leaky) is None  # only activations known to act element-wise alike

    class Scaled(nn.Linear):
        def forward(self, x):
            return 2 * super().forward(x)

    actor = nn.Sequential(Scaled(8, 4), nn.Tanh(), nn.Linear(4, 3))
    assert models.MergedHeads.of(actor, mlp(8, [4], 1, act)) is None  # a layer's own forward is kept
    x = torch.randn(5, 8)
    torch.testing.assert_close(models.run_heads(actor, mlp(8, [4], 1, act), x)[0], actor(x))


def test_maze_policies_that_the_fold_would_change_step_through_their_layers():
    class OwnEncoder(MazePolicy):
        def encode(self, obs):
            return super().encode(obs) * 2

    padded = MazePolicy(hidden_size=16)
    padded.conv = nn.Conv2d(3, 16, kernel_size=3, padding=1)
    for policy in (OwnEncoder(hidden_size=16), padded, MazePolicy(view_size=15, hidden_size=16)):
        assert models._MazeRolloutWeights.of(policy, 4) is None
    assert (
        models._MazeRolloutWeights.of(MazePolicy(hidden_size=16), 4) is not None
        or not packed_linear.AVAILABLE
    )


@pytest.mark.parametrize(
    "critic",
    [mlp(16, [8], 1, nn.Tanh), mlp(16, [8, 4], 1, nn.ReLU), nn.Linear(16, 1)],
    ids=["same-shape", "deeper", "not-sequential"],
)
def test_run_heads_equals_the_heads_with_gradients(critic):
    torch.manual_seed(0)
    actor = mlp(16, [8], 5, nn.Tanh)
    x = torch.randn(40, 16, requires_grad=True)
    want = (actor(x), critic(x))
    weights = [x, *actor.parameters(), *critic.parameters()]
    grads_want = torch.autograd.grad(want[0].square().sum() + want[1].sum(), weights)
    got = models.run_heads(actor, critic, x)
    grads_got = torch.autograd.grad(got[0].square().sum() + got[1].sum(), weights)
    for g, w in zip([*got, *grads_got], [*want, *grads_want], strict=True):
        torch.testing.assert_close(g, w, rtol=1e-5, atol=1e-6)


@needs_onednn
def test_a_maze_policy_with_heads_that_cannot_merge_steps_through_its_layers():
    torch.manual_seed(0)
    policy = MazePolicy(hidden_size=16)
    policy.critic = mlp(16, [8, 8], 1, nn.Tanh)  # deeper than the actor
    B = 4
    state = policy.initial_state(B)
    with torch.no_grad():
        want = EncoderPolicy.forward(policy, maze_obs(B), state, torch.ones(B))[1]
        with packed_linear.frozen_weights():
            got = policy(maze_obs(B), state, torch.ones(B))[1]
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def stepwise(policy, obs, state, dones, actions):
    lps, ents, vals = [], [], []
    for t in range(dones.shape[0]):
        o = {k: v[t] for k, v in obs.items()}
        dist, value, state = policy(o, state, dones[t])
        lps.append(dist.log_prob(actions[t]))
        ents.append(dist.entropy())
        vals.append(value)
    return torch.stack(lps), torch.stack(ents), torch.stack(vals)


@pytest.mark.parametrize("stepwise_above", [0, 10**9], ids=["chunks", "steps"])
def test_evaluate_sequence_matches_stepwise_forward_with_dones_mid_sequence(monkeypatch, stepwise_above):
    # both lstm_sequence methods: fused chunks (never stepwise) and the stepwise recurrence (always)
    monkeypatch.setattr(models, "STEPWISE_ABOVE", stepwise_above)
    torch.manual_seed(0)
    policy = MazePolicy(hidden_size=32)
    T, B = 12, 5
    obs = maze_obs(T, B)
    dones = torch.zeros(T, B)
    dones[0, :] = torch.tensor([1.0, 0, 1, 0, 0])
    dones[3, 1] = 1
    dones[7, 0] = dones[7, 4] = 1
    dones[11, 2] = 1
    actions = torch.randint(0, 7, (T, B))
    state0 = tuple(torch.randn_like(s) for s in policy.initial_state(B))
    with torch.no_grad():
        expected = stepwise(policy, obs, state0, dones, actions)
        got = policy.evaluate_sequence(obs, state0, dones, actions)
    for e, g in zip(expected, got, strict=True):
        assert g.shape == (T, B)
        torch.testing.assert_close(g, e, rtol=1e-5, atol=1e-5)
    # and the generic (unbatched) Policy fallback agrees too
    from ued.models import Policy

    with torch.no_grad():
        generic = Policy.evaluate_sequence(policy, obs, state0, dones, actions)
    for e, g in zip(expected, generic, strict=True):
        torch.testing.assert_close(g, e, rtol=1e-5, atol=1e-5)


def test_lstm_sequence_without_dones_is_one_call():
    lstm = nn.LSTM(3, 4)
    x = torch.randn(6, 2, 3)
    state = (torch.randn(1, 2, 4), torch.randn(1, 2, 4))
    out, _ = lstm_sequence(lstm, x, state, torch.zeros(6, 2))
    ref, _ = lstm(x, state)
    torch.testing.assert_close(out, ref)


def stepped_lstm(lstm, x, state, dones):
    """Reference: one nn.LSTM call per step with the state masked where an episode starts (autograd)."""
    outs = []
    h, c = state
    for t in range(x.shape[0]):
        keep = (1.0 - dones[t]).view(1, -1, 1)
        out, (h, c) = lstm(x[t : t + 1], (h * keep, c * keep))
        outs.append(out)
    return torch.cat(outs), (h, c)


def lstm_grads(fn, lstm, x, state, dones):
    """Outputs, final state and the gradients of a fixed random function of them."""
    leaves = [x, *state, *lstm.parameters()]
    out, (h, c) = fn(lstm, x, state, dones)
    g = torch.Generator().manual_seed(1)
    w = torch.randn(out.shape, generator=g)
    loss = (out.float() * w).sum() + 0.3 * h.sum() + 0.7 * c.sum()
    return [out.detach(), h.detach(), c.detach(), *torch.autograd.grad(loss, leaves)]


@pytest.mark.parametrize("method", ["auto", "chunks", "steps"])
@pytest.mark.parametrize("start_rate", [0.02, 0.5])
@pytest.mark.parametrize("onednn", [True, False], ids=["onednn-products", "torch-products"])
def test_lstm_sequence_matches_stepping_with_gradients(method, start_rate, onednn, monkeypatch):
    if onednn and not packed_linear.AVAILABLE:
        pytest.skip("oneDNN's packed products: x86 CPUs with oneDNN")
    monkeypatch.setattr(packed_linear, "AVAILABLE", onednn)  # the stepwise recurrence's products
    torch.manual_seed(0)
    T, B, F_in, H = 24, 5, 7, 6
    lstm = nn.LSTM(F_in, H)
    for p in lstm.parameters():
        nn.init.normal_(p, std=0.5)
    x = torch.randn(T, B, F_in, requires_grad=True)
    state = (torch.randn(1, B, H, requires_grad=True), torch.randn(1, B, H, requires_grad=True))
    dones = (torch.rand(T, B) < start_rate).float()
    dones[0, 1] = 1.0
    expected = lstm_grads(stepped_lstm, lstm, x, state, dones)
    got = lstm_grads(lambda *a: lstm_sequence(*a, method=method), lstm, x, state, dones)
    for e, g in zip(expected, got, strict=True):
        assert g.dtype == torch.float32 and g.shape == e.shape
        torch.testing.assert_close(g, e, rtol=1e-5, atol=1e-5)


def test_lstm_sequence_steps_under_bf16_autocast_stays_close():
    torch.manual_seed(0)
    T, B, F_in, H = 32, 4, 9, 16
    lstm = nn.LSTM(F_in, H)
    x = torch.randn(T, B, F_in, requires_grad=True)
    state = (torch.zeros(1, B, H, requires_grad=True), torch.zeros(1, B, H, requires_grad=True))
    dones = (torch.rand(T, B) < 0.1).float()

    def bf16(*args):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return lstm_sequence(*args, method="steps")

    expected = lstm_grads(stepped_lstm, lstm, x, state, dones)
    got = lstm_grads(bf16, lstm, x, state, dones)
    for e, g in zip(expected, got, strict=True):
        assert g.dtype == torch.float32
        # bfloat16 products: ~3 significant digits
        torch.testing.assert_close(g, e, rtol=0.05, atol=0.02 * e.abs().max().item())
        assert not torch.equal(g, e)


def test_lstm_sequence_rejects_unknown_method():
    lstm = nn.LSTM(3, 4)
    with pytest.raises(ValueError, match="method"):
        lstm_sequence(
            lstm, torch.randn(2, 1, 3), (torch.zeros(1, 1, 4), torch.zeros(1, 1, 4)), torch.zeros(2, 1), "x"
        )


def test_categorical_matches_torch_categorical_draws_and_densities():
    from torch.distributions import Categorical

    logits = torch.randn(6, 7)
    ours, ref = categorical(logits), Categorical(logits=logits)
    torch.manual_seed(3)
    a = ours.sample()
    torch.manual_seed(3)
    b = ref.sample()
    assert torch.equal(a, b) and a.shape == (6,)
    torch.testing.assert_close(ours.log_prob(a), ref.log_prob(a))
    torch.testing.assert_close(ours.entropy(), ref.entropy())
    torch.testing.assert_close(ours.probs, ref.probs)
    assert torch.equal(ours.mode, ref.mode)
    assert ours.sample((3,)).shape == (3, 6)
    # broadcasting log_prob still takes the general path
    assert ours.log_prob(torch.zeros(2, 6, dtype=torch.long)).shape == (2, 6)


class BetaPolicy(EncoderPolicy):
    """A feed-forward continuous policy, as a CarRacing student would be built."""

    def __init__(self):
        super().__init__(4, 0, actor=mlp(4, (8,), 6), critic=mlp(4, (8,), 1))

    def encode(self, obs):
        return obs

    def distribution(self, params, obs=None):
        return beta_from_params(params)


def test_feed_forward_beta_policy_sequence_and_mode():
    torch.manual_seed(0)
    policy = BetaPolicy()
    assert not policy.is_recurrent and policy.initial_state(3) is None
    dist, value, state = policy(torch.randn(3, 4), None, torch.zeros(3))
    a = dist.sample()
    assert a.shape == (3, 3) and ((a >= 0) & (a <= 1)).all()
    assert dist.log_prob(a).shape == (3,) and value.shape == (3,) and state is None
    assert deterministic_action(dist).shape == (3, 3)
    obs = torch.randn(5, 3, 4)
    actions = torch.rand(5, 3, 3).clamp(0.01, 0.99)
    lp, ent, val = policy.evaluate_sequence(obs, None, torch.zeros(5, 3), actions)
    torch.testing.assert_close(lp[2], policy(obs[2], None, torch.zeros(3))[0].log_prob(actions[2]))
    assert ent.shape == val.shape == (5, 3)
