"""The level-family registry: the decorator, `make_family`, and third-party families from entry points."""

from __future__ import annotations

import re
import sys
import textwrap
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest

import ued.environments  # noqa: F401  (registers the built-in families)
from ued import levels
from ued.errors import UsageError
from ued.levels import ENTRY_POINT_GROUP, LevelFamily, family_names, make_family, register_family

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "corridor_family"

#: a complete (if useless) family, as a third-party module would define it
PLUGIN_SOURCE = textwrap.dedent(
    '''
    import numpy as np
    from ued.levels import LevelFamily

    class PluginFamily(LevelFamily):
        """Levels are a single token."""
        name = "plugin-family"
        vocab_size = 3
        max_tokens = 1

        def __init__(self, size: int = 3):
            self.size = size

        def encode(self, level):
            return np.array([level], dtype=np.int64)

        def decode(self, tokens):
            return int(tokens[0]) if len(tokens) else 0

        def sample(self, rng):
            return int(rng.integers(3))

        def is_valid(self, level):
            return True

        def repair(self, level):
            return level

        def editor_view(self, tokens):
            return np.zeros((1, 1, 1), dtype=np.float32)

        @property
        def editor_view_shape(self):
            return (1, 1, 1)

        def make_env(self, level=None):
            raise NotImplementedError

        def make_student(self, device="cpu"):
            raise NotImplementedError

        def render(self, level):
            return np.zeros((1, 1, 3), dtype=np.uint8)

    def not_a_family():
        return 1
    '''
)


class Minimal(LevelFamily):
    """The smallest concrete family, for registering in tests."""

    name = "test-minimal"
    vocab_size = 2
    max_tokens = 1

    def encode(self, level):
        return [level]

    def decode(self, tokens):
        return int(tokens[0])

    def sample(self, rng):
        return 0

    def is_valid(self, level):
        return True

    def repair(self, level):
        return level

    def editor_view(self, tokens):
        raise NotImplementedError

    @property
    def editor_view_shape(self):
        return (1, 1, 1)

    def make_env(self, level=None):
        raise NotImplementedError

    def make_student(self, device="cpu"):
        raise NotImplementedError

    def render(self, level):
        raise NotImplementedError


@pytest.fixture
def registry(monkeypatch):
    """A private copy of the registry (built-ins only) and no installed plugins; returns a function that
    installs fake entry points: plugins(name="module:attr", ...)."""
    monkeypatch.setattr(levels, "FAMILIES", dict(levels.FAMILIES))
    monkeypatch.setattr(levels, "PLUGIN_ERRORS", {})
    installed: list[EntryPoint] = []

    def fake_entry_points(*, group: str) -> list[EntryPoint]:
        return [ep for ep in installed if ep.group == group]

    monkeypatch.setattr(levels, "entry_points", fake_entry_points)

    def plugins(**eps: str) -> None:
        installed.extend(EntryPoint(name=n, value=v, group=ENTRY_POINT_GROUP) for n, v in eps.items())

    return plugins


@pytest.fixture
def plugin_module(tmp_path, monkeypatch, request):
    """Write a module with `source` on sys.path under a unique name; returns its name."""
    created: list[str] = []

    def make(source: str) -> str:
        name = re.sub(r"\W", "_", f"ued_test_plugin_{request.node.name}_{len(created)}")
        (tmp_path / f"{name}.py").write_text(source)
        created.append(name)
        return name

    monkeypatch.syspath_prepend(str(tmp_path))
    yield make
    for name in created:
        sys.modules.pop(name, None)


# ----- the decorator ---------------------------------------------------------------------------------
def test_register_family_makes_a_family_available_by_name(registry):
    assert "test-minimal" not in family_names()
    assert register_family(Minimal) is Minimal
    assert "test-minimal" in family_names()
    assert isinstance(make_family("test-minimal"), Minimal)
    register_family(Minimal)  # registering the same class again (a re-import) is fine
    assert levels.FAMILIES["test-minimal"] is Minimal


def test_register_family_refuses_a_taken_name(registry):
    class Impostor(Minimal):
        name = "maze"

    with pytest.raises(ValueError, match="'maze' is taken by ued.environments.maze.MazeFamily"):
        register_family(Impostor)
    assert make_family("maze").name == "maze" and type(make_family("maze")).__name__ == "MazeFamily"


