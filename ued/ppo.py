"""PPO for any `ued.models.Policy`: rollout storage, GAE (a pure function) and the clipped-surrogate update.

Students and teachers share this code. A teacher's rollout is T = tokens per level, N = levels, with its
reward only at the last step (`done` there too).

Done conventions (one word, two places):
- the policy's `done` input at step t (stored as `storage.starts[t]`) is 1 where a new episode *starts* at
  step t, so the recurrent state is reset before acting;
- `insert(..., done=...)` / `compute_gae(dones=...)` take 1 where the episode *ended* with step t (no
  bootstrapping across it). Time-limit truncations count as ends, as in dcd.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ued.config import PPOConfig
from ued.models import Policy, State


def _map(x: Any, fn) -> Any:
    """Apply `fn` to a tensor, or to every tensor of a dict / tuple (None stays None)."""
    if x is None:
        return None
    if isinstance(x, dict):
        return {k: fn(v) for k, v in x.items()}
    if isinstance(x, tuple):
        return tuple(fn(v) for v in x)
    return fn(x)


def compute_gae(
    rewards: torch.Tensor,
    values: torch.Tensor,
    dones: torch.Tensor,
    last_value: torch.Tensor,
    gamma: float,
    lam: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation over a [T, N] rollout.

    rewards, values, dones: [T, N], with dones[t] = 1 where the episode ended with step t; last_value [N]
    is the value of the observation after the last step. Returns (advantages, returns), both [T, N], with
    returns = advantages + values.
    """
    T = rewards.shape[0]
    not_done = 1.0 - dones.float()
    next_values = torch.cat([values[1:], last_value.float().unsqueeze(0)])
    # the per-step arithmetic of the recursion below, all steps at once (the same operations, so float32
    # rollouts get the bits of the step-by-step recursion: tests/test_ppo.py)
    deltas = rewards + gamma * next_values * not_done - values
    decays = gamma * lam * not_done
    advantages = torch.zeros_like(rewards, dtype=torch.float32)
    gae = torch.zeros_like(last_value, dtype=torch.float32)
    scratch = torch.empty_like(gae)
    for t in range(T - 1, -1, -1):  # gae_t = delta_t + gamma lam (1 - done_t) gae_{t+1}
        gae = torch.add(deltas[t], torch.mul(decays[t], gae, out=scratch), out=advantages[t])
    return advantages, advantages + values


