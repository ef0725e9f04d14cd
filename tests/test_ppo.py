"""GAE against a hand computation, rollout storage, and the PPO update."""

from __future__ import annotations

import pytest
import torch

from ued.config import PPOConfig
from ued.models import MazePolicy
from ued.ppo import PPO, PPOError, RolloutStorage, all_finite, compute_gae

torch.set_num_threads(1)


def test_gae_matches_hand_computation_with_dones():
    gamma, lam = 0.9, 0.8
    rewards = torch.tensor([[1.0], [0.0], [2.0]])
    values = torch.tensor([[0.5], [1.0], [1.5]])
    dones = torch.tensor([[0.0], [1.0], [0.0]])  # episode ends with step 1
    last_value = torch.tensor([3.0])
    # step 2: delta = 2 + 0.9*3 - 1.5 = 3.2; A2 = 3.2
    # step 1: ended -> delta = 0 - 1 = -1; A1 = -1
    # step 0: delta = 1 + 0.9*1.0 - 0.5 = 1.4; A0 = 1.4 + 0.9*0.8*(-1) = 0.68
    adv, ret = compute_gae(rewards, values, dones, last_value, gamma, lam)
    torch.testing.assert_close(adv, torch.tensor([[0.68], [-1.0], [3.2]]))
    torch.testing.assert_close(ret, adv + values)


def test_gae_lambda_one_no_dones_is_discounted_return_minus_value():
    rewards = torch.tensor([[1.0, 0.0], [1.0, 0.0], [1.0, 5.0]])
    values = torch.zeros(3, 2)
    adv, ret = compute_gae(rewards, values, torch.zeros(3, 2), torch.tensor([10.0, 0.0]), 0.5, 1.0)
    torch.testing.assert_close(ret[:, 0], torch.tensor([1 + 0.5 + 0.25 + 1.25, 1 + 0.5 + 2.5, 1 + 5.0]))
    torch.testing.assert_close(ret[:, 1], torch.tensor([1.25, 2.5, 5.0]))
    torch.testing.assert_close(adv, ret)  # values are zero


@pytest.mark.parametrize("shape", [(256, 32), (1, 5), (7, 3)])
def test_gae_equals_the_step_by_step_recursion_bit_for_bit(shape):
    """compute_gae computes each step's delta and decay for all steps at once: the same float32 operations as
    the recursion written step by step, so the same bits."""
    g = torch.Generator().manual_seed(0)
    rewards, values = torch.randn(*shape, generator=g), torch.randn(*shape, generator=g)
    dones, last_value = torch.rand(*shape, generator=g) < 0.1, torch.randn(shape[1], generator=g)
    gamma, lam = 0.995, 0.95
    not_done = 1.0 - dones.float()
    expected = torch.zeros(shape)
    gae, next_value = torch.zeros(shape[1]), last_value
    for t in reversed(range(shape[0])):
        delta = rewards[t] + gamma * next_value * not_done[t] - values[t]
        gae = delta + gamma * lam * not_done[t] * gae
        expected[t], next_value = gae, values[t]
    adv, ret = compute_gae(rewards, values, dones, last_value, gamma, lam)
    assert torch.equal(adv, expected) and torch.equal(ret, expected + values)


def fill(policy, T=16, N=4, seed=0, reward_scale=1.0):
    """A rollout of random observations with a fixed reward rule (action 2 pays), episodes ending mid-way."""
    g = torch.Generator().manual_seed(seed)
    storage = RolloutStorage(T, N)
    state = policy.initial_state(N)
    done = torch.ones(N)
    storage.begin(state, done)
    with torch.no_grad():
        for t in range(T):
            obs = {
                "image": torch.randint(0, 11, (N, 5, 5, 3), generator=g, dtype=torch.uint8),
                "direction": torch.randint(0, 4, (N,), generator=g),
            }
            dist, value, state = policy(obs, state, done)
            action = dist.sample()
            reward = (action == 2).float() * reward_scale
            ended = torch.zeros(N)
            if t % 5 == 4:
                ended[t % N] = 1
            storage.insert(obs, action, dist.log_prob(action), value, reward, ended)
            done = ended
        _, last_value, _ = policy(obs, state, done)
    storage.compute_returns(last_value, 0.99, 0.95)
    return storage


def test_storage_records_starts_from_ends():
    torch.manual_seed(0)
    policy = MazePolicy(hidden_size=8)
    s = fill(policy)
    assert s.starts[0].eq(1).all()
    torch.testing.assert_close(s.starts[1:], s.ends[:-1])
    with pytest.raises(RuntimeError, match="full"):
        s.insert(
            {k: v[0] for k, v in s.obs.items()},
            s.actions[0],
            s.log_probs[0],
            s.values[0],
            s.rewards[0],
            s.ends[0],
        )


