"""Typed configuration: every setting of a run, with published defaults, and nothing that imports torch.

Each config is a dataclass whose field docstrings are the `--help` text (`field_docs`). Values are
checked on construction (`Config.__post_init__`): every field is coerced to its annotated type or refused
with a `UsageError` that names the field (no silent truncation: `2.7` is not an int, `"fast"` not a float,
NaN not a setting), then the class's `validate` checks ranges. `merge` applies overrides from a TOML or
JSON table or `--KEY=VALUE` options, refusing unknown keys with the list of valid ones. This is the one
place where option values are converted.

Sources of the defaults are in docs/protocol.md (one row per setting).
"""

from __future__ import annotations

import ast
import inspect
import json
import math
import os
import types
import typing
from dataclasses import MISSING, dataclass, field, fields, is_dataclass, replace
from pathlib import Path
from typing import Any, Union

from ued.errors import UsageError

_TRUE, _FALSE = ("true", "yes", "on", "1"), ("false", "no", "off", "0")


# ----- typed values -----------------------------------------------------------------------------------
def _describe(value: Any) -> str:
    return f"{value!r} ({type(value).__name__})"


def coerce(value: Any, annotation: Any, name: str) -> Any:
    """`value` as the type `annotation` (int, float, bool, str, X | None, tuple[X, ...], dict, a Config
    class), or a UsageError naming `name`. Text is accepted for bools ("true", "off", ...) only."""
    origin = typing.get_origin(annotation)
    if origin in (Union, types.UnionType):
        options = typing.get_args(annotation)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return coerce(value, option, name)
            except UsageError as exc:
                errors.append(str(exc))
        raise UsageError(errors[0] if len(errors) == 1 else f"{name} cannot be {_describe(value)}")
    if annotation is Any:
        return value
    if origin is tuple:
        args = typing.get_args(annotation)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = [value]  # a single size where a list of sizes is expected
        if not isinstance(value, (list, tuple)):
            raise UsageError(f"{name} must be a list, got {_describe(value)}")
        item = args[0] if args else Any
        return tuple(coerce(v, item, f"{name}[{i}]") for i, v in enumerate(value))
    if origin is dict or annotation is dict:
        if not isinstance(value, dict):
            raise UsageError(f"{name} must be a table of KEY = VALUE settings, got {_describe(value)}")
        return dict(value)
    if annotation is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _TRUE + _FALSE:
            return value.strip().lower() in _TRUE
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        raise UsageError(f"{name} must be true or false, got {_describe(value)}")
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise UsageError(f"{name} must be an integer, got {_describe(value)}")
        if isinstance(value, float) and not (math.isfinite(value) and value.is_integer()):
            raise UsageError(f"{name} must be an integer, got {_describe(value)}")
        return int(value)
    if annotation is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise UsageError(f"{name} must be a number, got {_describe(value)}")
        if not math.isfinite(value):
            raise UsageError(f"{name} must be a finite number, got {value!r}")
        return float(value)
    if annotation is str:
        if not isinstance(value, str):
            raise UsageError(f"{name} must be a string, got {_describe(value)}")
        return value
    if isinstance(annotation, type) and issubclass(annotation, Config):
        if isinstance(value, annotation):
            return value
        if isinstance(value, dict):
            return merge(annotation(), value, name)
        raise UsageError(f"{name} must be a table of settings, got {_describe(value)}")
    raise TypeError(f"config field {name} has an unsupported type {annotation!r}")


class Config:
    """Base of the typed configs: fields are coerced to their annotations on construction, then
    `validate` checks their ranges (both raise UsageError naming the field)."""

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(type(self))
        for f in fields(self):  # type: ignore[arg-type]
            object.__setattr__(self, f.name, coerce(getattr(self, f.name), hints[f.name], f.name))
        self.validate()

    def validate(self) -> None:
        """Raise UsageError for a value out of range (subclasses add their checks)."""

    def to_dict(self) -> dict[str, Any]:
        """Plain data (nested configs as dicts, tuples as lists), as written to config.json."""
        return _plain(self)


def _plain(value: Any) -> Any:
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def at_least(config: Any, name: str, low: float, example: Any = None) -> None:
    """UsageError unless `config.name` >= low."""
    value = getattr(config, name)
    if value is not None and value < low:
        hint = f"; e.g. {name}={example}" if example is not None else ""
        raise UsageError(f"{name} must be at least {low}, got {value}{hint}")


def within(config: Any, name: str, low: float, high: float) -> None:
    """UsageError unless low <= `config.name` <= high."""
    value = getattr(config, name)
    if value is not None and not low <= value <= high:
        raise UsageError(f"{name} must be in [{low}, {high}], got {value}")


def one_of(config: Any, name: str, choices: tuple[str, ...]) -> None:
    """UsageError unless `config.name` is one of `choices`."""
    value = getattr(config, name)
    if value is not None and value not in choices:
        raise UsageError(f"unknown {name} {value!r}; choose one of: {', '.join(choices)}")


