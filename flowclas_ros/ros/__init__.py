# Copyright 2026 The flowclas_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""The ROS 2 layer: messages in, a core call, messages out. Only this package imports rclpy."""
