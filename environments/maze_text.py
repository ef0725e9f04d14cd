"""The plain-text maze format (held-out maze files, `ued render --levels`, `MazeFamily.to_text`).

    ; optional comment lines at the top
    max_steps: 450
    see_through: false
    #######
    #>..#G#
    #.#.#.#
    #.#...#
    #######

`#` wall, `.` free, `G` the goal, the start as `>` `v` `<` `^` (facing that way), `S` (facing right) or
`?` (a uniformly random direction each time the level is loaded). Any rectangle from 5x5 up whose border
is all walls; trailing blank lines are ignored.

Before the grid, among the `;` comments (and blank lines), optional `key: value` header lines say how the
level is played:
- `max_steps: N` (an int >= 1): the level's episode limit; without it, the family's training rule (250
  steps per 15x15 area, rounded up),
- `see_through: true|false`: minigrid's `see_through_walls`; without it, true (false: walls hide what is
  behind them in the agent's view, as in dcd's SimpleCrossing and FourRooms).
`format_maze` writes a header only where it differs from that default. Errors name `file:line:column`.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from ued.environments.maze import DIRECTIONS, MAX_LEVEL_STEPS, MazeLevel
from ued.errors import UsageError
from ued.io import read_input_text, write_text

_MIN_SIDE = 5
#: the largest maze side the text format accepts (evaluation cost grows with the area and its limit 2 x area)
MAX_SIDE = 255
#: start characters: a direction, S (facing right) or ? (random direction, `start_dir=None`)
_START_CHARS = DIRECTIONS + "S?"
#: the header keys (`key: value` lines before the grid)
HEADER_KEYS = ("max_steps", "see_through")


class MazeFormatError(UsageError):
    """A malformed maze text; the message reads `file:line:col: what is wrong; how to fix it`."""


def parse_maze(text: str, source: str = "<string>", *, allow_unsolvable: bool = False) -> MazeLevel:
    """Parse the text form of a maze (headers, then the grid; see the module docstring). Raises
    `MazeFormatError` (a UsageError) naming `source:line:col` for: an unknown, repeated or malformed
    header, no or two goals/starts, an unknown character, ragged rows, a border cell that is not a wall,
    a maze under 5x5, and a goal the start cannot reach. `allow_unsolvable=True` accepts the last one
    (e.g. to inspect a broken level); every other error always raises."""

    def fail(line: int, col: int, message: str) -> MazeFormatError:
        return MazeFormatError(f"{source}:{line}:{col}: {message}")

    lines = text.splitlines()
    first = 0
    headers: dict[str, object] = {}
    while first < len(lines):
        stripped = lines[first].strip()
        if stripped and not stripped.startswith(";"):
            if ":" not in stripped:
                break
            _parse_header(lines[first], first + 1, headers, fail)
        first += 1
    rows = [line.rstrip() for line in lines[first:]]
    while rows and not rows[-1]:
        rows.pop()
    if len(rows) < _MIN_SIDE or len(rows[0]) < _MIN_SIDE:
        size = f"{len(rows[0]) if rows else 0}x{len(rows)}"
        raise fail(
            first + 1, 1, f"maze is {size}, too small; draw at least 5x5 cells including the outer wall"
        )
    width, height = len(rows[0]), len(rows)
    if max(width, height) > MAX_SIDE:
        raise fail(
            first + 1,
            1,
            f"maze is {width}x{height}, larger than {MAX_SIDE}x{MAX_SIDE}; the largest published maze is "
            "101x101 (PerfectMazeXL): draw a smaller one",
        )
    walls, starts, goals = [], [], []
    for y, row in enumerate(rows):
        line = first + y + 1
        if len(row) != width:
            raise fail(
                line,
                min(len(row), width) + 1,
                f"row has {len(row)} characters, the first row has {width}; make every row the same length",
            )
        for x, ch in enumerate(row):
            border = x in (0, width - 1) or y in (0, height - 1)
            if ch not in "#." + _START_CHARS + "G":
                raise fail(
                    line, x + 1, f"unknown character {ch!r}; use # wall, . free, G goal, S >v<^ or ? start"
                )
            if border and ch != "#":
                raise fail(line, x + 1, f"border cell is {ch!r}, not a wall; the outer ring must be all '#'")
            if ch == "#" and not border:
                walls.append((x, y))
            elif ch in _START_CHARS:
                direction = {"S": 0, "?": None}.get(ch, DIRECTIONS.find(ch))
                starts.append((line, x + 1, (x, y), direction))
            elif ch == "G":
                goals.append((line, x + 1, (x, y)))
    end = (first + height, 1)
    if not goals:
        raise fail(*end, "no goal; put one 'G' on a free cell")
    if len(goals) > 1:
        raise fail(goals[1][0], goals[1][1], "a second goal; keep exactly one 'G'")
    if not starts:
        raise fail(*end, "no start; put one of S > v < ^ ? on a free cell")
    if len(starts) > 1:
        raise fail(starts[1][0], starts[1][1], "a second start; keep exactly one of S > v < ^ ?")
    (gline, gcol, goal), (_, _, start, start_dir) = goals[0], starts[0]
    level = MazeLevel(width, height, tuple(walls), start, start_dir, goal, **headers)
    if not allow_unsolvable and not level.is_solvable():
        raise fail(gline, gcol, "the goal cannot be reached from the start; open a path to it")
    return level


def _parse_header(
    text: str, line: int, headers: dict[str, object], fail: Callable[[int, int, str], MazeFormatError]
) -> None:
    """One `key: value` header line into `headers` (MazeLevel field -> value); `fail(line, col, message)`
    makes the error."""
    key_text, _, value_text = text.partition(":")
    key, value = key_text.strip().lower(), value_text.strip()
    key_col = len(key_text) - len(key_text.lstrip()) + 1
    value_col = len(key_text) + 2 + len(value_text) - len(value_text.lstrip())
    if key not in HEADER_KEYS:
        raise fail(
            line, key_col, f"unknown header {key_text.strip()!r}; the headers are {', '.join(HEADER_KEYS)}"
        )
    if key in headers:
        raise fail(line, key_col, f"a second {key!r} header; keep one")
    if key == "max_steps":
        if not (value.isascii() and value.isdigit() and 1 <= int(value) <= MAX_LEVEL_STEPS):
            raise fail(
                line,
                value_col,
                f"max_steps is {value!r}; give a whole number of steps in 1..{MAX_LEVEL_STEPS}",
            )
        headers[key] = int(value)
    else:
        if value.lower() not in ("true", "false"):
            raise fail(line, value_col, f"see_through is {value!r}; give true or false")
        headers[key] = value.lower() == "true"


def format_maze(level: MazeLevel, comment: str | None = None) -> str:
    """The text form of `level` (inverse of `parse_maze`): optional `;` comment lines on top, the headers
    that differ from their defaults (`max_steps` when set, `see_through: false`), then the grid."""
    grid = [["#" if w else "." for w in row] for row in level.wall_grid()]
    grid[level.goal[1]][level.goal[0]] = "G"
    grid[level.start[1]][level.start[0]] = "?" if level.start_dir is None else DIRECTIONS[level.start_dir]
    head = [f"; {line}".rstrip() for line in comment.splitlines()] if comment else []
    if level.max_steps is not None:
        head.append(f"max_steps: {level.max_steps}")
    if not level.see_through:
        head.append("see_through: false")
    return "\n".join(head + ["".join(row) for row in grid]) + "\n"


def load_maze(path: str | os.PathLike, *, allow_unsolvable: bool = False) -> MazeLevel:
    """Read a maze file (see `parse_maze`); a missing file raises UsageError."""
    path = Path(path)
    text = read_input_text(path, "maze file", "give the path of a text maze file")
    return parse_maze(text, str(path), allow_unsolvable=allow_unsolvable)


def save_maze(level: MazeLevel, path: str | os.PathLike, comment: str | None = None) -> None:
    """Write `level` as a text maze file (atomically, `ued.io.write_text`)."""
    write_text(path, format_maze(level, comment))
