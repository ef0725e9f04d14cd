"""Contract checks for level families: `check_family(family)` tries every rule of `ued.levels.LevelFamily`
on a few dozen seeded samples, in seconds, and reports each broken rule as one line naming the method and
what to fix. `ued check-family NAME` runs it from the command line; a plugin's own tests call it:

    from ued.testing import check_family
    from my_family import MyFamily

    def test_my_family_keeps_the_contract():
        check_family(MyFamily())  # raises FamilyCheckError (an AssertionError) listing the problems

What it checks (each a named check in the report):
- `attributes`: `name`, `vocab_size`, `max_tokens`, `eval_batch_size`, `eval_episodes`, `teacher_defaults`;
- `sample`: levels are hashable, deterministic given the Generator, playable (`can_play`);
- `encode` / `decode`: int64 (max_tokens,) tokens in range, `decode(encode(level)) == level`;
- `decode`: total on random full and partial in-range token sequences (the way PAIRED and CLUTR write them),
  and `encode` accepts what it returns;
- `allowed_tokens`: None or bool [vocab_size] allowing at least one token at every prefix;
- `editor_view`: float32 of `editor_view_shape` on every prefix length 0..max_tokens;
- `repair`: deterministic, terminating, idempotent, returns `is_valid` and `can_play` levels;
- `is_valid`: a bool;
- `to_text` / `from_text`: round trip, also with a file's trailing newline (skipped without a text form);
- `mutate` / `sample_easy`: deterministic given the Generator, levels `encode` accepts and `can_play` allows;
- `render` / `level_stats` / `episode_limit` / `tokens_key` / `default_ppo`: types and shapes;
- `make_env`: one observation shape and dtype for every level, observations inside the space, honours
  `env.unwrapped.level = lvl` and `reset(options={"level": lvl})`, passes gymnasium's `check_env`;
- `make_vector_env`: honours `set_levels` (per sub-env), deterministic `reset(seed)`, steps;
- `default_student`: a registered student network that `make_student(family)` builds and that acts one
  step on the vector env's observation (its actions step the env);
- `default_suite`: registered, of this family, every entry playable (and valid where `is_valid` applies);
- `options`: JSON values naming every constructor argument; `make_family(name, **options)` (or the class)
  rebuilds an equal family; `level_options` is a part of them.

Randomness: one seeded numpy Generator (`seed`), so a report is reproducible. A check that runs longer than
`time_limit` seconds is stopped (in the main thread) and reported, naming the method that did not return.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import re
import signal
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from ued.errors import UsageError
from ued.levels import LevelFamily, draw_levels, entry_rng, missing_methods, one_line

#: what to fix, by method: the end of every problem line about it
FIXES: dict[str, str] = {
    "attributes": "set them as class attributes or in __init__",
    "sample": "draw every random choice from the rng argument and return a frozen (hashable) dataclass",
    "encode": "return int64 np.ndarray of shape (max_tokens,) with values in [0, vocab_size), such that "
    "decode(encode(level)) == level",
    "decode": "decode must accept every sequence of 0..max_tokens ints in [0, vocab_size) (PAIRED and CLUTR "
    "write any of them): give missing or conflicting tokens a default meaning and let repair fix the rest",
    "allowed_tokens": "return None (all tokens) or a bool array of vocab_size entries with at least one True",
    "editor_view": "return float32 of exactly editor_view_shape for every prefix (length 0..max_tokens)",
    "repair": "repair must be deterministic and idempotent and return a level that is_valid and can_play "
    "accept",
    "is_valid": "return a bool for every level, without raising",
    "text": "from_text(to_text(level)) must give the level back, also from a file's text (trailing newline)",
    "to_text": "from_text(to_text(level)) must give the level back, also from a file's text (trailing newline)",
    "from_text": "from_text(to_text(level)) must give the level back, also from a file's text (trailing newline)",
    "mutate": "draw edits from the rng argument only and return a level encode accepts and can_play allows",
    "sample_easy": "draw from the rng argument only and return a level encode accepts and can_play allows",
    "render": "return an RGB picture, uint8 (H, W, 3)",
    "level_stats": "return a dict of name -> float",
    "episode_limit": "return None (unknown) or a positive int",
    "tokens_key": "return bytes (default: the token bytes)",
    "default_ppo": "return a ued.config.PPOConfig",
    "make_env": "see LevelFamily.make_env: the env must play the level it is given, switched by "
    "reset(options={'level': lvl}) and by assigning env.unwrapped.level",
    "make_vector_env": "set_levels must give sub-env i levels[i] from the next reset on, and reset(seed=...) "
    "must be deterministic",
    "default_student": "name a network registered with @register_student(name) in the family's module; "
    "Policy.for_family(family) must size it for the family's observations and actions",
    "default_suite": "register the suite (ued.environments.suites.register_suite) when the family's module "
    "is imported, or through the `ued.suites` entry-point group, with levels of this family",
    "options": "return every __init__ argument as plain JSON values, so that make_family(name, **options) "
    "rebuilds the same family",
}


@dataclass(frozen=True)
class FamilyReport:
    """The outcome of `check_family`: one line per check that passed, per broken rule, and per check that
    did not apply (each line starts with the method or check name)."""

    family: str
    passed: tuple[str, ...]
    problems: tuple[str, ...]
    skipped: tuple[str, ...]

    @property
    def ok(self) -> bool:
        """Whether no rule was broken."""
        return not self.problems

    def summary(self) -> str:
        """One line: how many checks passed, failed and were skipped."""
        return (
            f"family {self.family!r}: {len(self.passed)} checks passed, {len(self.problems)} problem(s), "
            f"{len(self.skipped)} skipped"
        )


class FamilyCheckError(AssertionError):
    """`check_family` found broken rules; `problems` holds one line each (`report` everything)."""

    def __init__(self, report: FamilyReport):
        self.report = report
        self.problems = list(report.problems)
        lines = "\n".join(f"  - {p}" for p in report.problems)
        super().__init__(f"{report.summary()}:\n{lines}")


class _Problem(Exception):
    """A broken rule found inside a check: its one line."""


class _Timeout(BaseException):
    """The check's time limit passed (a BaseException, so that a family's `except Exception` cannot swallow
    it); `frame` is where the code under test was when it passed."""

    def __init__(self, frame: Any = None):
        super().__init__()
        self.frame = frame


@contextlib.contextmanager
def _deadline(seconds: float | None) -> Iterator[None]:
    """Raise `_Timeout` in the main thread after `seconds` (SIGALRM); no limit elsewhere or when None."""
    usable = (
        seconds is not None
        and hasattr(signal, "setitimer")
        and threading.current_thread() is threading.main_thread()
    )
    if not usable:
        yield
        return

    def expire(signum: int, frame: Any) -> None:
        raise _Timeout(frame)

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, float(seconds))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0.0)
        signal.signal(signal.SIGALRM, previous)


def _short(value: Any, limit: int = 120) -> str:
    text = " ".join(repr(value).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _tokens_text(tokens: np.ndarray) -> str:
    return _short([int(t) for t in np.asarray(tokens).reshape(-1)], 160)


def _leaves(obs: Any, prefix: str = "") -> dict[str, np.ndarray]:
    """An observation (array, number, tensor, or dict of them) -> {path: numpy array}."""
    if isinstance(obs, dict):
        out: dict[str, np.ndarray] = {}
        for key in sorted(obs):
            out.update(_leaves(obs[key], f"{prefix}{key}."))
        return out
    if hasattr(obs, "detach"):
        obs = obs.detach().cpu().numpy()
    return {prefix.rstrip(".") or "obs": np.asarray(obs)}


def _signature(obs: Any) -> dict[str, tuple[tuple[int, ...], str]]:
    return {k: (v.shape, str(v.dtype)) for k, v in _leaves(obs).items()}


def _same_obs(a: Any, b: Any) -> bool:
    la, lb = _leaves(a), _leaves(b)
    return la.keys() == lb.keys() and all(
        la[k].shape == lb[k].shape and np.array_equal(la[k], lb[k]) for k in la
    )


def _slot(obs: Any, i: int) -> dict[str, np.ndarray]:
    return {k: v[i] for k, v in _leaves(obs).items()}


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


class _Checker:
    """Runs the checks of one family; every check appends to `passed`, `problems` or `skipped`."""

    def __init__(
        self,
        family: LevelFamily,
        *,
        seed: int,
        samples: int,
        env_levels: int,
        env_checker: bool,
        vector_envs: int,
        time_limit: float | None,
    ):
        self.family = family
        self.seed = int(seed)
        self.samples = int(samples)
        self.env_levels = int(env_levels)
        self.env_checker = bool(env_checker)
        self.vector_envs = int(vector_envs)
        self.time_limit = time_limit
        self.passed: list[str] = []
        self.problems: list[str] = []
        self.skipped: list[str] = []
        self.current = ""  # the family method running now (named when a check times out)
        # levels and token sequences shared by the checks (filled by the first ones)
        self.sampled: list[Any] = []
        self.sequences: list[np.ndarray] = []  # random full and partial in-range token sequences
        self.written: list[np.ndarray] = []  # full sequences written with allowed_tokens, as PAIRED does
        self.decoded: list[Any] = []
        self.decoded_valid: list[bool] = []
        self.repaired: list[Any] = []
        self.env_pair: tuple[Any, Any] | None = None  # two levels whose first observations differ

    def rng(self, salt: int) -> np.random.Generator:
        """An independent Generator per check, so that one check's draws do not move another's."""
        return np.random.default_rng([self.seed, salt])

    # ----- plumbing ----------------------------------------------------------------------------------
    def call(self, method: str, fn: Callable[..., Any], *args: Any, on: str = "", **kwargs: Any) -> Any:
        """`fn(*args, **kwargs)`; an exception becomes the problem line of `method` (`on` says what with)."""
        self.current = method
        try:
            return fn(*args, **kwargs)
        except (_Problem, _Timeout):
            raise
        except Exception as exc:  # noqa: BLE001  (the family is the code under test)
            where = f" on {on}" if on else ""
            raise _Problem(f"{method}: raised {one_line(exc, 200)}{where}") from None

    def fail(self, method: str, message: str, fix_key: str | None = None) -> None:
        """Record a broken rule: `method: message; fix`."""
        fix = FIXES.get(method if fix_key is None else fix_key, "")
        self.problems.append(f"{method}: {message}" + (f"; {fix}" if fix else ""))

    def run(self, name: str, check: Callable[[], str | None], needs: tuple[str, ...] = ()) -> None:
        """Run one check: a returned string is its passed line, None (or a `skip:` string) a skipped one."""
        lacking = [n for n in needs if not getattr(self, n)]
        if lacking:
            self.skipped.append(f"{name}: not run, as the checks that provide {', '.join(lacking)} failed")
            return
        before = len(self.problems)
        self.current = name
        started = time.perf_counter()
        try:
            with _deadline(self.time_limit):
                outcome = check()
        except _Problem as problem:
            text = str(problem)
            method = text.split(":", 1)[0]
            fix = FIXES.get(method, FIXES.get(name, ""))
            self.problems.append(text + (f"; {fix}" if fix and fix not in text else ""))
            return
        except _Timeout as timeout:
            chain = self._family_frames(timeout.frame)
            running = f"; running {' -> '.join(chain)}" if chain and chain != [self.current] else ""
            self.problems.append(
                f"{self.current}: did not return within {self.time_limit:g} s (check {name}{running}); every "
                "LevelFamily method must terminate quickly, whatever its input"
            )
            return
        if len(self.problems) > before:
            return
        if outcome is None or outcome.startswith("skip:"):
            self.skipped.append(f"{name}: {outcome[5:].strip() if outcome else 'does not apply'}")
        else:
            self.passed.append(f"{name}: {outcome} ({time.perf_counter() - started:.1f} s)")

    def _family_frames(self, frame: Any) -> list[str]:
        """The family's methods on the stack at `frame`, outermost first (consecutive repeats once)."""
        names: list[str] = []
        while frame is not None:
            if frame.f_locals.get("self") is self.family:
                names.append(frame.f_code.co_name)
            frame = frame.f_back
        names.reverse()
        return [n for i, n in enumerate(names) if i == 0 or names[i - 1] != n]

    # ----- token and level checks --------------------------------------------------------------------
    def check_attributes(self) -> str:
        f = self.family
        name = getattr(f, "name", None)
        if not isinstance(name, str) or not name or name != name.strip():
            self.fail("name", f"is {name!r}, not a non-empty name", "attributes")
        for attr in ("vocab_size", "max_tokens", "eval_batch_size", "eval_episodes"):
            value = getattr(f, attr, None)
            if not _is_int(value) or value < 1:
                self.fail(attr, f"is {value!r}, not a positive int", "attributes")
        patterns = getattr(f, "level_file_patterns", None)
        if not isinstance(patterns, (tuple, list)) or not all(isinstance(p, str) for p in patterns):
            self.fail("level_file_patterns", f"is {patterns!r}, not a tuple of glob patterns", "attributes")
        from ued.teachers import TEACHERS

        defaults = getattr(f, "teacher_defaults", {})
        if not isinstance(defaults, dict) or not all(isinstance(v, dict) for v in defaults.values()):
            self.fail("teacher_defaults", f"is {_short(defaults)}, not a dict of dicts", "attributes")
        else:
            unknown = sorted(set(defaults) - set(TEACHERS))
            if unknown:
                self.fail(
                    "teacher_defaults",
                    f"names unknown teacher(s) {', '.join(unknown)}; use teacher names "
                    f"({', '.join(sorted(TEACHERS))})",
                    "attributes",
                )
        return f"vocab_size {f.vocab_size}, max_tokens {f.max_tokens}"

    def check_sample(self) -> str:
        f = self.family
        rng, rng_again = self.rng(1), self.rng(1)
        levels = [self.call("sample", f.sample, rng) for _ in range(self.samples)]
        again = [self.call("sample", f.sample, rng_again) for _ in range(self.samples)]
        if levels != again:
            self.fail("sample", "two equal Generators gave different levels (global randomness?)")
        for level in levels:
            try:
                hash(level)
            except TypeError:
                self.fail("sample", f"returned an unhashable level {_short(level)}")
                break
        for level in levels:
            if not self.call("can_play", f.can_play, level, on=f"sampled level {_short(level)}"):
                self.fail("sample", f"returned a level can_play rejects: {_short(level)}")
                break
        self.sampled = levels
        return f"{len(levels)} levels, deterministic and hashable"

    def check_encode(self) -> str:
        f = self.family
        for level in self.sampled:
            tokens = self.call("encode", f.encode, level, on=f"sampled level {_short(level)}")
            problem = self._token_problem(tokens)
            if problem:
                self.fail("encode", f"{problem} for sampled level {_short(level)}")
                return ""
            back = self.call(
                "decode",
                f.decode,
                np.asarray(tokens, dtype=np.int64),
                on=f"encode(level) = {_tokens_text(tokens)}",
            )
            if back != level:
                self.fail(
                    "encode",
                    f"decode(encode(level)) != level: {_short(level)} came back as {_short(back)}",
                )
                return ""
        return f"{len(self.sampled)} sampled levels round-trip through tokens"

    def _token_problem(self, tokens: Any) -> str:
        f = self.family
        if not isinstance(tokens, np.ndarray):
            return f"returned {type(tokens).__name__}, not a numpy array"
        if tokens.shape != (f.max_tokens,):
            return f"returned shape {tokens.shape}, not (max_tokens,) = ({f.max_tokens},)"
        if not np.issubdtype(tokens.dtype, np.integer):
            return f"returned dtype {tokens.dtype}, not int64"
        if tokens.size and (tokens.min() < 0 or tokens.max() >= f.vocab_size):
            return f"returned tokens outside [0, {f.vocab_size}): {_tokens_text(tokens)}"
        return ""

    def _encode_problem(self, level: Any) -> str:
        """Why `encode(level)` fails or returns bad tokens ("" when it is fine)."""
        try:
            tokens = self.family.encode(level)
        except Exception as exc:  # noqa: BLE001
            return f"encode raised {one_line(exc, 120)}"
        return self._token_problem(tokens)

    def check_allowed_tokens(self) -> str:
        f = self.family
        rng = self.rng(2)
        first = self.call(
            "allowed_tokens", f.allowed_tokens, np.zeros(0, dtype=np.int64), on="the empty prefix"
        )
        if first is None:
            self.written = [rng.integers(0, f.vocab_size, size=f.max_tokens) for _ in range(2)]
            return "skip: allows every token (None)"
        for _ in range(2):
            tokens = np.zeros(0, dtype=np.int64)
            for t in range(f.max_tokens):
                mask = self.call(
                    "allowed_tokens", f.allowed_tokens, tokens, on=f"prefix {_tokens_text(tokens)}"
                )
                if mask is None:
                    allowed = np.arange(f.vocab_size)
                else:
                    mask = np.asarray(mask)
                    if mask.shape != (f.vocab_size,):
                        self.fail(
                            "allowed_tokens",
                            f"returned shape {mask.shape}, not (vocab_size,) = ({f.vocab_size},) after "
                            f"{t} tokens",
                        )
                        return ""
                    allowed = np.flatnonzero(mask.astype(bool))
                    if allowed.size == 0:
                        self.fail("allowed_tokens", f"allows no token after prefix {_tokens_text(tokens)}")
                        return ""
                tokens = np.append(tokens, int(rng.choice(allowed))).astype(np.int64)
            self.written.append(tokens)
        return f"{len(self.written)} levels written token by token, a token allowed at every prefix"

    def check_decode(self) -> str:
        f = self.family
        rng = self.rng(3)
        full = [rng.integers(0, f.vocab_size, size=f.max_tokens) for _ in range(self.samples)]
        partial = [
            rng.integers(0, f.vocab_size, size=rng.integers(0, f.max_tokens)) for _ in range(self.samples)
        ]
        edges = [
            np.zeros(0, dtype=np.int64),
            np.zeros(f.max_tokens, dtype=np.int64),
            np.full(f.max_tokens, f.vocab_size - 1, dtype=np.int64),
        ]
        sequences = [np.asarray(s, dtype=np.int64) for s in [*edges, *full, *partial, *self.written]]
        decoded = []
        for tokens in sequences:
            kind = "full" if len(tokens) == f.max_tokens else f"partial, {len(tokens)} of {f.max_tokens}"
            on = f"in-range tokens {_tokens_text(tokens)} ({kind})"
            level = self.call("decode", f.decode, tokens.copy(), on=on)
            again = self.call("decode", f.decode, tokens.copy(), on=on)
            if level != again:
                self.fail("decode", f"is not deterministic: {on} gave {_short(level)}, then {_short(again)}")
                return ""
            try:
                hash(level)
            except TypeError:
                self.fail("decode", f"returned an unhashable level {_short(level)}", "sample")
                return ""
            valid = self.call("is_valid", f.is_valid, level, on=f"decoded level {_short(level)}")
            if not isinstance(valid, (bool, np.bool_)):
                self.fail("is_valid", f"returned {type(valid).__name__} {valid!r}, not a bool")
                return ""
            playable = self.call("can_play", f.can_play, level, on=f"decoded level {_short(level)}")
            encode_broken = any(p.startswith("encode:") for p in self.problems)  # reported once, there
            if playable and not encode_broken:  # teachers encode the levels they play (others: repaired)
                canonical = self.call(
                    "encode", f.encode, level, on=f"decode({_tokens_text(tokens)}) = {_short(level)}"
                )
                problem = self._token_problem(canonical)
                if problem:
                    self.fail("encode", f"{problem} for decoded level {_short(level)}")
                    return ""
                back = self.call(
                    "decode", f.decode, np.asarray(canonical, dtype=np.int64), on="encode(decode(tokens))"
                )
                if back != level:
                    self.fail(
                        "decode", f"decode(encode(decode(tokens))) != decode(tokens) for {on}", "encode"
                    )
                    return ""
            decoded.append(level)
            self.decoded_valid.append(bool(valid))
        self.sequences = sequences
        self.decoded = decoded
        return (
            f"{len(full) + 2} full and {len(partial) + 1} partial random sequences"
            + (f" and {len(self.written)} written with allowed_tokens" if self.written else "")
            + " decode, deterministically, to levels encode accepts (those can_play allows)"
        )

    def check_editor_view(self) -> str:
        f = self.family
        shape = self.call("editor_view_shape", lambda: f.editor_view_shape)
        if (
            not isinstance(shape, (tuple, list))
            or len(shape) != 3
            or not all(_is_int(d) and d > 0 for d in shape)
        ):
            self.fail("editor_view_shape", f"is {shape!r}, not (C, H, W) of positive ints", "editor_view")
            return ""
        shape = tuple(int(d) for d in shape)
        rng = self.rng(4)
        sequences = [rng.integers(0, f.vocab_size, size=f.max_tokens) for _ in range(2)] + self.written[:1]
        calls = 0
        for tokens in sequences:
            for t in range(f.max_tokens + 1):
                prefix = np.asarray(tokens[:t], dtype=np.int64)
                view = self.call("editor_view", f.editor_view, prefix, on=f"prefix {_tokens_text(prefix)}")
                calls += 1
                view_array = np.asarray(view)
                if view_array.shape != shape:
                    self.fail(
                        "editor_view",
                        f"returned shape {view_array.shape} for a prefix of {t} tokens, but "
                        f"editor_view_shape is {shape}",
                    )
                    return ""
                if view_array.dtype != np.float32:
                    self.fail("editor_view", f"returned dtype {view_array.dtype}, not float32")
                    return ""
                if not np.all(np.isfinite(view_array)):
                    self.fail("editor_view", f"returned non-finite values for a prefix of {t} tokens")
                    return ""
        return f"{calls} prefixes of lengths 0..{f.max_tokens} give float32 {shape}"

    def check_repair(self) -> str:
        f = self.family
        # every invalid decoded level (what repair is for), and a few valid ones (repair must keep them valid)
        candidates = [*self.decoded, *self.sampled]
        flags = self.decoded_valid + [
            bool(self.call("is_valid", f.is_valid, lvl, on=f"level {_short(lvl)}")) for lvl in self.sampled
        ]
        pool = [lvl for lvl, ok in zip(candidates, flags) if not ok][: self.samples]
        pool += [lvl for lvl, ok in zip(candidates, flags) if ok][:8]
        repaired = []
        invalid_before = 0
        for level in pool:
            on = f"level {_short(level)}"
            if not self.call("is_valid", f.is_valid, level, on=on):
                invalid_before += 1
            fixed = self.call("repair", f.repair, level, on=on)
            again = self.call("repair", f.repair, level, on=on)
            if fixed != again:
                self.fail("repair", f"is not deterministic: {on} gave {_short(fixed)}, then {_short(again)}")
                return ""
            valid = self.call("is_valid", f.is_valid, fixed, on=f"repaired {on}")
            if not valid:
                self.fail(
                    "repair", f"returned a level is_valid rejects: {_short(fixed)} (from {_short(level)})"
                )
                return ""
            if not self.call("can_play", f.can_play, fixed, on=f"repaired {on}"):
                self.fail("can_play", f"rejects the repaired level {_short(fixed)}", "repair")
                return ""
            twice = self.call("repair", f.repair, fixed, on=f"repaired {on}")
            if twice != fixed:
                self.fail(
                    "repair",
                    f"is not idempotent: repair(repair(level)) = {_short(twice)} != repair(level) = {_short(fixed)}",
                )
                return ""
            self.call("encode", f.encode, fixed, on=f"repaired level {_short(fixed)}")
            repaired.append(fixed)
        self.repaired = repaired
        return (
            f"{len(pool)} levels ({invalid_before} invalid) repair deterministically and idempotently to valid, "
            "playable levels"
        )

    def check_text(self) -> str:
        f = self.family
        levels = (self.sampled[:8] + self.repaired[:8]) or self.sampled
        first = levels[0]
        text = self.call("to_text", f.to_text, first, on=f"level {_short(first)}")
        if not isinstance(text, str):
            self.fail("to_text", f"returned {type(text).__name__}, not str", "text")
            return ""
        if not self._has_text_form(text):
            return (
                "skip: no text form (from_text is not implemented), so `ued eval/render --levels` cannot read "
                "level files"
            )
        refused = 0
        for level in levels:
            text = self.call("to_text", f.to_text, level, on=f"level {_short(level)}")
            valid = bool(self.call("is_valid", f.is_valid, level, on=f"level {_short(level)}"))
            for what, file_text in (
                ("to_text(level)", text),
                ("a level file of to_text(level)", text.rstrip("\n") + "\n"),
            ):
                try:
                    back = f.from_text(file_text)
                except (UsageError, ValueError) as exc:
                    if valid:  # a file of a valid level must read back; an invalid one may be refused
                        raise _Problem(
                            f"from_text: raised {one_line(exc, 160)} on {what}, a valid level: {_short(level)}"
                        ) from None
                    refused += 1
                    continue
                except Exception as exc:  # noqa: BLE001
                    raise _Problem(
                        f"from_text: raised {one_line(exc, 160)} on {what}: {_short(text, 80)} (refuse bad text "
                        "with ued.errors.UsageError)"
                    ) from None
                if back != level:
                    self.fail(
                        "from_text",
                        f"from_text({what}) gave {_short(back)}, not the level {_short(level)}",
                        "text",
                    )
                    return ""
        note = f"; {refused // 2} invalid one(s) refused with a UsageError" if refused else ""
        return f"{len(levels)} levels round-trip through to_text / from_text (also with a trailing newline){note}"

    def _has_text_form(self, text: str) -> bool:
        """False when `from_text` is LevelFamily's default (NotImplementedError); its other errors are
        reported by `check_text` with the level they came from."""
        try:
            self.family.from_text(text)
        except NotImplementedError:
            return False
        except Exception:  # noqa: BLE001
            return True
        return True

    def check_mutate(self) -> str:
        f = self.family
        parents = (self.repaired[:4] + self.sampled[:4]) or self.sampled
        for k, level in enumerate(parents):
            for edits in (1, 3):
                on = f"level {_short(level)}, num_edits={edits}"
                child = self.call("mutate", f.mutate, level, self.rng(100 + k), edits, on=on)
                again = self.call("mutate", f.mutate, level, self.rng(100 + k), edits, on=on)
                if child != again:
                    self.fail("mutate", f"two equal Generators gave different children of {on}")
                    return ""
                problem = self._encode_problem(child)
                if problem:
                    self.fail("mutate", f"returned a level encode cannot hold ({problem}): {_short(child)}")
                    return ""
                if not self.call("can_play", f.can_play, child, on=f"mutated level {_short(child)}"):
                    self.fail("mutate", f"returned a level can_play rejects: {_short(child)}")
                    return ""
        for k in range(4):
            easy = self.call("sample_easy", f.sample_easy, self.rng(200 + k))
            again = self.call("sample_easy", f.sample_easy, self.rng(200 + k))
            if easy != again:
                self.fail("sample_easy", "two equal Generators gave different levels")
                return ""
            problem = self._encode_problem(easy)
            if problem:
                self.fail("sample_easy", f"returned a level encode cannot hold ({problem}): {_short(easy)}")
                return ""
            if not self.call("can_play", f.can_play, easy, on=f"easy level {_short(easy)}"):
                self.fail("sample_easy", f"returned a level can_play rejects: {_short(easy)}")
                return ""
        return f"{2 * len(parents)} children and 4 easy levels, deterministic, encodable and playable"

    def check_pictures(self) -> str:
        f = self.family
        from ued.config import PPOConfig

        for level in self.sampled[:2] + self.repaired[:1] + self.decoded[:1]:
            on = f"level {_short(level)}"
            picture = np.asarray(self.call("render", f.render, level, on=on))
            if picture.ndim != 3 or picture.shape[2] != 3 or picture.dtype != np.uint8:
                self.fail("render", f"returned {picture.dtype} {picture.shape} for {on}")
                return ""
            stats = self.call("level_stats", f.level_stats, level, on=on)
            if not isinstance(stats, dict) or not all(
                isinstance(k, str) and isinstance(v, (int, float, np.number)) for k, v in stats.items()
            ):
                self.fail("level_stats", f"returned {_short(stats)}")
                return ""
            limit = self.call("episode_limit", f.episode_limit, level, on=on)
            if limit is not None and (not _is_int(limit) or limit < 1):
                self.fail("episode_limit", f"returned {limit!r} for {on}")
                return ""
            key = self.call("tokens_key", f.tokens_key, level, on=on)
            if not isinstance(key, bytes):
                self.fail("tokens_key", f"returned {type(key).__name__}, not bytes")
                return ""
        ppo = self.call("default_ppo", f.default_ppo)
        if not isinstance(ppo, PPOConfig):
            self.fail("default_ppo", f"returned {type(ppo).__name__}, not a PPOConfig")
            return ""
        return "render, level_stats, episode_limit, tokens_key and default_ppo return what they should"

    # ----- envs --------------------------------------------------------------------------------------
    def _first_obs(self, env: Any, level: Any, how: str) -> Any:
        if how == "assign":
            self.call("make_env", setattr, env.unwrapped, "level", level, on="env.unwrapped.level = lvl")
            obs, _ = self.call(
                "make_env", env.reset, seed=self.seed, on="reset after env.unwrapped.level = lvl"
            )
        elif how == "options":
            obs, _ = self.call(
                "make_env",
                env.reset,
                seed=self.seed,
                options={"level": level},
                on='reset(options={"level": lvl})',
            )
        else:
            obs, _ = self.call(
                "make_env", env.reset, seed=self.seed, on=f"reset of make_env({_short(level)})"
            )
        return obs

    def _env_levels(self) -> list[Any]:
        pool, seen = [], set()
        for level in [*self.sampled, *self.repaired]:
            key = repr(level)
            if key not in seen:
                seen.add(key)
                pool.append(level)
            if len(pool) >= self.env_levels:
                break
        return pool

    def check_make_env(self) -> str:
        f = self.family
        levels = self._env_levels()
        firsts, signature, space = [], None, None
        for k, level in enumerate(levels):
            env = self.call("make_env", f.make_env, level, on=f"level {_short(level)}")
            try:
                obs = self._first_obs(env, level, "fresh")
                again = self._first_obs(env, level, "fresh")
                if not _same_obs(obs, again):
                    self.fail(
                        "make_env",
                        f"reset(seed={self.seed}) twice gave different observations on {_short(level)}",
                    )
                    return ""
                if not self.call(
                    "make_env", env.observation_space.contains, obs, on="observation_space.contains"
                ):
                    self.fail(
                        "make_env",
                        f"the first observation on level {k} is not inside observation_space "
                        f"{_short(env.observation_space)} (got {_short(_signature(obs))})",
                    )
                    return ""
                sig = _signature(obs)
                if signature is None:
                    signature, space = sig, env.observation_space
                elif sig != signature or env.observation_space != space:
                    self.fail(
                        "make_env",
                        f"the observation changes with the level: {_short(signature)} on level 0, {_short(sig)} on "
                        f"level {k} ({_short(level)}); give every level of the family one observation shape and "
                        "dtype (pad smaller levels)",
                        "",
                    )
                    return ""
                firsts.append(obs)
            finally:
                with contextlib.suppress(Exception):
                    env.close()
        pair = next(
            (
                (i, j)
                for i in range(len(levels))
                for j in range(i + 1, len(levels))
                if not _same_obs(firsts[i], firsts[j])
            ),
            None,
        )
        honoured = "skip: level switching not checked: every level's first observation looks the same"
        if pair is not None:
            i, j = pair
            a, b = levels[i], levels[j]
            self.env_pair = (a, b)
            for how, what in (
                ("assign", "assigning env.unwrapped.level = lvl and resetting"),
                ("options", 'reset(options={"level": lvl})'),
            ):
                env = self.call("make_env", f.make_env, a, on=f"level {_short(a)}")
                try:
                    obs = self._first_obs(env, b, how)
                    if not _same_obs(obs, firsts[j]):
                        self.fail(
                            "make_env",
                            f"{what} does not play lvl: an env made for {_short(a, 60)} kept showing it "
                            f"(its first observation differs from that of make_env(lvl)); make reset read the "
                            f"level from self.level (and set it from options['level'])",
                            "",
                        )
                        return ""
                    if how == "assign":
                        obs = self._first_obs(env, b, "fresh")
                        if not _same_obs(obs, firsts[j]):
                            self.fail(
                                "make_env",
                                "after env.unwrapped.level = lvl, a second reset went back to the old level; "
                                "every later reset must play the assigned level",
                                "",
                            )
                            return ""
                finally:
                    with contextlib.suppress(Exception):
                        env.close()
            honoured = "honours env.unwrapped.level = lvl and reset(options={'level': lvl})"
        if self.env_checker:
            from gymnasium.utils.env_checker import check_env

            env = self.call("make_env", f.make_env, levels[0])
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    self.current = "make_env"
                    try:
                        check_env(env, skip_render_check=True)
                    except Exception as exc:  # noqa: BLE001
                        self.fail("make_env", f"gymnasium's check_env fails: {one_line(exc, 200)}", "")
                        return ""
            finally:
                with contextlib.suppress(Exception):
                    env.close()
        checked = "passes check_env, " if self.env_checker else ""
        if honoured.startswith("skip:"):
            self.skipped.append(f"make_env level switching: {honoured[5:].strip()}")
            honoured = "level switching not checked"
        return f"{len(levels)} levels: {checked}one observation {_short(signature, 80)}, {honoured}"

    def check_vector_env(self) -> str:
        import torch

        f = self.family
        n = self.vector_envs
        a, b = self.env_pair if self.env_pair is not None else (self.sampled[0], self.sampled[-1])
        venv = self.call("make_vector_env", f.make_vector_env, n, seed=self.seed, device="cpu")
        try:

            def first(levels: list[Any]) -> Any:
                self.call("make_vector_env", venv.set_levels, levels, on="set_levels")
                return self.call("make_vector_env", venv.reset, seed=self.seed, on="reset after set_levels")

            x = first([a] * n)
            for key, leaf in _leaves(x).items():
                if leaf.ndim < 1 or leaf.shape[0] != n:
                    self.fail(
                        "make_vector_env",
                        f"observation {key} has shape {leaf.shape}, not batch-first [{n}, ...]",
                    )
                    return ""
            if not _same_obs(x, first([a] * n)):
                self.fail(
                    "make_vector_env",
                    f"reset(seed={self.seed}) twice on the same levels gave different observations",
                )
                return ""
            y = first([b] * n)
            if self.env_pair is not None and _same_obs(x, y):
                self.fail(
                    "make_vector_env",
                    "ignores set_levels: two different levels gave the same observations (the sub-envs keep "
                    "their first levels)",
                )
                return ""
            if n > 1:
                mixed = first([a] + [b] * (n - 1))
                for i, want in ((0, x), (n - 1, y)):
                    got, expected = _slot(mixed, i), _slot(want, i)
                    if not all(np.array_equal(got[k], expected[k]) for k in got):
                        self.fail("make_vector_env", f"set_levels did not give sub-env {i} levels[{i}]")
                        return ""
            outcome = f"{n} sub-env(s) take their levels from set_levels, deterministic reset"
            outcome += self._student_step(venv, x, torch)
            return outcome
        finally:
            with contextlib.suppress(Exception):
                venv.close()

    def _student_step(self, venv: Any, obs: Any, torch: Any) -> str:
        """`default_student`: registered, built by make_student, acts one step on `obs` (stepping `venv`)."""
        from ued.models import STUDENTS, make_student

        f, n = self.family, self.vector_envs
        name = getattr(f, "default_student", None)
        if name is None:
            self.fail("default_student", "is None, so `ued train` needs --student NAME")
            return ""
        if name not in STUDENTS:
            self.fail(
                "default_student",
                f"{name!r} is not a registered student network (registered: {', '.join(sorted(STUDENTS))})",
            )
            return ""
        self.current = "default_student"
        try:
            policy = make_student(f)
        except Exception as exc:  # noqa: BLE001
            self.fail("default_student", f"make_student(family) raised {one_line(exc, 200)}")
            return ""
        try:
            with torch.no_grad():
                dist, value, _ = policy(obs, policy.initial_state(n, "cpu"), torch.ones(n))
                action = dist.sample()
                log_prob = dist.log_prob(action)
        except Exception as exc:  # noqa: BLE001
            self.fail(
                "default_student",
                f"network {name!r} failed on the vector env's observation {_short(_signature(obs), 80)}: "
                f"{one_line(exc, 160)}",
            )
            return ""
        if tuple(value.shape) != (n,) or tuple(log_prob.shape) != (n,):
            self.fail(
                "default_student",
                f"network {name!r} gave value {tuple(value.shape)} and log_prob {tuple(log_prob.shape)}, not [{n}]",
            )
            return ""
        try:
            step = venv.step(action)
        except Exception as exc:  # noqa: BLE001
            self.fail("default_student", f"the env rejects network {name!r}'s actions: {one_line(exc, 160)}")
            return ""
        _, reward, terminated, truncated = step
        for what, value in (("reward", reward), ("terminated", terminated), ("truncated", truncated)):
            if tuple(value.shape) != (n,):
                self.fail("make_vector_env", f"step returned {what} of shape {tuple(value.shape)}, not [{n}]")
                return ""
        return f"; student {name!r} acts a step on them"

    # ----- suite and options -------------------------------------------------------------------------
    def check_suite(self) -> str | None:
        f = self.family
        name = getattr(f, "default_suite", None)
        if name is None:
            return "skip: no default_suite, so `ued eval RUN` of this family needs --suite or --levels"
        from ued.environments.suites import get_suite

        try:
            suite = get_suite(name)
        except UsageError:
            self.fail("default_suite", f"{name!r} is not a registered suite")
            return ""
        if suite.family != f.name:
            self.fail("default_suite", f"suite {name!r} holds {suite.family!r} levels, not {f.name!r} ones")
            return ""
        entries = self.call("default_suite", suite.levels, on=f"loading suite {name!r}")
        if not entries:
            self.fail("default_suite", f"suite {name!r} holds no levels")
            return ""
        env = None
        try:
            for k, (entry_name, entry) in enumerate(entries):
                level = self.call(
                    "default_suite",
                    draw_levels,
                    entry,
                    1,
                    entry_rng(self.seed, k),
                    on=f"entry {entry_name!r}",
                )[0]
                try:
                    f.encode(level)
                    encodable = True
                except Exception:  # noqa: BLE001  (e.g. a 21x21 maze or an F1 centerline: no tokens)
                    encodable = False
                if encodable:
                    valid = self.call(
                        "is_valid", f.is_valid, level, on=f"suite {name!r} entry {entry_name!r}"
                    )
                    if not valid:
                        self.fail(
                            "default_suite", f"suite {name!r} entry {entry_name!r} is not valid (is_valid)"
                        )
                        return ""
                    continue
                if env is None:
                    env = self.call("make_env", f.make_env, self.sampled[0])
                try:
                    self._first_obs(env, level, "options")
                except _Problem as problem:
                    self.fail(
                        "default_suite",
                        f"suite {name!r} entry {entry_name!r} is neither encodable nor playable by this family "
                        f"(options {_short(f.options, 60)}): {str(problem).split(': ', 1)[-1]}",
                    )
                    return ""
        finally:
            if env is not None:
                with contextlib.suppress(Exception):
                    env.close()
        return f"{name!r}: {len(entries)} entries of this family"

    def check_options(self) -> str:
        from ued import levels as registry

        f = self.family
        cls = type(f)
        options = self.call("options", lambda: f.options)
        if not isinstance(options, dict) or not all(isinstance(k, str) for k in options):
            self.fail("options", f"is {_short(options)}, not a dict of option name -> value")
            return ""
        try:
            json.dumps(options)
        except (TypeError, ValueError):
            self.fail("options", f"{_short(options)} are not plain JSON values (run configs record them)")
            return ""
        kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
        params = [p.name for p in inspect.signature(cls).parameters.values() if p.kind in kinds]
        missing = [p for p in params if p not in options]
        if missing:
            self.fail("options", f"leaves out the constructor argument(s) {', '.join(missing)}")
            return ""
        level_options = self.call("options", lambda: f.level_options, on="level_options")
        if not isinstance(level_options, dict) or any(
            k not in options or options[k] != v for k, v in level_options.items()
        ):
            self.fail(
                "options",
                f"level_options {_short(level_options)} are not a part of options {_short(options)}",
            )
            return ""
        registered = registry.FAMILIES.get(f.name)
        if registered is not None and registered is not cls:
            self.fail(
                "name",
                f"{f.name!r} is registered to {registered.__module__}.{registered.__qualname__}, not to this "
                f"class {cls.__module__}.{cls.__qualname__}",
                "",
            )
            return ""
        if registered is not None:
            self.current = "options"
            try:
                clone = registry.make_family(f.name, **options)
            except UsageError as exc:
                self.fail("options", f"make_family({f.name!r}, **options) failed: {one_line(exc, 200)}")
                return ""
            how = f"make_family({f.name!r}, **options)"
        else:
            clone = self.call("options", cls, **options, on=f"{cls.__qualname__}(**options)")
            how = f"{cls.__qualname__}(**options) (not registered: make_family cannot build it by name)"
        if type(clone) is not cls or clone.options != options:
            self.fail(
                "options",
                f"{how} built a family whose options are {_short(clone.options)}, not {_short(options)}",
            )
            return ""
        for attr in ("vocab_size", "max_tokens", "editor_view_shape"):
            if getattr(clone, attr) != getattr(f, attr):
                self.fail("options", f"{how} built a family with another {attr}: {getattr(clone, attr)!r}")
                return ""
        if self.sampled:
            level = self.sampled[0]
            if not np.array_equal(np.asarray(clone.encode(level)), np.asarray(f.encode(level))):
                self.fail("options", f"{how} built a family that encodes levels differently")
                return ""
        return f"{_short(options, 80)} rebuild an equal family through {how}"


