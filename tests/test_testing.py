"""`ued.testing.check_family`: the built-in families and the corridor example keep the LevelFamily contract,
and each small deliberately broken variant of the corridor family fails with one line naming the method;
docs/level-families.md's reference is generated from LevelFamily's docstrings."""

from __future__ import annotations

import importlib
import os
import random
import re
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

from ued.errors import UsageError
from ued.levels import LevelFamily
from ued.testing import (
    REFERENCE_BEGIN,
    REFERENCE_END,
    FamilyCheckError,
    check_family,
    family_reference,
    public_members,
)
from ued.vecenv import GymLevelVectorEnv

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "corridor_family"
DOC = ROOT / "docs" / "level-families.md"


def _import_example():
    sys.path.insert(0, str(EXAMPLE))
    try:
        return importlib.import_module("corridor_family")
    finally:
        sys.path.remove(str(EXAMPLE))


cf = _import_example()


# ----- the families that keep the contract -------------------------------------------------------------
def test_maze_keeps_the_contract():
    report = check_family("maze", samples=12)
    assert report.ok and not report.problems
    names = [line.split(":")[0] for line in report.passed]
    assert {"decode", "repair", "make_env", "make_vector_env/default_student", "default_suite"} <= set(names)


def test_carracing_keeps_the_contract_quickly():
    # in-process vector env and no check_env (the pixel env renders every step); the rest as for every family
    report = check_family("carracing", samples=8, env_levels=2, env_checker=False, vector_envs=1)
    assert report.ok, report.problems
    assert any(line.startswith("allowed_tokens:") for line in report.passed)  # it has an adversary mask


def test_the_corridor_example_keeps_the_contract():
    report = check_family(cf.CorridorFamily())
    assert report.ok, report.problems
    assert any(line.startswith("default_suite: 'corridor-transfer'") for line in report.passed)
    check_family(cf.CorridorFamily, samples=4)  # a class is built with its default options
    # other options keep it too, but for the held-out suite, whose corridors have the default 16 cells
    report = check_family(cf.CorridorFamily(length=8, max_hurdles=3), samples=8, raise_on_problems=False)
    (problem,) = report.problems
    assert problem.startswith(
        "default_suite: suite 'corridor-transfer' entry 'long-run' is neither encodable"
    )


# ----- broken variants of the corridor family: one mistake each ----------------------------------------
class DecodeRejects(cf.CorridorFamily):
    """decode refuses a start on the goal, which a PAIRED adversary can write."""

    def decode(self, tokens):
        toks = list(np.asarray(tokens).reshape(-1))
        if len(toks) > 1 and toks[0] == toks[1]:
            raise ValueError("the start cannot be on the goal")
        return super().decode(tokens)


class EncodeSwaps(cf.CorridorFamily):
    """encode writes start and goal the wrong way round."""

    def encode(self, level):
        tokens = super().encode(level)
        tokens[0], tokens[1] = tokens[1], tokens[0]
        return tokens


class RepairDoesNothing(cf.CorridorFamily):
    def repair(self, level):
        return level


class RepairNotIdempotent(cf.CorridorFamily):
    """repair also drops the first hurdle, every time it is called."""

    def repair(self, level):
        level = super().repair(level)
        return cf.CorridorLevel(level.length, level.hurdles[1:], level.start, level.goal)


class RepairNeverReturns(cf.CorridorFamily):
    def sample(self, rng):  # valid levels without repairing them
        return self.sample_easy(rng)

    def repair(self, level):
        return self.search(level)

    def search(self, level):  # the only place the interpreter can stop it, so the reported chain is fixed
        while True:
            pass


class SampleUsesGlobalRandomness(cf.CorridorFamily):
    def sample(self, rng):
        return super().sample(np.random.default_rng(random.getrandbits(32)))


class EditorViewShapeChanges(cf.CorridorFamily):
    def editor_view(self, tokens):
        view = super().editor_view(tokens)
        return view if len(tokens) < 3 else view[0]


class EditorViewFloat64(cf.CorridorFamily):
    def editor_view(self, tokens):
        return super().editor_view(tokens).astype(np.float64)


class MaskTooShort(cf.CorridorFamily):
    def allowed_tokens(self, tokens):
        return np.ones(self.vocab_size - 1, dtype=bool)


class MaskRunsOut(cf.CorridorFamily):
    """allows each cell once: runs out of tokens for long sequences."""

    def allowed_tokens(self, tokens):
        allowed = np.ones(self.vocab_size, dtype=bool)
        allowed[: len(tokens) * 3] = False
        return allowed


class TextLosesLevels(cf.CorridorFamily):
    def from_text(self, text):
        return super().from_text(text.strip()[::-1])


class TextRefusesNewline(cf.CorridorFamily):
    def from_text(self, text):
        if text.endswith("\n"):
            raise UsageError("unexpected end of line")
        return super().from_text(text)


class MutateTooManyHurdles(cf.CorridorFamily):
    def mutate(self, level, rng, num_edits=1):
        free = [c for c in range(self.length) if c not in (level.start, level.goal)]
        return cf.CorridorLevel(self.length, tuple(free), level.start, level.goal)


