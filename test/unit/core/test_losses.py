# Copyright 2026 The flowclas_ros Authors
# SPDX-License-Identifier: Apache-2.0
import torch
import torch.nn.functional as F

from flowclas_ros.core.flowclas.losses import inlier_nll, pixel_contrastive
from flowclas_ros.core.flowclas.train.outliers import grid_labels


def _embeddings(labels: torch.Tensor, separation: float) -> torch.Tensor:
    """Unit vectors: inliers near +e0, outliers near +e0 rotated by ``separation``."""
    g = torch.Generator().manual_seed(0)
    B, H, W = labels.shape
    e = 0.05 * torch.randn(B, 8, H, W, generator=g)
    e[:, 0] += torch.where(labels == 1, torch.cos(torch.tensor(separation)), 1.0)
    e[:, 1] += torch.where(labels == 1, torch.sin(torch.tensor(separation)), 0.0)
    return F.normalize(e, dim=1)


def test_contrastive_prefers_separated_embeddings():
    labels = torch.zeros(2, 6, 6, dtype=torch.uint8)
    labels[:, :3] = 1
    separated = pixel_contrastive(_embeddings(labels, 3.0), labels)
    mixed = pixel_contrastive(_embeddings(labels, 0.0), labels)
    assert separated < mixed


def test_contrastive_reads_channels_last():
    # Outliers differ only in where they sit: a plain view() of (B, C, H, W) to rows would
    # mix channels of different patches and lose the separation.
    labels = torch.zeros(1, 4, 4, dtype=torch.uint8)
    labels[0, :, :2] = 1
    emb = _embeddings(labels, 3.0)
    good = pixel_contrastive(emb, labels)
    scrambled = emb.reshape(1, -1).reshape(1, 4, 4, 8).permute(0, 3, 1, 2).contiguous()
    assert good < pixel_contrastive(F.normalize(scrambled, dim=1), labels)


def test_contrastive_is_zero_without_outliers_and_ignores_void():
    labels = torch.zeros(1, 4, 4, dtype=torch.uint8)
    emb = _embeddings(labels, 1.0).requires_grad_()
    assert pixel_contrastive(emb, labels).item() == 0
    labels[0, 0] = 1
    labels[0, 1] = 255
    loss = pixel_contrastive(emb, labels)
    loss.backward()
    assert emb.grad[0, :, 1].abs().sum() == 0  # void patches get no gradient


def test_inlier_nll_uses_inliers_only():
    log_prob = torch.tensor([[[-1.0, -100.0]]])
    labels = torch.tensor([[[0, 1]]], dtype=torch.uint8)
    assert inlier_nll(log_prob, labels, channels=2).item() == 0.5


def test_grid_labels_marks_mixed_patches_void():
    pixels = torch.zeros(1, 4, 4, dtype=torch.uint8)
    pixels[0, :2, :2] = 1  # a full outlier patch
    pixels[0, 2, 2] = 1  # a quarter of another
    grid = grid_labels(pixels, (2, 2))
    assert grid.tolist() == [[[1, 0], [0, 255]]]


def test_grid_labels_margin_keeps_neighbours_of_pasted_objects_out():
    pixels = torch.zeros(1, 10, 10, dtype=torch.uint8)
    pixels[0, 4:6, 4:6] = 1  # one whole patch at the centre of a 5x5 grid
    grid = grid_labels(pixels, (5, 5), margin=1)[0]
    assert grid[2, 2] == 1
    ring = torch.zeros(5, 5, dtype=torch.bool)
    ring[1:4, 1:4] = True
    ring[2, 2] = False
    assert (grid[ring] == 255).all()
    assert (grid[~ring & (grid != 1)] == 0).all()
    assert int((grid == 0).sum()) == 16
    assert grid_labels(pixels, (5, 5)).eq(0).sum() == 24
