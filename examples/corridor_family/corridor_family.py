"""An example third-party level family for ued: a one-row corridor with hurdles.

This file is the whole of "adding an environment generator": a `Level` dataclass, a gymnasium env that plays
one, a small student network, a `LevelFamily` that ties them to ued's teachers through tokens, and a
held-out suite (`corridor-transfer`, the family's `default_suite`, which `ued eval RUN` plays by default).
Install the folder (`pip install -e examples/corridor_family`) and `ued train --env corridor` finds it
through the entry point declared in setup.cfg; or, without installing, `register_family(CorridorFamily)` in
your script. `ued check-family corridor` (or `ued.testing.check_family`) checks it against the contract.

The game. The corridor is a row of `length` cells. The agent starts on `start` and must reach `goal`. Some
cells hold hurdles: the agent cannot step onto a hurdle, but it can jump two cells, over one hurdle (it
cannot land on one, so two hurdles side by side block the way).

Text form, one character a cell: `.` floor, `#` hurdle, `S` start, `G` goal, e.g. `S..#.#..G...`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces

from ued.config import PPOConfig
from ued.environments.suites import Suite, register_suite
from ued.errors import UsageError
from ued.levels import LevelFamily
from ued.models import EncoderPolicy, mlp, register_student

#: actions: step left, step right, jump left (two cells), jump right (two cells)
MOVES = (-1, 1, -2, 2)
#: colours of `render`: floor, hurdle, start, goal, agent
COLOURS = {".": (40, 40, 40), "#": (150, 90, 30), "S": (80, 80, 200), "G": (40, 200, 40), "A": (220, 40, 40)}


@dataclass(frozen=True)
class CorridorLevel:
    """A corridor: its length, the hurdle cells (sorted), the start and goal cells (0-based)."""

    length: int
    hurdles: tuple[int, ...]
    start: int
    goal: int

    def __post_init__(self) -> None:
        hurdles = tuple(sorted({int(h) for h in self.hurdles}))
        object.__setattr__(self, "hurdles", hurdles)
        if self.length < 3:
            raise ValueError(f"a corridor needs at least 3 cells, got {self.length}")
        for what, cell in (("start", self.start), ("goal", self.goal), *(("hurdle", h) for h in hurdles)):
            if not 0 <= cell < self.length:
                raise ValueError(f"{what} {cell} is outside the corridor 0..{self.length - 1}")
        if self.start == self.goal or {self.start, self.goal} & set(hurdles):
            raise ValueError(f"start, goal and hurdles must be different cells: {self}")

    def reachable(self) -> bool:
        """Whether the agent can get from the start to the goal."""
        seen, todo = {self.start}, [self.start]
        while todo:
            x = todo.pop()
            for move in MOVES:
                y = x + move
                if 0 <= y < self.length and y not in self.hurdles and y not in seen:
                    seen.add(y)
                    todo.append(y)
        return self.goal in seen

    def to_text(self) -> str:
        cells = ["."] * self.length
        for h in self.hurdles:
            cells[h] = "#"
        cells[self.start], cells[self.goal] = "S", "G"
        return "".join(cells)

    @classmethod
    def from_text(cls, text: str) -> CorridorLevel:
        row = text.strip()
        if set(row) - set(".#SG") or row.count("S") != 1 or row.count("G") != 1:
            raise UsageError(f"bad corridor {row!r}: use one line of . # S G with exactly one S and one G")
        return cls(len(row), tuple(i for i, c in enumerate(row) if c == "#"), row.index("S"), row.index("G"))


class CorridorEnv(gym.Env):
    """Play one corridor.

    ## Observation
    float32 (3, length): hurdles, the agent's cell, the goal's cell (one-hot rows).

    ## Action Space
    `Discrete(4)`: step left, step right, jump left, jump right. A move onto a hurdle or off the corridor
    does nothing.

    ## Rewards
    `1 - 0.9 * steps / max_steps` on reaching the goal (as in the published mazes), else 0.

    ## Termination
    Terminates at the goal; truncated after `max_steps` (2 x length) steps.

    `reset(options={"level": lvl})` switches the level; assigning `env.level = lvl` makes every later reset
    use it (that is how ued's vector env hands each sub-env its level).
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["rgb_array"], "render_fps": 8}

    def __init__(self, level: CorridorLevel, render_mode: str | None = None):
        self.level = level
        self.render_mode = render_mode
        self.max_steps = 2 * level.length
        self.observation_space = spaces.Box(0.0, 1.0, shape=(3, level.length), dtype=np.float32)
        self.action_space = spaces.Discrete(len(MOVES))
        self.position = level.start
        self.steps = 0

    def _obs(self) -> np.ndarray:
        obs = np.zeros((3, self.level.length), dtype=np.float32)
        obs[0, list(self.level.hurdles)] = 1.0
        obs[1, self.position] = 1.0
        obs[2, self.level.goal] = 1.0
        return obs

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        if options and "level" in options:
            if options["level"].length != self.level.length:
                raise ValueError("a CorridorEnv plays corridors of one length (its observation space)")
            self.level = options["level"]
        self.position, self.steps = self.level.start, 0
        return self._obs(), {}

    def step(self, action: int):
        self.steps += 1
        target = self.position + MOVES[int(action)]
        if 0 <= target < self.level.length and target not in self.level.hurdles:
            self.position = target
        terminated = self.position == self.level.goal
        reward = 1.0 - 0.9 * self.steps / self.max_steps if terminated else 0.0
        truncated = not terminated and self.steps >= self.max_steps
        return self._obs(), float(reward), terminated, truncated, {}

    def render(self) -> np.ndarray | None:
        if self.render_mode != "rgb_array":
            return None
        return draw(self.level, agent=self.position)


