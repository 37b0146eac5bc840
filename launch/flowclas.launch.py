# Copyright 2026 The flowclas_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""Start flowclas_node on one camera.

    ros2 launch flowclas_ros flowclas.launch.py image:=/camera/color/image_raw \
        model_dir:=/path/to/model

``image`` is the raw image topic; with ``input_transport: compressed`` in the parameters the
node reads ``<image>/compressed``. ``camera_info`` is taken from beside the image topic. Other
settings go in a copy of ``config/flowclas.yaml`` passed as ``params_file:=...``.
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch_ros.actions import Node

ARGUMENTS = {
    'namespace': ('', 'namespace of the node and its anomaly/* outputs'),
    'image': ('image', 'input image topic'),
    'params_file': ('', 'parameters YAML (default: the package config/flowclas.yaml)'),
    'model_dir': ('', 'model directory; overrides the one in params_file when set'),
    'use_sim_time': ('false', 'follow /clock (bag replay, simulation)'),
}


def _node(context):
    arg = {name: context.launch_configurations[name] for name in ARGUMENTS}
    params_file = arg['params_file'] or os.path.join(
        get_package_share_directory('flowclas_ros'), 'config', 'flowclas.yaml'
    )
    overrides = {'use_sim_time': arg['use_sim_time'].lower() in ('true', '1')}
    if arg['model_dir']:
        overrides['model_dir'] = arg['model_dir']
    image = arg['image']
    info = image.rsplit('/', 1)[0] + '/camera_info' if '/' in image else 'camera_info'
    return [
        Node(
            package='flowclas_ros',
            executable='flowclas_node',
            name='flowclas',
            namespace=arg['namespace'],
            output='screen',
            emulate_tty=True,
            parameters=[params_file, overrides],
            remappings=[
                ('image', image),
                ('image/compressed', image + '/compressed'),
                ('camera_info', info),
            ],
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
