# Copyright 2026 The flowclas_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""Image topics matched to colour frames by stamp: depth, and segments from another node.

message_filters is not on PyPI, so a small matcher does it. ``MatchedInput`` owns one such
topic: its subscription (QoS as ``input_reliability`` says), the checks of each message and
the counts of what arrived, matched, went unused or was rejected, in the camera's diagnostics.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable
import math
import threading
import time
from typing import Any

from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image

from flowclas_ros.core.errors import InputError
from flowclas_ros.ros.diagnostics import CameraStats

try:
    from rclpy.event_handler import SubscriptionEventCallbacks
except ImportError:  # Humble
    from rclpy.qos_event import SubscriptionEventCallbacks

# ``input_reliability`` values that fix the QoS (``auto`` follows the publishers).
RELIABILITY = {
    'reliable': ReliabilityPolicy.RELIABLE,
    'best_effort': ReliabilityPolicy.BEST_EFFORT,
}
_RECENT_S = 1.0  # a stream heard from within this long is worth waiting for
_LOG_EVERY_S = 5.0  # each kind of bad input is logged at most this often


def stamp_ns(stamp: Any) -> int:
    """A ``builtin_interfaces/Time`` in integer nanoseconds (exact, unlike a float)."""
    return stamp.sec * 1_000_000_000 + stamp.nanosec


