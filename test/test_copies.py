"""core/copies.CopyFilter: copies of one message are dropped, the same value re-sent later is taken."""
from __future__ import annotations

import pytest

from sparsevideonav_ros.core.copies import COPY_WINDOW_S, CopyFilter


def test_copies_within_the_window_are_dropped():
    copies = CopyFilter(window_s=2.0)
    assert not copies.is_copy("walk to the door", 10.0)
    assert copies.is_copy("walk to the door", 10.001)  # through the second subscription
    assert copies.is_copy("walk to the door", 11.9)    # a late reliable repair


def test_the_same_value_after_a_silence_of_the_window_is_taken_again():
    copies = CopyFilter(window_s=2.0)
    assert not copies.is_copy("walk to the door", 10.0)
    assert not copies.is_copy("walk to the door", 12.0)
    assert copies.is_copy("walk to the door", 12.1)


def test_a_publisher_repeating_one_value_gives_one_message():
    copies = CopyFilter(window_s=2.0)
    assert not copies.is_copy("go", 0.0)
    # `ros2 topic pub` without --once: the same text every second, for a minute
    assert all(copies.is_copy("go", float(t)) for t in range(1, 60))
    assert not copies.is_copy("go", 62.0)  # sent again after 3 s of silence: a new instruction


def test_a_different_value_is_always_taken_and_starts_its_own_window():
    copies = CopyFilter(window_s=2.0)
    assert not copies.is_copy("go left", 0.0)
    assert not copies.is_copy("go right", 0.1)
    assert not copies.is_copy("go left", 0.2)  # back to the first: a new instruction, not a copy
    assert copies.is_copy("go left", 0.3)


def test_keys_may_be_bytes():
    copies = CopyFilter()
    assert not copies.is_copy(b"\x00\x01", 0.0)
    assert copies.is_copy(b"\x00\x01", 0.0)
    assert not copies.is_copy(b"\x00\x02", 0.0)


def test_default_window():
    assert CopyFilter().window_s == COPY_WINDOW_S == 2.0


def test_negative_window_is_refused():
    with pytest.raises(ValueError, match="window_s"):
        CopyFilter(window_s=-1.0)
