"""CLUTR: a teacher that acts in the latent space of a pretrained recurrent VAE (Azad et al. 2023).

The teacher is a one-step policy: random noise -> MLP -> an independent Beta(alpha, beta) per latent
dimension (alpha, beta = 1 + softplus), sampled in [0, 1] and rescaled to the VAE's latent range (mean +- 3
std of the posterior means over the VAE's training data; the public reference left it in [0, 1]). The latent
is decoded greedily to tokens (exactly `max_tokens` steps), then `family.decode` -> `family.repair`
(`ued.editor.finish_level`). The protagonist and antagonist play the levels, and the teacher takes a PPO step
(`ued.ppo`, T = 1) on the PAIRED regret of each level (`ued.scores`).

The VAE comes from `CLUTRConfig.vae_path` (`ued pretrain-vae`); when that is unset, from ued's shipped VAE
for the family (`ued.vae.shipped_vae_file`), or, where there is none (or `vae_source="pretrain"`), it is
pretrained at start-up with the small CPU settings of `CLUTRConfig.pretrain` and cached in the teacher's
`workdir` (the run directory) so a restarted run reuses it. The teacher's checkpoint holds
the VAE weights too, so a resumed run never depends on the file: a `vae_path` that no longer exists (or a
relative one read from another working directory) is only an error if the teacher is asked for levels
before `load_state_dict` gave it the checkpoint's VAE.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import sys
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from ued.config import CLUTRConfig
from ued.editor import finish_level
from ued.errors import UsageError
from ued.levels import LevelFamily, LevelResults
from ued.models import EncoderPolicy, beta_from_params, mlp
from ued.ppo import PPO, RolloutStorage
from ued.teachers.base import Proposal, Teacher, TeacherReport
from ued.teachers.regret import RegretReward
from ued.vae import RecurrentVAE, load_vae, pretrain_vae, save_vae, shipped_vae_file, vae_from_parts

#: file name of the automatically pretrained VAE in the teacher's workdir
VAE_CACHE_NAME = "clutr-vae.pt"
#: Beta samples are kept this far inside (0, 1) so their log-probability stays finite
_EDGE = 1e-5
#: decoder token-steps (gradient steps x tokens per level) of the automatic VAE pretraining
PRETRAIN_TOKEN_STEPS = 26_000


def default_pretrain_steps(family: LevelFamily) -> int:
    """Gradient steps of the automatic VAE pretraining: `PRETRAIN_TOKEN_STEPS / max_tokens` (a step costs
    about the same per token), within 200..5000."""
    return int(min(5000, max(200, round(PRETRAIN_TOKEN_STEPS / max(1, family.max_tokens)))))


@dataclass(frozen=True)
class LatentBatch:
    """How a CLUTR proposal was made, for its PPO step: the noise [n, noise_dim], the Beta sample in
    [0, 1]^latent [n, D] with its log-probability [n] and the critic's value [n], and which decoded levels
    were valid before repair (bool [n])."""

    noise: torch.Tensor
    unit: torch.Tensor
    log_prob: torch.Tensor
    value: torch.Tensor
    valid: np.ndarray


def _say(line: str) -> None:
    """One status line on stderr (the runner's progress bar and results own stdout)."""
    print(line, file=sys.stderr, flush=True)


def _show_bars() -> bool:
    """A pretraining progress bar only on a terminal and in the main process (not in `ued sweep` workers,
    whose bars would overwrite one another)."""
    return sys.stderr.isatty() and multiprocessing.current_process().name == "MainProcess"


class LatentPolicy(EncoderPolicy):
    """The CLUTR teacher network (the CLUTR code's single-step continuous adversary): noise [B, noise_dim]
    through one linear layer without activation (`body_size`: maze 10, CarRacing 8), then an independent
    Beta per latent dim (alpha, beta = 1 + softplus, heads with the ReLU gain; samples in [0, 1]^latent)
    and a linear critic."""

    def __init__(self, noise_dim: int, latent_dim: int, body_size: int = 10):
        super().__init__(
            body_size,
            0,
            actor=mlp(body_size, (), 2 * latent_dim, out_gain=math.sqrt(2.0)),
            critic=mlp(body_size, (), 1, out_gain=1.0),
        )
        self.noise_dim = int(noise_dim)
        self.latent_dim = int(latent_dim)
        self.body = nn.Linear(noise_dim, body_size)

    def encode(self, obs: torch.Tensor) -> torch.Tensor:
        return self.body(obs.float().view(-1, self.noise_dim))

    def distribution(self, params: torch.Tensor, obs=None) -> torch.distributions.Distribution:
        return beta_from_params(params)


class CLUTR(Teacher):
    """CLUTR teacher: a one-step PPO policy over the latent space of a recurrent VAE, rewarded by regret."""

    roles = ("protagonist", "antagonist")
    config_class = CLUTRConfig

    def __init__(self, family: LevelFamily, config: CLUTRConfig | None = None, **kwargs: Any):
        super().__init__(family, config, **kwargs)
        c: CLUTRConfig = self.config
        seed = self.seed
        self.regret_reward = RegretReward(c.regret, c.normalize_reward)
        #: the VAE file, resolved against the working directory the teacher was built in
        self.vae_path = os.path.abspath(os.path.expanduser(c.vae_path)) if c.vae_path else None
        #: the VAE, the latent policy and its PPO; None only while a missing `vae_path` file waits for
        #: `load_state_dict` to supply the checkpoint's VAE (`_missing_vae` holds the error to raise)
        self.vae: RecurrentVAE | None = None
        self.policy: LatentPolicy | None = None
        self.ppo: PPO | None = None
        self._missing_vae: UsageError | None = None
        vae = self._get_vae(seed)
        if vae is not None:
            self._set_vae(vae)
        #: noise and Beta sampling (kept apart from the global torch RNG)
        self.generator = torch.Generator().manual_seed(seed + 1)

    # ----- the VAE ------------------------------------------------------------------------------
    def _get_vae(self, seed: int) -> RecurrentVAE | None:
        """The VAE from `vae_path`, ued's shipped one, the cache, or a fresh pretraining; None (error kept in
        `_missing_vae`) when `vae_path` names a file that does not exist, which a resumed run does not need."""
        c: CLUTRConfig = self.config
        if self.vae_path:
            if not os.path.isfile(self.vae_path):
                self._missing_vae = UsageError(
                    f"CLUTR VAE file {self.vae_path!r} not found; create it with `ued pretrain-vae --env "
                    f"{self.family.name} --out {self.vae_path}` or fix --teacher-option vae_path=..."
                )
                return None
            return load_vae(self.vae_path, self.family, device=self.device)
        shipped = shipped_vae_file(self.family) if c.vae_source == "shipped" else None
        if shipped is not None:
            return load_vae(shipped, self.family, device=self.device)
        cache = os.path.join(self.workdir, VAE_CACHE_NAME) if self.workdir else None
        if cache and os.path.exists(cache):
            return load_vae(cache, self.family, device=self.device)
        steps = default_pretrain_steps(self.family) if c.pretrain_steps is None else int(c.pretrain_steps)
        where = f"caching it in {cache}" if cache else "not cached (no run directory)"
        why = (
            "vae_source=pretrain"
            if c.vae_source == "pretrain"
            else f"ued ships no VAE for {self.family.name} {self.family.options}"
        )
        _say(
            f"CLUTR: no vae_path given and {why}; pretraining a small fallback VAE (a toy, not the published "
            f"task manifold) on random {self.family.name} levels ({steps} steps), {where}; train a real one "
            "with `ued pretrain-vae` and pass --teacher-option vae_path=FILE"
        )
        vae, report = pretrain_vae(
            self.family,
            c.pretrain,
            steps=steps,
            seed=seed,
            device=self.device,
            progress=_show_bars(),
        )
        if "token_accuracy" in report:
            _say(
                f"CLUTR: VAE held-out reconstruction ({report['held_out_levels']} levels): tokens "
                f"{report['token_accuracy']:.1%} (chance {report['chance_token_accuracy']:.1%}), whole levels "
                f"{report['level_accuracy']:.1%} (chance {report['chance_level_accuracy']:.1%})"
            )
        if cache:
            save_vae(cache, vae, c.pretrain, self.family.name, self.family.options, report)
        return vae

    def _set_vae(self, vae: RecurrentVAE) -> None:
        """Use `vae`; (re)build the latent policy and its PPO when its latent size changes."""
        self.vae = vae.to(self.device).eval()
        self._missing_vae = None
        if self.policy is None or self.policy.latent_dim != vae.latent_dim:
            c: CLUTRConfig = self.config
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(self.seed)
                self.policy = LatentPolicy(c.noise_dim, vae.latent_dim, c.body_size).to(self.device)
            self.ppo = PPO(self.policy, c.ppo, seed=self.seed)

    def _require_vae(self) -> None:
        if self.vae is None:
            assert self._missing_vae is not None
            raise self._missing_vae

    @property
    def latent_low(self) -> torch.Tensor:
        return self.vae.latent_low

    @property
    def latent_high(self) -> torch.Tensor:
        return self.vae.latent_high

    def to_latent(self, unit: torch.Tensor) -> torch.Tensor:
        """Teacher actions in [0, 1]^latent -> VAE latents: rescaled to [latent_low, latent_high] (ued's fix,
        `latent_range="vae"`), or left in [0, 1] as the CLUTR code does (`latent_range="unit"`)."""
        if self.config.latent_range == "unit":
            return unit
        return self.latent_low + unit * (self.latent_high - self.latent_low)

    def decode_latents(self, z: torch.Tensor) -> tuple[list[Any], np.ndarray]:
        """Latents [n, latent] -> (n levels, bool [n]: valid as decoded); invalid ones are repaired only
        with `repair_levels`."""
        tokens = self.vae.decode_greedy(z).cpu().numpy()
        done = [finish_level(self.family, row, self.config.repair_levels) for row in tokens]
        return [lvl for lvl, _ in done], np.array([ok for _, ok in done], dtype=bool)

    # ----- curriculum ---------------------------------------------------------------------------
    @torch.no_grad()
    def propose(self, n: int) -> Proposal:
        """n levels: uniform noise -> Beta sample in [0, 1] -> latent range -> greedy VAE decode."""
        self._require_vae()
        self.policy.eval()
        noise = torch.rand((n, self.config.noise_dim), generator=self.generator).to(self.device)
        dist, value, _ = self.policy(noise, None, torch.ones(n, device=self.device))
        sample_seed = int(torch.randint(0, 2**62, (1,), generator=self.generator))
        with torch.random.fork_rng(devices=[] if self.device == "cpu" else [self.device]):
            torch.manual_seed(sample_seed)
            unit = dist.sample().clamp(_EDGE, 1.0 - _EDGE)
        levels, valid = self.decode_latents(self.to_latent(unit))
        batch = LatentBatch(noise=noise, unit=unit, log_prob=dist.log_prob(unit), value=value, valid=valid)
        return Proposal(levels, context=batch)

    def update(self, proposal: Proposal, results: dict[str, LevelResults]) -> TeacherReport:
        """Reward each proposed latent with its level's regret and take a PPO step (T = 1)."""
        batch: LatentBatch = proposal.context
        levels = proposal.levels
        regret, reward = self.regret_reward(results, len(levels))
        metrics = self._learn(batch, torch.as_tensor(reward, dtype=torch.float32, device=self.device))
        unit = batch.unit
        metrics.update(
            regret_mean=float(regret.mean()),
            regret_max=float(regret.max()),
            valid_written=float(batch.valid.mean()),
            unique_levels=len({self.family.tokens_key(lvl) for lvl in levels}) / max(len(levels), 1),
            protagonist_return=float(np.mean(results["protagonist"].mean_return)),
            antagonist_return=float(np.mean(results["antagonist"].mean_return)),
            # latent usage, in the teacher's [0, 1] units: per-dim mean and spread over the batch, summarized
            latent_mean=float(unit.mean()),
            latent_dim_mean_spread=float(unit.mean(0).std()) if unit.shape[1] > 1 else 0.0,
            latent_std=float(unit.std(0).mean()) if unit.shape[0] > 1 else 0.0,
            latent_coverage=float((unit.max(0).values - unit.min(0).values).mean()),
        )
        return TeacherReport(metrics)

    def _learn(self, batch: LatentBatch, reward: torch.Tensor) -> dict[str, float]:
        n = reward.shape[0]
        storage, c = RolloutStorage(1, n, self.device), self.config.ppo
        ones = torch.ones(n, device=self.device)
        storage.begin(None, ones)
        storage.insert(batch.noise, batch.unit, batch.log_prob, batch.value, reward, ones)
        storage.compute_returns(torch.zeros(n, device=self.device), c.gamma, c.gae_lambda)
        stats = self.ppo.update(storage)
        return {
            "teacher_entropy": stats.get("entropy", math.nan),
            "teacher_value_loss": stats.get("value_loss", math.nan),
            "teacher_policy_loss": stats.get("policy_loss", math.nan),
            "teacher_approx_kl": stats.get("approx_kl", math.nan),
            "teacher_grad_norm": stats.get("grad_norm", math.nan),
        }

    # ----- checkpoints --------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        self._require_vae()
        state = super().state_dict()
        state.update(
            policy=self.policy.state_dict(),
            ppo=self.ppo.state_dict(),
            generator=self.generator.get_state(),
            reward_std=self.regret_reward.state_dict(),
            vae={
                "config": self.vae.config.to_dict(),
                "vocab_size": self.vae.vocab_size,
                "max_tokens": self.vae.max_tokens,
                "state_dict": {k: v.detach().cpu() for k, v in self.vae.state_dict().items()},
            },
        )
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        saved = state["vae"]
        if saved["vocab_size"] != self.family.vocab_size or saved["max_tokens"] != self.family.max_tokens:
            raise UsageError(
                "this CLUTR checkpoint's VAE was trained for other levels (different tokens); "
                "resume with the same environment options"
            )
        vae = vae_from_parts(saved["vocab_size"], saved["max_tokens"], saved["config"], saved["state_dict"])
        # the checkpoint's VAE wins over the file the teacher was built with (which may be gone)
        self._set_vae(vae)
        self.policy.load_state_dict(state["policy"])
        self.ppo.load_state_dict(state["ppo"])
        self.generator.set_state(state["generator"])
        self.regret_reward.load_state_dict(state["reward_std"])
