# Copyright 2026 The flowclas_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""Start flowclas_node on one camera, or on several sharing one model.

    ros2 launch flowclas_ros flowclas.launch.py image:=/camera/color/image_raw \
        model_dir:=/path/to/model
    ros2 launch flowclas_ros flowclas.launch.py cameras:="[front, rear]" image:=image_raw \
        model_dir:=/path/to/model managed:=true
    ros2 launch flowclas_ros flowclas.launch.py image:=/camera/color/image_raw \
        depth:=/camera/aligned_depth_to_color/image_raw model_dir:=/path/to/model

One camera: ``image`` is its raw image topic. Several: ``image`` is the image topic's name
under each camera namespace (``front/image_raw``, ``rear/image_raw``). ``camera_info`` is
taken from beside each image topic; with ``input_transport: compressed`` in the parameters the
node reads ``<image>/compressed``. ``depth`` is a depth image registered to the colour camera
(16UC1 mm or 32FC1 m; with cameras, its name under each camera); its own ``camera_info`` is
taken from beside it, and ``anomaly/points`` goes out only while depth arrives.
``managed:=true`` starts the lifecycle node, which a lifecycle manager (or ``ros2 lifecycle
set``) configures and activates. Other settings go in a copy of ``config/flowclas.yaml`` passed
as ``params_file:=...``. The node's Fast DDS participant gets
``config/fastdds_large_frames.xml`` (camera-sized messages through shared memory in one piece:
with Fast DDS's built-in transports their delivery collapses after a few minutes, see
docs/reliability.md); ``fastdds_profile:=none`` leaves it to the environment as before.
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch_ros.actions import Node

ARGUMENTS = {
    'namespace': ('', 'namespace of the node and its anomaly/* outputs'),
    'image': ('image', 'input image topic; with cameras, its name under each camera'),
    'depth': (
        'depth',
        'depth image registered to the colour camera (for anomaly/points); with cameras, its '
        'name under each camera',
    ),
    'segments': (
        'segments',
        "a segmenter's label images for the segments parameter's topic mode; with cameras, "
        'its name under each camera',
    ),
    'cameras': ('', 'camera namespaces sharing one model, e.g. "[front, rear]" (""= one)'),
    'params_file': ('', 'parameters YAML (default: the package config/flowclas.yaml)'),
    'model_dir': ('', 'model directory; overrides the one in params_file when set'),
    'use_sim_time': ('false', 'follow /clock (bag replay, simulation)'),
    'managed': ('false', 'start the lifecycle node (configure and activate it to run)'),
    'log_level': ('info', 'debug, info, warn, error or fatal'),
    'respawn': ('false', 'start the node again when it exits'),
    'fastdds_profile': (
        'large_frames',
        'Fast DDS XML profile of the node: large_frames (the package '
        'config/fastdds_large_frames.xml), none (as the environment says), or a path',
    ),
}


def _flag(text):
    return text.strip().lower() in ('true', '1', 'yes')


def _camera_list(text):
    """``[front, rear]``, ``front,rear`` or ``['front', 'rear']`` -> the names; ``""`` -> []."""
    names = (n.strip().strip('\'"') for n in text.strip().strip('[]').split(','))
    return [n for n in names if n]


def _remappings(cameras, image, depth='depth', segments='segments'):
    """Each camera's image, camera_info, depth and segments topics onto the real ones.

    ``image``, ``image/compressed``, ``camera_info``, ``depth``, ``depth/camera_info`` and
    ``segments``; each camera_info is taken from beside its image.
    """
    pairs = []
    for camera in cameras or ['']:
        prefix = f'{camera}/' if camera else ''
        topic = f'{prefix}{image}' if camera else image
        info = topic.rsplit('/', 1)[0] + '/camera_info' if '/' in topic else 'camera_info'
        depth_topic = f'{prefix}{depth}' if camera else depth
        depth_info = f'{prefix}depth/camera_info'
        if depth != 'depth':
            depth_info = depth_topic.rsplit('/', 1)[0] + '/camera_info'
        pairs += [
            (f'{prefix}image', topic),
            (f'{prefix}image/compressed', topic + '/compressed'),
            (f'{prefix}camera_info', info),
            (f'{prefix}depth', depth_topic),
            (f'{prefix}depth/camera_info', depth_info),
            (f'{prefix}segments', f'{prefix}{segments}'),
        ]
    return pairs


# Fast DDS 2 (Humble, Iron, Jazzy) reads FASTRTPS_DEFAULT_PROFILES_FILE; Fast DDS 3 (Kilted on)
# reads FASTDDS_DEFAULT_PROFILES_FILE and warns about the old name.
_FAST_DDS_2_DISTROS = ('humble', 'iron', 'jazzy')


def _fastdds_env(choice, shipped, distro=''):
    """The environment that gives the node a Fast DDS profile on ROS distribution ``distro``."""
    choice = choice.strip()
    if choice.lower() in ('', 'none'):
        return {}
    path = shipped if choice.lower() == 'large_frames' else choice
    if distro in _FAST_DDS_2_DISTROS:
        names = ('FASTRTPS_DEFAULT_PROFILES_FILE',)
    elif distro:
        names = ('FASTDDS_DEFAULT_PROFILES_FILE',)
    else:  # unknown: both
        names = ('FASTDDS_DEFAULT_PROFILES_FILE', 'FASTRTPS_DEFAULT_PROFILES_FILE')
    return dict.fromkeys(names, path)


def _node(context):
    arg = {name: context.launch_configurations[name] for name in ARGUMENTS}
    config = os.path.join(get_package_share_directory('flowclas_ros'), 'config')
    params_file = arg['params_file'] or os.path.join(config, 'flowclas.yaml')
    cameras = _camera_list(arg['cameras'])
    overrides = {'use_sim_time': _flag(arg['use_sim_time'])}
    if arg['model_dir']:
        overrides['model_dir'] = arg['model_dir']
    if cameras:
        overrides['cameras'] = cameras
    return [
        Node(
            package='flowclas_ros',
            executable='flowclas_lifecycle_node' if _flag(arg['managed']) else 'flowclas_node',
            name='flowclas',
            namespace=arg['namespace'],
            output='screen',
            emulate_tty=True,
            parameters=[params_file, overrides],
            remappings=_remappings(cameras, arg['image'], arg['depth'], arg['segments']),
            arguments=['--ros-args', '--log-level', arg['log_level']],
            respawn=_flag(arg['respawn']),
            respawn_delay=2.0,
            additional_env=_fastdds_env(
                arg['fastdds_profile'],
                os.path.join(config, 'fastdds_large_frames.xml'),
                os.environ.get('ROS_DISTRO', ''),
            ),
        )
    ]


def generate_launch_description():
    return LaunchDescription(
        [
            DeclareLaunchArgument(name, default_value=default, description=doc)
            for name, (default, doc) in ARGUMENTS.items()
        ]
        + [OpaqueFunction(function=_node)]
    )