def check_family(
    family: LevelFamily | type[LevelFamily] | str,
    *,
    seed: int = 0,
    samples: int = 24,
    env_levels: int = 4,
    env_checker: bool = True,
    vector_envs: int = 2,
    time_limit: float | None = 60.0,
    raise_on_problems: bool = True,
) -> FamilyReport:
    """Check `family` against the LevelFamily contract (the module docstring lists the checks).

    `family`: a family, a LevelFamily class (built with its default options) or a registered name.
    `samples`: levels and token sequences per check (seeded by `seed`); `env_levels`: levels played in
    `make_env` envs; `env_checker`: run gymnasium's `check_env` (seconds for a pixel env); `vector_envs`:
    sub-envs of the `make_vector_env` check (1 keeps a one-process-per-env family in this process);
    `time_limit`: seconds per check (main thread only). Returns the `FamilyReport`; with problems and
    `raise_on_problems` (default) raises `FamilyCheckError` (an AssertionError) listing them instead.
    """
    from ued.levels import make_family

    if isinstance(family, str):
        family = make_family(family)
    if isinstance(family, type):
        if not issubclass(family, LevelFamily):
            raise TypeError(f"check_family needs a LevelFamily, a subclass or a name, got {family!r}")
        missing = missing_methods(family)
        if missing:
            report = FamilyReport(
                str(getattr(family, "name", family.__qualname__)),
                (),
                tuple(f"{m}: not implemented (abstract in LevelFamily); implement it" for m in missing),
                (),
            )
            if raise_on_problems:
                raise FamilyCheckError(report)
            return report
        try:
            family = family()
        except Exception as exc:  # noqa: BLE001
            report = FamilyReport(
                str(getattr(family, "name", family.__qualname__)),
                (),
                (f"__init__: building the family with its default options raised {one_line(exc, 200)}",),
                (),
            )
            if raise_on_problems:
                raise FamilyCheckError(report) from None
            return report
    if not isinstance(family, LevelFamily):
        raise TypeError(f"check_family needs a LevelFamily, a subclass or a name, got {family!r}")
    if samples < 2 or env_levels < 2 or vector_envs < 1:
        raise ValueError("check_family needs samples >= 2, env_levels >= 2 and vector_envs >= 1")
    checker = _Checker(
        family,
        seed=seed,
        samples=samples,
        env_levels=env_levels,
        env_checker=env_checker,
        vector_envs=vector_envs,
        time_limit=time_limit,
    )
    checker.run("attributes", checker.check_attributes)
    checker.run("sample", checker.check_sample)
    checker.run("encode", checker.check_encode, needs=("sampled",))
    checker.run("allowed_tokens", checker.check_allowed_tokens)
    checker.run("decode", checker.check_decode)
    checker.run("editor_view", checker.check_editor_view)
    checker.run("repair", checker.check_repair, needs=("sampled", "decoded"))
    checker.run("to_text/from_text", checker.check_text, needs=("sampled",))
    checker.run("mutate/sample_easy", checker.check_mutate, needs=("sampled",))
    checker.run("render/stats", checker.check_pictures, needs=("sampled",))
    checker.run("make_env", checker.check_make_env, needs=("sampled",))
    checker.run("make_vector_env/default_student", checker.check_vector_env, needs=("sampled",))
    checker.run("default_suite", checker.check_suite, needs=("sampled",))
    checker.run("options", checker.check_options)
    report = FamilyReport(
        str(getattr(family, "name", type(family).__qualname__)),
        tuple(checker.passed),
        tuple(checker.problems),
        tuple(checker.skipped),
    )
    if report.problems and raise_on_problems:
        raise FamilyCheckError(report)
    return report


