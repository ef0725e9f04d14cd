"""PAIRED: an adversary writes levels token by token and is rewarded by the students' regret.

Each rollout the adversary (an RL policy, `AdversaryPolicy`) writes n levels with `ued.editor.write_levels`;
the protagonist and the antagonist (two students, trained normally by the runner on their own returns) play
them; the regret estimate of each level (`ued.scores`) is the adversary's reward at the last token of that
level, and the adversary takes a PPO step (`ued.ppo`, the same code the students use).

Regret:
- `"paired"` (Dennis et al. 2020): max(antagonist's best return - protagonist's mean return, 0).
- `"flexible"` (flexible PAIRED, dcd): on each level whichever student has the higher best return plays the
  antagonist. Only the adversary's reward changes: the runner's roles stay protagonist / antagonist, and
  both students are trained on their own environment returns exactly as in plain PAIRED.

Works for any level family: the network reads `family.editor_view_shape`, `vocab_size` and `max_tokens`.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ued.config import NOISE_DIM, PAIREDConfig
from ued.editor import WrittenLevels, write_levels
from ued.incremental import incremental_conv_linear
from ued.levels import LevelFamily, LevelResults
from ued.models import ACTIVATIONS, EncoderPolicy, categorical, init_xavier, lstm_recurrence, mlp
from ued.ppo import PPO, RolloutStorage
from ued.teachers.base import Proposal, Teacher, TeacherReport
from ued.teachers.regret import RegretReward

#: the order in which the adversary flattens its conv output for the layer after it: position-major (the C
#: channels of each position side by side; dcd flattens channel-major, the same network up to the order of
#: those columns), so that `ued.incremental` reads a position's weights as one block
CONV_FEATURES = "position-major"


class AdversaryPolicy(EncoderPolicy):
    """The PAIRED adversary, generic over families (dcd's adversary network by default):
    3x3 convs (`conv_channels`, maze: 128; no activation between layers, ReLU after the last) on the
    editor view, a one-hot time step through a linear layer (`time_embedding`, 10) and the noise vector z
    (50), concatenated; optional input layers `input_fc`; an LSTM (`hidden_size`, 256; 0 = feed-forward);
    actor and critic heads (`head_sizes`, `critic_sizes`, with `activation`; the actor's orthogonal init
    gains `actor_gains`, hidden and output) and a categorical over `vocab_size` tokens restricted to the
    observation's `mask`.

    Layouts: dcd's (the default): conv -> LSTM 256 -> one tanh layer of 32 per head, 22.5M parameters for
    mazes, as its `mg_25b_paired`, whose PPO update runs the conv and the LSTM's input projection step to
    step (`sequence_features`, ~7x faster than the plain computation on a CPU); the original PAIRED
    networks (TF-Agents, `input_fc=(32, 32)`, `head_sizes=()`: two ReLU layers before the LSTM, linear
    heads), 1.6M parameters.

    Observations: {"image": float32 [B, C, H, W], "time_step": int64 [B] in 0..max_tokens,
    "noise": float32 [B, noise_dim], "mask": bool [B, vocab_size]} (see `ued.editor`). Views smaller
    than the kernel are zero-padded.
    """

    def __init__(
        self,
        view_shape: Sequence[int],
        vocab_size: int,
        max_tokens: int,
        noise_dim: int = NOISE_DIM,
        conv_channels: Sequence[int] = (128,),
        kernel_size: int = 3,
        time_embedding: int = 10,
        hidden_size: int = 256,
        input_fc: Sequence[int] = (),
        head_sizes: Sequence[int] = (32,),
        critic_sizes: Sequence[int] | None = None,
        activation: str = "tanh",
        actor_gains: Sequence[float] = (math.sqrt(2.0), 0.01),
    ):
        channels, height, width = (int(s) for s in view_shape)
        if isinstance(conv_channels, int):
            conv_channels = (conv_channels,)
        convs: list[nn.Module] = []
        c_in = channels
        for c_out in conv_channels:
            pad = 0 if min(height, width) >= kernel_size else kernel_size - 1
            convs.append(init_xavier(nn.Conv2d(c_in, int(c_out), kernel_size=kernel_size, padding=pad)))
            height, width = height + 2 * pad - kernel_size + 1, width + 2 * pad - kernel_size + 1
            c_in = int(c_out)
        raw_size = c_in * height * width + time_embedding + noise_dim
        input_fc = tuple(int(h) for h in input_fc)
        feature_size = input_fc[-1] if input_fc else raw_size
        core_out = hidden_size if hidden_size > 0 else feature_size
        act = ACTIVATIONS[activation]
        critic_sizes = head_sizes if critic_sizes is None else critic_sizes
        super().__init__(
            feature_size,
            hidden_size,
            actor=mlp(
                core_out,
                head_sizes,
                vocab_size,
                activation=act,
                hidden_gain=float(actor_gains[0]),
                out_gain=float(actor_gains[1]),
            ),
            critic=mlp(core_out, critic_sizes, 1, activation=act, out_gain=1.0),
        )
        self.view_shape = tuple(int(s) for s in view_shape)
        self.vocab_size = int(vocab_size)
        self.max_tokens = int(max_tokens)
        self.noise_dim = int(noise_dim)
        self.convs = nn.Sequential(*convs)
        self.time_step = nn.Linear(self.max_tokens + 1, time_embedding)
        self.input_fc = mlp(raw_size, input_fc, activation=act)

    @classmethod
    def for_family(cls, family: LevelFamily, **kwargs: Any) -> AdversaryPolicy:
        """The adversary for `family` (kwargs: the constructor's network sizes)."""
        return cls(family.editor_view_shape, family.vocab_size, family.max_tokens, **kwargs)

    def encode(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        # position-major: the conv's C features of each position side by side (`CONV_FEATURES`)
        x = F.relu(self.convs(obs["image"].float())).permute(0, 2, 3, 1).flatten(1)
        return self.input_fc(torch.cat([x, self.encode_extra(obs)], dim=1))

    def get_extra_state(self) -> dict[str, str]:
        """Saved with the weights: the order of the conv features that the first layer after them reads."""
        return {"conv_features": CONV_FEATURES}

    def set_extra_state(self, state: Any) -> None:
        if not isinstance(state, dict) or state.get("conv_features") != CONV_FEATURES:
            raise ValueError(f"adversary weights with conv features in another order: {state!r}")

    def conv_feature_readers(self) -> list[str]:
        """Names of the weights whose first conv_size columns read the conv features."""
        if len(self.input_fc):
            return ["input_fc.0.weight"]
        if self.core is not None:
            return ["core.weight_ih_l0"]
        return ["actor.0.weight", "critic.0.weight"]

    def conv_output_shape(self) -> tuple[int, int]:
        """(channels C, positions G) of the last conv's output."""
        with torch.no_grad():
            out = self.convs(torch.zeros(1, *self.view_shape))
        return out.shape[1], out.shape[2] * out.shape[3]

    def encode_extra(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        """The features after the conv's: the time step's embedding and the noise, [B, time_embedding +
        noise_dim]."""
        t = obs["time_step"].long().view(-1).clamp(0, self.max_tokens)
        t = F.one_hot(t, self.max_tokens + 1).float()
        return torch.cat([self.time_step(t), obs["noise"].float().view(-1, self.noise_dim)], dim=1)

    def sequence_features(self, flat: Any, state0: Any, dones: torch.Tensor) -> torch.Tensor:
        """As `EncoderPolicy.sequence_features`, with the LSTM's input projection of the conv features
        computed step to step (`ued.incremental`): the adversary writes one token per step, so its conv output
        changes at a few positions only. Same values up to float32 rounding; the plain path runs where the
        layout is not one conv straight into the LSTM, or under autocast."""
        if (
            self.core is None
            or len(self.input_fc)
            or len(self.convs) != 1
            or torch.is_autocast_enabled(dones.device.type)
        ):
            return super().sequence_features(flat, state0, dones)
        T, B = dones.shape
        bias = self.core.bias_ih_l0 + self.core.bias_hh_l0
        projected = incremental_conv_linear(
            flat["image"].float(), self.convs[0], self.encode_extra(flat), self.core.weight_ih_l0, bias, dones
        )
        out, _ = lstm_recurrence(self.core, projected, state0, dones)
        return out.reshape(T * B, -1)

    def distribution(self, params: torch.Tensor, obs: Any = None) -> Any:
        """Categorical over the tokens the observation's mask allows."""
        if obs is not None and "mask" in obs:
            params = params.masked_fill(~obs["mask"].bool(), torch.finfo(params.dtype).min)
        return categorical(params)


def channel_major_to_position_major(policy: AdversaryPolicy, adversary: dict, optimizer: dict) -> None:
    """Convert, in place, an adversary state dict (and its PPO optimizer state) saved by ued before the
    adversary read its conv features position-major: the columns of every weight that reads them go from
    channel-major (c * G + g) to position-major (g * C + c), with Adam's moments. The same network."""
    C, G = policy.conv_output_shape()

    def reorder(w: torch.Tensor) -> torch.Tensor:
        head = w[:, : C * G].reshape(w.shape[0], C, G).transpose(1, 2).reshape(w.shape[0], C * G)
        return torch.cat([head, w[:, C * G :]], dim=1)

    names = [name for name, _ in policy.named_parameters()]
    for name in policy.conv_feature_readers():
        adversary[name] = reorder(adversary[name])
        moments = optimizer.get("state", {}).get(names.index(name), {}) if isinstance(optimizer, dict) else {}
        for key in ("exp_avg", "exp_avg_sq"):
            if key in moments:
                moments[key] = reorder(moments[key])
    adversary["_extra_state"] = {"conv_features": CONV_FEATURES}


class PAIRED(Teacher):
    """PAIRED teacher: an adversary policy writes the levels and learns by PPO from the students' regret.
    A proposal's `context` is the `WrittenLevels` record of the writing (what PPO needs)."""

    roles = ("protagonist", "antagonist")
    config_class = PAIREDConfig

    def __init__(self, family: LevelFamily, config: PAIREDConfig | None = None, **kwargs: Any):
        super().__init__(family, config, **kwargs)
        c: PAIREDConfig = self.config
        seed = self.seed
        self.regret_reward = RegretReward(c.regret, c.normalize_reward)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.adversary = AdversaryPolicy.for_family(
                family,
                noise_dim=c.noise_dim,
                conv_channels=c.conv_channels,
                kernel_size=c.kernel_size,
                time_embedding=c.time_embedding,
                hidden_size=c.hidden_size,
                input_fc=c.input_fc,
                head_sizes=c.head_sizes,
                critic_sizes=c.critic_sizes,
                activation=c.activation,
                actor_gains=c.actor_gains,
            ).to(self.device)
        self.ppo = PPO(self.adversary, c.ppo, seed=seed)
        #: samples the adversary's tokens (kept apart from the global torch RNG)
        self.generator = torch.Generator(device=self.device).manual_seed(seed + 1)

    # ----- curriculum ---------------------------------------------------------------------------
    def propose(self, n: int) -> Proposal:
        """n levels written by the adversary (sampled tokens), decoded and repaired."""
        self.adversary.eval()
        written = write_levels(
            self.family,
            self.adversary,
            n,
            rng=self.rng,
            generator=self.generator,
            noise_dim=self.config.noise_dim,
            device=self.device,
            repair=self.config.repair_levels,
        )
        return Proposal(list(written.levels), context=written)

    def update(self, proposal: Proposal, results: dict[str, LevelResults]) -> TeacherReport:
        """Reward each written level with its regret (at its last token) and take a PPO step."""
        written: WrittenLevels = proposal.context
        regret, reward = self.regret_reward(results, len(proposal.levels))
        metrics = self._learn(written, torch.as_tensor(reward, dtype=torch.float32, device=self.device))
        metrics.update(
            regret_mean=float(regret.mean()),
            regret_max=float(regret.max()),
            valid_written=written.valid_share,
            protagonist_return=float(np.mean(results["protagonist"].mean_return)),
            antagonist_return=float(np.mean(results["antagonist"].mean_return)),
        )
        return TeacherReport(metrics)

    def _learn(self, written: WrittenLevels, reward: torch.Tensor) -> dict[str, float]:
        T, n = written.actions.shape
        storage, c = RolloutStorage(T, n, self.device), self.config.ppo
        storage.begin(written.state0, written.dones[0])
        zeros = torch.zeros(n, device=self.device)
        for t in range(T):
            last = t == T - 1
            storage.insert(
                {k: v[t] for k, v in written.obs.items()},
                written.actions[t],
                written.log_probs[t],
                written.values[t],
                reward if last else zeros,
                torch.ones(n, device=self.device) if last else zeros,
            )
        storage.compute_returns(zeros, c.gamma, c.gae_lambda)
        stats = self.ppo.update(storage)
        return {
            "adversary_entropy": stats.get("entropy", math.nan),
            "adversary_value_loss": stats.get("value_loss", math.nan),
            "adversary_policy_loss": stats.get("policy_loss", math.nan),
            "adversary_approx_kl": stats.get("approx_kl", math.nan),
            "adversary_grad_norm": stats.get("grad_norm", math.nan),
        }

    # ----- checkpoints --------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state.update(
            adversary=self.adversary.state_dict(),
            ppo=self.ppo.state_dict(),
            generator=self.generator.get_state(),
            reward_std=self.regret_reward.state_dict(),
        )
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        adversary, ppo = state["adversary"], state["ppo"]
        if "_extra_state" not in adversary:  # written before the position-major conv features
            adversary, ppo = dict(adversary), {**ppo, "optimizer": copy.deepcopy(ppo["optimizer"])}
            channel_major_to_position_major(self.adversary, adversary, ppo["optimizer"])
        self.adversary.load_state_dict(adversary)
        self.ppo.load_state_dict(ppo)
        self.generator.set_state(state["generator"])
        self.regret_reward.load_state_dict(state["reward_std"])
