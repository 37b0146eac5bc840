# Copyright 2026 The flowclas_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""The launch file, read statically (``launch`` does not install from PyPI), against the node.

What it names must exist: the package, the executables, the parameters file, every parameter it
sets, and every topic it remaps must be one the node really subscribes to. Its pure helpers
(camera list, remappings) are compiled from the file and run.
"""

import ast
from pathlib import Path
import xml.etree.ElementTree as ET

from launchfile import LAUNCH, SHIPPED_PROFILE, launch_fastdds_env, launch_parts
import pytest
import rclpy
from rclpy.parameter import Parameter
import yaml

from flowclas_ros.ros.node import NODE_NAME, FlowClasNode
from flowclas_ros.ros.params import PARAMS

pytestmark = pytest.mark.ros
ROOT = Path(__file__).resolve().parents[2]
REQUIRED_ARGUMENTS = {
    'namespace', 'image', 'depth', 'segments', 'cameras', 'params_file', 'model_dir',
    'use_sim_time', 'managed', 'log_level', 'respawn', 'fastdds_profile',
}  # fmt: skip


@pytest.fixture(scope='module')
def tree():
    return ast.parse(LAUNCH.read_text())


def _node_call(tree):
    calls = [
        c
        for c in ast.walk(tree)
        if isinstance(c, ast.Call) and getattr(c.func, 'id', '') == 'Node'
    ]
    assert len(calls) == 1
    return {k.arg: k.value for k in calls[0].keywords}


def _console_scripts():
    setup = ast.parse((ROOT / 'setup.py').read_text())
    for node in ast.walk(setup):
        if isinstance(node, ast.Dict):
            for key, value in zip(node.keys, node.values, strict=True):
                if isinstance(key, ast.Constant) and key.value == 'console_scripts':
                    entries = ast.literal_eval(value)
                    return dict(e.replace(' ', '').split('=') for e in entries)
    raise AssertionError('no console_scripts in setup.py')


def test_package_executables_and_name(tree):
    kw = _node_call(tree)
    package = ET.parse(ROOT / 'package.xml').getroot().findtext('name')
    assert ast.literal_eval(kw['package']) == package
    scripts = _console_scripts()
    choice = kw['executable']  # '<managed>' if ... else '<plain>'
    executables = {ast.literal_eval(choice.body), ast.literal_eval(choice.orelse)}
    assert {scripts[e] for e in executables} == {
        'flowclas_ros.ros.node:main',
        'flowclas_ros.ros.node:main_lifecycle',
    }
    assert ast.literal_eval(kw['name']) == NODE_NAME
    assert any(
        isinstance(n, ast.FunctionDef) and n.name == 'generate_launch_description'
        for n in tree.body
    )


@pytest.fixture(scope='module')
def helpers():
    """The launch file's functions that need no ``launch``, compiled and run here."""
    return launch_parts(PURE_HELPERS)


PURE_HELPERS = ('_flag', '_camera_list', '_remappings', '_fastdds_env', '_FAST_DDS_2_DISTROS')


def test_camera_list_and_flags_parse_what_users_type(helpers):
    parse = helpers['_camera_list']
    assert parse('[front, rear]') == ['front', 'rear']
    assert parse("['front','rear']") == ['front', 'rear']
    assert parse('front,rear') == ['front', 'rear']
    assert parse('') == parse('[]') == []
    assert helpers['_flag']('True')
    assert not helpers['_flag']('false')


def test_fastdds_profile_choice(helpers, tree):
    env = helpers['_fastdds_env']
    names = {'FASTDDS_DEFAULT_PROFILES_FILE', 'FASTRTPS_DEFAULT_PROFILES_FILE'}
    assert env('none', '/share/p.xml') == env(' None ', '/share/p.xml') == {}
    assert env('large_frames', '/share/p.xml') == dict.fromkeys(names, '/share/p.xml')
    assert env('/mine.xml', '/share/p.xml') == dict.fromkeys(names, '/mine.xml')
    # A known distribution gets only the variable its Fast DDS reads (Kilted warns on the other).
    assert env('large_frames', '/p.xml', 'jazzy') == {'FASTRTPS_DEFAULT_PROFILES_FILE': '/p.xml'}
    assert env('large_frames', '/p.xml', 'kilted') == {'FASTDDS_DEFAULT_PROFILES_FILE': '/p.xml'}
    call = ast.unparse(_node_call(tree)['additional_env'])
    assert "'fastdds_large_frames.xml'" in call
    assert 'fastdds_profile' in call
    assert SHIPPED_PROFILE.is_file()
    # The default since the delivery collapse with the built-in transports (docs/reliability.md).
    default = launch_fastdds_env()  # the variables depend on ROS_DISTRO, the file does not
    assert default
    assert set(default) <= names
    assert set(default.values()) == {str(SHIPPED_PROFILE)}


def test_arguments_and_parameters_file(tree):
    arguments = next(
        ast.literal_eval(n.value)
        for n in tree.body
        if isinstance(n, ast.Assign) and n.targets[0].id == 'ARGUMENTS'
    )
    assert set(arguments) >= REQUIRED_ARGUMENTS
    strings = {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant)}
    assert {'config', 'flowclas.yaml'} <= strings
    assert (ROOT / 'config' / 'flowclas.yaml').is_file()  # installed: test_colcon checks share/