def clipped_loss(ppo, storage):
    adv = storage.advantages
    adv = (adv - adv.mean()) / (adv.std() + 1e-8)
    batch = next(storage.minibatches(1, True, adv, torch.Generator().manual_seed(0)))
    with torch.no_grad():
        loss, _ = ppo.loss(batch)
    return loss.item()


@pytest.mark.parametrize("minibatches", [1, 2])
def test_ppo_update_changes_parameters_and_reduces_loss(minibatches):
    torch.manual_seed(0)
    policy = MazePolicy(hidden_size=16)
    storage = fill(policy)
    ppo = PPO(policy, PPOConfig(lr=1e-3, epochs=4, num_minibatches=minibatches), seed=0)
    before = [p.detach().clone() for p in policy.parameters()]
    loss_before = clipped_loss(ppo, storage)
    metrics = ppo.update(storage)
    loss_after = clipped_loss(ppo, storage)
    assert any(not torch.equal(b, p) for b, p in zip(before, policy.parameters(), strict=True))
    assert loss_after < loss_before
    for key in ("policy_loss", "value_loss", "entropy", "approx_kl", "clip_fraction", "grad_norm"):
        assert key in metrics and metrics[key] == metrics[key]  # present and not nan


def test_ppo_learns_to_prefer_the_paying_action():
    torch.manual_seed(0)
    policy = MazePolicy(hidden_size=16)
    ppo = PPO(policy, PPOConfig(lr=3e-3, epochs=4), seed=0)
    probs = []
    for i in range(8):
        storage = fill(policy, seed=i)
        probs.append((storage.actions == 2).float().mean().item())
        ppo.update(storage)
    assert sum(probs[-2:]) / 2 > sum(probs[:2]) / 2 + 0.1


def test_nan_loss_raises_without_stepping_the_optimizer():
    torch.manual_seed(0)
    policy = MazePolicy(hidden_size=8)
    storage = fill(policy)
    storage.returns[3, 1] = float("nan")
    ppo = PPO(policy, PPOConfig(), seed=0)
    before = [p.detach().clone() for p in policy.parameters()]
    with pytest.raises(PPOError, match="not finite|nan"):
        ppo.update(storage)
    assert all(torch.equal(b, p) for b, p in zip(before, policy.parameters(), strict=True))
    assert not ppo.optimizer.state  # Adam never stepped


def test_feed_forward_minibatches_cover_every_sample_once():
    storage = RolloutStorage(3, 4)
    storage.obs = torch.arange(12.0).view(3, 4, 1)
    storage.actions = torch.zeros(3, 4)
    adv = torch.zeros(3, 4)
    seen = torch.cat([b["obs"].flatten() for b in storage.minibatches(5, False, adv, torch.Generator())])
    assert sorted(seen.tolist()) == list(range(12))


def test_bf16_update_loss_stays_close_to_float32():
    torch.manual_seed(0)
    policy = MazePolicy(hidden_size=32)
    storage = fill(policy, T=24, N=4)
    fp32 = clipped_loss(PPO(policy, PPOConfig(), seed=0), storage)
    bf16 = clipped_loss(PPO(policy, PPOConfig(bf16=True), seed=0), storage)
    assert bf16 != fp32  # reduced precision really ran
    assert abs(bf16 - fp32) < 0.02 * max(1.0, abs(fp32))
    before = [p.detach().clone() for p in policy.parameters()]
    metrics = PPO(policy, PPOConfig(bf16=True, lr=1e-3, epochs=2), seed=0).update(storage)
    assert all(torch.isfinite(p).all() for p in policy.parameters())
    assert any(not torch.equal(b, p) for b, p in zip(before, policy.parameters(), strict=True))
    assert metrics["grad_norm"] == metrics["grad_norm"]


def test_all_finite_finds_one_nan_or_infinity_among_the_weights():
    weights = [torch.randn(300, 70), torch.randn(7)]
    assert all_finite(weights)
    for bad in (float("nan"), float("inf"), -float("inf")):
        spoiled = [w.clone() for w in weights]
        spoiled[0][123, 45] = bad
        assert not all_finite(spoiled)
    assert all_finite([torch.full((1000,), 3e30)])  # large but finite weights are not a false alarm


def test_an_optimizer_state_from_before_the_fused_adam_resumes_fused():
    torch.manual_seed(0)
    policy = MazePolicy(hidden_size=8)
    storage = fill(policy)
    old = PPO(policy, PPOConfig(), seed=0)
    old.optimizer = torch.optim.Adam(policy.parameters(), lr=1e-4, eps=1e-5)  # the multi-tensor kernel
    old.update(storage)
    saved = old.state_dict()
    assert saved["optimizer"]["param_groups"][0]["fused"] is None
    new = PPO(policy, PPOConfig(), seed=0)
    new.load_state_dict(saved)
    assert new.optimizer.param_groups[0]["fused"] is True
    assert torch.equal(
        new.optimizer.state_dict()["state"][0]["exp_avg"], saved["optimizer"]["state"][0]["exp_avg"]
    )
    new.update(storage)  # steps with the loaded moments