def test_register_family_checks_what_it_is_given(registry):
    with pytest.raises(TypeError, match="LevelFamily subclass"):
        register_family(object)

    class Nameless(Minimal):
        name = ""

    with pytest.raises(TypeError, match="class attribute `name`"):
        register_family(Nameless)


# ----- make_family -----------------------------------------------------------------------------------
def test_unknown_family_lists_the_known_ones(registry):
    register_family(Minimal)
    with pytest.raises(UsageError) as err:
        make_family("mazee")
    message = str(err.value)
    assert "unknown environment 'mazee'" in message
    assert "maze" in message and "test-minimal" in message


def test_options_reach_the_family_and_bad_ones_are_a_usage_error(registry):
    assert make_family("maze", max_walls=25).max_tokens == 27
    with pytest.raises(UsageError, match="bad options for environment 'maze'.*its options: max_walls"):
        make_family("maze", max_wals=25)


# ----- entry points ----------------------------------------------------------------------------------
def test_a_family_loads_from_an_entry_point(registry, plugin_module):
    module = plugin_module(PLUGIN_SOURCE)
    registry(**{"plugin-family": f"{module}:PluginFamily"})  # the entry point's name is the class's `name`
    assert module not in sys.modules  # nothing imported until the registry is asked
    assert "plugin-family" in family_names()
    family = make_family("plugin-family", size=5)
    assert type(family).__name__ == "PluginFamily" and family.size == 5
    assert isinstance(family, LevelFamily)


def test_the_example_package_loads_from_its_entry_point(registry, monkeypatch):
    monkeypatch.syspath_prepend(str(EXAMPLE))
    monkeypatch.delitem(sys.modules, "corridor_family", raising=False)
    entry = next(
        line for line in (EXAMPLE / "setup.cfg").read_text().splitlines() if "corridor_family:" in line
    )
    name, value = (part.strip() for part in entry.split("="))
    registry(**{name: value})
    family = make_family("corridor")
    assert type(family).__name__ == "CorridorFamily" and family.name == "corridor"
    assert "corridor" in family_names()


def test_a_plugin_cannot_replace_a_built_in_family(registry, plugin_module):
    module = plugin_module(PLUGIN_SOURCE)
    registry(maze=f"{module}:PluginFamily")
    assert type(make_family("maze")).__name__ == "MazeFamily"


@pytest.mark.parametrize(
    "source,value,cause",
    [
        ("raise RuntimeError('plugin exploded')", "{module}:Family", "RuntimeError: plugin exploded"),
        (
            "import no_such_dependency_for_ued",
            "{module}:Family",
            "No module named 'no_such_dependency_for_ued'",
        ),
        (PLUGIN_SOURCE, "{module}:Missing", "Missing"),
        (PLUGIN_SOURCE, "{module}:not_a_family", "not a ued.levels.LevelFamily subclass"),
    ],
    ids=["raises", "missing-dependency", "missing-attribute", "not-a-family"],
)
def test_a_broken_plugin_is_a_clear_usage_error_and_breaks_nothing_else(
    registry, plugin_module, source, value, cause
):
    module = plugin_module(source)
    registry(broken=value.format(module=module))
    assert "broken" not in family_names()
    assert make_family("maze").name == "maze"  # the other families still work
    with pytest.raises(UsageError) as err:
        make_family("broken")
    message = str(err.value)
    assert "plugin 'broken'" in message and ENTRY_POINT_GROUP in message
    assert value.format(module=module) in message and cause in message
    assert "reinstall" in message


def test_ued_envs_lists_plugins_and_says_which_are_broken(registry, plugin_module):
    from click.testing import CliRunner

    from ued.cli.main import cli

    module = plugin_module(PLUGIN_SOURCE)
    registry(**{"plugin-family": f"{module}:PluginFamily"}, broken=f"{module}:not_a_family")
    result = CliRunner().invoke(cli, ["envs"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert any(line.split()[:3] == ["plugin-family", "3", "1"] for line in lines)
    assert any(
        line.split()[:3] == ["broken", "(broken", "plugin:"] and "not_a_family" in line for line in lines
    )