def _override_keys(tree):
    """Keys of ``overrides = {...}`` and of every ``overrides[...] = ...``."""
    keys = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.Assign):
            continue
        target = node.targets[0]
        if getattr(target, 'id', '') == 'overrides':
            keys |= {ast.literal_eval(k) for k in node.value.keys}
        if isinstance(target, ast.Subscript) and getattr(target.value, 'id', '') == 'overrides':
            keys.add(ast.literal_eval(target.slice))
    return keys


@pytest.fixture(scope='module')
def nodes():
    """The node itself: raw input, compressed input, two cameras (no model: it only declares)."""
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=99)
    made = [
        FlowClasNode(context=context),
        FlowClasNode(
            context=context,
            namespace='compressed',
            parameter_overrides=[Parameter('input_transport', value='compressed')],
        ),
        FlowClasNode(
            context=context,
            namespace='two',
            parameter_overrides=[Parameter('cameras', value=['front', 'rear'])],
        ),
    ]
    yield made
    for node in made:
        node.destroy_node()
    rclpy.shutdown(context=context)


def test_parameters_it_sets_are_declared_by_the_node(tree, nodes):
    declared = set(nodes[0].list_parameters([], 0).names)
    assert declared >= set(PARAMS)
    assert declared - set(PARAMS) <= {'use_sim_time', 'start_type_description_service'}
    overrides = _override_keys(tree)
    assert overrides == {'use_sim_time', 'model_dir', 'cameras'}
    assert overrides <= declared


def _subscribed(node, prefix):
    return {s.topic_name.removeprefix(prefix) for s in node.subscriptions}


def test_remapped_topics_are_the_node_inputs(helpers, nodes):
    raw, compressed, two = nodes
    remap = helpers['_remappings']
    one = dict(remap([], '/camera/color/image_raw', '/camera/aligned_depth_to_color/image_raw'))
    assert one == {
        'image': '/camera/color/image_raw',
        'image/compressed': '/camera/color/image_raw/compressed',
        'camera_info': '/camera/color/camera_info',
        'depth': '/camera/aligned_depth_to_color/image_raw',
        'depth/camera_info': '/camera/aligned_depth_to_color/camera_info',
        'segments': 'segments',
    }
    assert set(one) <= _subscribed(raw, '/') | _subscribed(compressed, '/compressed/')
    assert {'depth', 'depth/camera_info'} <= _subscribed(compressed, '/compressed/')
    default = dict(remap([], 'image'))
    assert (default['depth'], default['depth/camera_info']) == ('depth', 'depth/camera_info')
    both = dict(remap(['front', 'rear'], 'image_raw', 'depth/image_raw'))
    assert both['front/image'] == 'front/image_raw'
    assert both['rear/camera_info'] == 'rear/camera_info'
    assert both['rear/image/compressed'] == 'rear/image_raw/compressed'
    assert both['rear/depth'] == 'rear/depth/image_raw'
    assert both['rear/depth/camera_info'] == 'rear/depth/camera_info'
    assert both['rear/segments'] == 'rear/segments'
    assert dict(remap(['front'], 'image', 'depth', 'sam/labels'))['front/segments'] == (
        'front/sam/labels'
    )
    uncompressed = {k for k in both if not k.endswith('compressed')}
    assert uncompressed == _subscribed(two, '/two/')


def test_rviz_config_shows_the_input_the_image_outputs_the_points_and_the_markers(nodes):
    config = yaml.safe_load((ROOT / 'config' / 'flowclas.rviz').read_text())
    displays = config['Visualization Manager']['Displays']
    classes = {d['Topic']['Value']: d['Class'] for d in displays}
    assert classes == {
        '/image': 'rviz_default_plugins/Image',
        '/anomaly/heatmap': 'rviz_default_plugins/Image',
        '/anomaly/mask': 'rviz_default_plugins/Image',
        '/anomaly/overlay': 'rviz_default_plugins/Image',
        '/anomaly/points': 'rviz_default_plugins/PointCloud2',
        '/anomaly/regions/markers': 'rviz_default_plugins/MarkerArray',
    }
    points = next(d for d in displays if d['Class'].endswith('PointCloud2'))
    assert (points['Color Transformer'], points['Channel Name']) == ('Intensity', 'score')
    raw = nodes[0]
    assert '/image' in {s.topic_name for s in raw.subscriptions}
    assert set(classes) - {'/image'} <= {p.topic_name for p in raw.publishers}


def test_nav2_example_marks_from_the_node_points_and_clears_from_the_depth_cloud(nodes):
    config = yaml.safe_load((ROOT / 'config' / 'nav2_anomaly_layer.yaml').read_text())
    params = config['local_costmap']['local_costmap']['ros__parameters']
    layer = params['anomaly_layer']
    assert layer['plugin'] == 'nav2_costmap_2d::ObstacleLayer'
    assert 'anomaly_layer' in params['plugins']
    sources = {name: layer[name] for name in layer['observation_sources'].split()}
    marking = [s for s in sources.values() if s['marking']]
    clearing = [s for s in sources.values() if s['clearing']]
    assert [s['topic'] for s in marking] == ['/anomaly/points']
    assert len(clearing) == 1
    assert clearing[0]['topic'] != '/anomaly/points'
    assert all(s['data_type'] == 'PointCloud2' for s in sources.values())
    assert clearing[0]['raytrace_max_range'] > marking[0]['obstacle_max_range']
    assert '/anomaly/points' in {p.topic_name for p in nodes[0].publishers}
