# Copyright 2026 The flowclas_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""flowclas-export: a model directory -> ONNX (backbone + flow + score), checked against torch.

    flowclas-export --model runs/mt --out mt_320.onnx [--precision fp16] [--input-size H W]

The graph takes ``images`` (1, 3, H, W) float32 RGB in [0, 1] and returns ``scores`` (1, h, w),
the raw patch scores before upsampling and calibration (``config.json`` holds the calibration).
With onnxruntime installed, the fp32 graph is run once and compared with PyTorch.
"""

from __future__ import annotations

import argparse

from flowclas_ros.cli.common import TOOL_DEVICE, run_tool
from flowclas_ros.core.config import EXPORT_PRECISIONS


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog='flowclas-export', description=__doc__.split('\n\n')[0])
    p.add_argument('--model', required=True, help='model directory from flowclas-train')
    p.add_argument('--out', required=True, help='ONNX file to write')
    p.add_argument('--precision', choices=EXPORT_PRECISIONS, default='fp32')
    p.add_argument('--input-size', type=int, nargs=2, metavar=('H', 'W'))
    p.add_argument('--weights', help='backbone checkpoint overriding the stored path')
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)

    def body() -> int:
        import importlib.util

        import torch

        from flowclas_ros.core.export import INPUT_NAME, OUTPUT_NAMES, export_onnx
        from flowclas_ros.core.flowclas.model import load_model

        model = load_model(args.model, args.weights, TOOL_DEVICE)
        size = tuple(args.input_size or model.config.input_size)
        path = export_onnx(model, args.out, size, args.precision)
        print(f'wrote {path} ({args.precision}, input 1x3x{size[0]}x{size[1]})')
        if args.precision == 'fp32' and importlib.util.find_spec('onnxruntime'):
            import onnxruntime

            x = torch.rand(1, 3, *size, generator=torch.Generator().manual_seed(0))
            session = onnxruntime.InferenceSession(str(path), providers=['CPUExecutionProvider'])
            got = session.run(list(OUTPUT_NAMES), {INPUT_NAME: x.numpy()})
            with torch.no_grad():
                want = model.maps(x)
            for name, g, w in zip(OUTPUT_NAMES, got, want, strict=True):
                diff, largest = abs(g - w.numpy()).max(), float(w.abs().max())
                print(
                    f'onnxruntime vs torch, {name}: max abs difference {diff:.2e} '
                    f'(largest value {largest:.3g})'
                )
        return 0

    return run_tool('flowclas-export', body)


if __name__ == '__main__':
    raise SystemExit(main())
