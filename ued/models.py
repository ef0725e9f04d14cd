"""Policy networks: the `Policy` interface shared by students and teachers, reusable building blocks, and the
published maze student (`MazePolicy`).

A policy acts one step at a time for B environments (`forward`) and re-evaluates whole rollouts at once for
PPO (`evaluate_sequence`): encoders and heads run batched over all T*B samples, and only the LSTM recurrence
runs over time, in as few chunks as the episode boundaries allow.

To write a new network, subclass `EncoderPolicy`: implement `encode(obs) -> [N, F]` (N samples, any obs
structure with the batch on dim 0) and `distribution(params) -> torch.distributions.Distribution`, and pass
the feature size, the LSTM size (0 = feed-forward) and the heads to its constructor.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.distributions import Beta, Categorical, Distribution, Independent

#: recurrent state: an LSTM's (h, c), each [layers, B, H]; None for feed-forward policies
State = Any


# ----- building blocks ---------------------------------------------------------------------------------
def init_orthogonal(module: nn.Module, gain: float = math.sqrt(2.0)) -> nn.Module:
    """Orthogonal weights with `gain` and zero biases for every Linear / Conv layer in `module` (in place)."""
    for m in module.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d, nn.Conv1d)):
            nn.init.orthogonal_(m.weight, gain=gain)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    return module


def mlp(
    in_size: int,
    hidden: Sequence[int],
    out_size: int | None = None,
    activation: type[nn.Module] = nn.ReLU,
    out_gain: float = 1.0,
) -> nn.Sequential:
    """Linear + activation layers of sizes `hidden`, then an optional linear output layer (orthogonal init,
    `out_gain` on the output: 0.01 for policy logits, 1 for values)."""
    layers: list[nn.Module] = []
    size = in_size
    for h in hidden:
        layers += [init_orthogonal(nn.Linear(size, h)), activation()]
        size = h
    if out_size is not None:
        layers.append(init_orthogonal(nn.Linear(size, out_size), gain=out_gain))
    return nn.Sequential(*layers)


def lstm_initial_state(
    lstm: nn.LSTM, batch: int, device: torch.device | str
) -> tuple[torch.Tensor, torch.Tensor]:
    """Zero (h, c) for `lstm`, each [num_layers, batch, hidden_size]."""
    shape = (lstm.num_layers, batch, lstm.hidden_size)
    return torch.zeros(shape, device=device), torch.zeros(shape, device=device)


def mask_state(state: State, done: torch.Tensor) -> State:
    """The state with the envs where `done` [B] is 1 reset to zero (batch on dim 1 of every tensor)."""
    if state is None:
        return None
    keep = (1.0 - done.float()).view(1, -1, 1)
    if isinstance(state, tuple):
        return tuple(s * keep for s in state)
    return state * keep


def lstm_sequence(
    lstm: nn.LSTM, x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor], dones: torch.Tensor
) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
    """Run `lstm` over x [T, B, F] from `state`, zeroing the state of env b before step t where dones[t, b]
    is 1. The sequence is cut only at the steps where some env starts an episode, and each chunk runs as one
    fused LSTM call. Returns (outputs [T, B, H], final state)."""
    T = x.shape[0]
    any_done = (dones > 0).any(dim=1)
    any_done[0] = True  # always apply the first mask (state0 may belong to finished episodes)
    cuts = any_done.nonzero().flatten().tolist() + [T]
    outputs = []
    for start, end in itertools.pairwise(cuts):
        state = mask_state(state, dones[start])
        out, state = lstm(x[start:end], state)
        outputs.append(out)
    return (outputs[0] if len(outputs) == 1 else torch.cat(outputs, dim=0)), state


def flatten_time(obs: Any) -> Any:
    """[T, B, ...] -> [T*B, ...] for a tensor or a dict of tensors (a view, no copy, when contiguous)."""
    if isinstance(obs, dict):
        return {k: flatten_time(v) for k, v in obs.items()}
    return obs.reshape(obs.shape[0] * obs.shape[1], *obs.shape[2:])


def categorical(logits: torch.Tensor) -> Categorical:
    """A categorical over the last dim of `logits` (argument validation off: it costs time every step)."""
    return Categorical(logits=logits, validate_args=False)


def beta_from_params(params: torch.Tensor) -> Independent:
    """Independent Beta per action dim from raw params [..., 2*A]: alpha, beta = 1 + softplus (dcd CarRacing);
    samples lie in [0, 1] (rescale to the action range in the env); log_prob / entropy sum over the A dims."""
    alpha, beta = params.chunk(2, dim=-1)
    return Independent(Beta(1.0 + F.softplus(alpha), 1.0 + F.softplus(beta), validate_args=False), 1)


def deterministic_action(dist: Distribution) -> torch.Tensor:
    """The distribution's most likely action (its mode; its mean where no mode is defined)."""
    try:
        return dist.mode
    except (NotImplementedError, AttributeError):
        return dist.mean


