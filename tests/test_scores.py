"""Regret scores on hand-made returns."""

from __future__ import annotations

import numpy as np
import pytest

from ued.levels import LevelResults
from ued.scores import REGRETS, best_and_mean, flexible_regret, paired_regret


def results(per_level: list[list[float]]) -> LevelResults:
    """LevelResults whose summary fields follow from the per-level returns (empty level -> 0)."""
    best, mean = best_and_mean(per_level)
    n = len(per_level)
    return LevelResults(
        episode_returns=[np.asarray(r, dtype=np.float64) for r in per_level],
        mean_return=mean,
        max_return=best,
        solved_rate=np.array([float(np.mean(np.asarray(r) > 0)) if len(r) else 0.0 for r in per_level]),
        positive_value_loss=np.zeros(n),
        mean_value=np.zeros(n),
    )


def test_best_and_mean_of_lists_and_empty_levels():
    best, mean = best_and_mean([[0.2, 0.6], [], [0.5]])
    np.testing.assert_allclose(best, [0.6, 0.0, 0.5])
    np.testing.assert_allclose(mean, [0.4, 0.0, 0.5])


def test_paired_regret_hand_computed():
    protagonist = [[0.2, 0.6], [0.9], [0.0, 0.0], [0.5]]
    antagonist = [[0.1, 0.8], [0.3, 0.5], [0.0], [0.5, 0.5]]
    # level 0: 0.8 - 0.4 = 0.4; level 1: 0.5 - 0.9 < 0 -> 0; level 2: both unsolved -> 0; level 3: tie -> 0
    np.testing.assert_allclose(paired_regret(protagonist, antagonist), [0.4, 0.0, 0.0, 0.0])


def test_paired_regret_uses_antagonist_best_not_mean():
    # the antagonist solved the level once in three tries; the protagonist never did
    assert paired_regret([[0.0, 0.0]], [[0.0, 0.9, 0.0]])[0] == pytest.approx(0.9)


def test_paired_regret_empty_and_partial_episodes():
    # an empty entry means no return was recorded (counts as 0); a partial return counts like any other
    np.testing.assert_allclose(paired_regret([[], [0.0]], [[0.7], []]), [0.7, 0.0])


def test_regret_accepts_level_results_and_lists_alike():
    prot, ant = [[0.2, 0.6], [0.0]], [[0.1, 0.8], [0.95]]
    np.testing.assert_allclose(paired_regret(results(prot), results(ant)), paired_regret(prot, ant))
    np.testing.assert_allclose(flexible_regret(results(prot), results(ant)), flexible_regret(prot, ant))
    np.testing.assert_allclose(paired_regret(results(prot), results(ant)), [0.4, 0.95])


def test_flexible_regret_lets_the_stronger_student_be_the_antagonist():
    protagonist = [[0.9, 0.1], [0.0], [0.4, 0.4], [0.6, 0.2]]
    antagonist = [[0.3], [0.8, 0.0], [0.4], [0.6, 0.6]]
    # level 0: protagonist's best 0.9 > 0.3 -> 0.9 - mean(ant)=0.3 -> 0.6 (plain PAIRED would give 0)
    # level 1: antagonist leads: 0.8 - 0.0 = 0.8 (same as PAIRED)
    # level 2: equal bests (tie -> protagonist plays antagonist): 0.4 - 0.4 = 0
    # level 3: tie on best 0.6 -> protagonist's best 0.6 - antagonist's mean 0.6 = 0 (PAIRED: 0.6 - 0.4)
    np.testing.assert_allclose(flexible_regret(protagonist, antagonist), [0.6, 0.8, 0.0, 0.0])
    np.testing.assert_allclose(paired_regret(protagonist, antagonist), [0.0, 0.8, 0.0, 0.2])


def test_flexible_regret_equals_paired_where_antagonist_leads():
    rng = np.random.default_rng(0)
    prot = [rng.random(3) * 0.5 for _ in range(20)]
    ant = [np.append(rng.random(2) * 0.5, 0.6 + 0.4 * rng.random()) for _ in range(20)]
    np.testing.assert_allclose(flexible_regret(prot, ant), paired_regret(prot, ant))
    assert (paired_regret(prot, ant) > 0).all()


def test_regrets_are_never_negative_and_mismatched_batches_fail():
    rng = np.random.default_rng(1)
    a, b = [rng.random(2) for _ in range(50)], [rng.random(3) for _ in range(50)]
    for fn in REGRETS.values():
        assert (fn(a, b) >= 0).all()
        with pytest.raises(ValueError, match="different numbers of levels"):
            fn(a, b[:-1])