class UnregisteredStudent(cf.CorridorFamily):
    default_student = "no-such-network"


class UnregisteredSuite(cf.CorridorFamily):
    default_suite = "no-such-suite"


class OtherFamilysSuite(cf.CorridorFamily):
    default_suite = "maze-transfer"


class OptionsForgetOne(cf.CorridorFamily):
    @property
    def options(self):
        return {"length": self.length}


class LevelOptionsNotOptions(cf.CorridorFamily):
    @property
    def level_options(self):
        return {"length": self.length + 1}


class StickyEnv(cf.CorridorEnv):
    """Keeps the level it was made with: ignores `env.level = lvl` (switching only through options)."""

    def __init__(self, level, render_mode=None):
        super().__init__(level, render_mode)
        self._own = level

    def reset(self, *, seed=None, options=None):
        gym.Env.reset(self, seed=seed)
        if options and "level" in options:
            self._own = options["level"]
        self.level = self._own
        self.position, self.steps = self.level.start, 0
        return self._obs(), {}


class IgnoresAssignedLevel(cf.CorridorFamily):
    def make_env(self, level=None, render_mode=None):
        return StickyEnv(level if level is not None else self.sample(np.random.default_rng(0)), render_mode)


class OptionsBlindEnv(cf.CorridorEnv):
    def reset(self, *, seed=None, options=None):
        return super().reset(seed=seed)


class IgnoresResetOptions(cf.CorridorFamily):
    def make_env(self, level=None, render_mode=None):
        return OptionsBlindEnv(
            level if level is not None else self.sample(np.random.default_rng(0)), render_mode
        )


class HurdleRowsEnv(cf.CorridorEnv):
    """One observation row per hurdle: the shape changes with the level."""

    def __init__(self, level, render_mode=None):
        super().__init__(level, render_mode)
        self.observation_space = gym.spaces.Box(0.0, 1.0, shape=(2 + len(level.hurdles), level.length))

    def _obs(self):
        obs = np.zeros(self.observation_space.shape, dtype=np.float32)
        for row, h in enumerate(self.level.hurdles):
            obs[2 + row, h] = 1.0
        obs[0, self.position] = obs[1, self.level.goal] = 1.0
        return obs


class ObservationChangesShape(cf.CorridorFamily):
    def make_env(self, level=None, render_mode=None):
        return HurdleRowsEnv(
            level if level is not None else self.sample(np.random.default_rng(0)), render_mode
        )


class UnseededEnv(cf.CorridorEnv):
    """Resets without seeding gymnasium's np_random (no super().reset(seed=seed))."""

    def reset(self, *, seed=None, options=None):
        if options and "level" in options:
            self.level = options["level"]
        self.position, self.steps = self.level.start, 0
        return self._obs(), {}


class FailsGymnasiumsChecker(cf.CorridorFamily):
    def make_env(self, level=None, render_mode=None):
        return UnseededEnv(level if level is not None else self.sample(np.random.default_rng(0)), render_mode)


class FrozenVectorEnv(GymLevelVectorEnv):
    def set_levels(self, levels):
        pass


class VectorEnvIgnoresLevels(cf.CorridorFamily):
    def make_vector_env(self, num_envs, *, seed=0, device="cpu", evaluation=False):
        return FrozenVectorEnv(self, num_envs, seed=seed, device=device)


class ConstructorFails(cf.CorridorFamily):
    def __init__(self, length: int = 16, max_hurdles: int = 6):
        raise RuntimeError("forgot to copy the defaults")


BROKEN = [
    (DecodeRejects, "decode", "raised ValueError: the start cannot be on the goal"),
    (EncodeSwaps, "encode", "decode(encode(level)) != level"),
    (RepairDoesNothing, "repair", "returned a level is_valid rejects"),
    (RepairNotIdempotent, "repair", "is not idempotent"),
    (SampleUsesGlobalRandomness, "sample", "two equal Generators gave different levels"),
    (EditorViewShapeChanges, "editor_view", "returned shape (1, 16) for a prefix of 3 tokens"),
    (EditorViewFloat64, "editor_view", "dtype float64, not float32"),
    (MaskTooShort, "allowed_tokens", "returned shape (15,), not (vocab_size,) = (16,)"),
    (MaskRunsOut, "allowed_tokens", "allows no token after prefix"),
    (TextLosesLevels, "from_text", "not the level"),
    (TextRefusesNewline, "from_text", "unexpected end of line on a level file of to_text(level)"),
    (MutateTooManyHurdles, "mutate", "returned a level encode cannot hold"),
    (UnregisteredStudent, "default_student", "'no-such-network' is not a registered student network"),
    (UnregisteredSuite, "default_suite", "'no-such-suite' is not a registered suite"),
    (OtherFamilysSuite, "default_suite", "holds 'maze' levels, not 'corridor' ones"),
    (OptionsForgetOne, "options", "leaves out the constructor argument(s) max_hurdles"),
    (LevelOptionsNotOptions, "options", "level_options {'length': 17} are not a part of options"),
    (IgnoresAssignedLevel, "make_env", "assigning env.unwrapped.level = lvl and resetting does not play lvl"),
    (IgnoresResetOptions, "make_env", 'reset(options={"level": lvl}) does not play lvl'),
    (ObservationChangesShape, "make_env", "the observation changes with the level"),
    (FailsGymnasiumsChecker, "make_env", "gymnasium's check_env fails"),
    (VectorEnvIgnoresLevels, "make_vector_env", "ignores set_levels"),
    (ConstructorFails, "__init__", "RuntimeError: forgot to copy the defaults"),
]
#: problems that follow from the variant's mistake elsewhere (an env that ignores `env.level` also makes
#: the default vector env ignore set_levels, which assigns it; a changing observation breaks the batch)
ALSO = {
    SampleUsesGlobalRandomness: ("make_vector_env",),
    IgnoresAssignedLevel: ("make_vector_env",),
    ObservationChangesShape: ("make_vector_env",),
    DecodeRejects: ("sample", "mutate"),
}


