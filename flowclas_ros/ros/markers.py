# Copyright 2026 The flowclas_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""rviz markers for anomaly regions (``anomaly/regions/markers``), reused frame after frame."""

from __future__ import annotations

from typing import Any

import numpy as np
from visualization_msgs.msg import Marker, MarkerArray

from flowclas_ros.core.visualize import LUT


class MarkerPool:
    """rviz markers for regions: one box and one label each, after a DELETEALL.

    Building a Marker costs tens of microseconds in rclpy, so the messages are kept and their
    fields rewritten each frame (the worker publishes one frame before it builds the next).
    """

    def __init__(self) -> None:
        self._clear = Marker(action=Marker.DELETEALL)
        self._boxes: list[Marker] = []
        self._labels: list[Marker] = []

    def build(
        self,
        header: Any,
        regions: np.ndarray,
        centres: np.ndarray,
        sizes: np.ndarray,
        score_range: tuple[float, float],
        lifetime_s: float,
    ) -> MarkerArray:
        """DELETEALL, then a box and a text label per region with a distance."""
        self._clear.header = header
        markers = [self._clear]
        placed = np.flatnonzero(np.isfinite(regions['distance']))
        if placed.size == 0:
            return MarkerArray(markers=markers)
        low, high = score_range
        level = (regions['peak'][placed] - low) / max(high - low, 1e-12) * 255 + 0.5
        colours = LUT[np.clip(level, 0, 255).astype(np.uint8)] / 255.0  # the heatmap's colours
        while len(self._boxes) < placed.size:
            self._boxes.append(_marker('anomaly_regions', Marker.CUBE, len(self._boxes)))
            self._labels.append(
                _marker('anomaly_labels', Marker.TEXT_VIEW_FACING, len(self._labels))
            )
        sec = int(lifetime_s)
        nanosec = int(round((lifetime_s - sec) * 1e9))
        for n, i in enumerate(placed.tolist()):
            r = regions[i]
            box, label = self._boxes[n], self._labels[n]
            cx, cy, cz = (float(v) for v in centres[i])
            sx, sy, sz = (float(v) for v in sizes[i])
            red, green, blue = (float(c) for c in colours[n])
            for m in (box, label):
                m.header = header
                m.lifetime.sec, m.lifetime.nanosec = sec, nanosec
                m.pose.position.x, m.pose.position.y = cx, cy
            box.pose.position.z = cz
            box.scale.x, box.scale.y, box.scale.z = max(sx, 1e-3), max(sy, 1e-3), sz
            box.color.r, box.color.g, box.color.b = red, green, blue
            label.pose.position.y = cy - sy / 2 - 0.05  # above the box (y points down)
            label.pose.position.z = cz
            label.scale.z = max(0.05, min(sy / 4, 0.3))
            label.text = f'{float(r["peak"]):.2f} @ {float(r["distance"]):.2f} m'
            markers += (box, label)
        return MarkerArray(markers=markers)


def _marker(ns: str, kind: int, index: int) -> Marker:
    m = Marker(ns=ns, id=index, type=kind, action=Marker.ADD)
    m.pose.orientation.w = 1.0
    m.color.a = 0.6 if kind == Marker.CUBE else 1.0
    if kind != Marker.CUBE:
        m.color.r = m.color.g = m.color.b = 1.0
    return m
