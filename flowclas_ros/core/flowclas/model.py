# Copyright 2026 The flowclas_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""FlowCLAS model: frozen backbone -> flow -> per-pixel anomaly score at input resolution."""

from __future__ import annotations

import hashlib
from pathlib import Path
import time

from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors
import torch
from torch import nn
import torch.nn.functional as F

from flowclas_ros.core.backbones import FeatureExtractor, build_backbone
from flowclas_ros.core.backbones.efficientnet import EfficientNetLite
from flowclas_ros.core.backbones.stacked import Stacked
from flowclas_ros.core.config import GRID_SHIFTS, ModelConfig
from flowclas_ros.core.data.images import SIZE_POLICIES
from flowclas_ros.core.device import DEFAULT_DEVICE, torch_device
from flowclas_ros.core.errors import ConfigError, ModelFileError
from flowclas_ros.core.flowclas.flow import Flow
from flowclas_ros.core.flowclas.refine import FineLevel, cascade, on_grid, standardize
from flowclas_ros.core.flowclas.scoring import frame_median, smooth, upsample
from flowclas_ros.core.jsonio import write_atomic

CONFIG_FILE = 'config.json'
WEIGHTS_FILE = 'flow.safetensors'
SCORES = ('nll', 'latent')


class FlowClasModel(nn.Module):
    """Backbone features, their flow latent and the anomaly map derived from it.

    ``forward``: ``(B, 3, H, W)`` RGB in [0, 1] -> raw anomaly scores ``(B, H, W)``. Inference
    engines run ``maps``; training uses the pieces (``features``, ``patch_maps``, ``fine``).
    """

    def __init__(self, config: ModelConfig, backbone: FeatureExtractor) -> None:
        super().__init__()
        if config.score not in SCORES:
            raise ConfigError(f'unknown score {config.score!r}; choose from {SCORES}')
        for h, w in filter(None, (config.input_size, config.train.input_size)):
            if h % backbone.size_multiple or w % backbone.size_multiple:
                raise ConfigError(
                    f'input size {h}x{w} must be a multiple of {backbone.size_multiple} for '
                    f'{config.backbone.name}'
                )
        if config.size_policy not in SIZE_POLICIES:
            raise ConfigError(
                f'unknown size_policy {config.size_policy!r}; choose from {SIZE_POLICIES}'
            )
        if config.context_window > 1 and config.context_window % 2 == 0:
            raise ConfigError(f'context_window must be odd, got {config.context_window}')
        if config.grid_shifts > 1 and backbone.stride % 4:
            raise ConfigError(f'grid_shifts needs a stride divisible by 4, got {backbone.stride}')
        self.config = config
        self.backbone = backbone
        channels = backbone.out_dim * (2 if config.context_window > 1 else 1)
        config.feature_channels = channels
        f = config.flow
        self.flow = Flow(channels, f.steps, f.hidden_ratio, f.clamp, f.seed)
        # Projection head for the contrastive loss; unused at inference.
        self.head = nn.Conv2d(channels, config.train.embed_dim, 1)
        self.primary_flow: Flow | None = None
        self.primary_head: nn.Conv2d | None = None
        if config.primary_weight > 0:
            if not isinstance(backbone, Stacked) or config.context_window > 1:
                raise ConfigError('primary_weight needs backbone.extra and no context_window')
            n = backbone.primary.out_dim
            self.primary_flow = Flow(n, f.steps, f.hidden_ratio, f.clamp, f.seed)
            self.primary_head = nn.Conv2d(n, config.train.embed_dim, 1)
        self.fine = FineLevel(config.fine) if config.fine is not None else None
        self.fine_stride = shared_fine_stride(config, backbone)

    @property
    def channels(self) -> int:
        return self.flow.channels

    def densities(self) -> list[tuple[Flow, nn.Conv2d, int]]:
        """The flows training fits, each with its contrastive head and the channels it reads."""
        out = [(self.flow, self.head, self.channels)]
        if self.primary_flow is not None and self.primary_head is not None:
            out.append((self.primary_flow, self.primary_head, self.primary_flow.channels))
        return out

    def train_flows(self, mode: bool = True) -> None:
        """Training mode for every flow (their ActNorms initialise on the first batch)."""
        for flow, _, _ in self.densities():
            flow.train(mode)

    @property
    def device(self) -> torch.device:
        return next(self.flow.parameters()).device

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """Frozen features ``(B, C, h, w)``, with their local context mean when configured."""
        with torch.no_grad():
            return self._with_context(self.backbone(images))

    def encode(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``features`` and, under ``refine: cascade``, the fine level's features.

        Where the fine encoder is the coarse one's early blocks (``fine_stride``) one pass
        yields both: on a CPU that pass through the high-resolution blocks was most of the
        cascade's cost.
        """
        if self.fine is None or self.config.refine != 'cascade':
            return self.features(images), None
        if self.fine_stride is None:
            return self.features(images), self.fine.features(images)
        with torch.no_grad():
            feats, fine = self.backbone.tapped(images, self.fine_stride)
            return self._with_context(feats), fine

    def _with_context(self, feats: torch.Tensor) -> torch.Tensor:
        """``feats`` with their ``context_window`` neighbourhood mean appended.

        Large, faint defects (a whole region re-lit) look normal patch by patch; the mean tells
        the flow what surrounds each patch.
        """
        k = self.config.context_window
        if k <= 1:
            return feats
        context = F.avg_pool2d(feats, k, 1, k // 2, count_include_pad=False)
        return torch.cat([feats, context], dim=1)

    def patch_maps(self, feats: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-patch raw anomaly score and latent norm, each ``(B, h, w)``.

        Score (larger is more anomalous): ``nll`` is the negative log-likelihood per dimension,
        log-det included; ``latent`` is the bounded ``1 - exp(mean_c(-z~^2 / 2 - log sigma))``
        on the standardized latent. Both are smoothed over neighbouring patches by
        ``config.score_smoothing`` and, with ``config.center_per_frame``, less each map's
        median; with ``config.primary_weight`` the primary flow's map, treated alike, takes
        that share. The norm ``q = sum_c z~^2`` (of the main flow) is left unsmoothed, in
        float32: under the normal hypothesis it is chi-square with C degrees of freedom, which
        the NFA threshold relies on.
        """
        log_prob, z = self.flow.log_prob(feats)
        zt = self.flow.base.standardize(z)
        norms = zt.float().square().sum(dim=1)
        if self.config.score == 'nll':
            scores = -log_prob / self.channels
        else:
            inner = (-0.5 * zt.square() - self.flow.base.log_std).mean(dim=1)
            scores = 1 - torch.exp(inner)
        scores = self._finished(scores)
        if self.primary_flow is not None:
            n, w = self.primary_flow.channels, self.config.primary_weight
            primary = -self.primary_flow.log_prob(feats[:, :n])[0] / n
            scores = (1 - w) * scores + w * self._finished(primary)
        return scores, norms

    def _finished(self, scores: torch.Tensor) -> torch.Tensor:
        scores = smooth(scores, self.config.score_smoothing)
        if self.config.center_per_frame:
            scores = scores - frame_median(scores)
        return scores

    def maps(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """What every engine computes: raw scores and the coarse latent norms ``(B, h, w)``.

        With ``config.grid_shifts`` 2 both come from four shifted copies of each frame, scored
        in one batch and interleaved: ``(B, 2h, 2w)``.
        """
        if self.config.grid_shifts == 1:
            return self._grid_maps(images)
        step = self.backbone.stride // 4
        batch = torch.cat([shift(images, dy * step, dx * step) for dy, dx in QUARTER_SHIFTS])
        scores, norms = self._grid_maps(batch)
        return interleave(scores), interleave(norms)

    def _grid_maps(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``maps`` on the encoder's own grid.

        With a fine level the scores are z-scores (``config.fine.coarse``): refined on the fine
        grid under ``refine: cascade``, else the coarse level's alone, so one calibration
        serves both.
        """
        feats, fine = self.encode(images)
        scores, norms = self.patch_maps(feats)
        if self.fine is None:
            return scores, norms
        if fine is None:
            return standardize(scores, self.config.fine.coarse), norms
        return self.refined(scores, fine), norms

    def refined(self, scores: torch.Tensor, fine_feats: torch.Tensor) -> torch.Tensor:
        """The cascade of the coarse ``scores`` and the fine level's on ``fine_feats``, as z."""
        c = self.config.fine
        coarse = on_grid(standardize(scores, c.coarse), fine_feats.shape[-2:])
        fine = self.fine.scores(fine_feats, coarse > c.gate)
        return cascade(coarse, standardize(fine, c.fine), c.gate, c.weight)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return upsample(self.maps(images)[0], images.shape[-2:])


# The grids ``maps`` interleaves: content moved down/right (+1) or up/left (-1) by a quarter
# cell, so cell centres land at a quarter and three quarters of each cell. Rows first.
QUARTER_SHIFTS = ((1, 1), (1, -1), (-1, 1), (-1, -1))


def shift(images: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """``(B, C, H, W)`` with its content moved ``dy`` down and ``dx`` right; edges repeated."""
    h, w = images.shape[-2:]
    pad = (max(dx, 0), max(-dx, 0), max(dy, 0), max(-dy, 0))
    top, left = max(-dy, 0), max(-dx, 0)
    return F.pad(images, pad, mode='replicate')[..., top : top + h, left : left + w]


def choose_grid_shifts(config: ModelConfig, shifts: int) -> None:
    """Override a loaded model's ``grid_shifts`` (0 keeps it): scoring only, no retraining."""
    if shifts == 0:
        return
    if shifts not in GRID_SHIFTS:
        raise ConfigError(f"grid_shifts must be 0 (the model's own) or one of {GRID_SHIFTS}")
    if shifts > 1 and config.refine == 'cascade':
        raise ConfigError('grid_shifts 2 cannot be combined with refine cascade')
    config.grid_shifts = shifts


def interleave(maps: torch.Tensor) -> torch.Tensor:
    """``(4B, h, w)`` of the ``QUARTER_SHIFTS`` grids, in that order -> ``(B, 2h, 2w)``."""
    _, h, w = maps.shape
    grid = maps.reshape(2, 2, -1, h, w).permute(2, 3, 0, 4, 1)
    return grid.reshape(-1, 2 * h, 2 * w)


def shared_fine_stride(config: ModelConfig, backbone: FeatureExtractor) -> int | None:
    """The fine level's stride when its encoder is the first blocks of the coarse one, else None.

    Same network, same weights, one tap the coarse trunk runs through: the fine features are
    then an activation the coarse pass computes anyway.
    """
    if config.fine is None:
        return None
    f, b = config.fine.backbone, config.backbone
    trunk = backbone.primary if isinstance(backbone, Stacked) else backbone
    if (
        f.extra is not None
        or (f.name, f.weights) != (b.name, b.weights)
        or not isinstance(trunk, EfficientNetLite)
        or len(f.layers or ()) != 1
        or not trunk.can_tap(f.layers[0])
    ):
        return None
    return f.layers[0]


def build_model(config: ModelConfig) -> FlowClasModel:
    b = config.backbone
    backbone = build_backbone(b.name, b.weights, b.layers)
    if b.extra is not None:
        extra = build_backbone(b.extra.name, b.extra.weights, b.extra.layers)
        backbone = Stacked(backbone, extra)
    return FlowClasModel(config, backbone)


def _trained_parts(model: FlowClasModel) -> dict[str, nn.Module]:
    parts: dict[str, nn.Module] = {'flow': model.flow, 'head': model.head}
    if model.primary_flow is not None and model.primary_head is not None:
        parts |= {'primary_flow': model.primary_flow, 'primary_head': model.primary_head}
    return parts | ({'fine': model.fine.density} if model.fine is not None else {})


def trained_state(model: FlowClasModel) -> dict[str, torch.Tensor]:
    """The trained tensors, prefixed by part (``flow.``, ``head.``, ...); backbones are frozen."""
    return {
        f'{name}.{k}': v
        for name, part in _trained_parts(model).items()
        for k, v in part.state_dict().items()
    }


def load_trained_state(model: FlowClasModel, state: dict[str, torch.Tensor]) -> None:
    for name, part in _trained_parts(model).items():
        prefix = f'{name}.'
        part.load_state_dict(
            {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
        )


def save_model(model: FlowClasModel, directory: str | Path) -> None:
    """Write the trained weights, then ``config.json`` with their hash; each atomically."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in trained_state(model).items()}
    data = save_safetensors(state)
    write_atomic(directory / WEIGHTS_FILE, data)
    model.config.weights_sha256 = hashlib.sha256(data).hexdigest()
    model.config.save(directory / CONFIG_FILE)


def _read_pair(directory: Path) -> tuple[ModelConfig, bytes]:
    """``config.json`` and the weights that belong to it.

    A model directory is replaced whole, but a reader that opens its two files one after the
    other can straddle the swap; the recorded hash catches that, and the pair is read again.
    """
    path = directory / WEIGHTS_FILE
    for _ in range(3):
        config = ModelConfig.load(directory / CONFIG_FILE)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise ModelFileError(f'weights not found: {path}') from None
        except OSError as exc:
            raise ModelFileError(f'cannot read {path}: {exc}') from exc
        if not config.weights_sha256 or hashlib.sha256(data).hexdigest() == config.weights_sha256:
            return config, data
        time.sleep(0.2)
    raise ModelFileError(
        f'{path} is not the file {CONFIG_FILE} was saved with (SHA-256 differs): the weights '
        'are damaged or from another model'
    )


def load_model(
    directory: str | Path, backbone_weights: str | None = None, device: str = DEFAULT_DEVICE
) -> FlowClasModel:
    """Rebuild a model from a directory written by ``save_model`` (eval mode).

    Args:
        directory: the model directory.
        backbone_weights: overrides the backbone checkpoint path stored at training time.
        device: torch device, or ``auto`` (the GPU when there is one).
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise ModelFileError(f'model directory not found: {directory}')
    config, data = _read_pair(directory)
    if backbone_weights is not None:
        config.backbone.weights = backbone_weights
    model = build_model(config)
    path = directory / WEIGHTS_FILE
    try:
        state = load_safetensors(data)
    except (SafetensorError, OSError) as exc:
        raise ModelFileError(f'cannot read {path}: {exc}') from exc
    own = trained_state(model)
    missing = sorted(set(own) - set(state))
    wrong = [k for k in own if k in state and state[k].shape != own[k].shape]
    if missing or wrong:
        detail = ', '.join(missing[:2] + [f'{k} {tuple(state[k].shape)}' for k in wrong[:2]])
        raise ModelFileError(f'{path} does not fit {config.backbone.name} + flow: {detail}')
    load_trained_state(model, state)
    return model.to(torch_device(device)).eval()