class RolloutStorage:
    """T x N buffers of one rollout: observations (tensor or dict of tensors), actions, log-probs, values,
    rewards, episode starts/ends and the recurrent state before step 0. Buffers are allocated on the first
    `insert` from the shapes and dtypes seen, and reused by later rollouts.

    Use: `begin(state0, start0)`, then `insert(...)` T times, then `compute_returns(last_value, ...)`.
    """

    def __init__(self, num_steps: int, num_envs: int, device: torch.device | str = "cpu"):
        self.num_steps = num_steps
        self.num_envs = num_envs
        self.device = torch.device(device)
        self.obs: Any = None
        self.actions: torch.Tensor | None = None
        T, N = num_steps, num_envs
        z = lambda: torch.zeros(T, N, device=self.device)
        self.log_probs, self.values, self.rewards = z(), z(), z()
        #: starts[t] = 1 where a new episode starts at step t (the policy's `done` input)
        self.starts = z()
        #: ends[t] = 1 where the episode ended with step t
        self.ends = z()
        self.advantages, self.returns = z(), z()
        self.state0: State = None
        self.step = 0

    def _alloc(self, x: torch.Tensor) -> torch.Tensor:
        return torch.zeros((self.num_steps, *x.shape), dtype=x.dtype, device=self.device)

    def begin(self, state0: State, start0: torch.Tensor) -> None:
        """Start a new rollout from recurrent state `state0` with `start0` [N] the first `done` input."""
        self.state0 = _map(state0, lambda s: s.detach().clone())
        self.step = 0
        self._start_next = start0.float().to(self.device)

    @torch.no_grad()
    def insert(
        self,
        obs: Any,
        action: torch.Tensor,
        log_prob: torch.Tensor,
        value: torch.Tensor,
        reward: torch.Tensor,
        done: torch.Tensor,
    ) -> None:
        """Record step t: the observation acted on, the action, its log-prob and value, the reward and
        `done` [N] (1 where the episode ended with this step)."""
        t = self.step
        if t >= self.num_steps:
            raise RuntimeError(f"rollout storage is full ({self.num_steps} steps); call begin() first")
        if self.obs is None:
            self.obs = _map(obs, self._alloc)
            self.actions = self._alloc(action)
        if isinstance(obs, dict):
            for k, v in obs.items():
                self.obs[k][t].copy_(v)
        else:
            self.obs[t].copy_(obs)
        self.actions[t].copy_(action)
        self.log_probs[t].copy_(log_prob)
        self.values[t].copy_(value)
        self.rewards[t].copy_(reward)
        self.starts[t].copy_(self._start_next)
        self.ends[t].copy_(done)
        self._start_next = self.ends[t]
        self.step = t + 1

    @torch.no_grad()
    def compute_returns(self, last_value: torch.Tensor, gamma: float, lam: float) -> None:
        """GAE advantages and returns of the full rollout; `last_value` [N] bootstraps unfinished episodes."""
        if self.step != self.num_steps:
            raise RuntimeError(f"rollout has {self.step} of {self.num_steps} steps")
        self.advantages, self.returns = compute_gae(
            self.rewards, self.values, self.ends, last_value.to(self.device), gamma, lam
        )

    def minibatches(
        self, num_minibatches: int, recurrent: bool, advantages: torch.Tensor, generator: torch.Generator
    ) -> Iterator[dict[str, Any]]:
        """Random minibatches. Recurrent policies: whole env columns (sequences kept intact, state0 sliced);
        feed-forward: random samples over all T*N, as sequences of length 1."""
        T, N = self.num_steps, self.num_envs
        if recurrent:
            num_minibatches = max(1, min(num_minibatches, N))
            perm = torch.randperm(N, generator=generator)
            for idx in perm.chunk(num_minibatches):
                if num_minibatches == 1:
                    idx = slice(None)  # whole batch: no gather copies
                yield {
                    "obs": _map(self.obs, lambda x, i=idx: x[:, i]),
                    "state0": _map(self.state0, lambda s, i=idx: s[:, i]),
                    "starts": self.starts[:, idx],
                    "actions": self.actions[:, idx],
                    "log_probs": self.log_probs[:, idx],
                    "values": self.values[:, idx],
                    "returns": self.returns[:, idx],
                    "advantages": advantages[:, idx],
                }
        else:
            num_minibatches = max(1, min(num_minibatches, T * N))
            perm = torch.randperm(T * N, generator=generator)
            flat = lambda x: x.reshape(1, T * N, *x.shape[2:])
            for idx in perm.chunk(num_minibatches):
                pick = lambda x, i=idx: flat(x)[:, i]
                yield {
                    "obs": _map(self.obs, pick),
                    "state0": None,
                    "starts": torch.zeros(1, len(idx), device=self.device),
                    "actions": pick(self.actions),
                    "log_probs": pick(self.log_probs),
                    "values": pick(self.values),
                    "returns": pick(self.returns),
                    "advantages": pick(advantages),
                }


class PPOError(RuntimeError):
    """The PPO loss or its gradient is not finite; the optimizer was not stepped."""


#: added to the advantages' std before normalising them (dcd's algos/ppo.py)
ADVANTAGE_EPS = 1e-5


