"""Plugins cannot break the tool: broken family and suite plugins (simulated entry points) are one line in
`ued envs` and one error line when used by name, while the others keep working; plugin suites; and the
kit's commands, `ued check-family` and `ued new-family` (whose template passes check_family)."""

from __future__ import annotations

import importlib
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from ued import levels, models
from ued.cli.main import cli
from ued.environments import suites
from ued.environments.suites import Suite, resolve_suite
from ued.errors import UsageError
from ued.levels import LevelFamily, make_family, register_family
from ued.testing import check_family

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "corridor_family"


def _import_example():
    sys.path.insert(0, str(EXAMPLE))
    try:
        return importlib.import_module("corridor_family")
    finally:
        sys.path.remove(str(EXAMPLE))


cf = _import_example()


@dataclass
class FakeEntryPoint:
    """An installed entry point as `importlib.metadata.entry_points` gives it: `load()` returns `target`, or
    raises it when it is an exception (an import that fails)."""

    name: str
    value: str
    group: str
    target: Any

    def load(self) -> Any:
        if isinstance(self.target, BaseException):
            raise self.target
        return self.target


@pytest.fixture
def installed(monkeypatch):
    """Private copies of the registries and no installed plugins; returns `install(group, name, target)`."""
    monkeypatch.setattr(levels, "FAMILIES", dict(levels.FAMILIES))
    monkeypatch.setattr(levels, "PLUGIN_ERRORS", {})
    monkeypatch.setattr(suites, "SUITES", dict(suites.SUITES))
    monkeypatch.setattr(suites, "SUITE_PLUGINS", {})
    monkeypatch.setattr(suites, "SUITE_PLUGIN_ERRORS", {})
    monkeypatch.setattr(models, "STUDENTS", dict(models.STUDENTS))
    eps: list[FakeEntryPoint] = []
    monkeypatch.setattr(levels, "entry_points", lambda *, group: [ep for ep in eps if ep.group == group])

    def install(group: str, name: str, target: Any) -> None:
        value = f"{getattr(target, '__module__', 'plugin')}:{getattr(target, '__qualname__', name)}"
        eps.append(FakeEntryPoint(name, value, group, target))

    return install


def run(*args: str):
    return CliRunner().invoke(cli, list(args))


def one_error_line(result, *words: str) -> str:
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


# ----- deliberately broken plugin classes ----------------------------------------------------------------
class HalfFamily(LevelFamily):
    """Forgot editor_view, editor_view_shape, make_env and render."""

    name = "keydoor-half"
    vocab_size = 4
    max_tokens = 2

    def encode(self, level):
        return np.asarray(level, dtype=np.int64)

    def decode(self, tokens):
        return tuple(int(t) for t in tokens)

    def sample(self, rng):
        return (0, 1)

    def is_valid(self, level):
        return True

    def repair(self, level):
        return level


class InitFails(cf.CorridorFamily):
    name = "keydoor-init"

    def __init__(self, length: int = 16):
        raise RuntimeError("keys.png not found")


class VocabFails(cf.CorridorFamily):
    name = "keydoor-vocab"

    @property
    def vocab_size(self):
        return self.no_such_attribute

    @vocab_size.setter
    def vocab_size(self, value):
        pass


def install_broken_families(install) -> None:
    group = levels.ENTRY_POINT_GROUP
    install(group, "keydoor-import", ImportError("No module named 'pygame_keys'"))
    install(group, "keydoor-half", HalfFamily)
    install(group, "keydoor-init", InitFails)
    install(group, "keydoor-vocab", VocabFails)
    install(group, "keydoor", cf.CorridorFamily)  # the entry point's name differs from the class's
    install(group, "maze", cf.CorridorFamily)  # a taken name
    install(group, "corridor", cf.CorridorFamily)  # the one that works


BROKEN_NAMES = ("keydoor-import", "keydoor-half", "keydoor-init", "keydoor-vocab", "keydoor")


