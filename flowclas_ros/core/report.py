# Copyright 2026 The flowclas_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""One self-contained HTML page of an evaluation: metrics, curves, histograms, example frames.

Everything (plots, pictures) is inlined as PNG data, so the page can be mailed, attached to an
issue or archived next to a bag and still open anywhere without a server or network.
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path

import numpy as np
from PIL import Image
import torch

from flowclas_ros.core.errors import DataError
from flowclas_ros.core.evaluate import Evaluation, panel
from flowclas_ros.core.flowclas.scoring import calibrate
from flowclas_ros.core.masks import MaskRule, rule_name

PANEL_HEIGHT = 160  # px per example row: four pictures side by side stay readable


def _data_uri(png: bytes) -> str:
    return 'data:image/png;base64,' + base64.b64encode(png).decode('ascii')


def _png(image: Image.Image) -> str:
    buf = io.BytesIO()
    image.save(buf, 'PNG', optimize=True)
    return _data_uri(buf.getvalue())


def _plots(metrics: dict) -> list[tuple[str, str]]:
    try:
        import matplotlib

        matplotlib.use('Agg')
        from matplotlib import pyplot as plt
    except ImportError as exc:
        raise DataError("the report needs matplotlib: pip install 'flowclas_ros[bags]'") from exc

    def finish(fig: object) -> str:
        buf = io.BytesIO()
        fig.savefig(buf, format='png', dpi=100, bbox_inches='tight')
        plt.close(fig)
        return _data_uri(buf.getvalue())

    def curve(x: str, y: str, xlabel: str, ylabel: str, colour: str, title: str) -> str:
        fig, ax = plt.subplots(figsize=(4.2, 3.6))
        ax.plot(curves[x], curves[y], color=colour)
        if x == 'fpr':  # chance level
            ax.plot([0, 1], [0, 1], color='grey', linestyle=':')
        ax.set(xlabel=xlabel, ylabel=ylabel, xlim=(0, 1), ylim=(0, 1.02), title=title)
        ax.grid(alpha=0.3)
        return finish(fig)

    curves, hist = metrics['curves'], metrics['histogram']
    pr = curve(
        'recall', 'precision', 'recall', 'precision', 'tab:red', f'PR, AP {metrics["ap"]:.3f}'
    )
    roc_title = f'ROC, AUROC {metrics["auroc"]:.3f}, FPR95 {metrics["fpr95"]:.3f}'
    roc = curve('fpr', 'tpr', 'false-positive rate', 'true-positive rate', 'tab:blue', roc_title)
    out = [('Precision-recall', pr), ('ROC', roc)]
    fig, ax = plt.subplots(figsize=(5.4, 3.6))
    edges = np.asarray(hist['edges'])
    for key, colour in (('normal', 'tab:green'), ('anomaly', 'tab:red')):
        counts = np.asarray(hist[key], dtype=np.float64)
        density = counts / max(counts.sum(), 1) / np.diff(edges)
        ax.stairs(density, edges, label=f'{key} pixels', color=colour, fill=True, alpha=0.45)
    ax.set_yscale('log')
    ax.set(xlabel='raw anomaly score', ylabel='density')
    ax.set_title('Score distributions')
    ax.legend()
    out.append(('Score histogram', finish(fig)))
    return out


def _examples(metrics: dict, k: int) -> list[tuple[str, list[dict]]]:
    """Which frames to show: best and worst by per-image AP, worst false alarms."""
    images = metrics['per_image']
    defective = sorted((i for i in images if i['ap'] is not None), key=lambda i: -i['ap'])
    clean = [i for i in images if i['ap'] is None]
    clean.sort(key=lambda i: (-i['false_alarm_fraction'], -i['max_score']))
    best = defective[:k]
    groups = [
        ('Best anomalous frames (highest per-image AP)', best),
        ('Worst anomalous frames (lowest per-image AP)', defective[len(best) :][-k:][::-1]),
        ('Defect-free frames with the most false alarms', clean[:k]),
    ]
    return [(title, rows) for title, rows in groups if rows]


def _panels(evaluation: Evaluation, names: set[str]) -> dict[str, str]:
    found = {}
    for frame, raw, norms in evaluation.scored():
        if frame.name in names and frame.name not in found:
            cal = calibrate(torch.from_numpy(raw), evaluation.calibration).numpy()
            picture = Image.fromarray(panel(frame, cal, evaluation.masks(cal, norms)))
            width = round(picture.width * PANEL_HEIGHT / picture.height)
            found[frame.name] = _png(picture.resize((width, PANEL_HEIGHT), Image.BILINEAR))
    return found


