# Copyright 2026 The flowclas_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""Invertible layers applied convolutionally over a feature grid, log-det kept per pixel."""

from flowclas_ros.core.flowclas.flow.actnorm import ActNorm
from flowclas_ros.core.flowclas.flow.coupling import AffineCoupling
from flowclas_ros.core.flowclas.flow.permutation import ChannelPermutation
from flowclas_ros.core.flowclas.flow.sequence import Flow, GaussianBase

__all__ = ['ActNorm', 'AffineCoupling', 'ChannelPermutation', 'Flow', 'GaussianBase']
