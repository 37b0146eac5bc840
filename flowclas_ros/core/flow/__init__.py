# Copyright 2026 The flowclas_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""Invertible layers applied convolutionally over a feature grid, log-det kept per pixel."""

from flowclas_ros.core.flow.actnorm import ActNorm
from flowclas_ros.core.flow.coupling import AffineCoupling
from flowclas_ros.core.flow.permutation import ChannelPermutation
from flowclas_ros.core.flow.sequence import Flow, GaussianBase

__all__ = ['ActNorm', 'AffineCoupling', 'ChannelPermutation', 'Flow', 'GaussianBase']