def draw(level: CorridorLevel, agent: int | None = None, cell: int = 16) -> np.ndarray:
    """uint8 (cell, cell * length, 3) picture; the agent (if given) is a red square inside its cell."""
    image = np.zeros((cell, cell * level.length, 3), dtype=np.uint8)
    for i, char in enumerate(level.to_text()):
        image[1:-1, i * cell + 1 : (i + 1) * cell - 1] = COLOURS[char]
    if agent is not None:
        q = cell // 4
        image[q:-q, agent * cell + q : (agent + 1) * cell - q] = COLOURS["A"]
    return image


@register_student("corridor-mlp")
class CorridorPolicy(EncoderPolicy):
    """The corridor student: a feed-forward MLP (64, 64) on the flattened observation, actor and critic heads
    (ued's `EncoderPolicy` does the rest: no LSTM when `hidden_size` is 0)."""

    @classmethod
    def for_family(cls, family: CorridorFamily, **options) -> CorridorPolicy:
        return cls(family.length, **options)

    def __init__(self, length: int, hidden: Sequence[int] = (64, 64)):
        features = 3 * length
        super().__init__(
            features,
            0,
            actor=mlp(features, hidden, len(MOVES), out_gain=0.01),
            critic=mlp(features, hidden, 1, out_gain=1.0),
        )

    def encode(self, obs: torch.Tensor) -> torch.Tensor:
        return obs.float().flatten(1)


