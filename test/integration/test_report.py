# Copyright 2026 The flowclas_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""The HTML report, rendered by headless Chromium as a person would open it."""

import base64
import io
import os
from pathlib import Path
import re
import shutil
import subprocess
import sys

from models import make_model
import numpy as np
from PIL import Image
import pytest

from flowclas_ros.core.data.synthetic import make_surface_dataset

CHROMIUM_FLAGS = [
    '--headless',
    '--no-sandbox',
    '--disable-gpu',
    '--disable-quic',
    '--no-first-run',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
    '--enable-logging=stderr',
    '--v=0',
]


def chromium() -> str:
    path = shutil.which('chromium') or shutil.which('chromium-browser')
    if path is None:
        if os.environ.get('FLOWCLAS_REQUIRE_BROWSER') == '1':
            pytest.fail('chromium is not installed (scripts/install_browser.sh installs it)')
        pytest.skip('chromium is not installed; CI installs it with scripts/install_browser.sh')
    return path


def render(page: Path, shot: Path, profile: Path) -> list[str]:
    """Screenshot ``page``; returns the console messages Chromium logged."""
    r = subprocess.run(
        [
            chromium(),
            *CHROMIUM_FLAGS,
            f'--user-data-dir={profile}',
            '--window-size=1280,2400',
            f'--screenshot={shot}',
            page.resolve().as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert shot.is_file(), r.stderr
    return re.findall(r':CONSOLE[^\]]*\] (.*)', r.stderr)


def test_console_messages_are_detected(tmp_path):
    # The check below can fail: a page with a script error shows up in the log.
    page = tmp_path / 'broken.html'
    page.write_text('<html><body><p>x</p><script>notAFunction();</script></body></html>')
    messages = render(page, tmp_path / 'broken.png', tmp_path / 'profile')
    assert any('notAFunction' in m for m in messages), messages


@pytest.mark.slow
def test_report_renders_without_console_errors(tmp_path):
    data = make_surface_dataset(tmp_path / 'data', n_train=4, n_test_per_class=3, size=(64, 64))
    model = make_model(tmp_path / 'model', 64)
    report = tmp_path / 'report.html'
    r = subprocess.run(
        [sys.executable, '-m', 'flowclas_ros.cli.eval', '--model', str(model)]
        + ['--data', str(data / 'test'), '--report', str(report)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    text = report.read_text()
    # Self-contained: nothing is fetched, every picture is inline PNG that decodes.
    assert not re.search(r'(src|href)="(?!data:)', text)
    pictures = re.findall(r'src="data:image/png;base64,([^"]+)"', text)
    # Three plots; 6 anomalous frames: the best 4 and the 2 others as the worst; 3 clean ones.
    assert len(pictures) == 3 + 4 + 2 + 3
    for data_b64 in pictures:
        Image.open(io.BytesIO(base64.b64decode(data_b64))).verify()
    for words in ('AUROC', 'FPR95', 'scratch', 'stain', 'Worst anomalous frames'):
        assert words in text

    shot = tmp_path / 'report.png'
    assert render(report, shot, tmp_path / 'profile') == []
    pixels = np.asarray(Image.open(shot).convert('L'), dtype=np.float32)
    assert pixels.std() > 20
    assert (pixels < 200).mean() > 0.05  # text, plots and pictures, not an empty page
