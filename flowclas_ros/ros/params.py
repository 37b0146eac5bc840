# Copyright 2026 The flowclas_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""The node's parameters: one table that declaring, reading, validating and docs all use.

``when`` says what a change at run time does: ``live`` applies to the next frame; ``reload``
loads the model again in the background while the current one keeps serving; ``restart`` is
refused, with a message saying the node must be restarted.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
import json
import textwrap
from typing import Any

from flowclas_ros.core.config import PRECISIONS, REFINE_MODES, SEGMENTS
from flowclas_ros.core.device import DEFAULT_DEVICE
from flowclas_ros.core.engines import BACKENDS
from flowclas_ros.core.engines.pytorch import COMPILE_MODES
from flowclas_ros.core.errors import ConfigError
from flowclas_ros.core.inference import DETECTOR_SIZE_POLICIES
from flowclas_ros.core.masks import MASK_MODES, MODEL_PEAK_FRACTION, NFA_NULLS, MaskRule
from flowclas_ros.core.thresholds.fpr import TARGET_FPR_RANGE

TRANSPORTS = ('raw', 'compressed')
RELIABILITIES = ('auto', 'reliable', 'best_effort')


def _param(
    default: Any,
    when: str,
    doc: str,
    *,
    low: float | None = None,
    high: float | None = None,
    choices: tuple[str, ...] = (),
) -> Any:
    """A parameter; ``low``/``high`` (inclusive) and ``choices`` also go into its descriptor."""
    meta = {'when': when, 'doc': doc, 'low': low, 'high': high, 'choices': choices}
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class NodeParams:
    """Every node parameter, its default, when a change takes effect, and what it does."""

    model_dir: str = _param('', 'reload', 'model directory written by flowclas-train')
    backbone_weights: str = _param('', 'reload', 'backbone checkpoint overriding the stored path')
    backend: str = _param(
        'torch', 'reload', 'inference backend: torch, onnxruntime, tensorrt', choices=BACKENDS
    )
    precision: str = _param(
        'fp32',
        'reload',
        'fp32, fp16 (CUDA; TensorRT builds per layer), bf16 (torch only)',
        choices=PRECISIONS,
    )
    engine_cache_dir: str = _param(
        '', 'reload', 'exported ONNX graphs and TensorRT engines ("" = <model_dir>/engines)'
    )
    torch_compile: str = _param(
        'none',
        'reload',
        'torch backend: none, default, reduce-overhead (CUDA graphs), max-autotune',
        choices=COMPILE_MODES,
    )
    device: str = _param(DEFAULT_DEVICE, 'reload', 'auto (cuda when present), cpu, cuda or cuda:N')
    input_size_policy: str = _param(
        'model',
        'reload',
        'model: size frames as in training; fixed: exactly input_size; keep_aspect: its pixel '
        "count at the camera's aspect; native: the camera's own scale, shrunk to at most that "
        'count',
        choices=DETECTOR_SIZE_POLICIES,
    )
    refine: str = _param(
        'model',
        'reload',
        "refinement before calibration: model (the model's own), none, or cascade (a model "
        'trained with a fine level)',
        choices=('model', *REFINE_MODES),
    )
    grid_shifts: int = _param(
        0,
        'reload',
        "0: the model's own; 1: one grid; 2: four grids shifted by a quarter cell, interleaved "
        '(half the stride, 4x the encoder work)',
        low=0,
        high=2,
    )
    segments: str = _param(
        'none',
        'live',
        'region consistency before calibration (each segment pulled to its modal score): none; '
        'superpixels (SLIC of the frame, no weights); topic (label images, 0 = no segment, on '
        '<camera>/segments from any segmenter, matched by stamp)',
        choices=(*SEGMENTS, 'topic'),
    )
    segments_tolerance_s: float = _param(
        0.02,
        'live',
        'segments topic: labels match a frame when their stamps differ by at most this',
        low=0.0,
        high=10.0,
    )
    segments_wait_s: float = _param(
        0.2,
        'live',
        'segments topic: how long a scored frame waits for its labels before going out unrefined',
        low=0.0,
        high=10.0,
    )
    output_scale: float = _param(
        1.0, 'live', 'output resolution as a fraction of the input (> 0)', low=0.0, high=4.0
    )
    cpu_threads: int = _param(
        0, 'restart', 'torch CPU threads (0: torch default)', low=0, high=1024
    )
    cameras: list[str] = _param(
        [''], 'restart', 'camera namespaces served by one model ("" = the node namespace)'
    )
    input_transport: str = _param(
        'raw',
        'restart',
        'raw: <camera>/image; compressed: <camera>/image/compressed',
        choices=TRANSPORTS,
    )
    input_reliability: str = _param(
        'auto',
        'restart',
        'input QoS: auto (reliable when every publisher offers it, else best_effort; '
        'follows publishers as they come and go), reliable, best_effort',
        choices=RELIABILITIES,
    )
    input_depth: int = _param(1, 'restart', 'input QoS queue depth', low=1, high=1000)
    process_every_frame: bool = _param(
        False, 'restart', 'queue frames instead of keeping the newest (bag evaluation)'
    )
    prefer_fresh_frames: bool = _param(
        True, 'live', 'when busy, wait for the next frame rather than take one half a frame old'
    )
    max_queue: int = _param(
        100,
        'restart',
        'frames queued per camera (and input QoS depth) in process_every_frame',
        low=1,
        high=100_000,
    )
    mask_mode: str = _param(
        MaskRule.mode,
        'live',
        'fixed: score >= threshold; fpr: thresholds for target_fpr of normal pixels and frames; '
        'nfa: a contrario regions, no threshold; fixed_nfa: fixed regions that meet an nfa one',
        choices=MASK_MODES,
    )
    threshold: float = _param(
        MaskRule.threshold,
        'live',
        'mask_mode fixed and fixed_nfa: threshold on the calibrated score',
        low=0.0,
        high=1.0,
    )
    target_fpr: float = _param(
        MaskRule.target_fpr,
        'live',
        'mask_mode fpr: fraction of normal pixels, and of normal frames, marked (> 0)',
        low=TARGET_FPR_RANGE[0],
        high=TARGET_FPR_RANGE[1],
    )
    nfa_log10_epsilon: float = _param(
        MaskRule.log10_epsilon,
        'live',
        'mask_mode nfa and fixed_nfa: log10 of the false-alarm regions allowed per frame',
        low=-100.0,
        high=100.0,
    )
    nfa_null: str = _param(
        MaskRule.nfa_null,
        'live',
        'mask_mode nfa and fixed_nfa: chi2 (C degrees of freedom, parameter-free) or fitted '
        '(on normal validation patches: fewer false alarms)',
        choices=NFA_NULLS,
    )
    score_range: list[float] = _param(
        [0.0, 1.0], 'live', 'calibrated score range the heatmap colours span'
    )
    mask_peak_fraction: float = _param(
        MODEL_PEAK_FRACTION,
        'live',
        'any mask_mode: trim each mask region to what rises this fraction of the way from its '
        "lowest to its highest score (0: keep it whole; -1: the model's, set at training)",
        low=MODEL_PEAK_FRACTION,
        high=0.99,
    )
    mask_min_area: int = _param(
        MaskRule.min_area,
        'live',
        'mask regions under this many pixels are dropped',
        low=0,
        high=2**31 - 1,
    )
    max_rate_hz: float = _param(
        0.0, 'live', 'process at most this often per camera (0: any)', low=0.0, high=1000.0
    )
    publish_overlay: bool = _param(False, 'live', 'publish anomaly/overlay (heatmap on input)')
    depth_tolerance_s: float = _param(
        0.02,
        'live',
        'a depth image matches a colour frame when their stamps differ by at most this',
        low=0.0,
        high=10.0,
    )
    points_stride: int = _param(
        2,
        'live',
        'anomaly/points takes every Nth depth pixel along rows and columns',
        low=1,
        high=64,
    )
    points_min_depth_m: float = _param(
        0.1, 'live', 'nearest depth used for points and region distances', low=0.0, high=1000.0
    )
    points_max_depth_m: float = _param(
        10.0, 'live', 'farthest depth used for points and region distances', low=0.0, high=1000.0
    )
    max_regions: int = _param(
        32,
        'live',
        'anomaly/regions and its markers keep this many regions, highest peak score first',
        low=1,
        high=100_000,
    )
    marker_lifetime_s: float = _param(
        1.0,
        'live',
        'rviz markers vanish this long after their frame unless replaced (0: only replaced)',
        low=0.0,
        high=3600.0,
    )
    expected_rate_hz: float = _param(
        0.0, 'live', 'diagnostics WARN below this rate (0: off)', low=0.0, high=1000.0
    )
    max_latency_ms: float = _param(
        500.0, 'live', 'diagnostics WARN above this mean latency (> 0)', low=0.0, high=1e6
    )
    input_timeout_s: float = _param(
        5.0, 'live', 'diagnostics ERROR after this long without input (> 0)', low=0.0, high=1e5
    )
    input_warn_s: float = _param(
        1.0,
        'live',
        'diagnostics WARN after this long without input (> 0; ERROR after input_timeout_s)',
        low=0.0,
        high=1e5,
    )
    diagnostics_period_s: float = _param(
        1.0, 'restart', 'how often /diagnostics is published', low=0.01, high=3600.0
    )

    def replace(self, values: dict[str, Any]) -> NodeParams:
        """A copy with ``values`` applied, validated; raises ``ValueError`` with the reason."""
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        for name, value in values.items():
            if name not in data:
                raise ValueError(f'unknown parameter {name!r}')
            data[name] = _coerce(name, value, data[name])
        out = NodeParams(**data)
        out.validate()
        return out

    def validate(self) -> None:
        for name, meta in PARAMS.items():
            value = getattr(self, name)
            if meta['choices'] and value not in meta['choices']:
                raise ValueError(f'{name} must be one of {meta["choices"]}, got {value!r}')
            low, high = meta['low'], meta['high']
            if low is not None and not low <= value <= high:
                raise ValueError(f'{name} must be in [{low}, {high}], got {value}')
        checks = [
            (self.output_scale > 0, 'output_scale must be > 0'),
            (len(self.cameras) > 0, 'cameras must name at least one namespace'),
            (len(set(self.cameras)) == len(self.cameras), 'cameras must not repeat'),
            (
                len(self.score_range) == 2 and self.score_range[0] < self.score_range[1],
                'score_range must be [low, high] with low < high',
            ),
            (self.max_latency_ms > 0, 'max_latency_ms must be > 0'),
            (
                self.points_min_depth_m < self.points_max_depth_m,
                'points_min_depth_m must be < points_max_depth_m',
            ),
            (self.input_timeout_s > 0, 'input_timeout_s must be > 0'),
            (
                0 < self.input_warn_s <= self.input_timeout_s,
                'input_warn_s must be > 0 and <= input_timeout_s',
            ),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)
        try:
            MaskRule.from_settings(self)
        except ConfigError as exc:
            raise ValueError(str(exc)) from None


