# Copyright 2026 The flowclas_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""flowclas_node: camera frames in; anomaly score, heatmap, mask and diagnostics out.

Subscriber callbacks only stamp the message, check its header and store it. One worker thread
converts, scores and publishes, so receiving and diagnostics never wait for inference; with
several cameras it serves whichever frame has waited longest. Outputs nobody subscribes to are
not computed.

This module holds the two rclpy nodes and their console entry points; the work is done by the
rooms that ``lifecycle.Rooms`` wires together: ``intake`` (cameras and QoS), ``worker`` and
``pipeline`` (scheduling and one frame's way), ``reload`` (parameters and model), ``status``
(diagnostics).
"""

from __future__ import annotations

from collections.abc import Callable
import faulthandler
import sys

import rclpy
from rclpy.exceptions import InvalidParameterValueException
from rclpy.executors import ExternalShutdownException
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.node import Node
from rclpy.qos import QoSProfile

from flowclas_ros.ros.lifecycle import Rooms

NODE_NAME = 'flowclas'


class FlowClasNode(Node):
    """One model serving one or more cameras; see ``config/flowclas.yaml`` for parameters."""

    def __init__(self, **kwargs) -> None:  # noqa: ANN003 - rclpy Node options
        super().__init__(NODE_NAME, **kwargs)
        self.rooms = Rooms(self, 'active')  # not managed: always active
        error = self.rooms.params.error
        if error:
            self.destroy_node()
            raise ValueError(error)  # reported by main()
        self.rooms.start()

    def make_publisher(self, msg_type: type, topic: str, qos: QoSProfile) -> object:
        """The publisher factory the cameras use (the managed node's are lifecycle ones)."""
        return self.create_publisher(msg_type, topic, qos)

    def drop_publisher(self, publisher: object) -> None:
        self.destroy_publisher(publisher)

    def destroy_node(self) -> None:
        self.rooms.destroy()
        super().destroy_node()


class FlowClasLifecycleNode(LifecycleNode):
    """The managed node: configure loads the model, activate lets frames in and results out.

    Parameters are declared at construction, so a lifecycle manager's parameter file applies
    before configure; configure checks them and fails with the reason instead of exiting.
    """

    def __init__(self, **kwargs) -> None:  # noqa: ANN003 - rclpy Node options
        super().__init__(NODE_NAME, **kwargs)
        self.rooms = Rooms(self, 'unconfigured')

    def make_publisher(self, msg_type: type, topic: str, qos: QoSProfile) -> object:
        """Lifecycle publishers: they publish only while the node is active."""
        return self.create_lifecycle_publisher(msg_type, topic, qos)

    def drop_publisher(self, publisher: object) -> None:
        self.destroy_lifecycle_publisher(publisher)

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        if not self.rooms.configure():
            return TransitionCallbackReturn.FAILURE
        return super().on_configure(state)

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        result = super().on_activate(state)  # lifecycle publishers on first
        self.rooms.activate()
        return result

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.rooms.deactivate()
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.rooms.release('unconfigured')
        return super().on_cleanup(state)

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.rooms.release('finalized')
        return TransitionCallbackReturn.SUCCESS

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.rooms.release('unconfigured')
        return TransitionCallbackReturn.SUCCESS

    def destroy_node(self) -> None:
        self.rooms.destroy()
        super().destroy_node()


def _spin(make: Callable[[], Node], program: str, args: list[str] | None) -> int:
    # A crash in native code (DDS, torch) then leaves every thread's Python stack in the log
    # instead of a process that vanished without a word.
    faulthandler.enable()
    rclpy.init(args=args)
    node = None
    try:
        node = make()
        rclpy.spin(node)
    except (ValueError, InvalidParameterValueException) as exc:
        print(f'{program}: error: invalid parameters: {exc}', file=sys.stderr)
        return 2
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except Exception:
        # A signal can shut the context down while spin builds its next wait set; rclpy then
        # raises an RCLError instead of returning. That is a clean stop, anything else is not.
        if rclpy.ok():
            raise
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
    return 0


def main(args: list[str] | None = None) -> int:
    """``flowclas_node``: the plain node, active from the start."""
    return _spin(FlowClasNode, 'flowclas_node', args)


def main_lifecycle(args: list[str] | None = None) -> int:
    """``flowclas_lifecycle_node``: the managed node, waiting for configure."""
    return _spin(FlowClasLifecycleNode, 'flowclas_lifecycle_node', args)


if __name__ == '__main__':
    raise SystemExit(main())
