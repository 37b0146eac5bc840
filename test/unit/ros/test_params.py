# Copyright 2026 The flowclas_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""The parameter table, its validation and the shipped YAML that documents it."""

from dataclasses import fields
from pathlib import Path
import re

import pytest
import yaml

from flowclas_ros.ros.params import PARAMS, NodeParams, yaml_file

CONFIG = Path(__file__).resolve().parents[3] / 'config' / 'flowclas.yaml'


def test_shipped_yaml_lists_every_parameter_with_its_default():
    values = yaml.safe_load(CONFIG.read_text())['/**']['ros__parameters']
    assert list(values) == list(PARAMS)
    defaults = NodeParams()
    for name, value in values.items():
        assert value == getattr(defaults, name), name
    assert all(meta['when'] in ('live', 'reload', 'restart') for meta in PARAMS.values())
    # Each parameter's comment is its doc and when a change applies (scripts/gen_node_docs.py).
    assert CONFIG.read_text() == yaml_file()


def test_every_field_is_documented():
    for f in fields(NodeParams):
        assert f.metadata['doc'], f.name


def test_replace_coerces_yaml_integers_to_floats():
    p = NodeParams().replace({'threshold': 1, 'score_range': [0, 2], 'max_rate_hz': 5})
    assert p.threshold == 1.0
    assert isinstance(p.threshold, float)
    assert p.score_range == [0.0, 2.0]
    assert all(isinstance(v, float) for v in p.score_range)
    assert isinstance(p.max_rate_hz, float)


@pytest.mark.parametrize(
    ('values', 'message'),
    [
        ({'threshold': 1.5}, 'threshold'),
        ({'threshold': 'high'}, 'threshold must be float'),
        ({'score_range': [1.0, 0.0]}, 'score_range'),
        ({'score_range': [0.0]}, 'score_range'),
        ({'backend': 'tensorflow'}, 'backend'),
        ({'input_transport': 'theora'}, 'input_transport'),
        ({'input_reliability': 'sometimes'}, 'input_reliability'),
        ({'input_size_policy': 'crop'}, 'input_size_policy'),
        ({'cameras': []}, 'cameras'),
        ({'cpu_threads': -1}, r'cpu_threads must be in \[0, 1024\]'),
        ({'cameras': ['a', 'a']}, 'cameras'),
        ({'input_depth': 0}, 'input_depth'),
        ({'output_scale': 0.0}, 'output_scale'),
        ({'mask_min_area': True}, 'mask_min_area must be int'),
        ({'mask_min_area': -1}, r'mask_min_area must be in \[0, 2147483647\]'),
        ({'mask_mode': 'otsu'}, 'mask_mode must be one of'),
        ({'target_fpr': 0.0}, 'target_fpr'),
        ({'nfa_null': 'gamma'}, 'nfa_null must be one of'),
        ({'input_warn_s': 0.0}, 'input_warn_s must be > 0'),
        ({'input_warn_s': 6.0}, 'input_warn_s must be > 0 and <= input_timeout_s'),
        ({'no_such_thing': 1}, 'unknown parameter'),
    ],
)
def test_invalid_values_are_refused_with_the_reason(values, message):
    with pytest.raises(ValueError, match=message):
        NodeParams().replace(values)


def test_points_reference_lists_the_geometry_parameters_with_their_defaults():
    docs = (CONFIG.parents[1] / 'docs' / 'points.md').read_text()
    rows = dict(re.findall(r'^\| `(\w+)` \| ([^|]+) \|', docs, re.MULTILINE))
    names = [
        'depth_tolerance_s', 'points_stride', 'points_min_depth_m', 'points_max_depth_m',
        'max_regions', 'marker_lifetime_s',
    ]  # fmt: skip
    for name in names:
        assert name in PARAMS, name
        assert float(rows[name]) == getattr(NodeParams(), name), name
