import numpy as np
import pytest

from sparsevideonav_ros.core.frame_sampler import FrameSampler


def run(sampler, stamps):
    return [t for t in stamps if sampler.offer(t)]


def test_30fps_to_4fps():
    s = FrameSampler(4.0)
    stamps = 1.7e9 + np.arange(300) / 30.0  # 10 s, epoch-sized stamps
    kept = run(s, stamps)
    assert abs(len(kept) - 40) <= 1
    assert s.accepted == len(kept) and s.offered == 300
    gaps = np.diff(kept)
    # Each pick is the first frame inside its tick's tolerance window (up to
    # 62.5 ms early), so after the first pick (the anchor sits exactly on the
    # grid) the spacing wobbles by at most one camera period, without drift.
    assert 0.25 - 0.0625 <= gaps[0] <= 0.25
    assert np.all(np.abs(gaps[1:] - 0.25) <= 1 / 30 + 1e-6)
    assert kept[-1] - kept[0] == pytest.approx(0.25 * (len(kept) - 1), abs=0.0625)
    assert abs(np.mean(gaps) - 0.25) < 0.01


def test_jittery_4fps_keeps_every_frame():
    rng = np.random.default_rng(1)
    stamps = np.arange(200) * 0.25 + rng.uniform(-0.02, 0.02, 200)
    s = FrameSampler(4.0)
    assert len(run(s, stamps)) == 200


def test_2fps_keeps_every_frame():
    s = FrameSampler(4.0)
    assert len(run(s, np.arange(40) * 0.5)) == 40


def test_tolerance_window_edges():
    s = FrameSampler(4.0, tolerance_fraction=0.25)
    assert s.offer(0.0)
    assert not s.offer(0.18)  # 70 ms early: outside the 62.5 ms window
    assert s.offer(0.19)      # 60 ms early: counts for tick 1
    assert not s.offer(0.25)  # tick 1 already used
    assert s.offer(0.5)


def test_gap_jumps_to_current_tick():
    s = FrameSampler(4.0)
    assert s.offer(0.0)
    assert s.offer(0.25)
    # 2 s without frames: the next frame takes its own tick (8) and is not
    # counted again for the missed ticks 2..7.
    assert s.offer(2.01)
    assert not s.offer(2.1)
    assert not s.offer(2.18)  # 70 ms before tick 9 (2.25): still tick 8
    assert s.offer(2.2)
    assert s.accepted == 4


def test_time_going_backwards_resets_grid():
    s = FrameSampler(4.0)
    run(s, np.arange(0.0, 5.0, 1 / 30))
    assert s.resets == 0
    assert s.offer(1.0)  # bag looped
    assert s.resets == 1
    assert not s.offer(1.1)
    assert s.offer(1.25)
    # A duplicate of the last accepted stamp is not "backwards".
    assert not s.offer(1.25)
    assert s.resets == 1


def test_reset_and_validation():
    s = FrameSampler()
    s.offer(0.0)
    s.offer(0.1)
    s.reset()
    assert (s.accepted, s.offered, s.resets) == (0, 0, 0)
    assert s.offer(100.0)
    assert not s.offer(float("nan"))
    with pytest.raises(ValueError):
        FrameSampler(rate_hz=0.0)
    with pytest.raises(ValueError):
        FrameSampler(tolerance_fraction=1.0)


def test_would_accept_predicts_offer_without_changing_state():
    sampler = FrameSampler(rate_hz=4.0)
    rng = np.random.default_rng(0)
    stamps = np.cumsum(rng.uniform(0.01, 0.12, size=300))
    stamps[150] = stamps[149] - 1.0  # a clock jump back
    for stamp in stamps:
        predicted = sampler.would_accept(stamp)
        assert sampler.would_accept(stamp) == predicted  # no side effect
        assert sampler.offer(stamp) == predicted
    assert not sampler.would_accept(float("nan"))