class CorridorFamily(LevelFamily):
    """Corridors as tokens: `[goal, start, hurdles sorted..., padded with the goal]`, one token per cell, so
    `vocab_size` = length and `max_tokens` = 2 + max_hurdles. `decode` reads the tokens the way a PAIRED
    adversary writes them: a start on the goal moves to the next cell, a hurdle on the goal, the start or
    another hurdle is a no-op; missing tokens put the goal on the last cell and the start after the goal."""

    name = "corridor"
    default_student = "corridor-mlp"
    default_suite = "corridor-transfer"

    def __init__(self, length: int = 16, max_hurdles: int = 6):
        if not 3 <= int(length) <= 64:
            raise UsageError(f"length must be in 3..64, got {length}; e.g. length=16")
        if not 0 <= int(max_hurdles) <= int(length) - 2:
            raise UsageError(f"max_hurdles must be in 0..{int(length) - 2}, got {max_hurdles}")
        self.length = int(length)
        self.max_hurdles = int(max_hurdles)
        self.vocab_size = self.length
        self.max_tokens = 2 + self.max_hurdles

    @property
    def options(self) -> dict[str, int]:
        return {"length": self.length, "max_hurdles": self.max_hurdles}

    # ----- tokens -------------------------------------------------------------------------------------
    def _parts(self, tokens: Sequence[int] | np.ndarray) -> tuple[int | None, int | None, list[int]]:
        toks = [int(t) for t in np.asarray(tokens, dtype=np.int64).reshape(-1)]
        if len(toks) > self.max_tokens or any(not 0 <= t < self.length for t in toks):
            raise ValueError(f"need at most {self.max_tokens} tokens in 0..{self.length - 1}, got {toks}")
        goal = toks[0] if toks else None
        start = None
        if len(toks) > 1:
            start = toks[1] if toks[1] != goal else (goal + 1) % self.length
        hurdles = sorted(set(toks[2:]) - {goal, start})
        return goal, start, hurdles

    def decode(self, tokens: Sequence[int] | np.ndarray) -> CorridorLevel:
        goal, start, hurdles = self._parts(tokens)
        goal = self.length - 1 if goal is None else goal
        start = (goal + 1) % self.length if start is None else start
        return CorridorLevel(self.length, tuple(hurdles), start, goal)

    def encode(self, level: CorridorLevel) -> np.ndarray:
        if level.length != self.length or len(level.hurdles) > self.max_hurdles:
            raise ValueError(
                f"this family holds corridors of {self.length} cells with <= {self.max_hurdles} hurdles"
            )
        tokens = np.full(self.max_tokens, level.goal, dtype=np.int64)
        tokens[1] = level.start
        tokens[2 : 2 + len(level.hurdles)] = level.hurdles
        return tokens

    # ----- generation ---------------------------------------------------------------------------------
    def sample(self, rng: np.random.Generator) -> CorridorLevel:
        """Random goal and start, 0..max_hurdles hurdles at random cells, repaired if blocked."""
        tokens = rng.integers(0, self.length, size=2 + int(rng.integers(0, self.max_hurdles + 1)))
        return self.repair(self.decode(tokens))

    def sample_easy(self, rng: np.random.Generator) -> CorridorLevel:
        return self.decode(rng.integers(0, self.length, size=2))

    def is_valid(self, level: CorridorLevel) -> bool:
        return level.reachable()

    def repair(self, level: CorridorLevel) -> CorridorLevel:
        """Remove, from the start towards the goal, the second hurdle of each pair that blocks the way."""
        hurdles = set(level.hurdles)
        step = 1 if level.goal > level.start else -1
        for x in range(level.start, level.goal, step):
            if x in hurdles and x + step in hurdles:
                hurdles.discard(x + step)
        return CorridorLevel(level.length, tuple(hurdles), level.start, level.goal)

    # ----- the PAIRED adversary's editor --------------------------------------------------------------
    def editor_view(self, tokens: Sequence[int] | np.ndarray) -> np.ndarray:
        """float32 (3, 1, length): hurdles, goal, start of the tokens written so far."""
        goal, start, hurdles = self._parts(tokens)
        view = np.zeros(self.editor_view_shape, dtype=np.float32)
        view[0, 0, hurdles] = 1.0
        for channel, cell in ((1, goal), (2, start)):
            if cell is not None:
                view[channel, 0, cell] = 1.0
        return view

    @property
    def editor_view_shape(self) -> tuple[int, int, int]:
        return (3, 1, self.length)

    # ----- students -----------------------------------------------------------------------------------
    def make_env(self, level: CorridorLevel | None = None, render_mode: str | None = None) -> CorridorEnv:
        if level is None:
            level = self.sample(np.random.default_rng(0))
        return CorridorEnv(level, render_mode=render_mode)

    def default_ppo(self) -> PPOConfig:
        """Short episodes, a small feed-forward net: fewer envs and steps, a larger learning rate."""
        return PPOConfig(
            num_envs=16, num_steps=64, lr=2e-3, gamma=0.99, epochs=4, num_minibatches=4, entropy_coef=0.01
        )

    # ----- pictures and statistics --------------------------------------------------------------------
    def render(self, level: CorridorLevel) -> np.ndarray:
        return draw(level)

    def level_stats(self, level: CorridorLevel) -> dict[str, float]:
        return {"hurdles": float(len(level.hurdles)), "distance": float(abs(level.goal - level.start))}

    def to_text(self, level: CorridorLevel) -> str:
        return level.to_text()

    def from_text(self, text: str) -> CorridorLevel:
        return CorridorLevel.from_text(text)


# ----- the held-out suite: corridors nobody trains on (`ued eval RUN` plays it by default) ---------------------
#: hand-written corridors of the default length (16 cells), each solvable
TRANSFER_CORRIDORS = {
    "long-run": "S..............G",
    "jumps": "S.#.#.#.#.#....G",
    "hurdle-every-other": "S#.#.#.#.#.#...G",
    "backwards": "G....#.#...#..S.",
    "middle-start": "..#..#.S..#.#..G",
}


def transfer_corridors() -> list[tuple[str, CorridorLevel]]:
    """The entries of `corridor-transfer`: `TRANSFER_CORRIDORS`, in order."""
    return [(name, CorridorLevel.from_text(text)) for name, text in TRANSFER_CORRIDORS.items()]


# registered when this module is imported (by the entry point, or by a script's import): the family's
# default_suite names it, so `ued eval RUN` and the training loop's periodic evaluation play it by default
register_suite(
    Suite(
        name="corridor-transfer",
        family="corridor",
        description="5 hand-written 16-cell corridors: a long run, jumps, hurdles every other cell, backwards",
        loader=transfer_corridors,
        protocol="ued's default: 100 episodes per corridor, stochastic policy, solved = return > 0",
    )
)
