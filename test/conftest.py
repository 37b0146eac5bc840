# Copyright 2026 The flowclas_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""Make the shared test helpers in test/helpers importable from every test module."""

from pathlib import Path
import sys

sys.path.insert(0, str(Path(__file__).resolve().parent / 'helpers'))
