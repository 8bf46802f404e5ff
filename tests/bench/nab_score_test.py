#!/usr/bin/env python3
"""Hand-computed cases for nab_score.py: a scorer bug that inflates the score is the worst
outcome of the NAB benchmark, so every rule of the method is pinned here with numbers."""
import datetime
import math
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import nab_score as ns  # noqa: E402

T0 = datetime.datetime(2014, 4, 1)
STD = ns.PROFILES["standard"]


def ts(n):
    return [T0 + datetime.timedelta(minutes=i) for i in range(n)]


# 20 rows, probation floor(0.15 * 20) = 3 rows, one window over rows 10..14 (W = 5).
TIMES = ts(20)
WINDOW = [(TIMES[10], TIMES[14])]


def raw(scores, profile=STD, times=TIMES, windows=WINDOW):
    points, ids = ns.row_points(times, windows, profile)
    return ns.best_threshold([(scores, points, ids)], profile)


def spike(*rows, n=20):
    return [1.0 if i in rows else 0.0 for i in range(n)]


class Sigma(unittest.TestCase):
    def test_values(self):
        self.assertAlmostEqual(ns.sigma(-1.0), 0.98661429815143, places=12)  # 2/(1+e^-5)-1
        self.assertAlmostEqual(ns.sigma(0.0), 0.0, places=15)
        self.assertAlmostEqual(ns.sigma(1.0), -0.98661429815143, places=12)
        self.assertEqual(ns.sigma(3.0001), -1.0)

    def test_probation(self):
        self.assertEqual(ns.probation_rows(20), 3)
        self.assertEqual(ns.probation_rows(4032), 604)
        self.assertEqual(ns.probation_rows(22695), 750)


class FileScores(unittest.TestCase):
    def test_left_edge_detection_is_worth_a_tp(self):
        self.assertEqual(raw(spike(10)), (1.0, 1.0))

    def test_right_edge_detection(self):
        # y = -(14 - 14 + 1) / 5 = -0.2: sigma(-0.2) / sigma(-1) = 0.46211716 / 0.98661430
        self.assertAlmostEqual(raw(spike(14))[1], 0.46838684, places=7)

    def test_only_the_earliest_detection_in_a_window_counts(self):
        self.assertEqual(raw(spike(10, 12, 13))[1], 1.0)
        self.assertAlmostEqual(raw(spike(12, 14))[1], ns.sigma(-3 / 5) / ns.sigma(-1), places=12)

    def test_missed_window_costs_fn(self):
        # No scored row at all: the only threshold is "never", every window is missed.
        self.assertEqual(ns.best_threshold([([], [], [0, 1])], STD), (math.inf, -2.0))
        self.assertEqual(ns.best_threshold([([], [], [0])], ns.PROFILES["reward_low_FN_rate"]), (math.inf, -2.0))
        # A lone FP at 1.0: threshold 1 pays 1.11, threshold 0 is the null detector (-0.247).
        self.assertAlmostEqual(raw(spike(5))[1], -0.2473658, places=6)

    def test_a_score_of_zero_is_a_detection_at_threshold_zero(self):
        # As in NAB (score >= threshold): all zeros at threshold 0 detect every row.
        self.assertEqual(raw([0.0] * 20)[0], 0.0)

    def test_false_positive_before_any_window_costs_full_fp(self):
        points, _ = ns.row_points(TIMES, WINDOW, STD)
        self.assertEqual([p for p in points if p[0] == 5], [(5, None, -0.11)])
        # With the window detected too, the FP is paid: 1 - 0.11.
        self.assertAlmostEqual(raw(spike(5, 10))[1], 0.89, places=12)
        lowfp = ns.PROFILES["reward_low_FP_rate"]
        self.assertAlmostEqual(raw(spike(5, 10), lowfp)[1], 0.78, places=12)

    def test_false_positive_after_a_window_costs_less_near_it(self):
        points, _ = ns.row_points(TIMES, WINDOW, STD)
        by_row = {i: w for i, _, w in points}
        # y = |14 - 15| / (5 - 1) = 0.25: sigma = 2 / (1 + e^1.25) - 1 = -0.5545997
        self.assertAlmostEqual(by_row[15], 0.11 * -0.5545997, places=7)
        self.assertAlmostEqual(by_row[19], 0.11 * ns.sigma(1.25), places=12)

    def test_probationary_rows_are_ignored(self):
        self.assertEqual(raw(spike(0, 1, 2, 10))[1], 1.0)
        points, _ = ns.row_points(TIMES, WINDOW, STD)
        self.assertEqual(min(p[0] for p in points), 3)

    def test_a_window_inside_the_probation_is_neither_missed_nor_found(self):
        # NAB's sweeper only counts windows with a scored row; rows after it are FPs that decay
        # from its right edge (row 2, W = 3): y = |2 - 5| / 2 = 1.5.
        early = [(TIMES[0], TIMES[2])]
        self.assertEqual(raw([0.0] * 20, windows=early)[1], 0.0)
        points, ids = ns.row_points(TIMES, early, STD)
        self.assertEqual(ids, [])
        self.assertAlmostEqual(dict((i, w) for i, _, w in points)[5], 0.11 * ns.sigma(1.5), places=12)

    def test_threshold_is_chosen_to_maximise(self):
        # A weak FP (0.3) before the window and the window at 0.6: threshold 0.6 is best.
        scores = [0.0] * 20
        scores[5], scores[10] = 0.3, 0.6
        self.assertEqual(raw(scores), (0.6, 1.0))

    def test_rows_stay_in_file_order_with_repeats_and_a_step_back(self):
        times = ts(20)
        times[7] = times[6]            # repeated timestamp
        times[8] = times[5]            # goes backwards once
        points, ids = ns.row_points(times, [(times[10], times[14])], STD)
        self.assertEqual(len(points), 17)
        self.assertEqual([w for i, w, _ in points if w is not None], [0] * 5)


