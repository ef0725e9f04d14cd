"""The PLR level buffer: prioritisation math on hand-made numbers, insertion, duplicates, checkpoints."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch

from ued.errors import UsageError
from ued.level_buffer import (
    LevelBuffer,
    power_weights,
    rank_weights,
    replay_distribution,
    staleness_weights,
)
from ued.levels import LevelResults
from ued.scores import max_mc, positive_value_loss

torch.set_num_threads(1)


# ----- prioritisation math ----------------------------------------------------------------------
def test_rank_weights_hand_made():
    """dcd level_sampler.py `_score_transform` "rank": ties get distinct ranks in sort order."""
    # ranks 1, 3, 2, 4 (the later of the two tied 3.0 ranks first); T = 1: 1, 1/3, 1/2, 1/4 over 25/12
    expected = np.array([1, 1 / 3, 1 / 2, 1 / 4]) / (25 / 12)
    np.testing.assert_allclose(rank_weights([5.0, 3.0, 3.0, 1.0], 1.0), expected)
    # T = 0.5 squares them
    expected = np.array([1, 1 / 9, 1 / 4, 1 / 16]) / (1 + 1 / 9 + 1 / 4 + 1 / 16)
    np.testing.assert_allclose(rank_weights([5.0, 3.0, 3.0, 1.0], 0.5), expected)
    # order of the input does not matter, only ranks
    np.testing.assert_allclose(rank_weights([1.0, 5.0, 3.0], 1.0), np.array([1 / 3, 1.0, 1 / 2]) / (11 / 6))


def test_rank_weights_low_temperature_concentrates_on_the_best():
    w = rank_weights(np.arange(10.0), 0.05)
    assert w.argmax() == 9 and w[9] > 0.99


def test_power_weights_hand_made():
    # negative scores clip to 0; T = 0.5 squares: 4, 1, 0, 0 over 5
    np.testing.assert_allclose(power_weights([2.0, 1.0, 0.0, -1.0], 0.5), [0.8, 0.2, 0.0, 0.0])
    np.testing.assert_allclose(power_weights([3.0, 1.0], 1.0), [0.75, 0.25])
    # all scores <= 0: uniform
    np.testing.assert_allclose(power_weights([0.0, -2.0, 0.0], 0.3), [1 / 3] * 3)
    # large scores and small temperatures do not overflow
    w = power_weights([1e6, 5e5], 0.01)
    assert np.isfinite(w).all() and w[0] > 0.999


def test_staleness_weights_hand_made():
    np.testing.assert_allclose(staleness_weights([0, 1, 3]), [0.0, 0.25, 0.75])
    np.testing.assert_allclose(staleness_weights([0, 0]), [0.5, 0.5])


def test_replay_distribution_mixes_score_and_staleness():
    # rank, T=1: score 2 has rank 1, score 1 rank 2 -> P_S = [1/3, 2/3]; P_C = [3/4, 1/4]; c = 0.5
    p = replay_distribution([1.0, 2.0], [3, 1], prioritization="rank", temperature=1.0, staleness_coef=0.5)
    np.testing.assert_allclose(p, [0.5 * (1 / 3 + 0.75), 0.5 * (2 / 3 + 0.25)])
    assert p.sum() == pytest.approx(1.0)
    # c = 0: scores only; c = 1: staleness only
    np.testing.assert_allclose(
        replay_distribution([1.0, 2.0], [3, 1], temperature=1.0, staleness_coef=0.0), [1 / 3, 2 / 3]
    )
    np.testing.assert_allclose(
        replay_distribution([1.0, 2.0], [3, 1], temperature=1.0, staleness_coef=1.0), [0.75, 0.25]
    )
    p = replay_distribution([3.0, 1.0], [0, 4], prioritization="power", temperature=1.0, staleness_coef=0.3)
    np.testing.assert_allclose(p, [0.7 * 0.75, 0.7 * 0.25 + 0.3])
    # dcd: without a staleness term, power adds 1e-3 so zero scores stay replayable
    p = replay_distribution([1.0, 0.0], [0, 0], prioritization="power", temperature=1.0, staleness_coef=0.0)
    np.testing.assert_allclose(p, [1.001 / 1.002, 0.001 / 1.002])


@pytest.mark.parametrize(
    "kwargs",
    [{"prioritization": "softmax"}, {"temperature": 0.0}, {"temperature": -1.0}, {"staleness_coef": 1.5}],
)
def test_bad_settings_raise_usage_error(kwargs):
    with pytest.raises(UsageError):
        replay_distribution([1.0], [0], **kwargs)
    with pytest.raises(UsageError):
        LevelBuffer(4, 3, **kwargs)


def test_zero_capacity_is_a_usage_error():
    with pytest.raises(UsageError, match="capacity"):
        LevelBuffer(0, 3)


# ----- scores -----------------------------------------------------------------------------------
def _results(pvl, mean_value, max_return):
    n = len(pvl)
    return LevelResults(
        episode_returns=[np.array([r]) for r in max_return],
        mean_return=np.asarray(max_return, dtype=float),
        max_return=np.asarray(max_return, dtype=float),
        solved_rate=np.zeros(n),
        positive_value_loss=np.asarray(pvl, dtype=float),
        mean_value=np.asarray(mean_value, dtype=float),
    )


def test_replay_scores():
    r = _results([0.1, 0.0], [0.2, 0.5], [0.9, 0.0])
    np.testing.assert_allclose(positive_value_loss(r), [0.1, 0.0])
    np.testing.assert_allclose(max_mc(r), [0.7, -0.5])
    # measured per last completed episode where there is one (dcd), else over the whole rollout
    import dataclasses

    per_episode = dataclasses.replace(
        r, last_episode_pvl=np.array([0.4, np.nan]), last_episode_value=np.array([0.1, np.nan])
    )
    np.testing.assert_allclose(positive_value_loss(per_episode), [0.4, 0.0])
    np.testing.assert_allclose(max_mc(per_episode), [0.8, -0.5])
    # the best return seen before counts when it is higher
    np.testing.assert_allclose(max_mc(r, np.array([0.5, 0.8])), [0.7, 0.3])
    np.testing.assert_allclose(max_mc(r, np.array([-np.inf, np.nan])), [0.7, -0.5])


# ----- the buffer -------------------------------------------------------------------------------
def _tok(*values):
    return np.array(values, dtype=np.int64)


def test_insert_replaces_the_least_likely_replay_when_matched():
    """dcd level_sampler.py: a full buffer replaces the slot of lowest replay probability (staleness
    included) when the new score is at least its score."""
    buf = LevelBuffer(3, 2, staleness_coef=0.0)
    assert [buf.insert(_tok(i, 0), s) for i, s in enumerate([0.5, 0.1, 0.9])] == [0, 1, 2]
    assert buf.full
    assert buf.insert(_tok(7, 7), 0.05) is None  # below the 0.1 of the least likely level: rejected
    assert buf.insert(_tok(8, 8), 0.1) == 1  # a tie replaces it
    assert buf.insert(_tok(9, 9), 0.3) == 1  # replaces the 0.1 level in slot 1 again
    assert len(buf) == 3
    assert buf.find(_tok(1, 0).tobytes()) is None
    assert buf.find(_tok(9, 9).tobytes()) == 1
    np.testing.assert_allclose(sorted(buf.scores), [0.3, 0.5, 0.9])
    # with staleness the least likely replay need not be the lowest score: a just-replayed 0.9 level
    # (staleness 0) goes before a 0.2 level not replayed for 10 draws
    stale = LevelBuffer(2, 1, staleness_coef=0.9)
    stale.insert(_tok(0), 0.2)
    stale.insert(_tok(1), 0.9)
    stale.clock = 10
    stale.last_sampled[1] = 10
    assert int(np.argmin(stale.replay_distribution())) == 1
    assert stale.insert(_tok(2), 1.0) == 1


def test_present_level_is_updated_not_duplicated():
    buf = LevelBuffer(4, 2)
    slot = buf.insert(_tok(1, 2), 0.2, max_return=0.5)
    assert buf.insert(_tok(1, 2), 0.7, max_return=0.3) == slot
    assert len(buf) == 1
    assert buf.scores[slot] == 0.7  # newest score replaces
    assert buf.max_returns[slot] == 0.5  # best return is kept
    # a custom key: two token arrays with the same key are the same level
    assert buf.insert(_tok(3, 3), 0.1, key=b"same") == 1
    assert buf.insert(_tok(4, 4), 0.4, key=b"same") == 1
    assert len(buf) == 2 and buf.scores[1] == 0.4


def test_random_inserts_never_exceed_capacity_or_duplicate():
    rng = np.random.default_rng(0)
    buf = LevelBuffer(20, 3)
    for _ in range(2000):
        tokens = rng.integers(0, 5, size=3)  # 125 distinct levels, so many repeats
        buf.insert(tokens, float(rng.random()))
        if rng.random() < 0.1:
            buf.sample(rng, 4)
        assert len(buf) <= 20
    stored = {buf.tokens[i].tobytes() for i in range(len(buf))}
    assert len(stored) == len(buf) == 20
    assert all(buf.find(k) is not None for k in stored)


def test_sample_follows_the_distribution_and_tracks_staleness():
    buf = LevelBuffer(4, 1, prioritization="rank", temperature=1.0, staleness_coef=0.0)
    for i, s in enumerate([4.0, 3.0, 2.0, 1.0]):
        buf.insert(_tok(i), s)
    p = buf.replay_distribution()
    np.testing.assert_allclose(p, np.array([1, 1 / 2, 1 / 3, 1 / 4]) / (25 / 12))
    rng = np.random.default_rng(1)
    counts = np.bincount(np.concatenate([buf.sample(rng, 50) for _ in range(200)]), minlength=4)
    np.testing.assert_allclose(counts / counts.sum(), p, atol=0.02)
    # staleness: replay draws since last sampled (fresh levels do not age the buffer, as in dcd)
    buf2 = LevelBuffer(3, 1, staleness_coef=1.0)
    for i in range(3):
        buf2.insert(_tok(i), 1.0)
    np.testing.assert_array_equal(buf2.staleness(), [0, 0, 0])
    slots = buf2.sample(np.random.default_rng(0), 1)
    stale = buf2.staleness()
    assert stale[slots[0]] == 0 and sorted(stale.tolist()) == [0, 1, 1]


def test_top_and_stats():
    buf = LevelBuffer(5, 1)
    assert np.isnan(buf.stats()["score_mean"])
    for i, s in enumerate([0.2, 0.9, 0.5]):
        buf.insert(_tok(i), s)
    assert buf.top(2).tolist() == [1, 2]
    assert buf.top(10).tolist() == [1, 2, 0]
    st = buf.stats()
    assert st["size"] == 3 and st["score_max"] == 0.9 and st["score_mean"] == pytest.approx(1.6 / 3)


def test_state_dict_round_trip_weights_only():
    rng = np.random.default_rng(3)
    buf = LevelBuffer(6, 3, decode=lambda t: tuple(int(x) for x in t))
    for _ in range(10):
        buf.insert(rng.integers(0, 9, size=3), float(rng.random()), max_return=float(rng.random()))
    buf.sample(rng, 3)
    blob = io.BytesIO()
    torch.save(buf.state_dict(), blob)
    blob.seek(0)
    state = torch.load(blob, weights_only=True)
    other = LevelBuffer(6, 3, decode=lambda t: tuple(int(x) for x in t))
    other.load_state_dict(state)
    assert len(other) == len(buf) and other.clock == buf.clock
    np.testing.assert_array_equal(other.tokens[: len(buf)], buf.tokens[: len(buf)])
    np.testing.assert_allclose(other.replay_distribution(), buf.replay_distribution())
    assert other.level(0) == tuple(buf.tokens[0].tolist())
    # duplicates are still detected after loading
    assert other.insert(buf.tokens[2], 5.0) == 2 and len(other) == len(buf)
    with pytest.raises(UsageError, match="capacity"):
        LevelBuffer(2, 3).load_state_dict(state)