# ----- the interface -----------------------------------------------------------------------------------
class Policy(nn.Module):
    """Actor-critic interface used by students and teachers (see CONTRIBUTING.md).

    `forward(obs, state, done)` acts for one step of B envs: `done` [B] float is 1 where a new episode
    starts at this step (the state is reset before the step). Returns (dist, value [B], next state);
    `dist.log_prob(action)` and `dist.entropy()` are [B]. `evaluate_sequence` re-evaluates a rollout for PPO.
    """

    is_recurrent: bool = False

    def initial_state(self, batch: int, device: torch.device | str = "cpu") -> State:
        """Recurrent state at the start of an episode (None for feed-forward policies)."""
        return None

    def forward(self, obs: Any, state: State, done: torch.Tensor) -> tuple[Distribution, torch.Tensor, State]:
        raise NotImplementedError

    def evaluate_sequence(
        self, obs: Any, state0: State, dones: torch.Tensor, actions: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Re-evaluate T steps of B envs: obs [T, B, ...] (or dict), state0 the state before step 0, dones
        [T, B] as in `forward`, actions [T, B, ...] -> (log_prob [T, B], entropy [T, B], value [T, B]).
        This generic version steps `forward` over time; subclasses batch it."""
        log_probs, entropies, values = [], [], []
        state = state0
        for t in range(dones.shape[0]):
            step_obs = {k: v[t] for k, v in obs.items()} if isinstance(obs, dict) else obs[t]
            dist, value, state = self(step_obs, state, dones[t])
            log_probs.append(dist.log_prob(actions[t]))
            entropies.append(dist.entropy())
            values.append(value)
        return torch.stack(log_probs), torch.stack(entropies), torch.stack(values)


class EncoderPolicy(Policy):
    """encoder -> optional LSTM -> actor and critic heads, with batched `evaluate_sequence`.

    Subclasses implement `encode(obs) -> features [N, feature_size]` and usually `distribution(params)`
    (default: categorical over the actor's outputs). `hidden_size` 0 makes the policy feed-forward.
    """

    def __init__(self, feature_size: int, hidden_size: int, actor: nn.Module, critic: nn.Module):
        super().__init__()
        self.feature_size = feature_size
        self.hidden_size = hidden_size
        self.is_recurrent = hidden_size > 0
        self.core = nn.LSTM(feature_size, hidden_size) if self.is_recurrent else None
        if self.core is not None:
            for name, p in self.core.named_parameters():
                if "weight" in name:
                    nn.init.orthogonal_(p)
                else:
                    nn.init.zeros_(p)
        self.actor = actor
        self.critic = critic

    def encode(self, obs: Any) -> torch.Tensor:
        """Observation batch (batch on dim 0) -> features [N, feature_size]."""
        raise NotImplementedError

    def distribution(self, params: torch.Tensor) -> Distribution:
        """Actor output [N, ...] -> action distribution with per-sample log_prob / entropy."""
        return categorical(params)

    def initial_state(self, batch: int, device: torch.device | str = "cpu") -> State:
        return lstm_initial_state(self.core, batch, device) if self.core is not None else None

    def _heads(self, features: torch.Tensor) -> tuple[Distribution, torch.Tensor]:
        return self.distribution(self.actor(features)), self.critic(features).squeeze(-1)

    def forward(self, obs: Any, state: State, done: torch.Tensor) -> tuple[Distribution, torch.Tensor, State]:
        x = self.encode(obs)
        if self.core is not None:
            out, state = self.core(x.unsqueeze(0), mask_state(state, done))
            x = out.squeeze(0)
        dist, value = self._heads(x)
        return dist, value, state

    def evaluate_sequence(
        self, obs: Any, state0: State, dones: torch.Tensor, actions: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        T, B = dones.shape
        x = self.encode(flatten_time(obs))
        if self.core is not None:
            out, _ = lstm_sequence(self.core, x.view(T, B, -1), state0, dones)
            x = out.reshape(T * B, -1)
        dist, value = self._heads(x)
        log_prob = dist.log_prob(flatten_time(actions))
        return log_prob.view(T, B), dist.entropy().view(T, B), value.view(T, B)


# ----- the maze student ------------------------------------------------------------------------------
class MazePolicy(EncoderPolicy):
    """The published maze student (PAIRED / dcd): 3x3 conv (16 channels) on the 5x5x3 partial view,
    direction embedding, LSTM 256, actor and critic MLPs (32, 32), 7 categorical MiniGrid actions.

    Observations: {"image": uint8 [B, V, V, 3] (minigrid object, colour, state indices), "direction":
    int64 [B] in 0..3}.
    """

    def __init__(
        self,
        view_size: int = 5,
        num_actions: int = 7,
        conv_channels: int = 16,
        direction_embedding: int = 5,
        hidden_size: int = 256,
        head_sizes: Sequence[int] = (32, 32),
    ):
        conv_out = conv_channels * (view_size - 2) ** 2
        feature_size = conv_out + direction_embedding
        core_out = hidden_size if hidden_size > 0 else feature_size
        super().__init__(
            feature_size,
            hidden_size,
            actor=mlp(core_out, head_sizes, num_actions, out_gain=0.01),
            critic=mlp(core_out, head_sizes, 1, out_gain=1.0),
        )
        self.view_size = view_size
        self.num_actions = num_actions
        self.conv = init_orthogonal(nn.Conv2d(3, conv_channels, kernel_size=3))
        self.direction = nn.Embedding(4, direction_embedding)

    def encode(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        image = obs["image"].permute(0, 3, 1, 2).float()  # [N, 3, V, V]
        x = F.relu(self.conv(image)).flatten(1)
        return torch.cat([x, self.direction(obs["direction"].long().view(-1))], dim=1)


def count_parameters(module: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)
