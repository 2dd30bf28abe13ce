"""The bounded queues between capture and inference: which frame a full queue loses."""

from __future__ import annotations

import numpy as np

from camclassd.frame import Frame
from camclassd.queues import FrameQueues

PIXELS = np.zeros((4, 4, 3), np.uint8)


def frame(seq: int, *, snapshot: bool = False) -> Frame:
    made = Frame("cam", seq, PIXELS, 0.0, float(seq), float(seq))
    if snapshot:
        made.image = PIXELS
    return made


def test_a_full_queue_loses_its_oldest_frame() -> None:
    queues = FrameQueues()
    queues.add("cam", 2)
    assert queues.put(frame(1), drop_oldest=True) is None
    assert queues.put(frame(2), drop_oldest=True) is None
    lost = queues.put(frame(3), drop_oldest=True)
    assert lost is not None and (lost[0].seq, lost[1]) == (1, "queue_full")
    assert [f.seq for f in queues.take(2, 0.0)] == [2, 3]


def test_the_frame_carrying_a_snapshot_is_not_the_one_lost() -> None:
    queues = FrameQueues()
    queues.add("cam", 2)
    queues.put(frame(1, snapshot=True), drop_oldest=True)
    queues.put(frame(2), drop_oldest=True)
    lost = queues.put(frame(3), drop_oldest=True)
    assert lost is not None and lost[0].seq == 2  # the oldest without an image
    assert [f.seq for f in queues.take(2, 0.0)] == [1, 3]


def test_a_queue_of_one_snapshot_frame_loses_the_newcomer() -> None:
    queues = FrameQueues()
    queues.add("cam", 1)
    queues.put(frame(1, snapshot=True), drop_oldest=True)
    lost = queues.put(frame(2), drop_oldest=True)
    assert lost is not None and (lost[0].seq, lost[1]) == (2, "queue_full")
    assert [f.seq for f in queues.take(1, 0.0)] == [1]


def test_a_closed_queue_refuses_as_shutdown() -> None:
    queues = FrameQueues()
    queues.add("cam", 2)
    queues.close()
    lost = queues.put(frame(1), drop_oldest=True)
    assert lost is not None and (lost[0].seq, lost[1]) == (1, "shutdown")
