# Copyright 2026 The flowclas_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""What the node tests share: one ROS client per test module (its own context and node)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture(scope='module')
def client() -> Iterator[object]:
    from rosnode import Client  # rclpy only for the modules that ask for it

    c = Client()
    yield c
    c.close()
