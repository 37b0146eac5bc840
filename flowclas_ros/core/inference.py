# Copyright 2026 The flowclas_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""One image in, calibrated per-pixel scores out: what the node, the benchmark and users call.

Resizing, scoring, upsampling and calibration stay on the model's device; the host gets the
output-size scores and the small patch grid of latent norms. ``render`` also makes the node's
masks, colour maps and overlays there, and copies back only the finished images.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from pathlib import Path

import numpy as np
import torch

from flowclas_ros.core.data.images import SIZE_POLICIES as NETWORK_SIZE_POLICIES
from flowclas_ros.core.data.images import network_size, to_batch
from flowclas_ros.core.device import DEFAULT_DEVICE
from flowclas_ros.core.engines import Engine, build_engine
from flowclas_ros.core.errors import ConfigError, InputError
from flowclas_ros.core.flowclas.model import (
    FlowClasModel,
    choose_grid_shifts,
    load_model,
    upsample,
)
from flowclas_ros.core.flowclas.refine import choose_refine, with_segments
from flowclas_ros.core.flowclas.scoring import calibrate
from flowclas_ros.core.masks import (
    THRESHOLD_MODES,
    MaskRule,
    anomaly_mask,
    peak_fraction,
    threshold_hits,
)
from flowclas_ros.core.visualize import heatmap, overlay

# A detector's size policy: 'model' (the one the model was trained with, its config's
# size_policy) or one of the network's size policies (``data.images.SIZE_POLICIES``) instead.
DETECTOR_SIZE_POLICIES = ('model', *NETWORK_SIZE_POLICIES)

# Region consistency (``refine.with_segments``): called with the frame once it is scored, so a
# segmenter elsewhere had that long to deliver; returns labels (0 = no segment, any size at
# the frame's aspect) or None to leave the scores as they are. ``refine.frame_superpixels``
# is one.
Segmenter = Callable[[np.ndarray], 'np.ndarray | torch.Tensor | None']


