# Copyright 2026 The flowclas_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""A camera's diagnostics level from its counts: the frames DDS lost turn it WARN."""

from flowclas_ros.ros.diagnostics import LOST_WARN_SHARE, OK, WARN, CameraStats, Limits


def _window(received: int, lost: int) -> tuple[bytes, str, dict[str, str]]:
    stats = CameraStats('/camera/image')
    stats.report(0.0, Limits(), None, {})  # opens the window
    for _ in range(received):
        stats.on_receive(0.5)
    stats.on_lost(lost)
    status = stats.report(1.0, Limits(), None, {})
    return status.level, status.message, {kv.key: kv.value for kv in status.values}


def test_a_window_losing_frames_in_dds_warns_with_the_remedy():
    level, message, values = _window(received=75, lost=25)  # the collapse: a quarter arrive
    assert level == WARN
    assert 'lost 25 of 100' in message
    assert 'fastdds_large_frames.xml' in message
    assert values['frames_lost'] == '25'


def test_a_few_lost_frames_stay_ok_and_only_the_window_counts():
    below = int(100 * LOST_WARN_SHARE) - 1
    level, _, values = _window(received=100 - below, lost=below)
    assert level == OK
    assert values['frames_lost'] == str(below)
    stats = CameraStats('/camera/image')
    stats.report(0.0, Limits(), None, {})
    stats.on_lost(50)
    stats.on_receive(0.5)
    assert stats.report(1.0, Limits(), None, {}).level == WARN
    stats.on_receive(1.5)  # the next window lost nothing
    assert stats.report(2.0, Limits(), None, {}).level == OK


def test_one_lost_frame_in_a_short_window_stays_ok():
    assert _window(received=4, lost=1)[0] == OK  # 20 %, but one frame is not a collapse
    assert _window(received=4, lost=3)[0] == WARN