class PPO:
    """Clipped-surrogate PPO with a clipped (or smooth-L1) value loss, entropy bonus, gradient-norm clipping and advantage
    normalisation (over the whole rollout), `epochs` passes of `num_minibatches` minibatches."""

    def __init__(self, policy: Policy, config: PPOConfig, seed: int = 0):
        self.policy = policy
        self.config = config
        self.optimizer = make_adam(policy.parameters(), lr=config.lr, eps=config.eps)
        #: shuffles minibatches (kept apart from the global torch RNG used for action sampling)
        self.generator = torch.Generator().manual_seed(seed)

    def loss(self, batch: dict[str, Any]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The PPO loss of one minibatch and its parts (detached)."""
        c = self.config
        device_type = batch["starts"].device.type
        with torch.autocast(device_type, dtype=torch.bfloat16, enabled=c.bf16):
            log_prob, entropy, value = self.policy.evaluate_sequence(
                batch["obs"], batch["state0"], batch["starts"], batch["actions"]
            )
        log_prob, entropy, value = log_prob.float(), entropy.float(), value.float()
        adv = batch["advantages"]
        ratio = torch.exp(log_prob - batch["log_probs"])
        surrogate = torch.min(ratio * adv, ratio.clamp(1.0 - c.clip, 1.0 + c.clip) * adv)
        policy_loss = -surrogate.mean()
        old_value, returns = batch["values"], batch["returns"]
        if c.value_loss == "smooth_l1":
            value_loss = F.smooth_l1_loss(value, returns)
        else:
            value_clipped = old_value + (value - old_value).clamp(-c.clip, c.clip)
            value_loss = 0.5 * torch.max((value - returns) ** 2, (value_clipped - returns) ** 2).mean()
        entropy_mean = entropy.mean()
        loss = policy_loss + c.value_coef * value_loss - c.entropy_coef * entropy_mean
        with torch.no_grad():
            parts = {
                "policy_loss": policy_loss.detach(),
                "value_loss": value_loss.detach(),
                "entropy": entropy_mean.detach(),
                "approx_kl": ((ratio - 1) - torch.log(ratio)).mean(),
                "clip_fraction": ((ratio - 1.0).abs() > c.clip).float().mean(),
            }
        return loss, parts

    def update(self, storage: RolloutStorage) -> dict[str, float]:
        """`epochs` passes over the rollout in `storage` (after `compute_returns`); returns mean losses,
        entropy, approx KL, clip fraction, gradient norm and the value function's explained variance.
        Raises PPOError (without stepping the optimizer) when the loss or its gradient is not finite."""
        c = self.config
        adv = storage.advantages
        adv = (adv - adv.mean()) / (adv.std() + ADVANTAGE_EPS)
        params = [p for p in self.policy.parameters() if p.requires_grad]
        totals: dict[str, float] = {}
        count = 0
        self.policy.train()
        for _ in range(c.epochs):
            for batch in storage.minibatches(
                c.num_minibatches, self.policy.is_recurrent, adv, self.generator
            ):
                loss, parts = self.loss(batch)
                if not torch.isfinite(loss):
                    raise PPOError(
                        f"PPO loss is {loss.item()} (policy {parts['policy_loss'].item()}, value "
                        f"{parts['value_loss'].item()}); lower the learning rate or check the rewards"
                    )
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                grad_norm = nn.utils.clip_grad_norm_(params, c.max_grad_norm)
                if not torch.isfinite(grad_norm):
                    self.optimizer.zero_grad(set_to_none=True)
                    raise PPOError("PPO gradient is not finite; lower the learning rate or check the inputs")
                self.optimizer.step()
                if not all_finite(params):
                    raise PPOError(
                        "the weights stopped being finite after an optimizer step; lower the learning rate"
                    )
                parts["grad_norm"] = grad_norm
                parts["loss"] = loss.detach()
                for k, v in parts.items():
                    totals[k] = totals.get(k, 0.0) + float(v)
                count += 1
        metrics = {k: v / max(count, 1) for k, v in totals.items()}
        metrics["explained_variance"] = explained_variance(storage.values, storage.returns)
        return metrics

    def state_dict(self) -> dict[str, Any]:
        return {"optimizer": self.optimizer.state_dict(), "generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        optimizer = state["optimizer"]
        # a checkpoint written before `make_adam` keeps Adam's multi-tensor kernel unless told otherwise
        groups = [{**g, "fused": True, "foreach": None} for g in optimizer["param_groups"]]
        self.optimizer.load_state_dict({**optimizer, "param_groups": groups})
        self.generator.set_state(state["generator"])


def make_adam(params: Any, lr: float, eps: float) -> torch.optim.Adam:
    """torch's Adam with its fused kernel (one pass per tensor; the PAIRED adversary's 22.5M weights step in
    13 ms instead of 82 ms on one CPU thread). Same update rule as the multi-tensor default, rounded
    differently in the last bits."""
    return torch.optim.Adam(params, lr=lr, eps=eps, fused=True)


def all_finite(tensors: list[torch.Tensor]) -> bool:
    """Whether every element of `tensors` is finite, from one sum per tensor (a NaN or an infinity makes its
    sum non-finite; only weights summing beyond 3e38 would be a false alarm). `isfinite` allocates a mask
    per tensor: 110 ms for the adversary's weights, against 3 ms."""
    with torch.no_grad():
        return not tensors or bool(torch.stack([t.sum() for t in tensors]).isfinite().all())


def explained_variance(values: torch.Tensor, returns: torch.Tensor) -> float:
    """1 - Var[returns - values] / Var[returns] (1 = perfect value function, <= 0 = useless); nan if the
    returns do not vary."""
    var = returns.var().item()
    if not var > 0:
        return math.nan
    return float(1.0 - (returns - values).var().item() / var)
