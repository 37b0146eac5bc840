# Copyright 2026 The flowclas_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""Command-line tools: thin wrappers that parse arguments and call the core."""
