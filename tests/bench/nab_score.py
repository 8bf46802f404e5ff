#!/usr/bin/env python3
"""Scores anomaly detector output on the NAB corpus the way NAB v1.1 does (stdlib only).

Usage: nab_score.py --labels combined_windows.json --results DIR [--json]
DIR holds one CSV per corpus file at the same relative path (category/name.csv) with columns
timestamp,value,anomaly_score[,...], one row per input row, in input order.

Method (NAB's sweeper, Lavin & Ahmad 2015; see /work/shared/data/nab/README.md):
- the first min(floor(0.15 N), 750) rows of a file are probationary and never scored;
- a row is a detection when anomaly_score >= threshold; one threshold per profile for the
  whole corpus, the one that maximises the profile's total;
- in a window only the earliest detection counts: A_TP * sigma(y) / sigma(-1), with
  y = -(R - i + 1) / W; a window without detection costs A_FN;
- a detection outside windows adds A_FP * sigma(y), y = |i - R_prev| / (W_prev - 1) from the
  preceding window (sigma = -1 past y = 3), or -A_FP before any window;
- normalised = 100 * (raw - null) / (perfect - null), perfect = windows * A_TP, null = the
  best total of a detector that always says 0.5.
Windows are located as NAB does: a window opens at the first row whose timestamp equals its
start and closes at the row whose timestamp equals its end; rows stay in file order. As in NAB's
sweeper (nab/sweeper.py), a window none of whose rows is scored (all probationary, or never
entered) costs no A_FN; none of the 116 windows of NAB v1.1 is such a window.
"""
import argparse
import csv
import datetime
import json
import math
import os
import sys

PROFILES = {
    "standard": {"tp": 1.0, "fn": 1.0, "fp": 0.11},
    "reward_low_FP_rate": {"tp": 1.0, "fn": 1.0, "fp": 0.22},
    "reward_low_FN_rate": {"tp": 1.0, "fn": 2.0, "fp": 0.11},
}


def sigma(y):
    """NAB's scaled sigmoid: 2 / (1 + e^(5y)) - 1, and -1 for y > 3."""
    if y > 3.0:
        return -1.0
    return 2.0 / (1.0 + math.exp(5.0 * y)) - 1.0


def probation_rows(n):
    return min(int(math.floor(0.15 * n)), 750)


def parse_time(text):
    text = text.strip().strip('"')
    for fmt in ("%Y-%m-%d %H:%M:%S.%f", "%Y-%m-%d %H:%M:%S"):
        try:
            return datetime.datetime.strptime(text, fmt)
        except ValueError:
            pass
    raise ValueError("bad timestamp %r" % text)


def row_points(timestamps, windows, profile):
    """Per scored row: (row index, window id or None, weighted score if detected there).

    `timestamps` are datetimes in file order; `windows` a list of (start, end) datetimes.
    Returns (points, window_ids) where window_ids lists every window's id.
    """
    tp_max = sigma(-1.0)
    n = len(timestamps)
    probation = probation_rows(n)
    pending = sorted(windows)
    points = []
    cur = None  # (id, right index, width)
    prev = None  # (right index, width)
    ids = []
    scored = set()  # windows with at least one scored row
    for i, t in enumerate(timestamps):
        if cur is None and pending and t == pending[0][0]:
            start, end = pending.pop(0)
            right = next((j for j in range(i, n) if timestamps[j] == end), None)
            if right is None:
                raise ValueError("window end %s not found after row %d" % (end, i))
            cur = (len(ids), right, float(right - i + 1), end)
            ids.append(cur[0])
        if cur is not None:
            y = -(cur[1] - i + 1) / cur[2]
            weighted = sigma(y) * profile["tp"] / tp_max
            wid = cur[0]
        else:
            if prev is None:
                unweighted = -1.0
            else:
                denom = prev[1] - 1.0
                y = abs(prev[0] - i) / denom if denom > 0 else math.inf
                unweighted = sigma(y)
            weighted = unweighted * profile["fp"]
            wid = None
        if i >= probation:
            points.append((i, wid, weighted))
            if wid is not None:
                scored.add(wid)
        if cur is not None and t == cur[3]:
            prev = (cur[1], cur[2])
            cur = None
    # As NAB's sweeper, only windows with a scored row can be missed: one inside the probationary
    # period, or never entered (its start is not a timestamp of the file), neither earns nor costs.
    # The perfect score still counts every labelled window.
    return points, [w for w in ids if w in scored]


def best_threshold(files, profile):
    """files: list of (scores, points, window_ids) per file. Returns (threshold, raw total)."""
    fn = profile["fn"]
    events = []  # (score, file index, window id or None, weighted)
    window_best = {}
    total = 0.0
    for f, (scores, points, ids) in enumerate(files):
        for wid in ids:
            window_best[(f, wid)] = -fn
            total -= fn
        for i, wid, weighted in points:
            events.append((scores[i], f, wid, weighted))
    events.sort(key=lambda e: -e[0])
    best = (math.inf, total)  # no detection at all
    k = 0
    while k < len(events):
        s = events[k][0]
        while k < len(events) and events[k][0] == s:
            _, f, wid, weighted = events[k]
            if wid is None:
                total += weighted
            else:
                key = (f, wid)
                if weighted > window_best[key]:
                    total += weighted - window_best[key]
                    window_best[key] = weighted
            k += 1
        if total > best[1]:
            best = (s, total)
    return best


def load_scores(path):
    with open(path, newline="") as fh:
        rows = list(csv.reader(fh))
    header = [h.strip() for h in rows[0]]
    ti, si = header.index("timestamp"), header.index("anomaly_score")
    body = [r for r in rows[1:] if r]
    return [parse_time(r[ti]) for r in body], [float(r[si]) for r in body]


def score_corpus(labels, results_dir):
    per_file = []
    for name in sorted(labels):
        timestamps, scores = load_scores(os.path.join(results_dir, name))
        windows = [(parse_time(a), parse_time(b)) for a, b in labels[name]]
        per_file.append((name, timestamps, scores, windows))
    n_windows = sum(len(w) for _, _, _, w in per_file)
    out = {}
    for pname, profile in PROFILES.items():
        files, nulls = [], []
        for name, timestamps, scores, windows in per_file:
            points, ids = row_points(timestamps, windows, profile)
            files.append((scores, points, ids))
            nulls.append(([0.5] * len(scores), points, ids))
        threshold, raw = best_threshold(files, profile)
        _, null = best_threshold(nulls, profile)
        perfect = n_windows * profile["tp"]
        out[pname] = {
            "score": 100.0 * (raw - null) / (perfect - null),
            "raw": raw,
            "null": null,
            "perfect": perfect,
            "threshold": threshold,
        }
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--labels", required=True)
    ap.add_argument("--results", required=True)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    with open(args.labels) as fh:
        labels = json.load(fh)
    out = score_corpus(labels, args.results)
    if args.json:
        print(json.dumps(out, sort_keys=True))
        return
    for pname, r in out.items():
        print("%-20s %6.2f  (raw %.3f, null %.3f, perfect %.1f, threshold %.6g)"
              % (pname, r["score"], r["raw"], r["null"], r["perfect"], r["threshold"]))


if __name__ == "__main__":
    sys.exit(main())