def test_ued_envs_survives_every_broken_plugin_and_lists_each_on_one_line(installed):
    install_broken_families(installed)
    result = run("envs")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    for name in ("maze", "carracing", "corridor"):  # the others keep working
        assert any(line.split()[:1] == [name] and "broken" not in line for line in lines), name
    expected = {
        "keydoor-import": "cannot import",
        "keydoor-half": "does not implement the abstract LevelFamily method(s) editor_view, editor_view_shape, "
        "make_env, render",
        "keydoor-init": "RuntimeError: keys.png not found",
        "keydoor-vocab": "AttributeError",
        "keydoor": "entry point name 'keydoor' differs from corridor_family.CorridorFamily.name 'corridor'",
    }
    for name, words in expected.items():
        mine = [line for line in lines if line.split()[:1] == [name]]
        assert len(mine) == 1 and "(broken" in mine[0] and words in mine[0], (name, mine)
    (taken,) = [line for line in lines if line.split()[:1] == ["maze"] and "broken" in line]
    assert "which ued.environments.maze.MazeFamily already holds" in taken


@pytest.mark.parametrize(
    "name, words",
    [
        ("keydoor-import", ["plugin 'keydoor-import'", "cannot import", "pygame_keys"]),
        ("keydoor-half", ["does not implement", "editor_view"]),
        ("keydoor-init", ["keydoor-init", "broken", "RuntimeError: keys.png not found"]),
        ("keydoor", ["differs from", "'corridor'"]),
    ],
)
def test_a_broken_family_used_by_name_is_one_error_line(installed, tmp_path, name, words):
    install_broken_families(installed)
    one_error_line(run("train", "--env", name, "--teacher", "dr", "--run-dir", str(tmp_path / "r")), *words)
    one_error_line(run("check-family", name), *words)
    assert not (tmp_path / "r").exists()
    assert make_family("corridor").name == "corridor" and make_family("maze").name == "maze"


def test_register_family_refuses_an_incomplete_class(installed):
    with pytest.raises(TypeError, match="does not implement the abstract LevelFamily method"):
        register_family(HalfFamily)


# ----- plugin suites --------------------------------------------------------------------------------------
def _lane_levels() -> list[tuple[str, Any]]:
    return [("open", cf.CorridorLevel.from_text("S..............G"))]


class LaneFamily(cf.CorridorFamily):
    """A corridor family without a default_suite."""

    name = "lane"
    default_suite = None


def test_plugin_suites_load_from_their_entry_point_and_broken_ones_break_nothing(installed):
    group = suites.SUITE_ENTRY_POINT_GROUP
    lane = Suite("lane-transfer", "lane", "one open lane", _lane_levels)
    installed(levels.ENTRY_POINT_GROUP, "lane", LaneFamily)
    installed(group, "lane-suites", lambda: [lane])
    installed(
        group, "one-suite", Suite("corridor-extra", "corridor", "extra corridors", cf.transfer_corridors)
    )
    installed(group, "suites-import", ImportError("No module named 'lane_data'"))
    installed(group, "not-suites", lambda: 3)
    installed(group, "taken", lambda: Suite("maze-transfer", "lane", "an impostor", _lane_levels))
    result = run("envs")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert any(line.split()[:3] == ["lane-transfer", "lane", "1"] for line in lines)
    assert any(line.split()[:3] == ["corridor-extra", "corridor", "5"] for line in lines)
    for name, words in (
        ("suites-import", "lane_data"),
        ("not-suites", "not a Suite"),
        ("taken", "maze-transfer already registered"),
    ):
        (mine,) = [line for line in lines if line.split()[:1] == [name]]
        assert "(broken: suite plugin" in mine and words in mine, mine
    assert suites.get_suite("maze-transfer").family == "maze"  # the impostor did not replace it
    # a family without default_suite is judged on its only suite
    assert resolve_suite("lane").name == "lane-transfer"


def test_a_family_without_a_suite_is_one_clear_error(installed):
    register_family(LaneFamily)
    with pytest.raises(UsageError, match="'lane' has no default held-out suite; pass --suite NAME"):
        resolve_suite("lane")
    for k in range(2):
        suites.register_suite(Suite(f"lane-{k}", "lane", "", _lane_levels))
    with pytest.raises(UsageError, match=r"no default held-out suite \(lane-0, lane-1\)"):
        resolve_suite("lane")
    assert resolve_suite("lane", "lane-1").name == "lane-1"


