# Copyright 2026 The flowclas_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""Parameter-free anomaly masks by the a contrario Number of False Alarms (after U-Flow).

Under the null hypothesis (a normal patch), the flow's standardized latent is N(0, I_C), so
``q = ||z~||^2`` follows chi-square with C degrees of freedom. A region R of the patch grid is
scored by ``PFA(R) = P(chi2_C >= t_R) ^ |R|`` with ``t_R`` its smallest ``q``, and is detected
when ``NFA(R) = N_tests * PFA(R) < epsilon``: fewer than epsilon such regions are expected
per image on normal data. Candidate regions are the nodes of the component tree of the upper
level sets of ``q`` (4-connected); along each branch only the most significant node survives,
and a parent replaces its children's selections when it is more significant than all of them.

Tails are computed exactly in log space (SciPy's ``chi2.logsf`` underflows to -inf past about
1e-308; a continued fraction takes over there), never with the Chernoff bound, which is wrong
for ``t <= C`` and detects regions in pure noise.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage, special, stats

from flowclas_ros.core.config import LatentNull

_LN10 = math.log(10.0)
# Fixed polyominoes of r cells: about 0.316915 * 4.062570^r / r (Jensen's asymptotic fit).
_POLY_C, _POLY_MU = 0.316915, 4.062570


def log10_chi2_tail(t: np.ndarray, dof: int) -> np.ndarray:
    """``log10 P(chi2_dof >= t)``, finite for any finite ``t`` (no underflow to -inf)."""
    t = np.asarray(t, dtype=np.float64)
    out = np.asarray(stats.chi2.logsf(t, dof), dtype=np.float64)
    deep = ~np.isfinite(out) | (out < -600.0)
    if deep.any():
        out[deep] = _log_upper_gamma_cf(dof / 2.0, t[deep] / 2.0)
    return out / _LN10


def _log_upper_gamma_cf(a: float, x: np.ndarray) -> np.ndarray:
    """Ln Q(a, x) by its continued fraction (modified Lentz), for x > a + 1 (deep tails)."""
    tiny = 1e-300
    b = x + 1.0 - a
    c = np.full_like(x, 1.0 / tiny)
    d = 1.0 / np.where(b == 0, tiny, b)
    h = d.copy()
    for i in range(1, 300):
        an = -i * (i - a)
        b = b + 2.0
        d = an * d + b
        d = 1.0 / np.where(np.abs(d) < tiny, tiny, d)
        c = b + an / c
        c = np.where(np.abs(c) < tiny, tiny, c)
        delta = d * c
        h = h * delta
        if np.all(np.abs(delta - 1.0) < 1e-15):
            break
    return -x + a * np.log(x) - special.gammaln(a) + np.log(h)


def log10_tests(n_pixels: int) -> float:
    """``log10 N_tests``: every connected region of any size at every position of the grid.

    ``n * sum_r poly(r)``, with ``poly(r)`` the fixed polyominoes of r cells. Dominated by the
    largest sizes, so it is strict: noise is never detected, strong regions still are.
    """
    r = np.arange(1, n_pixels + 1, dtype=np.float64)
    log_poly = math.log(_POLY_C) + r * math.log(_POLY_MU) - np.log(r)
    return float(math.log(n_pixels) + np.logaddexp.reduce(log_poly)) / _LN10


def nfa_regions(q: np.ndarray, dof: int) -> list[tuple[int, float, int, float]]:
    """Most significant disjoint regions of ``q`` (h, w): ``(seed, level, area, log10 NFA)``.

    A region is the 4-connected component of ``{q >= level}`` holding pixel ``seed`` (a flat
    index). Pixels join in decreasing ``q`` order (union-find); each join makes the tree node
    at that level.
    """
    h, w = q.shape
    n = h * w
    flat = q.ravel()
    tail = log10_chi2_tail(flat, dof)
    tests = log10_tests(n)
    order = np.argsort(-flat, kind='stable')
    parent = list(range(n))
    area = [0] * n
    added = [False] * n
    # Per union-find root: the selected nodes of its subtree and the best log NFA among them.
    selection: dict[int, list[tuple[int, float, int, float]]] = {}
    best: dict[int, float] = {}

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    tail_list, values = tail.tolist(), flat.tolist()
    for p in order.tolist():
        added[p] = True
        area[p] = 1
        children: list[int] = []
        y, x = divmod(p, w)
        for nb in (
            p - w if y else -1,
            p + w if y + 1 < h else -1,
            p - 1 if x else -1,
            p + 1 if x + 1 < w else -1,
        ):
            if nb >= 0 and added[nb]:
                root = find(nb)
                if root != p and root not in children:
                    children.append(root)
        for root in children:
            parent[root] = p
            area[p] += area[root]
        size = area[p]
        log_nfa = tests + size * tail_list[p]
        below = [s for root in children for s in selection.pop(root)]
        below_best = min((best.pop(root) for root in children), default=math.inf)
        if log_nfa <= below_best:
            selection[p], best[p] = [(p, values[p], size, log_nfa)], log_nfa
        else:
            selection[p], best[p] = below, below_best
    return [s for sel in selection.values() for s in sel]


def fit_null(normal_norms: np.ndarray) -> LatentNull:
    """``scale * chi2(dof)`` with the mean and variance of normal patches' latent norms."""
    q = np.asarray(normal_norms, dtype=np.float64)
    if q.size < 2 or not np.isfinite(q).all():
        raise ValueError('fitting the null needs finite latent norms of several patches')
    mean, var = float(q.mean()), float(q.var())
    if mean <= 0 or var <= 0:
        raise ValueError('fitting the null needs latent norms that vary between patches')
    return LatentNull(scale=var / (2 * mean), dof=max(1, round(2 * mean**2 / var)))


def nfa_mask(q: np.ndarray, dof: int, log10_epsilon: float = 0.0) -> np.ndarray:
    """Boolean mask (h, w) of the regions with ``log10 NFA < log10_epsilon``, holes filled."""
    q = np.asarray(q, dtype=np.float64)
    if q.ndim != 2 or q.size == 0:
        raise ValueError(f'expected a non-empty (h, w) map, got shape {q.shape}')
    if not np.isfinite(q).all():
        raise ValueError('latent norms must be finite')
    mask = np.zeros(q.shape, dtype=bool)
    for seed, level, _, log_nfa in nfa_regions(q, dof):
        if log_nfa < log10_epsilon:
            labels, _ = ndimage.label(q >= level)
            # A region's holes (patches just under its level) belong to the same object.
            mask |= ndimage.binary_fill_holes(labels == labels.flat[seed])
    return mask