class StampMatcher:
    """The newest ``capacity`` items by stamp; a frame takes the nearest one within tolerance.

    An item stays after it matched (a colour camera faster than the depth camera matches one
    depth image twice); older items go then, since frames are served in stamp order. Items
    that leave without having matched are returned by ``add`` and ``match`` as counts.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._stamps: list[int] = []
        self._items: list[tuple[Any, bool]] = []  # (item, matched) in stamp order
        self._cond = threading.Condition()
        self.last_arrival: float | None = None  # time.monotonic() of the newest add

    def __len__(self) -> int:
        return len(self._stamps)

    def add(self, stamp: int, item: Any) -> int:
        """Store ``item``; the number of unmatched items this pushed out."""
        with self._cond:
            at = bisect.bisect_right(self._stamps, stamp)
            self._stamps.insert(at, stamp)
            self._items.insert(at, (item, False))
            self.last_arrival = time.monotonic()
            unused = self._drop(len(self._stamps) - self.capacity)
            self._cond.notify_all()
        return unused

    def clear(self) -> None:
        with self._cond:
            self._drop(len(self._stamps))

    def match(self, stamp: int, tolerance: int, wait_s: float = 0.0) -> tuple[Any | None, int]:
        """The item nearest ``stamp`` within ``tolerance`` (ns), and how many unmatched left.

        With ``wait_s``, when nothing matches yet but the stream is live and its newest stamp is
        older than ``stamp``, wait up to that long (wall time) for one to arrive.
        """
        deadline = time.monotonic() + wait_s
        with self._cond:
            while True:
                best = self._nearest(stamp, tolerance)
                if best is not None:
                    item = self._items[best][0]
                    self._items[best] = (item, True)
                    return item, self._drop(best)
                left = deadline - time.monotonic()
                live = self.last_arrival is not None and (
                    time.monotonic() - self.last_arrival < _RECENT_S
                )
                behind = not self._stamps or self._stamps[-1] < stamp
                if left <= 0 or not live or not behind:
                    return None, 0
                self._cond.wait(left)

    def _nearest(self, stamp: int, tolerance: int) -> int | None:
        at = bisect.bisect_left(self._stamps, stamp)
        near = [i for i in (at - 1, at) if 0 <= i < len(self._stamps)]
        if not near:
            return None
        best = min(near, key=lambda i: abs(self._stamps[i] - stamp))
        return best if abs(self._stamps[best] - stamp) <= tolerance else None

    def _drop(self, count: int) -> int:
        """Forget the ``count`` oldest items; how many of them never matched."""
        if count <= 0:
            return 0
        unused = sum(not matched for _, matched in self._items[:count])
        del self._stamps[:count], self._items[:count]
        return unused


def offered_reliability(node: Any, topic: str) -> ReliabilityPolicy | None:
    """Reliable when every publisher on ``topic`` offers it, best effort when one does not."""
    offered = [i.qos_profile.reliability for i in node.get_publishers_info_by_topic(topic)]
    if not offered:
        return None
    if all(r == ReliabilityPolicy.RELIABLE for r in offered):
        return ReliabilityPolicy.RELIABLE
    return ReliabilityPolicy.BEST_EFFORT


class MatchedInput:
    """One image topic whose messages are kept by stamp for the colour frames to match.

    ``parse`` checks a message and returns what is kept; an ``InputError`` rejects it, counted
    as ``warning.<kind>_<reason>`` and logged at most every 5 s per reason. Counts go to
    ``<kind>.received`` and ``<kind>.unused`` (left without ever matching). The subscription
    lives only while the camera is active.
    """

    def __init__(
        self,
        node: Any,
        topic: str,
        kind: str,
        parse: Callable[[Image], Any],
        stats: CameraStats,
        queue: int,
    ) -> None:
        self.node = node
        self.topic = topic
        self.kind = kind
        self.parse = parse
        self.stats = stats
        self.queue = queue
        self.resolved_topic = resolve(node, topic)
        self.matcher = StampMatcher(max(8, queue))
        self.subscription = None
        self.reliability: ReliabilityPolicy | None = None
        self._logged: dict[str, float] = {}  # reason -> when it was last logged

    def subscribe(self, choice: str, fallback: ReliabilityPolicy) -> None:
        """Subscribe as ``input_reliability`` says (``auto``: follow what publishers offer)."""
        if choice == 'auto':
            self._subscribe(offered_reliability(self.node, self.resolved_topic) or fallback)
        else:
            self._subscribe(RELIABILITY.get(choice, fallback))

    def follow(self) -> None:
        """``input_reliability: auto``: resubscribe when the publishers' offer changes."""
        if self.subscription is None:
            return
        offered = offered_reliability(self.node, self.resolved_topic)
        if offered is not None and offered != self.reliability:
            self._subscribe(offered)

    def _subscribe(self, reliability: ReliabilityPolicy) -> None:
        if self.subscription is not None:
            self.node.destroy_subscription(self.subscription)
        qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=self.queue)
        qos.reliability = reliability
        self.subscription = self.node.create_subscription(
            Image,
            self.topic,
            self.on_message,
            qos,
            event_callbacks=SubscriptionEventCallbacks(incompatible_qos=self._on_incompatible),
        )
        self.reliability = reliability

    def unsubscribe(self) -> None:
        if self.subscription is not None:
            self.node.destroy_subscription(self.subscription)
        self.subscription = None
        self.reliability = None
        self.matcher.clear()

    def _on_incompatible(self, event: object) -> None:
        self.reject(
            'incompatible_qos',
            f'a publisher on {self.resolved_topic} offers QoS this subscription cannot accept',
        )

    def on_message(self, msg: Image) -> None:
        """Check the message and keep it for matching (the subscription callback)."""
        self.stats.count(f'{self.kind}.received')
        try:
            item = self.parse(msg)
        except InputError as exc:
            self.reject(exc.reason, str(exc))
            return
        unused = self.matcher.add(stamp_ns(msg.header.stamp), item)
        if unused:
            self.stats.count(f'{self.kind}.unused', unused)

    def match(self, stamp: Any, tolerance_s: float, wait_s: float) -> Any | None:
        """What arrived nearest ``stamp`` within ``tolerance_s``, waiting up to ``wait_s``."""
        item, unused = self.matcher.match(stamp_ns(stamp), round(tolerance_s * 1e9), wait_s)
        if unused:
            self.stats.count(f'{self.kind}.unused', unused)
        return item

    def reject(self, reason: str, message: str) -> None:
        """One bad input: counted, shown as the camera's last error, logged (throttled)."""
        prefix = f'{self.kind}_'
        key = reason if reason.startswith(prefix) else f'{prefix}{reason}'
        self.stats.on_warning(key, f'{self.resolved_topic}: {message}')
        now = time.monotonic()
        if now - self._logged.get(key, -math.inf) >= _LOG_EVERY_S:  # per reason, not per line
            self._logged[key] = now
            self.node.get_logger().error(f'{self.resolved_topic}: {message}')


def resolve(node: Any, topic: str) -> str:
    """The full name of ``topic`` as ``node`` sees it (remapping applied where rclpy says)."""
    try:
        return node.resolve_topic_name(topic)
    except AttributeError:  # Humble: no remapping shown, the namespace is enough for a name
        return f'{node.get_namespace().rstrip("/")}/{topic}'
