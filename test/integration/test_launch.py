# Copyright 2026 The flowclas_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""The launch file, read statically (``launch`` does not install from PyPI), against the node.

What it names must exist: the package, the executable, the parameters file, every parameter it
sets, and every topic it remaps must be one the node really subscribes to.
"""

import ast
from pathlib import Path
import xml.etree.ElementTree as ET

import pytest
import rclpy
from rclpy.parameter import Parameter

from flowclas_ros.ros.node import NODE_NAME, FlowClasNode
from flowclas_ros.ros.params import PARAMS

pytestmark = pytest.mark.ros
ROOT = Path(__file__).resolve().parents[2]
LAUNCH = ROOT / 'launch' / 'flowclas.launch.py'
REQUIRED_ARGUMENTS = {'namespace', 'image', 'params_file', 'use_sim_time'}


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


def test_package_executable_and_name(tree):
    kw = _node_call(tree)
    package = ET.parse(ROOT / 'package.xml').getroot().findtext('name')
    assert ast.literal_eval(kw['package']) == package
    scripts = _console_scripts()
    executable = ast.literal_eval(kw['executable'])
    assert scripts[executable] == 'flowclas_ros.ros.node:main'
    assert ast.literal_eval(kw['name']) == NODE_NAME
    assert any(
        isinstance(n, ast.FunctionDef) and n.name == 'generate_launch_description'
        for n in tree.body
    )


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


def _remapped(tree):
    remappings = _node_call(tree)['remappings']
    return {ast.literal_eval(pair.elts[0]) for pair in remappings.elts}


@pytest.fixture(scope='module')
def nodes():
    """The node itself, with raw and with compressed input (no model: it only declares)."""
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=99)
    made = [
        FlowClasNode(context=context),
        FlowClasNode(
            context=context,
            namespace='compressed',
            parameter_overrides=[Parameter('input_transport', value='compressed')],
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
    assert overrides == {'use_sim_time', 'model_dir'}
    assert overrides <= declared


def test_remapped_topics_are_the_node_inputs(tree, nodes):
    raw, compressed = nodes
    subscribed = {s.topic_name.lstrip('/') for s in raw.subscriptions}
    subscribed |= {s.topic_name.removeprefix('/compressed/') for s in compressed.subscriptions}
    remapped = _remapped(tree)
    assert remapped == {'image', 'image/compressed', 'camera_info'}
    assert remapped <= subscribed