def _coerce(name: str, value: Any, default: Any) -> Any:
    """ROS hands integers where floats are declared (``1`` in YAML); accept them as floats."""
    if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(default, list):
        value = list(value)
        if name == 'score_range':
            value = [float(v) for v in value]
        return value
    if type(value) is not type(default):
        raise ValueError(f'{name} must be {type(default).__name__}, got {value!r}')
    return value


PARAMS = {f.name: f.metadata for f in fields(NodeParams)}


def markdown_table() -> str:
    """The parameter reference of ``docs/node.md``, made from ``NodeParams`` so it cannot drift.

    One row per field, in declaration order: name, default (as YAML writes it), ``when`` a
    change takes effect, range or choices, and the field's doc.
    """
    rows = [
        '| parameter | default | when | range or choices | what it does |',
        '|---|---|---|---|---|',
    ]
    defaults = NodeParams()
    for name, meta in PARAMS.items():
        if meta['choices']:
            limits = ', '.join(f'`{c}`' for c in meta['choices'])
        elif meta['low'] is not None:
            limits = f'{_number(meta["low"])} to {_number(meta["high"])}'
        else:
            limits = ''
        default = json.dumps(getattr(defaults, name))
        doc = meta['doc'].replace('|', '\\|').replace('<', '\\<')  # not HTML, not a column
        rows.append(f'| `{name}` | `{default}` | {meta["when"]} | {limits} | {doc} |')
    return '\n'.join(rows) + '\n'


