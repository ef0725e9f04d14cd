"""Level scores: small pure functions from what students did on a batch of levels to one number per level.

Every function takes, per student, either a `ued.levels.LevelResults` (its `max_return` / `mean_return` are
used) or a sequence with one entry per level holding the returns of the episodes run on that level (a
list/array; an empty entry counts as a return of 0: nothing was achieved). Results are float64 arrays [L].

- `paired_regret`: PAIRED's regret estimate, max(antagonist's best - protagonist's mean, 0).
- `flexible_regret`: flexible PAIRED (dcd): whichever student has the higher best return on a level plays
  the antagonist there.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ued.levels import LevelResults

#: per-level episode returns: one list/array of returns per level
PerLevelReturns = Sequence[Sequence[float] | np.ndarray]
Returns = LevelResults | PerLevelReturns


def best_and_mean(returns: Returns) -> tuple[np.ndarray, np.ndarray]:
    """(best return [L], mean return [L]) of each level; an empty level counts as a single return of 0."""
    if isinstance(returns, LevelResults):
        return (
            np.asarray(returns.max_return, dtype=np.float64).reshape(-1),
            np.asarray(returns.mean_return, dtype=np.float64).reshape(-1),
        )
    best = np.zeros(len(returns), dtype=np.float64)
    mean = np.zeros(len(returns), dtype=np.float64)
    for i, r in enumerate(returns):
        r = np.asarray(r, dtype=np.float64).reshape(-1)
        if r.size:
            best[i], mean[i] = r.max(), r.mean()
    return best, mean


def _check_same_length(a: np.ndarray, b: np.ndarray) -> None:
    if a.shape != b.shape:
        raise ValueError(f"the two students saw different numbers of levels: {a.shape[0]} and {b.shape[0]}")


def paired_regret(protagonist: Returns, antagonist: Returns) -> np.ndarray:
    """PAIRED regret per level: max(antagonist's best return - protagonist's mean return, 0) -> [L]."""
    _, prot_mean = best_and_mean(protagonist)
    ant_best, _ = best_and_mean(antagonist)
    _check_same_length(prot_mean, ant_best)
    return np.maximum(ant_best - prot_mean, 0.0)


def flexible_regret(protagonist: Returns, antagonist: Returns) -> np.ndarray:
    """Flexible PAIRED regret per level -> [L].

    On each level the student with the higher best return plays the antagonist (a tie goes to the
    protagonist, as in dcd's `flexible_paired`); regret = max(its best return - the other's mean return, 0).
    Equals `paired_regret` on the levels where the antagonist's best return is higher.
    """
    prot_best, prot_mean = best_and_mean(protagonist)
    ant_best, ant_mean = best_and_mean(antagonist)
    _check_same_length(prot_best, ant_best)
    antagonist_leads = ant_best > prot_best
    best = np.where(antagonist_leads, ant_best, prot_best)
    other_mean = np.where(antagonist_leads, prot_mean, ant_mean)
    return np.maximum(best - other_mean, 0.0)


#: regret estimators by name (`PAIREDConfig.regret`)
REGRETS = {"paired": paired_regret, "flexible": flexible_regret}


# ----- replay scores (PLR / ACCEL): one student, no antagonist -------------------------------------
def _last_episode(results: LevelResults, name: str, fallback: np.ndarray) -> np.ndarray:
    """The per-level statistic `name` of the last completed episode where measured, else `fallback`."""
    fallback = np.asarray(fallback, dtype=np.float64).reshape(-1)
    value = getattr(results, name)
    if value is None:
        return fallback
    value = np.asarray(value, dtype=np.float64).reshape(-1)
    return np.where(np.isnan(value), fallback, value)


def positive_value_loss(results: LevelResults) -> np.ndarray:
    """PLR's positive value loss per level -> [L]: the mean of max(GAE advantage, 0) over the steps of the
    last episode completed on the level (dcd's `positive_value_loss`: one score per completed episode, the
    newest replacing the old, the episode cut off by the rollout's end skipped); over all the level's
    steps when no episode completed."""
    return _last_episode(results, "last_episode_pvl", results.positive_value_loss)


def max_mc(results: LevelResults, best_returns: np.ndarray | None = None) -> np.ndarray:
    """MaxMC (ACCEL) per level -> [L]: best return ever seen on the level - the mean value prediction over
    the last completed episode (all steps when none completed). `best_returns` [L] holds the best returns
    seen before this rollout (nan or -inf where none); this rollout's `max_return` is included. With the
    undiscounted episode returns of sparse-reward mazes this is dcd's `grounded_signed_value_loss`."""
    best = np.asarray(results.max_return, dtype=np.float64).reshape(-1)
    if best_returns is not None:
        before = np.asarray(best_returns, dtype=np.float64).reshape(-1)
        if before.shape != best.shape:
            raise ValueError(f"best_returns has {before.shape[0]} levels, the results {best.shape[0]}")
        best = np.fmax(best, before)
    return best - _last_episode(results, "last_episode_value", results.mean_value)


#: replay scores by name (`PLRConfig.score`)
REPLAY_SCORES = {"pvl": positive_value_loss, "maxmc": max_mc}