def _table(headers: list[str], rows: list[list[str]]) -> str:
    head = ''.join(f'<th>{html.escape(h)}</th>' for h in headers)
    body = ''.join(
        '<tr>' + ''.join(f'<td>{html.escape(c)}</td>' for c in row) + '</tr>' for row in rows
    )
    return f'<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _rule_text(name: str, rule: dict) -> str:
    """A measured rule (``rule_name``) with its settings."""
    nfa = f'log10 NFA < {rule["log10_epsilon"]:g}'
    fixed = f'calibrated score >= {rule["threshold"]:g}'
    return {
        'fixed': f'fixed: {fixed}',
        'fpr': f'fpr: target false-positive rate {rule["target_fpr"]:g}',
        'nfa': f'nfa: {nfa}, chi2 null',
        'nfa_fitted': f'nfa: {nfa}, fitted null',
        'fixed_nfa': f'fixed_nfa: {fixed} where {nfa}, chi2 null',
        'fixed_nfa_fitted': f'fixed_nfa: {fixed} where {nfa}, fitted null',
    }[name]


def _mask_table(masks: dict) -> str:
    def pct(value: float | None) -> str:
        return 'n/a' if value is None else f'{100 * value:.1f} %'

    rows = []
    for name, q in masks.items():
        if name == 'rule':
            continue
        miou = 'n/a' if q['miou'] is None else f'{q["miou"]:.4f}'
        if name == 'oracle':
            rows.append([f'oracle: calibrated {q["threshold"]:.3f}', miou, '', ''])
            continue
        text = _rule_text(name, masks['rule'])
        rows.append([text, miou, pct(q['false_alarm_images']), pct(q['false_alarm_pixels'])])
    return _table(['rule', 'mean IoU', 'false-alarm frames', 'false-alarm pixels'], rows)


def write_report(
    path: str | Path, evaluation: Evaluation, title: str = 'flowclas_ros evaluation', k: int = 4
) -> Path:
    """Write the page to ``path`` and return it."""
    m = evaluation.metrics
    pooled = _table(
        ['images', 'AP', 'AUROC', 'FPR95', 'AUPRO', 'mean per-class AUROC'],
        [
            [
                str(m['n_images']),
                *(f'{m[key]:.4f}' for key in ('ap', 'auroc', 'fpr95', 'aupro')),
                f'{m["mean_per_class_auroc"]:.4f}',
            ]
        ],
    )
    per_class = _table(
        ['class', 'images', 'AP', 'AUROC'],
        [
            [cls, str(v['n_images']), f'{v["ap"]:.4f}', f'{v["auroc"]:.4f}']
            for cls, v in m['per_class'].items()
        ],
    )
    masks = _mask_table(m['masks'])
    chosen = m['masks']['rule']
    rule = _rule_text(rule_name(MaskRule(**chosen)), chosen)
    plots = ''.join(
        f'<figure><img src="{src}" alt="{html.escape(name)}"><figcaption>{html.escape(name)}'
        '</figcaption></figure>'
        for name, src in _plots(m)
    )
    groups = _examples(m, k)
    pictures = _panels(evaluation, {row['name'] for _, rows in groups for row in rows})
    sections = []
    for heading, rows in groups:
        items = []
        for row in rows:
            ap = 'no anomaly' if row['ap'] is None else f'AP {row["ap"]:.3f}'
            caption = (
                f'{row["name"]} ({row["class"]}): {ap}, max score {row["max_score"]:.2f}, '
                f'false alarms {100 * row["false_alarm_fraction"]:.1f} %'
            )
            items.append(
                f'<figure><img src="{pictures[row["name"]]}" alt="{html.escape(row["name"])}">'
                f'<figcaption>{html.escape(caption)}</figcaption></figure>'
            )
        sections.append(f'<h3>{html.escape(heading)}</h3><div class="grid">{"".join(items)}</div>')
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(title)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; color: #222; background: #fff; }}
table {{ border-collapse: collapse; margin: 0.5em 0 1.5em; }}
th, td {{ border: 1px solid #ccc; padding: 0.3em 0.8em; text-align: right; }}
th {{ background: #f0f0f0; }}
td:first-child {{ text-align: left; }}
figure {{ display: inline-block; margin: 0 1em 1em 0; vertical-align: top; }}
figcaption {{ font-size: 0.85em; color: #555; }}
.grid figure img {{ border: 1px solid #ddd; max-width: 100%; height: auto; }}
</style></head><body>
<h1>{html.escape(title)}</h1>
<p>Pixel metrics pool every labelled pixel of {m['n_images']} frames
({m['n_pos_pixels']} anomalous, {m['n_neg_pixels']} normal).
Per class: that class's frames plus the defect-free ones.</p>
<h2>Metrics</h2>{pooled}{per_class}
<h2>Masks</h2>
<p>Mean IoU over frames with anomalies; false alarms over defect-free frames (frames with any
marked pixel, and the mean fraction of pixels marked). The oracle threshold is the best single
threshold chosen on these frames: a bound, not a setting to deploy.</p>{masks}
<h2>Curves</h2>{plots}
<h2>Examples</h2>
<p>Each row: input | heatmap over the input | predicted mask ({html.escape(rule)}) |
ground truth (white anomaly, grey ignored).</p>
{''.join(sections)}
</body></html>
"""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding='utf-8')
    return path
