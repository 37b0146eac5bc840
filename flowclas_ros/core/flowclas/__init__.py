# Copyright 2026 The flowclas_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""The FlowCLAS method: the model, the normalizing flow, the losses, scoring and training."""