def merge(config: Any, overrides: dict[str, Any] | None, where: str = "config") -> Any:
    """A copy of `config` with `overrides` applied (nested dicts for nested configs); an unknown key or a
    bad value raises a UsageError that names `where` and the key."""
    if not overrides:
        return config
    if not isinstance(overrides, dict):
        raise UsageError(f"{where} must be a table of KEY = VALUE settings, got {_describe(overrides)}")
    known = {f.name for f in fields(config)}
    changes: dict[str, Any] = {}
    for key, value in overrides.items():
        key = str(key).replace("-", "_")
        if key not in known:
            raise UsageError(f"unknown {where} key {key!r}; valid keys: {', '.join(sorted(known))}")
        current = getattr(config, key)
        if isinstance(current, Config) and isinstance(value, dict):
            value = merge(current, value, f"{where}.{key}")
        changes[key] = value
    try:
        return replace(config, **changes)
    except UsageError as exc:
        raise UsageError(f"{where}: {exc}") from None


def field_docs(cls: type) -> dict[str, str]:
    """The docstring under each field of dataclass `cls` and its bases (its `--help` text), from the source."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not is_dataclass(klass):
            continue
        try:
            tree = ast.parse(inspect.getsource(klass))
        except (OSError, TypeError):
            continue
        body = tree.body[0].body  # type: ignore[attr-defined]
        for node, nxt in zip(body, [*body[1:], None], strict=True):
            if (
                isinstance(node, ast.AnnAssign)
                and isinstance(node.target, ast.Name)
                and isinstance(nxt, ast.Expr)
                and isinstance(nxt.value, ast.Constant)
                and isinstance(nxt.value.value, str)
            ):
                docs[node.target.id] = " ".join(nxt.value.value.split())
    return docs


def defaults(cls: type) -> dict[str, Any]:
    """Field name -> default value of dataclass `cls` (fields without a default are left out)."""
    out = {}
    for f in fields(cls):
        if f.default is not MISSING:
            out[f.name] = f.default
        elif f.default_factory is not MISSING:  # type: ignore[misc]
            out[f.name] = f.default_factory()  # type: ignore[misc]
    return out


# ----- PPO ------------------------------------------------------------------------------------------
#: PPO value losses (`ued.ppo.PPO.loss`)
VALUE_LOSSES = ("clipped", "smooth_l1")


@dataclass
class PPOConfig(Config):
    """PPO hyperparameters of one learner (student or teacher). Defaults: dcd's maze students."""

    num_envs: int = 32
    """parallel environments (levels per rollout)"""
    num_steps: int = 256
    """steps per environment per rollout"""
    lr: float = 1e-4
    """Adam learning rate"""
    gamma: float = 0.995
    """discount"""
    gae_lambda: float = 0.95
    """GAE lambda"""
    epochs: int = 5
    """PPO epochs per update"""
    num_minibatches: int = 1
    """minibatches per epoch (split over environments for recurrent policies)"""
    clip: float = 0.2
    """PPO ratio clip (also used for the clipped value loss)"""
    value_loss: str = "clipped"
    """value loss: "clipped" (0.5 max of the squared and clipped squared errors; dcd's clip_value_loss,
    its default) or "smooth_l1" (Huber, dcd's CarRacing configs with clip_value_loss false)"""
    value_coef: float = 0.5
    """value loss weight"""
    entropy_coef: float = 0.0
    """entropy bonus weight"""
    max_grad_norm: float = 0.5
    """gradient clipping norm"""
    eps: float = 1e-5
    """Adam epsilon"""
    normalize_returns: bool = False
    """divide rewards by a running std of the discounted return (gamma 0.99), clipped to +-10, as dcd's
    normalize_returns (its CarRacing students); episode returns that teachers score stay unscaled"""
    bootstrap_rollout_end: bool = False
    """bootstrap the episode cut off by the end of a rollout with V(s_T) (a ued option; dcd forces a done at
    the last step of every rollout, so the cut-off tail is treated as terminal: False)"""
    bf16: bool = False
    """run the update's LSTM in bfloat16 (torch.autocast; float32 states, encoder, heads and optimizer):
    ~1.6x faster updates measured on an AVX-512 BF16 CPU (slow on CPUs without bf16 instructions), slightly
    different numerics; off in the published settings"""

    def validate(self) -> None:
        for name in ("num_envs", "num_steps", "epochs", "num_minibatches"):
            at_least(self, name, 1)
        if not 0 < self.lr <= 1:  # above 1, Adam steps overflow: never a learning rate
            raise UsageError(f"lr must be in (0, 1], got {self.lr}; e.g. lr=1e-4")
        within(self, "gamma", 0.0, 1.0)
        within(self, "gae_lambda", 0.0, 1.0)
        for name in ("clip", "value_coef", "entropy_coef", "max_grad_norm"):
            at_least(self, name, 0.0)
        if not self.eps > 0:
            raise UsageError(f"eps must be above 0, got {self.eps}")
        one_of(self, "value_loss", VALUE_LOSSES)