# ----- the API reference (docs/level-families.md) ---------------------------------------------------------
REFERENCE_BEGIN = "<!-- BEGIN GENERATED: ued.testing.family_reference() -->"
REFERENCE_END = "<!-- END GENERATED -->"


def _attribute_docs(cls: type) -> dict[str, str]:
    """`#:` comments above the class attributes of `cls`'s source, by attribute name."""
    docs: dict[str, str] = {}
    pending: list[str] = []
    for line in inspect.getsource(cls).splitlines():
        stripped = line.strip()
        if stripped.startswith("#:"):
            pending.append(stripped[2:].strip())
            continue
        match = re.match(r"^    (\w+)\s*[:=]", line)
        if match and pending:
            docs[match.group(1)] = " ".join(pending)
        pending = []
    return docs


def public_members(cls: type = LevelFamily) -> list[str]:
    """The public members of LevelFamily (attributes, properties and methods), in source order."""
    source = inspect.getsource(cls)
    names = [n for n in dict.fromkeys([*cls.__annotations__, *vars(cls)]) if not n.startswith("_")]
    return sorted(names, key=lambda n: _source_position(source, n))


def _source_position(source: str, name: str) -> int:
    match = re.search(rf"^    (?:def )?{re.escape(name)}\b", source, re.MULTILINE)
    return match.start() if match else len(source)


