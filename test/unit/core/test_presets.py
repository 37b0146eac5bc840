# Copyright 2026 The flowclas_ros Authors
# SPDX-License-Identifier: Apache-2.0
import json

import pytest

from flowclas_ros.cli.train import config_from_args, parser
from flowclas_ros.core.config import FineConfig, ModelConfig
from flowclas_ros.core.errors import ConfigError
from flowclas_ros.core.presets import PRESETS, preset_config


@pytest.mark.parametrize('name', sorted(PRESETS))
def test_every_shipped_preset_is_a_valid_config(name):
    config = preset_config(name)
    assert ModelConfig.from_dict(config.to_dict()) == config


def test_surface_preset_is_the_defaults():
    assert preset_config('surface') == ModelConfig()


def test_road_preset_differs_from_the_defaults_where_it_says():
    road = preset_config('road')
    for path, value in _leaves(PRESETS['road']):
        got = road.to_dict()
        for key in path:
            got = got[key]
        assert got == value, path


def test_a_preset_file_is_laid_over_the_defaults_and_checked(tmp_path):
    path = tmp_path / 'site.json'
    path.write_text(json.dumps({'train': {'epochs': 3}, 'score_smoothing': 0.0}))
    config = preset_config(str(path))
    assert (config.train.epochs, config.score_smoothing) == (3, 0.0)
    assert config.flow == ModelConfig().flow
    path.write_text(json.dumps({'train': {'epoch': 3}}))
    with pytest.raises(ConfigError, match="'train.epoch'"):
        preset_config(str(path))
    path.write_text(json.dumps({'train': {'epochs': 'three'}}))
    with pytest.raises(ConfigError, match="'train.epochs' has the wrong type"):
        preset_config(str(path))
    with pytest.raises(ConfigError, match='unknown preset'):
        preset_config('motorway')


def test_a_preset_files_fine_level_is_laid_over_todays_defaults(tmp_path):
    path = tmp_path / 'site.json'
    path.write_text(json.dumps({'refine': 'cascade', 'fine': {'gate': 3.0}}))
    fine = preset_config(str(path)).fine
    assert fine == FineConfig(gate=3.0)  # the bank at weight 2, not a saved flow's weight 1


def test_options_override_the_preset_and_options_left_out_do_not():
    args = parser().parse_args(['--images', 'x', '--out', 'm', '--preset', 'road'])
    assert config_from_args(args) == preset_config('road')
    args = parser().parse_args(
        ['--images', 'x', '--out', 'm', '--preset', 'road', '--epochs', '2', '--seed', '5']
    )
    config = config_from_args(args)
    assert (config.train.epochs, config.train.seed) == (2, 5)
    assert config.backbone == preset_config('road').backbone
    plain = config_from_args(parser().parse_args(['--images', 'x', '--out', 'm']))
    assert plain == ModelConfig()


def _leaves(tree, path=()):
    for key, value in tree.items():
        if isinstance(value, dict):
            yield from _leaves(value, (*path, key))
        else:
            yield (*path, key), value