# ----- the run ----------------------------------------------------------------------------------------
#: a run directory's settings file, and the marker of its format
CONFIG_NAME = "config.json"
RUN_FORMAT = "ued-run"
#: the students' vector-env backends: the family's own (e.g. batched tensor mazes) or gymnasium's
BACKENDS = ("default", "gym")


@dataclass
class TrainConfig(Config):
    """Everything that defines a training run (saved as config.json in the run directory)."""

    env: str = "maze"
    """level family (environment) to train on, e.g. maze or carracing"""
    env_options: dict[str, Any] = field(default_factory=dict)
    """options of the level family, e.g. {"max_walls": 25}"""
    teacher: str = "dr"
    """teacher (UED algorithm): dr, paired, clutr, plr, ..."""
    teacher_options: dict[str, Any] = field(default_factory=dict)
    """overrides of the teacher's config"""
    student: str | None = None
    """student network (`ued envs` lists them; default: the family's published student)"""
    student_options: dict[str, Any] = field(default_factory=dict)
    """options of the student network, e.g. {"hidden_size": 128}"""
    total_steps: int = 200_000
    """protagonist environment steps to train for (the literature's convention)"""
    student_updates: int | None = None
    """also stop once the students have taken this many PPO updates (dcd's checkpoint_basis
    student_grad_updates: the ACCEL paper's 60-block results are at 20,000); None: only total_steps"""
    seed: int = 0
    """run seed: same seed, same levels, weights and results on the same machine"""
    device: str = "cpu"
    """torch device for the networks and batched environments (cpu, cuda, cuda:1, ...)"""
    num_envs: int | None = None
    """parallel environments = levels per rollout (default: the family's published setting)"""
    num_steps: int | None = None
    """steps per environment per rollout (default: the family's published setting)"""
    ppo: dict[str, Any] = field(default_factory=dict)
    """overrides of the students' PPO config (lr, gamma, epochs, ...)"""
    run_dir: str | None = None
    """run directory (default: runs/<teacher>-<env>-seed<seed>)"""
    log_interval: int = 1
    """write TensorBoard scalars every this many updates"""
    checkpoint_interval: int = 10
    """save a checkpoint every this many updates (and always at the end)"""
    image_interval: int = 50
    """log a picture grid of proposed levels every this many updates (0 = never)"""
    eval_interval: int | None = None
    """evaluate the students on held-out levels every this many updates (None: the family's default, about
    every 1M steps for mazes and never for CarRacing; 0 = never)"""
    eval_suite: str | None = None
    """held-out suite of the periodic evaluation (None: the family's default suite)"""
    eval_levels: str | None = None
    """a level file or folder for the periodic evaluation instead of a suite"""
    eval_episodes: int = 10
    """episodes per held-out level in each periodic evaluation (dcd's test_num_episodes: 10)"""
    video_interval: int = 0
    """every this many updates, record the protagonist playing the first held-out level of the periodic
    evaluation: an animated GIF in RUN/videos/ and a film strip in TensorBoard (0 = never)"""
    backend: str = "default"
    """students' vector env: default (the family's, e.g. batched tensor mazes) or gym (the reference
    gymnasium vector env of family.make_env)"""
    threads: int | None = None
    """torch CPU threads (default: every core this process may use on device cpu; 1 is faster on a machine
    busy with other jobs; torch's choice on cuda)"""
    keep_freed_memory: bool = True
    """keep freed memory mapped for reuse instead of returning it to the OS (glibc; ued.allocator): CPU
    training runs 1.2-1.5x faster because the PPO update's large temporaries no longer fault their pages in
    anew, and the resident memory stays near its peak; the results are the same either way. Once kept, for
    the rest of the process"""

    def validate(self) -> None:
        for name in (
            "total_steps",
            "log_interval",
            "checkpoint_interval",
            "num_envs",
            "num_steps",
            "threads",
            "student_updates",
        ):
            at_least(self, name, 1)
        at_least(self, "image_interval", 0)
        at_least(self, "eval_interval", 0)
        at_least(self, "eval_episodes", 1)
        at_least(self, "video_interval", 0)
        if self.eval_suite is not None and self.eval_levels is not None:
            raise UsageError("give either eval_suite or eval_levels, not both")
        at_least(self, "seed", 0)
        one_of(self, "backend", BACKENDS)

    def resolved_run_dir(self) -> Path:
        return Path(self.run_dir or f"runs/{self.teacher}-{self.env}-seed{self.seed}")


def config_from_dict(data: dict[str, Any], where: str = "config") -> TrainConfig:
    """A TrainConfig from a plain dict (config.json's `train`, a TOML file); unknown keys raise UsageError."""
    return merge(TrainConfig(), dict(data), where)


