# Copyright 2026 The flowclas_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""Run flowclas_node in its own process and talk to it over real DDS on loopback."""

from __future__ import annotations

from collections.abc import Callable
import itertools
import os
from pathlib import Path
import subprocess
import sys
import threading
import time

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue
from rcl_interfaces.srv import SetParameters
import rclpy
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image

from flowclas_ros.ros.spin import SpinThread

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / 'config' / 'flowclas.yaml'
# One DDS domain per test session, so parallel sessions on a machine do not see each other.
DOMAIN = 20 + os.getpid() % 80
ENV = {'ROS_DOMAIN_ID': str(DOMAIN), 'ROS_AUTOMATIC_DISCOVERY_RANGE': 'LOCALHOST'}


def ros_args(namespace: str, params: dict) -> list[str]:
    args = ['--ros-args', '-r', f'__ns:=/{namespace}', '--params-file', str(CONFIG)]
    for name, value in params.items():
        if isinstance(value, bool):
            text = 'true' if value else 'false'
        elif isinstance(value, str):
            text = value if value else "''"
        elif isinstance(value, list):
            text = '[' + ', '.join(repr(v) for v in value) + ']'
        else:
            text = repr(value)
        args += ['-p', f'{name}:={text}']
    return args


# The managed node, started as its console script would start it.
LIFECYCLE_NODE = [
    sys.executable,
    '-c',
    'from flowclas_ros.ros.node import main_lifecycle; raise SystemExit(main_lifecycle())',
]


class NodeProcess:
    """flowclas_node started as users start it; its log goes to a file shown on failure."""

    def __init__(
        self,
        log_dir: Path,
        namespace: str,
        command: list[str] | None = None,
        env: dict[str, str] | None = None,
        **params,
    ) -> None:
        self.namespace = namespace
        self.name = f'/{namespace}/flowclas'
        self.log = log_dir / f'{namespace}.log'
        command = command or [sys.executable, '-m', 'flowclas_ros.ros.node']
        self._file = self.log.open('w')
        self.proc = subprocess.Popen(
            command + ros_args(namespace, params),
            env=(env or dict(os.environ)) | ENV,
            stdout=self._file,
            stderr=subprocess.STDOUT,
        )

    def text(self) -> str:
        return self.log.read_text()

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._file.close()
        return self.proc.returncode


def start_node(log_dir: Path, client: Client, namespace: str, topic: str, **params) -> NodeProcess:
    """A node process, once its diagnostics for ``topic`` say it is up (or it has exited)."""
    node = NodeProcess(log_dir, namespace, **params)
    status = f'flowclas: /{namespace}/{topic}'
    try:
        wait_for(
            lambda: (
                node.proc.poll() is not None
                or (client.diagnostics(status) or (None,))[0] is not None
            ),
            60,
            f'diagnostics of {status}',
        )
    except AssertionError:
        node.stop()
        raise AssertionError(node.text()) from None
    assert node.proc.poll() is None, node.text()
    return node


def _value(value) -> ParameterValue:
    if isinstance(value, bool):
        return ParameterValue(type=ParameterType.PARAMETER_BOOL, bool_value=value)
    if isinstance(value, int):
        return ParameterValue(type=ParameterType.PARAMETER_INTEGER, integer_value=value)
    if isinstance(value, float):
        return ParameterValue(type=ParameterType.PARAMETER_DOUBLE, double_value=value)
    return ParameterValue(type=ParameterType.PARAMETER_STRING, string_value=value)


class Client:
    """A test-side node spinning in a thread; messages land in lists the test polls."""

    def __init__(self) -> None:
        os.environ.update(ENV)
        self.context = rclpy.Context()
        rclpy.init(context=self.context, domain_id=DOMAIN)
        self.node = rclpy.create_node('flowclas_test', context=self.context)
        self._lock = threading.Lock()
        self.status: dict[str, DiagnosticStatus] = {}
        self.node.create_subscription(DiagnosticArray, '/diagnostics', self._on_diag, 50)
        self._spin = SpinThread(self.node, self.context)

    def _on_diag(self, msg: DiagnosticArray) -> None:
        with self._lock:
            for status in msg.status:
                self.status[status.name] = status

    def subscribe(self, topic: str, msg_type: type, depth: int = 100) -> list:
        received: list = []
        self.node.create_subscription(msg_type, topic, received.append, depth)
        return received

    def publisher(self, topic: str, msg_type: type, best_effort: bool = False, depth: int = 10):
        qos = QoSProfile(depth=depth)
        if best_effort:
            qos.reliability = ReliabilityPolicy.BEST_EFFORT
        return self.node.create_publisher(msg_type, topic, qos)

    def diagnostics(self, name: str) -> tuple[int, str, dict[str, str]] | None:
        """(level, message, values) of the newest status called ``name``."""
        with self._lock:
            status = self.status.get(name)
        if status is None:
            return None
        level = status.level[0] if isinstance(status.level, bytes) else status.level
        return level, status.message, {kv.key: kv.value for kv in status.values}

    def call(self, srv_type: type, name: str, request: object, timeout: float = 30.0):
        """Call service ``name`` and return its response (fails after ``timeout``)."""
        client = self.node.create_client(srv_type, name)
        try:
            assert client.wait_for_service(timeout_sec=10), f'no service {name}'
            future = client.call_async(request)
            wait_for(future.done, timeout, f'{name} reply')
            return future.result()
        finally:
            self.node.destroy_client(client)

    def set_parameters(self, node: str, **values) -> list:
        request = SetParameters.Request(
            parameters=[Parameter(name=k, value=_value(v)) for k, v in values.items()]
        )
        return self.call(SetParameters, f'{node}/set_parameters', request).results

    def close(self) -> None:
        self._spin.stop()
        self.node.destroy_node()
        rclpy.shutdown(context=self.context)


def wait_for(condition: Callable[[], object], timeout: float, what: str):
    """Poll ``condition`` until it is truthy and return its value, or fail after ``timeout``."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f'timed out after {timeout} s waiting for {what}')


class Outputs:
    """Subscriptions to one camera's outputs, looked up by input stamp."""

    def __init__(self, client, prefix, names=('score', 'heatmap', 'mask')):
        self.lists = {n: client.subscribe(f'{prefix}/anomaly/{n}', Image) for n in names}

    def get(self, name, stamp):
        return next((m for m in self.lists[name] if m.header.stamp.sec == stamp), None)

    def complete(self, stamp):
        return all(self.get(n, stamp) is not None for n in self.lists)


def send(pub, msg, done, timeout=30.0):
    """Publish ``msg`` under a fresh stamp until ``done(stamp)``; discovery may take a while."""
    stamp = next_stamp()
    msg.header.stamp.sec, msg.header.stamp.nanosec = stamp, 0
    msg.header.frame_id = f'frame_{stamp}'
    last = 0.0
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if time.monotonic() - last > 1.0:
            pub.publish(msg)
            last = time.monotonic()
        if done(stamp):
            return stamp
        time.sleep(0.02)
    raise AssertionError(f'no result for frame {stamp}')


_stamps = itertools.count(1000)


def next_stamp(count: int = 1) -> int:
    """The first of ``count`` consecutive stamps (seconds) no other frame has used."""
    first = next(_stamps)
    for _ in range(count - 1):
        next(_stamps)
    return first


def rss_mb(pid: int) -> float:
    """Resident memory of a process, MB (Linux)."""
    for line in Path(f'/proc/{pid}/status').read_text().splitlines():
        if line.startswith('VmRSS:'):
            return int(line.split()[1]) / 1024
    raise AssertionError(f'no VmRSS for process {pid}')
