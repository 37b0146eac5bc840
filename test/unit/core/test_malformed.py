# Copyright 2026 The flowclas_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""The decoders against 2,000 random malformed frames: the right reason, bounded memory."""

from collections import Counter
import tracemalloc
from types import SimpleNamespace

import pytest

from flowclas_ros.core.data.imagemsg import compressed_to_rgb, image_to_rgb
from flowclas_ros.core.data.malformed import COMPRESSED_REASONS, RAW_REASONS, fuzz_stream
from flowclas_ros.core.errors import InputError


@pytest.mark.parametrize('compressed', [False, True], ids=['raw', 'compressed'])
def test_every_malformed_frame_is_rejected_for_its_reason(compressed: bool) -> None:
    decode = compressed_to_rgb if compressed else image_to_rgb
    wrong, reasons = [], Counter()
    tracemalloc.start()
    try:
        for fields, want in fuzz_stream(2000, seed=5, compressed=compressed):
            try:
                rgb = decode(SimpleNamespace(**fields))
                got = None
                assert rgb.shape[2] == 3
                assert rgb.size > 0
            except InputError as exc:
                got = exc.reason
            reasons[got] += 1
            if got != want:
                wrong.append((want, got, {k: v for k, v in fields.items() if k != 'data'}))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert not wrong, wrong[:5]
    assert set(reasons) == {None, *(COMPRESSED_REASONS if compressed else RAW_REASONS)}
    # Declared sizes reach 2^32 - 1 per side; nothing may be allocated from them.
    assert peak < 32 * 2**20, f'peak {peak / 2**20:.1f} MiB'
