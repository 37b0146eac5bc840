# Copyright 2026 The flowclas_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""The README's Python example, run as written on a small synthetic data set."""

from pathlib import Path
import re
import subprocess
import sys

from PIL import Image

from flowclas_ros.core.data.synthetic import make_surface_dataset

README = Path(__file__).resolve().parents[2] / 'README.md'


def test_readme_python_example_runs(tmp_path):
    block = re.search(r'<!-- python-example -->\n```python\n(.*?)```', README.read_text(), re.S)
    assert block, 'README has no python-example block'
    data = make_surface_dataset(tmp_path, n_train=8, n_test_per_class=2, size=(64, 64))
    (tmp_path / 'my_robot').mkdir()
    (tmp_path / 'my_robot' / 'normal').symlink_to(data / 'train' / 'images')
    (tmp_path / 'my_robot' / 'test').symlink_to(data / 'test')
    Image.open(data / 'test' / 'images' / 'scratch_000.png').save(tmp_path / 'frame.png')
    # The example's code as written, with a one-epoch training at 64x64 to keep it short.
    small = 'ModelConfig(input_size=[64, 64], train=TrainConfig(epochs=1))'
    code = block.group(1).replace('ModelConfig()', small)
    code = code.replace("'models/site_a')", "'models/site_a', progress=False)", 1)
    prelude = (
        'import sys\nimport flowclas_ros\n'
        "assert 'torch' not in sys.modules, 'import flowclas_ros loaded torch'\n"
        'from flowclas_ros.core.config import TrainConfig\n'
    )
    r = subprocess.run(
        [sys.executable, '-c', prelude + code],
        cwd=tmp_path, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    ap = float(r.stdout.strip().splitlines()[-1])
    assert 0.0 <= ap <= 1.0