def _signature_text(fn: Callable[..., Any]) -> str:
    """`(level: Any) -> np.ndarray`: a method's signature as its source writes it, without `self`."""
    parts, star = [], False
    for param in inspect.signature(fn).parameters.values():
        if param.name == "self":
            continue
        if param.kind is inspect.Parameter.KEYWORD_ONLY and not star:
            parts.append("*")
            star = True
        text = param.name
        if param.annotation is not inspect.Parameter.empty:
            text += f": {param.annotation}"
        if param.default is not inspect.Parameter.empty:
            text += f" = {param.default!r}"
        parts.append(text)
    returns = inspect.signature(fn).return_annotation
    tail = "" if returns is inspect.Signature.empty else f" -> {returns}"
    return f"({', '.join(parts)}){tail}"


#: the labelled lines of LevelFamily's docstrings, rendered as a list in the reference
DOC_LABELS = ("Called by:", "Receives:", "Returns:", "Contract:", "Never:")


def _markdown_doc(doc: str) -> str:
    """A docstring as markdown: its text, then its labelled lines (`DOC_LABELS`) as a bullet list."""
    out: list[str] = []
    in_list = False
    for line in doc.splitlines():
        label = next((lab for lab in DOC_LABELS if line.startswith(lab)), None)
        if label is not None:
            if not in_list and out and out[-1] != "":
                out.append("")
            out.append(f"- **{label}**{line[len(label) :]}")
            in_list = True
        elif in_list and line.strip():
            out.append(f"  {line}")
        else:
            in_list = in_list and bool(line.strip())
            out.append(line)
    return "\n".join(out)