class Detector:
    """A loaded model ready for frames of any size.

    Args:
        model: a trained model (eval mode, on ``device``).
        size_policy: ``model`` sizes frames as in training (what ``flowclas-eval`` does);
            ``fixed``, ``keep_aspect`` or ``native`` override it (see ``network_size``).
        output_scale: outputs are ``round(scale * H) x round(scale * W)`` of the frame.
    """

    def __init__(
        self,
        model: FlowClasModel,
        *,
        size_policy: str = 'model',
        output_scale: float = 1.0,
        engine: Engine | None = None,
    ) -> None:
        if size_policy not in DETECTOR_SIZE_POLICIES:
            raise ConfigError(
                f'unknown size policy {size_policy!r}; choose from {DETECTOR_SIZE_POLICIES}'
            )
        if not 0 < output_scale <= 4:
            raise ConfigError(f'output_scale must be in (0, 4], got {output_scale}')
        self.model = model
        self.size_policy = size_policy
        self.output_scale = output_scale
        self.device = model.device
        self.engine = engine if engine is not None else build_engine('torch', model)

    @classmethod
    def load(
        cls,
        model_dir: str | Path,
        *,
        device: str = DEFAULT_DEVICE,
        backbone_weights: str | None = None,
        size_policy: str = 'model',
        output_scale: float = 1.0,
        backend: str = 'torch',
        precision: str = 'fp32',
        cache_dir: str | Path | None = None,
        compile_mode: str = 'none',
        refine: str = 'model',
        grid_shifts: int = 0,
    ) -> Detector:
        """Load a model directory and put it behind ``backend``.

        Args:
            model_dir: a directory written by ``flowclas-train``.
            device: ``cpu``, ``cuda``, ``cuda:N`` or ``auto`` (the GPU when there is one).
            backbone_weights: a backbone checkpoint overriding the path stored at training.
            size_policy: see the class; ``model`` sizes frames as in training.
            output_scale: outputs are this fraction of the frame's size, in (0, 4].
            backend: ``torch``, ``onnxruntime`` or ``tensorrt``.
            precision: ``fp32``; ``fp16`` on CUDA (``bf16`` autocast for ``torch``).
            cache_dir: where ONNX Runtime and TensorRT keep exported graphs and engines, named
                by a hash of the model files (default ``<model_dir>/engines``).
            compile_mode: ``torch.compile`` mode for the ``torch`` backend, or ``none``.
            refine: ``model`` keeps the model's refinement; ``none`` or ``cascade`` override it.
            grid_shifts: 0 keeps the model's; 1 or 2 override it (``ModelConfig.grid_shifts``).
        """
        model = load_model(model_dir, backbone_weights, device)
        choose_refine(model.config, refine)
        choose_grid_shifts(model.config, grid_shifts)
        engine = build_engine(backend, model, precision, model_dir, cache_dir, compile_mode)
        return cls(model, size_policy=size_policy, output_scale=output_scale, engine=engine)

    def network_size(self, height: int, width: int) -> tuple[int, int]:
        """The size a ``height x width`` frame is resized to before the backbone."""
        config = self.model.config
        policy = config.size_policy if self.size_policy == 'model' else self.size_policy
        return network_size(
            height, width, config.input_size, policy, self.model.backbone.size_multiple
        )

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        s = self.output_scale
        return max(1, round(height * s)), max(1, round(width * s))

    def __call__(self, rgb: np.ndarray) -> np.ndarray:
        """uint8 RGB ``(H, W, 3)`` -> calibrated float32 scores ``(h, w)`` in [0, 1].

        Raises:
            InputError: the frame is empty or not RGB, or the model produced NaN or inf.
        """
        return self.detect(rgb, with_norms=False)[0]

    @torch.no_grad()
    def detect(
        self, rgb: np.ndarray, with_norms: bool = True, segments: Segmenter | None = None
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Calibrated scores as ``__call__``, and the latent norms on the patch grid (float64).

        Without ``with_norms`` the norms stay on the device (None is returned): only the
        ``nfa`` mask reads them, so other frames skip their copy to the host. ``segments``
        makes each segment of the frame's labels consistent before calibration.
        """
        scores, norms = self.engine(self.preprocess(rgb))
        out = self.postprocess(scores, rgb, segments)
        return out, self.host_norms(norms) if with_norms else None

    def mask(
        self,
        scores: np.ndarray,
        norms: np.ndarray | None = None,
        rule: MaskRule | None = None,
    ) -> np.ndarray:
        """uint8 mask (0 or 255) of calibrated ``scores`` by ``rule`` (default: above 0.5).

        The ``nfa`` rule also needs the latent ``norms`` from ``detect(rgb, with_norms=True)``.
        """
        return anomaly_mask(
            scores, norms, rule or MaskRule(), self.model.config.calibration, self.model.channels
        )

    def preprocess(self, rgb: np.ndarray) -> torch.Tensor:
        """Frame -> ``(1, 3, H, W)`` float batch at the network size, on the device."""
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise InputError('bad_image', f'expected uint8 (H, W, 3), got {rgb.dtype} {rgb.shape}')
        height, width = rgb.shape[:2]
        if height == 0 or width == 0:
            raise InputError('empty_image', f'image is {height}x{width}')
        return to_batch([rgb], self.network_size(height, width), self.device)

    def postprocess(
        self, scores: torch.Tensor, rgb: np.ndarray, segments: Segmenter | None = None
    ) -> np.ndarray:
        """Raw patch scores of ``rgb`` -> calibrated scores at the output size, on the host."""
        return self._calibrated(scores, rgb, segments).cpu().numpy()

    def _calibrated(
        self,
        scores: torch.Tensor,
        rgb: np.ndarray,
        segments: Segmenter | None,
        lap: Callable[[str], None] | None = None,
    ) -> torch.Tensor:
        """Raw ``(1, h, w)`` patch scores -> calibrated ``(H, W)`` float32 on the device.

        With ``segments``, ``lap('inference')`` closes before them and ``lap('refine')`` after
        them and the calibration; without, ``lap('inference')`` closes at the end.
        """
        scores = upsample(scores, self.output_size(*rgb.shape[:2]))
        if segments is not None:
            if lap is not None:
                lap('inference')
            labels = segments(rgb)
            if labels is not None:
                scores = with_segments(scores[0], labels)[None]
        out = self._calibrate(scores)
        if lap is not None:
            lap('inference' if segments is None else 'refine')
        return out

    def _calibrate(self, scores: torch.Tensor) -> torch.Tensor:
        out = calibrate(scores, self.model.config.calibration)[0].float()
        if not bool(torch.isfinite(out).all()):
            raise InputError('non_finite_scores', 'the model produced NaN or inf scores')
        return out

    @torch.no_grad()
    def render(
        self,
        rgb: np.ndarray,
        outputs: Collection[str],
        rule: MaskRule | None = None,
        score_range: tuple[float, float] = (0.0, 1.0),
        lap: Callable[[str], None] | None = None,
        segments: Segmenter | None = None,
    ) -> dict[str, np.ndarray]:
        """What the node publishes for one frame, made on the model's device.

        ``outputs`` names the images wanted: ``score`` (calibrated float32), ``mask`` (uint8
        0/255 by ``rule``), ``heatmap`` (uint8 RGB over ``score_range``) and ``overlay`` (the
        heatmap blended on the frame). Scaling, calibration, colour lookup, thresholds and
        blending run where the model ran; each wanted image is then copied to the host once
        (on a CPU the copies are views). Only ``nfa`` masks, ``peak_fraction`` and
        ``min_area`` need the host (region labelling). ``segments`` as in ``detect``.
        ``lap(stage)``, if given, is called after ``inference``, ``refine`` (with ``segments``)
        and ``postprocess``.
        """
        rule = rule or MaskRule()
        scores_raw, norms = self.engine(self.preprocess(rgb))
        scores = self._calibrated(scores_raw, rgb, segments, lap)
        # On a CPU the host is the device, and NumPy does these element-wise steps faster.
        on_host = self.device.type == 'cpu'
        values = scores.numpy() if on_host else scores
        images: dict[str, torch.Tensor | np.ndarray] = {}
        if 'score' in outputs:
            images['score'] = values
        if 'mask' in outputs:
            calibration = self.model.config.calibration
            whole = peak_fraction(rule, calibration) == 0
            if rule.mode in THRESHOLD_MODES and rule.min_area <= 1 and whole:
                hits = threshold_hits(values, rule, calibration)
                images['mask'] = (hits.astype(np.uint8) if on_host else hits.to(torch.uint8)) * 255
            else:
                host_norms = self.host_norms(norms) if rule.reads_norms else None
                images['mask'] = self.mask(scores.cpu().numpy(), host_norms, rule)
        if 'heatmap' in outputs or 'overlay' in outputs:
            colour = heatmap(values, *score_range)
            if 'heatmap' in outputs:
                images['heatmap'] = colour
            if 'overlay' in outputs:
                images['overlay'] = overlay(self._frame_at(rgb, scores.shape, on_host), colour)
        out = {k: v.cpu().numpy() if isinstance(v, torch.Tensor) else v for k, v in images.items()}
        if lap is not None:
            lap('postprocess')
        return out

    def _frame_at(
        self, rgb: np.ndarray, size: tuple[int, int], on_host: bool
    ) -> np.ndarray | torch.Tensor:
        """The uint8 frame at the output size: an array on the host, else on the device."""
        if tuple(size) == rgb.shape[:2]:
            if on_host:
                return rgb
            owned = rgb if rgb.flags.writeable and rgb.flags.c_contiguous else rgb.copy()
            return torch.from_numpy(owned).to(self.device)
        frame = to_batch([rgb], tuple(size), self.device)[0].permute(1, 2, 0)
        frame = frame.mul(255).round_().to(torch.uint8)
        return frame.numpy() if on_host else frame

    @staticmethod
    def host_norms(norms: torch.Tensor) -> np.ndarray:
        """Engine latent norms ``(1, h, w)`` -> ``(h, w)`` float64 on the host, checked finite."""
        out = norms[0].double().cpu().numpy()
        if not np.isfinite(out).all():
            raise InputError('non_finite_scores', 'the model produced NaN or inf latent norms')
        return out
