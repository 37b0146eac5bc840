# Copyright 2026 The flowclas_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""flowclas-bench: per-stage latency, throughput, start-up time and peak memory per backend.

    flowclas-bench --model runs/mt --backend torch onnxruntime
    flowclas-bench --backbone dinov2_vits14 --input-size 448 448 --device cuda --precision fp16

Without ``--model`` a model of the given configuration with an untrained flow is used (and a
randomly initialised DINOv2 without ``--weights``): speed does not depend on the weights.
Stages: preprocess (upload, resize), engine (backbone + flow + score; for the torch backend
also split into backbone and flow), postprocess (upsample, calibrate, copy to the host); with
``--segments superpixels`` also superpixels (SLIC of the frame) and consistency (region
consistency of the full-size scores over them), which the node adds as its ``refine`` stage.
"""

from __future__ import annotations

import argparse
from pathlib import Path
import statistics
import tempfile
import time

from flowclas_ros.cli.common import (
    add_backbone_args,
    add_device_arg,
    add_grid_shifts_arg,
    backbone_from_args,
    run_tool,
)
from flowclas_ros.core.config import PRECISIONS, SEGMENTS
from flowclas_ros.core.engines import BACKENDS
from flowclas_ros.core.engines.pytorch import COMPILE_MODES
from flowclas_ros.core.jsonio import write_json


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog='flowclas-bench',
        description=__doc__.split('\n\n')[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument('--model', help='model directory (default: untrained, as configured below)')
    add_backbone_args(p)
    p.add_argument('--input-size', type=int, nargs=2, metavar=('H', 'W'))
    p.add_argument('--backend', nargs='+', choices=BACKENDS, default=['torch'])
    p.add_argument('--precision', default='fp32', choices=PRECISIONS)
    p.add_argument('--compile', default='none', choices=COMPILE_MODES)
    add_device_arg(p)
    p.add_argument('--frame-size', type=int, nargs=2, default=(480, 640), metavar=('H', 'W'))
    p.add_argument(
        '--image',
        help='time this picture, scaled to --frame-size, instead of noise (a cascade fine level '
        'searches only where the coarse map fires, so its cost follows the scene)',
    )
    p.add_argument(
        '--segments', choices=SEGMENTS, default='none', help='also time region consistency'
    )
    add_grid_shifts_arg(p)
    p.add_argument('--iterations', type=int, default=50)
    p.add_argument('--warmup', type=int, default=5)
    p.add_argument('--json', help='write the results here too')
    return p


def _default_model(args: argparse.Namespace, directory: Path) -> Path:
    from flowclas_ros.core.config import ModelConfig
    from flowclas_ros.core.flowclas.model import build_model, save_model

    config = ModelConfig(backbone=backbone_from_args(args, need_weights=False))
    if args.input_size:
        config.input_size = list(args.input_size)
    save_model(build_model(config), directory)
    return directory


def _peak_memory_mb(device: str) -> float:
    import torch

    if device.startswith('cuda'):
        return torch.cuda.max_memory_allocated() / 2**20
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def bench_backend(args: argparse.Namespace, model_dir: Path, backend: str, device: str) -> dict:
    import numpy as np
    from PIL import Image
    import torch

    from flowclas_ros.core.data.images import read_rgb
    from flowclas_ros.core.flowclas.refine import segmenter, with_segments
    from flowclas_ros.core.flowclas.scoring import upsample
    from flowclas_ros.core.inference import Detector

    cuda = device.startswith('cuda')

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize()

    if cuda:
        torch.cuda.reset_peak_memory_stats()
    if args.image:
        h, w = args.frame_size
        frame = np.asarray(Image.fromarray(read_rgb(args.image)).resize((w, h), Image.BILINEAR))
    else:
        frame = np.random.default_rng(0).integers(0, 256, (*args.frame_size, 3), dtype=np.uint8)
    start = time.perf_counter()
    detector = Detector.load(
        model_dir,
        device=device,
        backend=backend,
        precision=args.precision,
        cache_dir=Path(model_dir) / 'engines',
        compile_mode=args.compile,
        grid_shifts=args.grid_shifts,
    )
    for _ in range(max(1, args.warmup)):
        detector(frame)
    sync()
    startup = time.perf_counter() - start

    model, engine = detector.model, detector.engine
    stages: dict[str, list[float]] = {'preprocess': [], 'engine': [], 'postprocess': []}
    # One grid's backbone and flow, timed apart (four shifted grids run as one batch).
    split = backend == 'torch' and args.compile == 'none' and model.config.grid_shifts == 1
    if split:
        stages |= {'backbone': [], 'flow': []}
    fine = model.fine if split and model.config.refine == 'cascade' else None
    shared = fine is not None and model.fine_stride is not None
    if fine is not None:
        stages['refine'] = []
    segments = segmenter(args.segments, device)
    if segments is not None:
        stages |= {'superpixels': [], 'consistency': []}
    totals = []
    for _ in range(args.iterations):
        t0 = time.perf_counter()
        batch = detector.preprocess(frame)
        sync()
        t1 = time.perf_counter()
        scores, _ = engine(batch)
        sync()
        t2 = time.perf_counter()
        detector.postprocess(scores, frame)
        t3 = time.perf_counter()
        stages['preprocess'].append(t1 - t0)
        stages['engine'].append(t2 - t1)
        stages['postprocess'].append(t3 - t2)
        totals.append(t3 - t0)
        if segments is not None:
            full = upsample(scores, detector.output_size(*frame.shape[:2]))[0]
            sync()
            t7 = time.perf_counter()
            labels = segments(frame)
            sync()
            t8 = time.perf_counter()
            with_segments(full, labels)
            sync()
            stages['superpixels'].append(t8 - t7)
            stages['consistency'].append(time.perf_counter() - t8)
        if split:  # the same work again, timed in two parts
            with torch.no_grad(), engine.autocast():
                t4 = time.perf_counter()
                # A fine level sharing the coarse trunk comes with this pass; its own encoder
                # otherwise runs below and counts as refinement.
                if shared:
                    feats, fine_feats = model.encode(batch)
                else:
                    feats, fine_feats = model.features(batch), None
                sync()
                t5 = time.perf_counter()
                coarse, _ = model.patch_maps(feats)
                sync()
                t6 = time.perf_counter()
                if fine is not None:
                    if fine_feats is None:
                        fine_feats = fine.features(batch)
                    model.refined(coarse, fine_feats)
                    sync()
            stages['backbone'].append(t5 - t4)
            stages['flow'].append(t6 - t5)
            if fine is not None:
                stages['refine'].append(time.perf_counter() - t6)
    median_total = statistics.median(totals) * 1000
    return {
        'backend': backend,
        'precision': args.precision,
        'compile': args.compile if backend == 'torch' else 'n/a',
        'device': device,
        'network_size': list(detector.network_size(*args.frame_size)),
        'frame_size': list(args.frame_size),
        'startup_s': round(startup, 3),
        'median_ms': {k: round(statistics.median(v) * 1000, 3) for k, v in stages.items()},
        'total_median_ms': round(median_total, 3),
        'total_p95_ms': round(float(np.percentile(totals, 95)) * 1000, 3),
        'throughput_fps': round(1000 / median_total, 2),
        'peak_memory_mb': round(_peak_memory_mb(device), 1),
    }


def format_table(results: list[dict]) -> str:
    cols = ('preprocess', 'backbone', 'flow', 'engine', 'postprocess')
    cols += tuple(
        c
        for c in ('refine', 'superpixels', 'consistency')
        if any(c in r['median_ms'] for r in results)
    )
    head = f'{"backend":<12} {"prec":<5} {"start s":>8} ' + ' '.join(f'{c:>11}' for c in cols)
    head += f' {"total ms":>9} {"p95 ms":>8} {"fps":>8} {"peak MB":>8}'
    lines = [head]
    for r in results:
        stage = ' '.join(
            f'{r["median_ms"][c]:>11.2f}' if c in r['median_ms'] else f'{"-":>11}' for c in cols
        )
        lines.append(
            f'{r["backend"]:<12} {r["precision"]:<5} {r["startup_s"]:>8.2f} {stage} '
            f'{r["total_median_ms"]:>9.2f} {r["total_p95_ms"]:>8.2f} {r["throughput_fps"]:>8.1f} '
            f'{r["peak_memory_mb"]:>8.0f}'
        )
    base = results[0]
    for r in results[1:]:
        ratio = r['total_median_ms'] / base['total_median_ms']
        lines.append(f'{r["backend"]} / {base["backend"]} median total time: {ratio:.3f}')
    return '\n'.join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)

    def body() -> int:
        from flowclas_ros.core.device import resolve_device

        device = resolve_device(args.device)
        with tempfile.TemporaryDirectory() as tmp:
            model_dir = Path(args.model) if args.model else _default_model(args, Path(tmp))
            results = [bench_backend(args, model_dir, b, device) for b in args.backend]
        first = results[0]
        print(
            f'{first["device"]}, frame {first["frame_size"][0]}x{first["frame_size"][1]} -> '
            f'network {first["network_size"][0]}x{first["network_size"][1]}, batch 1, '
            f'{args.iterations} iterations, medians'
        )
        print(format_table(results))
        if args.json:
            write_json(args.json, results)
        return 0

    return run_tool('flowclas-bench', body)


if __name__ == '__main__':
    raise SystemExit(main())