def test_the_corridor_family_ships_its_held_out_suite():
    suite = suites.get_suite(cf.CorridorFamily.default_suite)
    assert suite.name == "corridor-transfer" and suite.family == "corridor"
    family = cf.CorridorFamily()
    entries = suite.levels()
    assert len(entries) == 5 and all(family.is_valid(level) for _, level in entries)


# ----- ued check-family ------------------------------------------------------------------------------------
class BadDecodeFamily(cf.CorridorFamily):
    name = "corridor-bad-decode"

    def decode(self, tokens):
        toks = np.asarray(tokens).reshape(-1)
        if len(toks) > 2 and toks[2] == toks[0]:
            raise ValueError("a hurdle on the goal")
        return super().decode(tokens)


def test_check_family_prints_a_line_per_check_and_fails_on_a_broken_rule(installed):
    register_family(cf.CorridorFamily)
    result = run("check-family", "corridor", "--samples", "6", "--env-option", "max_hurdles=4")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == (
        "checking environment 'corridor' (corridor_family.CorridorFamily; options: length=16, max_hurdles=4)"
    )
    assert sum(line.startswith("  ok    ") for line in lines) >= 11
    assert lines[-1].startswith("family 'corridor': ") and "0 problem(s)" in lines[-1]

    register_family(BadDecodeFamily)
    result = run("check-family", "corridor-bad-decode", "--samples", "6", "--no-env-checker")
    assert result.exit_code == 1, result.output
    fails = [line for line in result.output.splitlines() if line.startswith("  FAIL  ")]
    assert fails and fails[0].startswith("  FAIL  decode: raised ValueError: a hurdle on the goal on ")
    one_error_line(run("check-family", "corridor", "--samples", "1"), "--samples must be at least 2")
    one_error_line(run("check-family", "corridor", "--env-option", "width=3"), "bad options", "length")


# ----- ued new-family --------------------------------------------------------------------------------------
def _import_from(folder: Path, module: str):
    sys.path.insert(0, str(folder))
    try:
        sys.modules.pop(module, None)
        return importlib.import_module(module)
    finally:
        sys.path.remove(str(folder))


def test_new_family_writes_a_template_that_passes_check_family(installed, tmp_path):
    folder = tmp_path / "key-door"
    result = run("new-family", "key-door", str(folder))
    assert result.exit_code == 0, result.output
    written = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
    assert written == [
        "README.md",
        "conftest.py",
        "key_door_family.py",
        "pyproject.toml",
        "setup.cfg",
        "tests/test_key_door_family.py",
    ]
    assert "key-door = key_door_family:KeyDoorFamily" in (folder / "setup.cfg").read_text()
    for path in folder.rglob("*.*"):
        assert not {"__NAME__", "__MODULE__", "__CLASS__"} & set(path.read_text().split()), path
    try:
        module = _import_from(folder, "key_door_family")
        family = module.KeyDoorFamily()
        report = check_family(family)
        assert report.ok and family.name == "key-door"
        assert any(line.startswith("default_suite: 'key-door-transfer'") for line in report.passed)
        tests = _import_from(folder / "tests", "test_key_door_family")
        for name in dir(tests):
            if name.startswith("test_"):
                getattr(tests, name)()  # the template's own tests pass as written
        register_family(module.KeyDoorFamily)
        result = run("check-family", "key-door", "--samples", "4")
        assert result.exit_code == 0, result.output
    finally:
        sys.modules.pop("key_door_family", None)
        sys.modules.pop("test_key_door_family", None)


def test_new_family_refuses_bad_names_taken_names_and_full_folders(installed, tmp_path):
    one_error_line(run("new-family", "Key_Door", str(tmp_path / "a")), "lowercase", "key-door")
    one_error_line(run("new-family", "maze", str(tmp_path / "b")), "'maze' is taken by")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x.txt").write_text("mine")
    one_error_line(run("new-family", "key-door", str(tmp_path / "full")), "not an empty folder")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["full"]
