# Copyright 2026 The flowclas_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""flowclas-eval: pixel metrics of a trained model on a split folder or a bag.

On a bag every frame of ``--topic`` is scored as the node would score it, and the node's
outputs (score, heatmap, mask, stamped like the input) are written to an output bag. With
``--scores-topic`` the bag holds scores a live node published (recorded with flowclas-replay
or ``ros2 bag record``) and only the metrics are computed.
"""

from __future__ import annotations

import argparse
from pathlib import Path
import textwrap
from typing import TYPE_CHECKING

import numpy as np

from flowclas_ros.cli.common import add_model_args, load_model_arg, run_tool
from flowclas_ros.core.config import PRECISIONS, SEGMENTS
from flowclas_ros.core.engines import BACKENDS, build_engine
from flowclas_ros.core.jsonio import write_atomic, write_json
from flowclas_ros.core.mask_choice import CONFIDENCE, MARKED_BUDGET, Budget
from flowclas_ros.core.masks import MASK_MODES, MODEL_PEAK_FRACTION, NFA_NULLS, MaskRule
from flowclas_ros.core.visualize import heatmap

if TYPE_CHECKING:
    from flowclas_ros.core.data.bags import BagWriter
    from flowclas_ros.core.data.frames import Frame
    from flowclas_ros.core.engines import Engine
    from flowclas_ros.core.flowclas.model import FlowClasModel


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog='flowclas-eval', description=__doc__)
    add_model_args(p, 'model directory from flowclas-train')
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument('--data', help='split folder with images/ and masks/')
    source.add_argument('--bag', help='rosbag2 (sqlite3 or MCAP) or ROS 1 bag')
    p.add_argument('--topic', help='image topic in --bag (sensor_msgs/Image or CompressedImage)')
    p.add_argument(
        '--scores-topic', help='32FC1 score topic in --bag recorded from a node (no inference)'
    )
    p.add_argument(
        '--masks', help='ground truth for --bag: <stem>.png, matched by stamp (stem = ns) or order'
    )
    p.add_argument('--mask-topic', help='ground truth for --bag: mono8 labels matched by stamp')
    p.add_argument('--out-bag', help='output bag for --bag (default: <bag>_anomaly beside it)')
    p.add_argument('--storage', choices=('sqlite3', 'mcap'), default='sqlite3')
    p.add_argument('--prefix', default='/anomaly', help='output topics: PREFIX/score, ...')
    p.add_argument(
        '--mask-mode',
        choices=MASK_MODES,
        default=MaskRule.mode,
        help='mask rule for the output bag and panels (all rules are measured)',
    )
    p.add_argument(
        '--threshold',
        type=float,
        default=MaskRule.threshold,
        help='fixed, fixed_nfa: calibrated threshold',
    )
    p.add_argument(
        '--target-fpr', type=float, default=MaskRule.target_fpr, help='fpr: false-positive rate'
    )
    p.add_argument(
        '--nfa-log10-epsilon',
        type=float,
        default=MaskRule.log10_epsilon,
        help='nfa: log10 NFA bound',
    )
    p.add_argument(
        '--nfa-null',
        choices=NFA_NULLS,
        default=MaskRule.nfa_null,
        help='nfa: chi2 (C dof) or fitted',
    )
    p.add_argument(
        '--mask-peak-fraction',
        type=float,
        default=MODEL_PEAK_FRACTION,
        help="trim each mask region to this fraction of its height (0: whole; -1: the model's)",
    )
    p.add_argument(
        '--mask-min-area', type=int, default=MaskRule.min_area, help='drop smaller mask regions'
    )
    p.add_argument(
        '--backend',
        choices=BACKENDS,
        default='torch',
        help='engine to score with, as the node would run it (quality of the deployed path)',
    )
    p.add_argument('--precision', choices=PRECISIONS, default='fp32')
    p.add_argument(
        '--segments',
        choices=SEGMENTS,
        default='none',
        help='region consistency before calibration: superpixels of each frame (SLIC)',
    )
    p.add_argument(
        '--choose-mask',
        metavar='PARAMS_YAML',
        help='measure every mask rule over a grid of its settings, keep the best within '
        '--mask-budget and write it here as node parameters (a new file)',
    )
    p.add_argument(
        '--mask-budget',
        type=float,
        default=MARKED_BUDGET,
        help='--choose-mask: the share of defect-free frames the rule may mark',
    )
    p.add_argument(
        '--mask-confidence',
        type=float,
        default=CONFIDENCE,
        help='--choose-mask: how sure the budget must hold on frames like the defect-free ones '
        '(0: their share measured)',
    )
    p.add_argument('--json', help='write the metrics here')
    p.add_argument('--report', help='write a self-contained HTML report here')
    p.add_argument('--save-maps', help='write input|heatmap|mask|truth panels here')
    return p


def format_table(metrics: dict) -> str:
    """Human-readable summary: pooled metrics, one row per class, then mask quality."""
    lines = [
        f'images {metrics["n_images"]}  AP {metrics["ap"]:.4f}  AUROC {metrics["auroc"]:.4f}  '
        f'FPR95 {metrics["fpr95"]:.4f}  AUPRO {metrics["aupro"]:.4f}  '
        f'mean per-class AUROC {metrics["mean_per_class_auroc"]:.4f}'
    ]
    for cls, m in metrics['per_class'].items():
        lines.append(f'  {cls:<12} n={m["n_images"]:<4} AP {m["ap"]:.4f}  AUROC {m["auroc"]:.4f}')
    for mode, q in metrics['masks'].items():
        if mode == 'rule':
            continue
        text = f'  mask {mode:<16} mIoU {_num(q["miou"])}'
        if mode == 'oracle':
            text += f'  (best single threshold, calibrated {q["threshold"]:.3f})'
        else:
            text += (
                f'  false alarms: {_num(q["false_alarm_images"])} of defect-free frames, '
                f'{_num(q["false_alarm_pixels"])} of their pixels'
            )
        lines.append(text)
    return '\n'.join(lines)


def _num(value: float | None) -> str:
    return 'n/a' if value is None else f'{value:.4f}'


def _check(args: argparse.Namespace) -> None:
    from flowclas_ros.core.errors import DataError

    bag_only = ('topic', 'scores_topic', 'masks', 'mask_topic', 'out_bag')
    if args.data and any(getattr(args, a) for a in bag_only):
        raise DataError('--topic, --scores-topic, --masks, --mask-topic and --out-bag need --bag')
    if args.bag and bool(args.topic) == bool(args.scores_topic):
        raise DataError('--bag needs one of --topic (images) or --scores-topic (recorded scores)')
    if args.masks and args.mask_topic:
        raise DataError('give ground truth by --masks or by --mask-topic, not both')
    if args.scores_topic and args.segments != 'none':
        raise DataError("--segments refines the model's scores; --scores-topic has no model")
    if args.choose_mask and args.bag and not (args.masks or args.mask_topic):
        raise DataError('--choose-mask measures masks: it needs --masks or --mask-topic')
    if args.choose_mask and Path(args.choose_mask).exists():
        raise DataError(f'{args.choose_mask} exists; --choose-mask writes a new file')
    _budget(args)  # a bad budget fails before the evaluation
    if args.scores_topic and not (args.masks or args.mask_topic):
        raise DataError(
            '--scores-topic evaluates recorded scores: it needs --masks or --mask-topic'
        )


def _budget(args: argparse.Namespace) -> Budget | None:
    return Budget(args.mask_budget, args.mask_confidence) if args.choose_mask else None


def _write_choice(path: str, choice: dict, data: str) -> None:
    """The chosen rule as a node parameters file, its measurement in the header."""
    from flowclas_ros.ros.params import params_yaml

    rule = MaskRule(**choice['rule'])
    budget = choice['budget']
    header = (
        f'Mask rule chosen by flowclas-eval --choose-mask on {data}: mean IoU '
        f'{choice["miou"]:.4f} on its frames with anomalies; {choice["marked"]} of '
        f'{choice["free"]} defect-free frames marked, so at most {choice["marked_bound"]:.0%} '
        f'of such frames with {budget["confidence"]:.0%} confidence (budget '
        f'{budget["share"]:.0%}); the best of {len(choice["candidates"])} rules and settings. '
        'Measured on the frames it was chosen on: confirm on others. Copy these lines into '
        "the node's parameters file, or pass this file after it (--params-file)."
    )
    text = params_yaml(rule.settings(), '\n'.join(textwrap.wrap(header, 97)))
    if Path(path).exists():  # made while the frames were evaluated: a user's file is kept
        from flowclas_ros.core.errors import DataError

        raise DataError(f'{path} exists; --choose-mask writes a new file')
    Path(path).parent.mkdir(parents=True, exist_ok=True)  # the folder only; never the file
    write_atomic(path, text.encode())


def _run_bag(args: argparse.Namespace) -> tuple[object | None, dict]:
    """Score the bag, write the output bag; returns the evaluation (None without truth)."""
    from flowclas_ros.core.data.bags import BagFrames, BagWriter
    from flowclas_ros.core.evaluate import evaluate
    from flowclas_ros.core.flowclas.refine import segmenter
    from flowclas_ros.core.inference import Detector
    from flowclas_ros.core.masks import require

    frames = BagFrames(args.bag, args.topic, args.masks, args.mask_topic)
    model = load_model_arg(args)
    detector = Detector(model, engine=_engine(args, model))
    rule = MaskRule.from_settings(args)
    require(rule, model.config.calibration, True)  # before an output bag exists
    segments = segmenter(args.segments, model.device)
    out_bag = Path(args.out_bag or f'{str(args.bag).rstrip("/")}_anomaly')
    written = 0
    with BagWriter(out_bag, args.storage) as writer:

        def emit(frame, calibrated, norms) -> None:
            nonlocal written
            mask = detector.mask(calibrated, norms, rule)
            _write_outputs(writer, args.prefix, frame, calibrated, mask)
            written += 1

        if args.masks or args.mask_topic:
            evaluation = evaluate(
                model,
                frames,
                args.save_maps,
                lambda f, s, n: emit(f, detector.postprocess(s, f.rgb, segments), n),
                rule,
                detector.engine,
                segments,
                _budget(args),
            )
        else:
            evaluation = None
            for frame in frames():
                emit(frame, *detector.detect(frame.rgb, rule.reads_norms, segments))
    info = {'out_bag': str(out_bag), 'frames_written': written, 'rejected': frames.rejected}
    return evaluation, info


def _engine(args: argparse.Namespace, model: FlowClasModel) -> Engine:
    return build_engine(args.backend, model, args.precision, args.model)


def _write_outputs(
    writer: BagWriter,
    prefix: str,
    frame: Frame,
    calibrated: np.ndarray,
    mask: np.ndarray,
) -> None:
    """``prefix``/score, /heatmap and /mask (uint8 0/255) of one frame, as the node publishes.

    They carry the input's header and bag time.
    """
    prefix = prefix.rstrip('/')
    stamp = {'stamp_ns': frame.stamp_ns, 'frame_id': frame.frame_id, 'log_ns': frame.log_ns}
    writer.write_image(f'{prefix}/score', calibrated.astype(np.float32), '32FC1', **stamp)
    writer.write_image(f'{prefix}/heatmap', heatmap(calibrated), 'rgb8', **stamp)
    writer.write_image(f'{prefix}/mask', mask, 'mono8', **stamp)


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)

    def body() -> int:
        _check(args)
        if args.data:
            from flowclas_ros.core.data.frames import split_frames
            from flowclas_ros.core.evaluate import evaluate
            from flowclas_ros.core.flowclas.refine import segmenter

            frames = split_frames(args.data)
            model = load_model_arg(args)
            evaluation = evaluate(
                model,
                frames,
                args.save_maps,
                rule=MaskRule.from_settings(args),
                engine=_engine(args, model),
                segments=segmenter(args.segments, model.device),
                choose_mask=_budget(args),
            )
            info = {}
        elif args.scores_topic:
            from flowclas_ros.core.config import ModelConfig
            from flowclas_ros.core.data.bags import BagFrames
            from flowclas_ros.core.evaluate import evaluate_recorded
            from flowclas_ros.core.flowclas.model import CONFIG_FILE

            calibration = ModelConfig.load(Path(args.model) / CONFIG_FILE).calibration
            frames = BagFrames(args.bag, args.scores_topic, args.masks, args.mask_topic, True)
            evaluation = evaluate_recorded(
                frames, calibration, args.save_maps, MaskRule.from_settings(args), _budget(args)
            )
            info = {'rejected': frames.rejected}
        else:
            evaluation, info = _run_bag(args)
            print(f'wrote {info["frames_written"]} frames to {info["out_bag"]}')
        if info.get('rejected'):
            print(f'skipped undecodable frames: {info["rejected"]}')
        if evaluation is None:
            return 0
        metrics = evaluation.metrics | info
        metrics['model'] = str(args.model)
        metrics['data'] = str(args.data or args.bag)
        metrics['segments'] = args.segments
        print(format_table(metrics))
        if args.choose_mask:
            choice = metrics['mask_choice']
            _write_choice(args.choose_mask, choice, metrics['data'])
            settings = ' '.join(
                f'{k}={v}' for k, v in MaskRule(**choice['rule']).settings().items()
            )
            print(
                f'chosen mask rule: {settings}  mIoU {choice["miou"]:.4f}  defect-free frames '
                f'marked {choice["marked"]} of {choice["free"]}  -> {args.choose_mask}'
            )
        if args.json:
            Path(args.json).parent.mkdir(parents=True, exist_ok=True)
            write_json(args.json, metrics)
        if args.report:
            from flowclas_ros.core.report import write_report

            write_report(args.report, evaluation, title=f'{args.model} on {metrics["data"]}')
            print(f'report: {args.report}')
        return 0

    return run_tool('flowclas-eval', body)


if __name__ == '__main__':
    raise SystemExit(main())
