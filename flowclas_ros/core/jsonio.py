# Copyright 2026 The flowclas_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""Strict JSON files, written atomically.

Python writes NaN and Infinity by default, which other JSON readers reject; they become
``null``. Files are written under a temporary name and renamed into place, so a reader (or a
crash) never sees half a file.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np


def strict(obj: Any) -> Any:
    """``obj`` with NumPy scalars made plain and non-finite floats made ``None``."""
    if isinstance(obj, dict):
        return {k: strict(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [strict(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def write_atomic(path: str | Path, data: bytes) -> None:
    """Write ``data`` to a temporary file beside ``path``, then rename it over ``path``."""
    path = Path(path)
    tmp = path.with_name(f'.{path.name}.{os.getpid()}.tmp')
    try:
        with open(tmp, 'wb') as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def dumps(obj: Any, indent: int | None = None) -> str:
    """Strict JSON text (see ``strict``): what every tool prints or writes."""
    return json.dumps(strict(obj), indent=indent, allow_nan=False)


def write_json(path: str | Path, obj: Any) -> None:
    """Strict, indented JSON, written atomically."""
    write_atomic(path, (dumps(obj, indent=2) + '\n').encode())