def load_config(run_dir: str | os.PathLike) -> TrainConfig:
    """The TrainConfig saved in `run_dir/config.json` (also the older flat form)."""
    path = Path(run_dir) / CONFIG_NAME
    if not path.is_file():
        raise UsageError(
            f"{run_dir} is not a ued run directory (no {CONFIG_NAME}); train one with `ued train`"
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UsageError(f"cannot read {path}: {exc}; the run directory is damaged") from exc
    if isinstance(data, dict) and data.get("format") == RUN_FORMAT:
        data = data.get("train")
    if not isinstance(data, dict):
        raise UsageError(f"{path} does not hold a config object; the run directory is damaged")
    return config_from_dict(data, where=str(path))


#: published configurations shipped with ued (`ued train --preset NAME`, `ued presets`)
PRESET_DIR = Path(__file__).resolve().parent / "presets"


def preset_names() -> list[str]:
    """Names of the shipped presets (TOML files in ued/presets)."""
    return sorted(p.stem for p in PRESET_DIR.glob("*.toml"))


def preset_path(name: str) -> Path:
    """The TOML file of preset `name`; UsageError listing the presets when there is none."""
    path = PRESET_DIR / f"{name}.toml"
    if not path.is_file():
        raise UsageError(
            f"unknown preset {name!r}; choose one of: {', '.join(preset_names())} (`ued presets`)"
        )
    return path


def preset_description(name: str) -> str:
    """The first comment line of a preset file: what it reproduces and its source."""
    for line in preset_path(name).read_text(encoding="utf-8").splitlines():
        if line.startswith("#"):
            return line.lstrip("# ").strip()
    return ""


# ----- teachers ---------------------------------------------------------------------------------------
#: dimension of the PAIRED adversary's random noise vector z (PAIRED)
NOISE_DIM = 50
#: hidden-layer activations of networks (`ued.models.ACTIVATIONS`)
ACTIVATION_NAMES = ("tanh", "relu")
#: regret estimates of regret teachers (`ued.scores.REGRETS`)
REGRET_NAMES = ("paired", "flexible")


@dataclass
class PAIREDConfig(Config):
    """PAIRED teacher settings; defaults: dcd's `mg_25b_paired` (adversary network, PPO) on the maze; a
    family declares its own (CarRacing: `cr_paired`) in `teacher_defaults`."""

    regret: str = "paired"
    """regret estimate rewarding the adversary: "paired" or "flexible" (flexible PAIRED)"""
    ppo: PPOConfig = field(default_factory=PPOConfig)
    """the adversary's PPO (dcd: the students' lr 1e-4, gamma 0.995, lambda 0.95, 5 epochs, 1 minibatch,
    clip 0.2, clipped value loss, entropy 0 (adv_entropy_coef), grad norm 0.5); num_envs / num_steps are
    unused (one episode per written level)"""
    noise_dim: int = NOISE_DIM
    """size of the random noise vector z given to the adversary (drawn anew at every step, as dcd)"""
    conv_channels: tuple[int, ...] = (128,)
    """channels of the adversary's convs on the editor view (dcd maze: one of 128; CarRacing: 8 then 16)"""
    kernel_size: int = 3
    """kernel of those convs (maze 3, CarRacing 2)"""
    time_embedding: int = 10
    """size of the linear layer on the one-hot time step (maze 10, CarRacing 8)"""
    hidden_size: int = 256
    """adversary LSTM size (0 = feed-forward; dcd's mg_25b_paired: 256, cr_paired: 0)"""
    input_fc: tuple[int, ...] = ()
    """layers between the conv features and the LSTM (dcd: none; the original PAIRED networks: (32, 32))"""
    head_sizes: tuple[int, ...] = (32,)
    """hidden layers of the actor head (dcd maze: one of 32; CarRacing: one of 256; original PAIRED: none)"""
    critic_sizes: tuple[int, ...] | None = None
    """hidden layers of the critic head (None: as head_sizes; dcd CarRacing: none)"""
    activation: str = "tanh"
    """activation of those layers (dcd maze: tanh; CarRacing and the original PAIRED networks: relu)"""
    actor_gains: tuple[float, ...] = (math.sqrt(2.0), 0.01)
    """orthogonal init gains of the actor head's hidden layers and of its output layer (dcd maze: sqrt 2 and
    0.01, `init_tanh_` and its Categorical; CarRacing: 1 and 1, `init_` on both)"""
    normalize_reward: bool = False
    """divide the adversary's reward by a running std of all regrets so far, no mean subtracted, no clip
    (dcd's adv_normalize_returns; off for mazes, on in cr_paired)"""
    repair_levels: bool = False
    """repair invalid written levels before the students play them (a ued option; dcd plays them as written:
    an unsolvable level earns zero regret, the signal the adversary learns from)"""

    def validate(self) -> None:
        one_of(self, "regret", REGRET_NAMES)
        one_of(self, "activation", ACTIVATION_NAMES)
        if len(self.actor_gains) != 2 or not all(math.isfinite(g) and g > 0 for g in self.actor_gains):
            raise UsageError(f"actor_gains must be two positive numbers, got {list(self.actor_gains)}")
        at_least(self, "noise_dim", 1)
        at_least(self, "kernel_size", 1)
        at_least(self, "time_embedding", 1)
        at_least(self, "hidden_size", 0)
        if not self.conv_channels or min(self.conv_channels) < 1:
            raise UsageError(
                f"conv_channels must be one or more positive sizes, got {list(self.conv_channels)}"
            )


#: CLUTR's VAE code (clutr/clutr, task_embed/clutr_RVAE): where the published VAE settings come from
_RVAE = "CLUTR task_embed/clutr_RVAE"
VAE_LATENT_ACTIVATIONS = ("none", "tanh4")
VAE_ENCODER_STATES = ("cell", "hidden_cell")
VAE_DECODER_INITS = ("zero", "latent")
VAE_RECON_REDUCTIONS = ("mean", "sum")
VAE_KL_ANNEALS = ("tanh", "logistic", "linear", "constant")


@dataclass
class VAEConfig(Config):
    """CLUTR's recurrent VAE: architecture, training data and optimisation (`ued.vae.RecurrentVAE`).

    Defaults: the published VAE (CLUTR `task_embed/clutr_RVAE`, run by `scripts/train_vae.sh`, its only VAE
    command), each field naming its source; `vae_preset("published")` is the same. Other presets:
    `vae_preset("cpu")` (ued's shipped VAEs, trainable on a CPU) and `small_vae_config()` (ued's start-up
    fallback). Paths below are in the CLUTR repository; RVAE/ is `task_embed/clutr_RVAE/`."""

    embed_dim: int = 300
    """token embedding size, one table shared by encoder and decoder (CLUTR: 300, RVAE/train.py
    --word-embed-size and scripts/train_vae.sh; RVAE/model/rvae.py shares it)"""
    highway_layers: int = 2
    """gated highway layers on the encoder's input embeddings, each mixing a ReLU(affine) and an affine
    branch through a sigmoid gate (CLUTR: 2, RVAE/model/encoder.py, RVAE/selfModules/highway.py); 0: none"""
    hidden: int = 600
    """encoder bidirectional LSTM size per direction, one layer (CLUTR: 600, RVAE/utils/parameters.py
    encoder_rnn_size)"""
    encoder_state: str = "cell"
    """what of the encoder's final state feeds the mu / logvar heads: "cell", the final cell state of both
    directions (2 x hidden; CLUTR RVAE/model/encoder.py), or "hidden_cell", final hidden and cell states of
    both (4 x hidden; ued's earlier VAE)"""
    latent: int = 64
    """latent dimensions, the CLUTR teacher's action size (CLUTR: 64, RVAE/train.py --latent-variable-size,
    scripts/train_vae.sh)"""
    latent_activation: str = "tanh4"
    """applied to the sampled latent before the decoder: "tanh4" = 4 tanh(z) (CLUTR scripts/train_vae.sh:
    --enc-activation scaled_tanh --activation-scalar 4, and the CarRacing CLUTR script loads it so) or
    "none" (RVAE/train.py's default). The KL is on the pre-activation posterior; the decoder, the latent
    range and the teacher work on activated latents"""
    logvar_clamp: float = 0.0
    """clamp the posterior log-variance to [-logvar_clamp, logvar_clamp]; 0: no clamp (CLUTR
    RVAE/model/rvae.py; ued's earlier VAE: 10)"""
    decoder_hidden: int = 800
    """decoder LSTM size (CLUTR: 800, RVAE/utils/parameters.py decoder_rnn_size)"""
    decoder_layers: int = 2
    """decoder LSTM layers (CLUTR: 2, RVAE/utils/parameters.py decoder_num_layers)"""
    decoder_init: str = "zero"
    """the decoder LSTM's initial state: "zero" (CLUTR RVAE/model/decoder.py) or "latent", tanh(Linear(z))
    (ued's earlier VAE). Either way z is concatenated to every decoder input step (CLUTR decoder.py)"""
    embed_dropout: float = 0.3
    """elementwise dropout (rescaled by 1 / (1 - p)) on the decoder's input embeddings while training
    (CLUTR: 0.3, RVAE/train.py --dropout, RVAE/model/decoder.py)"""
    word_dropout: float = 0.0
    """probability of replacing a decoder input token by a "hidden" token while training (Bowman et al.
    2016; CLUTR: none; ued's start-up VAE: 0.25)"""
    recon_weight: float = 79.0
    """weight of the reconstruction term (CLUTR: 79, RVAE/train.py --recons-weight, scripts/train_vae.sh)"""
    recon_reduction: str = "mean"
    """token cross-entropy "mean" over all batch x position entries (CLUTR RVAE/model/rvae.py, F.cross_entropy's
    default) or "sum" over a level's positions, averaged over the batch (ued's earlier VAE)"""
    kl_anneal: str = "tanh"
    """KL weight schedule: "tanh" = kl_max (tanh((step - kl_center) / kl_width) + 1) / 2 at fixed steps (CLUTR
    RVAE/utils/functional.py kld_coef); "logistic" / "linear": rising over kl_anneal_fraction of the run;
    "constant": kl_max"""
    kl_max: float = 1.0
    """final KL weight (CLUTR: 1, the kld_coef limit; below 1, a beta-VAE that keeps more of each level in
    the latent)"""
    kl_center: float = 3500.0
    """step at which the "tanh" KL weight is kl_max / 2 (CLUTR: 3500, RVAE/utils/functional.py)"""
    kl_width: float = 1000.0
    """steps over which the "tanh" KL weight rises by tanh(1) of its range (CLUTR: 1000,
    RVAE/utils/functional.py)"""
    kl_anneal_fraction: float = 0.5
    """share of the run over which the "logistic" / "linear" KL weight rises from ~0 to kl_max (ued)"""
    lr: float = 5e-5
    """Adam learning rate (CLUTR: 5e-5, RVAE/train.py --learning-rate; no weight decay)"""
    max_grad_norm: float = 0.0
    """gradient clipping norm; 0: none (CLUTR: none, RVAE/train.py, RVAE/model/rvae.py)"""
    batch_size: int = 32
    """levels per gradient step (CLUTR: 32, RVAE/train.py --batch-size)"""
    steps: int = 1_000_000
    """gradient steps (CLUTR: 1,000,000, scripts/train_vae.sh --num-iterations)"""
    sequences: int = 1_000_000
    """random training levels from the family's `sample`, generated in chunks from the seed and visited
    in a shuffled order every epoch (CLUTR: 1,000,000, scripts/train_vae.sh's data_1000000)"""
    held_out: int = 1000
    """random levels from a separate stream, never trained on (removed from the training data), for the
    reports (ued: CLUTR's --test-file is a placeholder in scripts/train_vae.sh)"""
    range_std: float = 3.0
    """the teacher's latent range = mean +- range_std x std of the activated posterior means over training
    levels (ued's fix; CLUTR's teacher writes [0, 1], CLUTRConfig.latent_range="unit")"""

    def validate(self) -> None:
        for name in ("embed_dim", "hidden", "latent", "decoder_hidden", "decoder_layers", "sequences"):
            at_least(self, name, 1)
        for name in ("batch_size", "steps"):
            at_least(self, name, 1)
        for name in ("held_out", "highway_layers", "logvar_clamp", "max_grad_norm", "range_std"):
            at_least(self, name, 0)
        for name in ("lr", "kl_width", "recon_weight"):
            if not getattr(self, name) > 0:
                raise UsageError(f"VAE {name} must be above 0, got {getattr(self, name)}")
        at_least(self, "kl_max", 0)
        one_of(self, "kl_anneal", VAE_KL_ANNEALS)
        one_of(self, "latent_activation", VAE_LATENT_ACTIVATIONS)
        one_of(self, "encoder_state", VAE_ENCODER_STATES)
        one_of(self, "decoder_init", VAE_DECODER_INITS)
        one_of(self, "recon_reduction", VAE_RECON_REDUCTIONS)
        for name in ("word_dropout", "embed_dropout"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise UsageError(f"{name} must be in [0, 1), got {getattr(self, name)}")
        if not 0.0 < self.kl_anneal_fraction <= 1.0:
            raise UsageError(f"kl_anneal_fraction must be in (0, 1], got {self.kl_anneal_fraction}")


def small_vae_config() -> VAEConfig:
    """ued's start-up fallback VAE, pretrained when no `vae_path` is given and no shipped VAE fits the
    family (`CLUTRConfig.pretrain`): about 0.06 s per step for 52-token mazes on one CPU thread, ~24%
    held-out token accuracy on DR mazes after its 500 steps (a toy, not the published method). It keeps
    ued's earlier architecture: no highway, hidden and cell states into one posterior, decoder state from
    the latent, clamped log-variance, token-summed loss with a logistic KL weight up to 0.2 (at weight 1
    random mazes collapse onto the prior within such budgets), word dropout 0.25, Adam 1e-3 with clipping."""
    return VAEConfig(
        embed_dim=32,
        highway_layers=0,
        hidden=64,
        encoder_state="hidden_cell",
        latent=64,
        latent_activation="none",
        logvar_clamp=10.0,
        decoder_hidden=128,
        decoder_layers=2,
        decoder_init="latent",
        embed_dropout=0.0,
        word_dropout=0.25,
        recon_weight=1.0,
        recon_reduction="sum",
        kl_anneal="logistic",
        kl_max=0.2,
        lr=1e-3,
        max_grad_norm=5.0,
        batch_size=32,
        steps=500,
        sequences=5_000,
        held_out=200,
    )


def cpu_vae_config() -> VAEConfig:
    """ued's CPU preset, the one its shipped VAEs were trained with (docs/clutr-vae.md): the published
    structure (shared embedding, 2 highway layers, bidirectional LSTM encoder summarised by its final cell
    states, two heads, 64 latents, z at every decoder step) at CPU sizes (embedding 64, encoder 192,
    one decoder layer of 384: ~0.25 s per 52-token maze step of 32 levels on one busy core, ~18x less work
    than the published sizes), with what makes such a budget learn: the decoder's state made from z,
    no dropout, no latent squashing, the token-summed loss with a KL weight rising to 0.2 around step 1000,
    Adam 2e-3 with clipping, one pass over 1M fresh levels."""
    return VAEConfig(
        embed_dim=64,
        highway_layers=2,
        hidden=192,
        encoder_state="cell",
        latent=64,
        latent_activation="none",
        logvar_clamp=10.0,
        decoder_hidden=384,
        decoder_layers=1,
        decoder_init="latent",
        embed_dropout=0.0,
        word_dropout=0.0,
        recon_weight=1.0,
        recon_reduction="sum",
        kl_anneal="tanh",
        kl_max=0.2,
        kl_center=1000.0,
        kl_width=500.0,
        lr=2e-3,
        max_grad_norm=5.0,
        batch_size=32,
        steps=30_000,
        sequences=1_000_000,
        held_out=1000,
    )


#: named VAE presets of `ued pretrain-vae --preset` (the first is its default)
VAE_PRESETS = {"published": VAEConfig, "cpu": cpu_vae_config, "small": small_vae_config}


def vae_preset(name: str) -> VAEConfig:
    """A fresh VAEConfig of preset `name` (`VAE_PRESETS`); UsageError for an unknown name."""
    if name not in VAE_PRESETS:
        raise UsageError(f"unknown VAE preset {name!r}; choose one of: {', '.join(VAE_PRESETS)}")
    return VAE_PRESETS[name]()


@dataclass
class CLUTRConfig(Config):
    """CLUTR teacher settings.

    The VAE is the task manifold the teacher searches. Without `vae_path`, `vae_source="shipped"` (the
    default) uses the VAE ued ships for the family at its default options (`ued/vaes/`, docs/clutr-vae.md:
    how it was trained and how good it is), so training starts within seconds. Where ued ships none (plugin
    families, other family options) or with `vae_source="pretrain"`, every run pretrains a small VAE at
    start-up (`pretrain`, `pretrain_steps`; about a minute on one CPU thread, a toy: ~24% held-out tokens
    on mazes) and caches it in its run directory. For the published VAE, train it once and point every run
    at it:

        ued pretrain-vae --env maze --out vae-maze.pt --device cuda
        ued sweep ... --teacher-option vae_path=vae-maze.pt

    (or `vae_path = "vae-maze.pt"` in the config file's [teacher] table), with the same --env and
    --env-option values the VAE was trained with. A relative `vae_path` is resolved against the working
    directory when the teacher is built.
    """

    vae_path: str | None = None
    """VAE file from `ued pretrain-vae` (None: see `vae_source`)"""
    vae_source: str = "shipped"
    """without vae_path: "shipped", ued's pretrained VAE for the family (falling back to "pretrain", with a
    message, where ued ships none for the family and its options), or "pretrain", a small VAE pretrained at
    start-up (`pretrain`)"""
    pretrain: VAEConfig = field(default_factory=small_vae_config)
    """VAE sizes for the automatic pretraining (small CPU defaults; published sizes: `VAEConfig()`)"""
    pretrain_steps: int | None = None
    """gradient steps of the automatic VAE pretraining (None: `default_pretrain_steps`, the same decoder work
    for any level length: 500 for 52-token mazes, 2167 for 12-token tracks; ~30 s each on one CPU thread)"""
    regret: str = "paired"
    """regret estimate rewarding the teacher: "paired" or "flexible" (flexible PAIRED)"""
    ppo: PPOConfig = field(default_factory=PPOConfig)
    """the teacher's PPO (the CLUTR code's maze script: lr 1e-4, 5 epochs, 1 minibatch, clip 0.2, clipped
    value loss, entropy 0; T = 1, so gamma and lambda do not matter); num_envs / num_steps are unused"""
    noise_dim: int = NOISE_DIM
    """size of the uniform noise vector the teacher maps to a latent (CLUTR: 50 maze, 4 CarRacing)"""
    body_size: int = 10
    """width of the teacher's one linear layer on the noise (CLUTR: 10 maze, 8 CarRacing)"""
    latent_range: str = "vae"
    """where the teacher's [0, 1] Beta samples go: "vae" rescales them to the VAE's latent range (mean +- 3
    std of the posterior means; a ued fix, the default) or "unit" leaves them in [0, 1] as the CLUTR code
    does (a small corner of its latent space)"""
    normalize_reward: bool = False
    """divide the teacher's reward by a running std of past regrets (CLUTR: off for mazes, on for CarRacing)"""
    repair_levels: bool = False
    """repair invalid decoded levels (a ued option; CLUTR plays them as decoded)"""

    def validate(self) -> None:
        one_of(self, "regret", REGRET_NAMES)
        one_of(self, "latent_range", ("vae", "unit"))
        one_of(self, "vae_source", ("shipped", "pretrain"))
        at_least(self, "noise_dim", 1)
        at_least(self, "body_size", 1)
        at_least(self, "pretrain_steps", 1)


#: level scores of replay teachers (`ued.scores.REPLAY_SCORES`) and replay-distribution transforms
REPLAY_SCORE_NAMES = ("pvl", "maxmc")
PRIORITIZATION_NAMES = ("rank", "power")


@dataclass
class PLRConfig(Config):
    """Robust PLR teacher settings. Defaults: dcd's maze runs (`mg_60b_uni_robust_plr`); a family may
    declare other published values (`LevelFamily.teacher_defaults`, e.g. CarRacing's)."""

    replay_prob: float = 0.5
    """probability of replaying a batch from the buffer (once it is min_fill full) instead of fresh levels"""
    score: str = "pvl"
    """level score: "pvl" (positive value loss, dcd's Robust PLR) or "maxmc" (best return - value)"""
    prioritization: str = "rank"
    """score transform of the replay distribution: "rank" or "power\""""
    temperature: float = 0.3
    """temperature of the score transform"""
    staleness_coef: float = 0.3
    """weight of staleness in the replay distribution, in [0, 1]"""
    staleness_temperature: float = 1.0
    """temperature of the staleness transform"""
    buffer_size: int = 4000
    """most levels the buffer holds"""
    min_fill: float = 0.5
    """replay only once the buffer holds at least this share of buffer_size levels (PLR's rho)"""
    robust: bool = True
    """Robust PLR: students take no gradient step on fresh levels (False: plain PLR)"""

    def validate(self) -> None:
        one_of(self, "score", REPLAY_SCORE_NAMES)
        one_of(self, "prioritization", PRIORITIZATION_NAMES)
        within(self, "replay_prob", 0.0, 1.0)
        within(self, "min_fill", 0.0, 1.0)
        within(self, "staleness_coef", 0.0, 1.0)
        at_least(self, "buffer_size", 1, 4000)
        if not self.temperature > 0 or not self.staleness_temperature > 0:
            raise UsageError(
                f"temperatures must be above 0, got {self.temperature} and {self.staleness_temperature}"
            )


@dataclass
class ACCELConfig(PLRConfig):
    """ACCEL teacher settings: `PLRConfig` plus the editor. Defaults: dcd's `mg_60b_uni_accel_empty`."""

    replay_prob: float = 0.8
    """probability of replaying a batch from the buffer (once it is min_fill full) instead of fresh levels"""
    num_edits: int = 5
    """random edits per child level (`family.mutate`)"""
    start_easy: bool = True
    """fresh levels from `family.sample_easy` (maze: no walls; dcd's empty base env) instead of `sample`"""
    parents: str = "dcd"
    """which replayed levels get children: "dcd" (its `base_levels easy` rule: the `num_parents` levels
    with the lowest mean return minus value loss, each copied equally often) or "best_score" (a ued
    option: the `parent_share` best of the batch by replay score, round-robin)"""
    num_parents: int = 4
    """distinct parents under the "dcd" rule (dcd: 4, each copied num_envs / 4 times)"""
    parent_share: float = 1.0
    """share of the replayed batch, highest scores first, whose levels get children ("best_score" only)"""

    def validate(self) -> None:
        super().validate()
        at_least(self, "num_edits", 1, 5)
        at_least(self, "num_parents", 1, 4)
        one_of(self, "parents", ("dcd", "best_score"))
        if not 0.0 < self.parent_share <= 1.0:
            raise UsageError(f"parent_share must be in (0, 1], got {self.parent_share}; e.g. 1.0")


__all__ = [
    "BACKENDS",
    "CONFIG_NAME",
    "NOISE_DIM",
    "RUN_FORMAT",
    "VAE_PRESETS",
    "ACCELConfig",
    "CLUTRConfig",
    "Config",
    "PAIREDConfig",
    "PLRConfig",
    "PPOConfig",
    "TrainConfig",
    "VAEConfig",
    "coerce",
    "config_from_dict",
    "cpu_vae_config",
    "defaults",
    "field_docs",
    "load_config",
    "merge",
    "preset_description",
    "preset_names",
    "preset_path",
    "small_vae_config",
    "vae_preset",
]