def family_reference() -> str:
    """The markdown API reference of `LevelFamily`, generated from its docstrings and `#:` comments: one
    section per public member saying whether it is required (abstract) or has a default, and its contract.
    docs/level-families.md holds it between REFERENCE_BEGIN and REFERENCE_END (tests keep them equal)."""
    cls = LevelFamily
    attribute_docs = _attribute_docs(cls)
    out: list[str] = []
    for name in public_members(cls):
        member = vars(cls).get(name)
        if isinstance(member, property):
            abstract = getattr(member.fget, "__isabstractmethod__", False)
            kind = "property, **abstract** (required)" if abstract else "property, has a default"
            doc = inspect.getdoc(member) or ""
            heading = f"`{name}`"
        elif callable(member):
            abstract = getattr(member, "__isabstractmethod__", False)
            kind = "method, **abstract** (required)" if abstract else "method, has a default"
            doc = inspect.getdoc(member) or ""
            heading = f"`{name}{_signature_text(member)}`"
        else:
            annotation = cls.__annotations__.get(name, "")
            if name in vars(cls):
                kind = f"attribute `{annotation}`, default `{member!r}`"
            else:
                kind = f"attribute `{annotation}`, **required** (no default)"
            doc = attribute_docs.get(name, "")
            heading = f"`{name}`"
        out += [f"### {heading}", "", f"*{kind}*", "", _markdown_doc(doc), ""]
    return "\n".join(out).rstrip() + "\n"
