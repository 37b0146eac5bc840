# Copyright 2026 The flowclas_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""FlowCLAS losses: likelihood on inlier patches, pixel InfoNCE between inliers and outliers."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def inlier_nll(log_prob: torch.Tensor, labels: torch.Tensor, channels: int) -> torch.Tensor:
    """Mean negative log-likelihood per dimension over inlier patches (label 0).

    Args:
        log_prob: ``(B, h, w)`` per-patch log-density summed over channels.
        labels: ``(B, h, w)`` 0 inlier, 1 outlier, 255 void.
        channels: feature channels, to report per-dimension values comparable across backbones.
    """
    inlier = labels == 0
    if not inlier.any():
        return log_prob.sum() * 0
    return -log_prob[inlier].mean() / channels


def _sample(
    embeddings: torch.Tensor, mask: torch.Tensor, n: int, gen: torch.Generator | None
) -> torch.Tensor:
    """Up to ``n`` rows of ``embeddings`` ``(N, D)`` where ``mask`` ``(N,)`` holds."""
    idx = mask.nonzero().squeeze(1)
    if idx.numel() > n:
        idx = idx[torch.randperm(idx.numel(), generator=gen)[:n].to(idx.device)]
    return embeddings[idx]


def pixel_contrastive(
    embeddings: torch.Tensor,
    labels: torch.Tensor,
    temperature: float = 0.1,
    samples_per_set: int = 512,
    gen: torch.Generator | None = None,
) -> torch.Tensor:
    """Supervised InfoNCE over patch embeddings: inliers against pseudo-outliers.

    Anchors are the mixed-image samples; for each anchor, every other sample with its label
    is a positive, contrasted against the samples of the other label only. Zero when either
    label is missing (nothing to contrast).

    Args:
        embeddings: ``(B, D, h, w)`` L2-normalized projections of the mixed images' latents.
        labels: ``(B, h, w)`` 0 inlier, 1 pseudo-outlier, 255 void.
        temperature: softmax temperature.
        samples_per_set: at most this many patches per set, so the cost is bounded.
        gen: random generator for sampling.
    """
    # Channels-last before flattening, so each row is one patch's embedding.
    flat = embeddings.permute(0, 2, 3, 1).reshape(-1, embeddings.shape[1])
    lab = labels.reshape(-1)
    inl = _sample(flat, lab == 0, samples_per_set, gen)
    out = _sample(flat, lab == 1, samples_per_set, gen)
    if len(inl) == 0 or len(out) == 0:
        return embeddings.sum() * 0
    anchors = torch.cat([inl, out])
    anchor_label = torch.cat([inl.new_zeros(len(inl)), inl.new_ones(len(out))])
    logits = anchors @ anchors.T / temperature
    logits = logits - logits.max(dim=1, keepdim=True).values.detach()
    same = anchor_label[:, None] == anchor_label[None, :]
    positive = same.clone()
    positive[torch.arange(len(anchors)), torch.arange(len(anchors))] = False
    exp = logits.exp()
    negatives = (exp * ~same).sum(dim=1, keepdim=True)
    # log( e^{pos} / (e^{pos} + sum_neg e^{neg}) ) for every anchor-positive pair
    log_ratio = logits - torch.log(exp + negatives)
    per_anchor = -(log_ratio * positive).sum(1) / positive.sum(1).clamp_min(1)
    return per_anchor.mean()


def normalize_embeddings(x: torch.Tensor) -> torch.Tensor:
    """L2-normalize ``(B, D, h, w)`` along D."""
    return F.normalize(x, dim=1)