@pytest.mark.parametrize("cls, method, words", BROKEN, ids=[c.__name__ for c, _, _ in BROKEN])
def test_each_mistake_is_one_line_naming_the_method(cls, method, words):
    target = cls if cls is ConstructorFails else cls()
    with pytest.raises(FamilyCheckError) as err:
        check_family(target, samples=8, time_limit=20)
    problems = err.value.problems
    assert all("\n" not in p for p in problems)
    mine = [p for p in problems if p.startswith(f"{method}: ")]
    assert len(mine) == 1 and words in mine[0], problems
    others = {p.split(":")[0] for p in problems} - {method}
    assert others <= set(ALSO.get(cls, ())), problems
    assert isinstance(err.value, AssertionError) and mine[0] in str(err.value)


def test_a_method_that_never_returns_is_stopped_and_named():
    report = check_family(RepairNeverReturns(), samples=8, time_limit=1, raise_on_problems=False)
    problem = report.problems[0]
    assert problem.startswith("repair: did not return within 1 s (check repair; running repair -> search)")
    assert [p.split(":")[0] for p in report.problems[1:]] in ([], ["mutate"])  # its default calls repair
    assert any(line.startswith("make_env:") for line in report.passed)  # the other checks still ran


def test_a_class_missing_abstract_methods_is_one_line_per_method():
    class Half(LevelFamily):
        name = "half"
        vocab_size = max_tokens = 2

        def encode(self, level):
            return np.zeros(2, dtype=np.int64)

    report = check_family(Half, raise_on_problems=False)
    assert not report.ok and not report.passed
    assert report.problems[0] == "decode: not implemented (abstract in LevelFamily); implement it"
    assert len(report.problems) == 8  # decode, editor_view, editor_view_shape, is_valid, make_env, ...


def test_the_report_lists_passed_and_skipped_checks():
    report = check_family(cf.CorridorFamily(), samples=4, raise_on_problems=False)
    assert report.ok
    assert report.skipped == ("allowed_tokens: allows every token (None)",)
    assert report.summary() == "family 'corridor': 13 checks passed, 0 problem(s), 1 skipped"


# ----- the API reference --------------------------------------------------------------------------------
def test_the_reference_in_the_docs_is_generated_from_the_docstrings():
    text = DOC.read_text(encoding="utf-8")
    head, _, rest = text.partition(REFERENCE_BEGIN)
    generated, _, tail = rest.partition(REFERENCE_END)
    if os.environ.get("UED_WRITE_DOCS"):
        DOC.write_text(
            f"{head}{REFERENCE_BEGIN}\n\n{family_reference()}\n{REFERENCE_END}{tail}", encoding="utf-8"
        )
        pytest.skip("rewrote docs/level-families.md")
    assert generated.strip() == family_reference().strip(), (
        "docs/level-families.md is out of date with LevelFamily's docstrings; regenerate it with "
        "UED_WRITE_DOCS=1 python -m pytest tests/test_testing.py -k reference"
    )


def test_every_public_member_is_documented_and_every_documented_member_exists():
    documented = re.findall(r"^### `(\w+)", DOC.read_text(encoding="utf-8"), re.MULTILINE)
    members = [n for n in dir(LevelFamily) if not n.startswith("_")] + ["name", "vocab_size", "max_tokens"]
    assert sorted(documented) == sorted(set(members)) == sorted(public_members())
    for name in public_members():
        member = getattr(LevelFamily, name, None)
        if callable(member) or isinstance(vars(LevelFamily).get(name), property):
            doc = (getattr(member, "__doc__", None) or vars(LevelFamily)[name].__doc__) or ""
            assert "Called by:" in doc, f"LevelFamily.{name}'s docstring says nobody calls it"


def test_the_doc_states_what_every_member_must_never_do():
    # the members whose misuse broke a new user's plugin say so in the generated reference
    reference = family_reference()
    for name in ("decode", "editor_view", "repair", "make_env", "make_vector_env", "allowed_tokens"):
        section = reference.split(f"### `{name}(", 1)[1].split("### ", 1)[0]
        assert "- **Never:**" in section, name