class Corpus(unittest.TestCase):
    def _write(self, tmp, scores):
        os.makedirs(os.path.join(tmp, "cat"), exist_ok=True)
        with open(os.path.join(tmp, "cat", "f.csv"), "w") as fh:
            fh.write("timestamp,value,anomaly_score,firing\r\n")
            for t, s in zip(TIMES, scores):
                fh.write("%s,1,%r,0\r\n" % (t.strftime("%Y-%m-%d %H:%M:%S"), s))

    def test_perfect_is_100_and_null_is_0(self):
        import tempfile
        labels = {"cat/f.csv": [[TIMES[10].strftime("%Y-%m-%d %H:%M:%S.%f"),
                                 TIMES[14].strftime("%Y-%m-%d %H:%M:%S.%f")]]}
        with tempfile.TemporaryDirectory() as tmp:
            self._write(tmp, spike(10))
            for name, r in ns.score_corpus(labels, tmp).items():
                self.assertAlmostEqual(r["score"], 100.0, places=9, msg=name)
            self._write(tmp, [0.5] * 20)
            for name, r in ns.score_corpus(labels, tmp).items():
                self.assertAlmostEqual(r["score"], 0.0, places=9, msg=name)
            self._write(tmp, [0.0] * 20)
            # Null here detects the window at its edge and pays 7 full FPs before it and 5
            # decaying ones after: 1 - 0.77 + 0.11 * sum(sigma(k / 4), k = 1..5) = -0.2473658;
            # all zeros is the same detector, so it scores 0 too.
            r = ns.score_corpus(labels, tmp)["standard"]
            self.assertAlmostEqual(r["null"], -0.2473658, places=6)
            self.assertAlmostEqual(r["score"], 0.0, places=9)
            # The window found at 0.4 of its width: (sigma(-0.6) / sigma(-1) + 0.2473658) / 1.2473658.
            self._write(tmp, spike(12))
            r = ns.score_corpus(labels, tmp)["standard"]
            self.assertAlmostEqual(r["score"], 100 * (0.9051483 / 0.9866143 + 0.2473658) / 1.2473658, places=4)


if __name__ == "__main__":
    unittest.main()
