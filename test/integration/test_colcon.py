# Copyright 2026 The flowclas_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""The package as a ROS 2 workspace sees it: colcon build, the ament index, the installed node."""

from pathlib import Path
import shutil
import subprocess
import sys

from models import make_model
import numpy as np
import pytest
from rosnode import Client, NodeProcess, Outputs, send, wait_for
from sensor_msgs.msg import Image

from flowclas_ros.ros.conversions import array_to_image

pytestmark = pytest.mark.ros
ROOT = Path(__file__).resolve().parents[2]


def _colcon():
    exe = Path(sys.executable).parent / 'colcon'
    found = str(exe) if exe.is_file() else shutil.which('colcon')
    assert found, 'colcon is not installed (pip install colcon-common-extensions)'
    return found


def _sourced_env(setup: Path) -> dict[str, str]:
    out = subprocess.run(
        ['bash', '-c', f'source "{setup}" && env -0'], capture_output=True, check=True
    ).stdout
    return dict(line.split('=', 1) for line in out.decode().split('\0') if '=' in line)


@pytest.mark.slow
def test_colcon_build_then_run_the_installed_node(tmp_path):
    ws = tmp_path / 'ws'
    ws.mkdir()
    build = subprocess.run(
        [_colcon(), 'build', '--paths', str(ROOT), '--build-base', 'build',
         '--install-base', 'install', '--event-handlers', 'console_direct-'],
        cwd=ws, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert build.returncode == 0, build.stdout + build.stderr
    install = ws / 'install'
    env = _sourced_env(install / 'local_setup.bash')

    share = subprocess.run(
        [sys.executable, '-c', 'from ament_index_python.packages import '
         "get_package_share_directory as g; print(g('flowclas_ros'))"],
        env=env, capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    assert Path(share) == install / 'flowclas_ros' / 'share' / 'flowclas_ros'
    assert (Path(share) / 'launch' / 'flowclas.launch.py').is_file()
    assert (Path(share) / 'config' / 'flowclas.yaml').is_file()
    assert (Path(share) / 'config' / 'flowclas.rviz').is_file()
    assert (Path(share) / 'config' / 'fastdds_large_frames.xml').is_file()

    # Where `ros2 run flowclas_ros flowclas_node` looks.
    exe = install / 'flowclas_ros' / 'lib' / 'flowclas_ros' / 'flowclas_node'
    assert exe.is_file()
    assert exe.with_name('flowclas_lifecycle_node').is_file()
    model = make_model(tmp_path / 'model', 64)
    client = Client()
    node = NodeProcess(tmp_path, 'installed', command=[str(exe)], env=env, model_dir=str(model))
    try:
        outputs = Outputs(client, '/installed', names=('score',))
        pub = client.publisher('/installed/image', Image)
        rgb = np.random.default_rng(0).integers(0, 256, (30, 40, 3), dtype=np.uint8)
        msg = array_to_image(rgb, 'rgb8', Image().header)
        stamp = send(pub, msg, outputs.complete, timeout=60)
        assert outputs.get('score', stamp).encoding == '32FC1'
        level = wait_for(lambda: client.diagnostics('flowclas: /installed/image'), 10, 'status')
        assert level[2]['backend'] == 'torch'
    finally:
        code = node.stop()
        client.close()
    assert code == 0, node.text()