YAML_HEADER = """\
flowclas_node parameters. Every parameter the node declares is listed here with its default.
[live]: a change at run time applies to the next frame (ros2 param set ...).
[reload]: a change reloads the model in the background; the current one serves meanwhile.
[restart]: read at start only (read-only parameters); changes at run time are refused.
Numeric parameters carry their range in the descriptor (ros2 param describe).
"""


def params_yaml(values: dict[str, Any], header: str) -> str:
    """A parameters file for any flowclas node: ``header`` as comments, then ``values``.

    Each value sits under its parameter's doc and when a change applies.
    """
    lines = [f'# {line}' if line else '#' for line in header.splitlines()]
    lines += ['/**:', '  ros__parameters:']
    for name, value in values.items():
        meta = PARAMS[name]
        lines += textwrap.wrap(
            f'{meta["doc"]} [{meta["when"]}]', 95, initial_indent='    # ',
            subsequent_indent='    # ', break_long_words=False, break_on_hyphens=False,
        )  # fmt: skip
        lines.append(f'    {name}: {json.dumps(value)}')
    return '\n'.join(lines) + '\n'


def yaml_file() -> str:
    """``config/flowclas.yaml``: every default, made like the table so the two cannot drift."""
    defaults = NodeParams()
    return params_yaml({name: getattr(defaults, name) for name in PARAMS}, YAML_HEADER)


def _number(value: float) -> str:
    """``0``, ``4``, ``0.01``, ``2147483647``: integers without a decimal point or exponent."""
    if float(value).is_integer():
        return str(int(value))
    return f'{value:g}'


if __name__ == '__main__':
    print(markdown_table(), end='')
