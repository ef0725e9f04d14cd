"""Policy networks: the published maze student's shapes, and batched sequence evaluation == stepping."""

from __future__ import annotations

import torch
from torch import nn

from ued.models import EncoderPolicy, MazePolicy, beta_from_params, deterministic_action, lstm_sequence, mlp

torch.set_num_threads(1)


def maze_obs(*batch: int, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        "image": torch.randint(0, 11, (*batch, 5, 5, 3), generator=g, dtype=torch.uint8),
        "direction": torch.randint(0, 4, tuple(batch), generator=g),
    }


def test_maze_policy_shapes_and_published_sizes():
    torch.manual_seed(0)
    policy = MazePolicy()
    assert policy.is_recurrent
    assert policy.conv.out_channels == 16 and policy.conv.kernel_size == (3, 3)
    assert policy.core.hidden_size == 256
    assert [m.out_features for m in policy.actor if isinstance(m, nn.Linear)] == [32, 32, 7]
    assert [m.out_features for m in policy.critic if isinstance(m, nn.Linear)] == [32, 32, 1]
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


def stepwise(policy, obs, state, dones, actions):
    lps, ents, vals = [], [], []
    for t in range(dones.shape[0]):
        o = {k: v[t] for k, v in obs.items()}
        dist, value, state = policy(o, state, dones[t])
        lps.append(dist.log_prob(actions[t]))
        ents.append(dist.entropy())
        vals.append(value)
    return torch.stack(lps), torch.stack(ents), torch.stack(vals)


def test_evaluate_sequence_matches_stepwise_forward_with_dones_mid_sequence():
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


class BetaPolicy(EncoderPolicy):
    """A feed-forward continuous policy, as a CarRacing student would be built."""

    def __init__(self):
        super().__init__(4, 0, actor=mlp(4, (8,), 6), critic=mlp(4, (8,), 1))

    def encode(self, obs):
        return obs

    def distribution(self, params):
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
