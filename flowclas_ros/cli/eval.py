# Copyright 2026 The flowclas_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""flowclas-eval: pixel metrics of a trained model on a split (images/, masks/)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from flowclas_ros.cli.common import run_tool


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog='flowclas-eval', description=__doc__)
    p.add_argument('--model', required=True, help='model directory from flowclas-train')
    p.add_argument('--data', required=True, help='split folder with images/ and masks/')
    p.add_argument('--json', help='write the metrics here')
    p.add_argument('--save-maps', help='write input|heatmap|mask|truth panels here')
    p.add_argument('--weights', help='override the backbone checkpoint path in the model')
    p.add_argument('--device', default='cpu', help='cpu, cuda, cuda:N or auto')
    return p


def format_table(metrics: dict) -> str:
    """Human-readable summary: pooled metrics, then one row per class."""
    lines = [
        f'images {metrics["n_images"]}  AP {metrics["ap"]:.4f}  AUROC {metrics["auroc"]:.4f}  '
        f'FPR95 {metrics["fpr95"]:.4f}  AUPRO {metrics["aupro"]:.4f}  '
        f'mean per-class AUROC {metrics["mean_per_class_auroc"]:.4f}'
    ]
    for cls, m in metrics['per_class'].items():
        lines.append(f'  {cls:<12} n={m["n_images"]:<4} AP {m["ap"]:.4f}  AUROC {m["auroc"]:.4f}')
    return '\n'.join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)

    def body() -> int:
        from flowclas_ros.core.device import resolve_device
        from flowclas_ros.core.evaluate import evaluate
        from flowclas_ros.core.model import load_model

        device = resolve_device(args.device)
        model = load_model(args.model, args.weights, device)
        metrics = evaluate(model, args.data, args.save_maps)
        metrics['model'] = str(args.model)
        metrics['data'] = str(args.data)
        print(format_table(metrics))
        if args.json:
            Path(args.json).parent.mkdir(parents=True, exist_ok=True)
            Path(args.json).write_text(json.dumps(metrics, indent=2) + '\n')
        return 0

    return run_tool('flowclas-eval', body)


if __name__ == '__main__':
    raise SystemExit(main())
