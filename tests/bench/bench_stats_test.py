#!/usr/bin/env python3
"""The statistics that decide the benchmarks' verdicts (tests/bench/lib.sh), against exact
computations: a wrong interval says "target met" where the data says nothing. Pooling all the
(b) runs once passed 1,074 ratios, where 0.5^n underflowed and the interval came out reversed
(139 % to 67 %) with the verdict "target met"."""
import math
import os
import random
import subprocess
import unittest
from fractions import Fraction

LIB = os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib.sh")


def bash(function, stdin="", *args):
    quoted = " ".join("'" + a + "'" for a in args)
    r = subprocess.run(["bash", "-c", f"source '{LIB}'; {function} {quoted}"], input=stdin,
                       capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        raise AssertionError(f"{function}: exit {r.returncode}: {r.stderr}")
    return r.stdout.strip()


def exact_rank(n):
    """The largest k with 2 * P(Bin(n, 1/2) <= k - 1) <= 0.05, at least 1: the interval
    [x_(k), x_(n-k+1)] holds the median with probability >= 95 %."""
    total, cdf, k = 2 ** n, 0, 0
    for j in range(n):
        cdf += math.comb(n, j)
        if 2 * Fraction(cdf, total) > Fraction(5, 100):
            break
        k = j + 1
    return max(k, 1)


class MedianInterval(unittest.TestCase):
    def interval(self, values):
        low, high = bash("bench_median_ci", "\n".join(str(v) for v in values) + "\n").split()
        return float(low), float(high)

    def test_ranks_match_the_binomial_for_small_and_large_samples(self):
        # 1..n in a shuffled order: the interval's ends are the ranks themselves.
        rng = random.Random(7)
        for n in (1, 5, 6, 10, 17, 48, 192, 1000, 1056, 1074, 1075, 1248, 3000):
            values = list(range(1, n + 1))
            rng.shuffle(values)
            k = exact_rank(n)
            self.assertEqual(self.interval(values), (k, n - k + 1), f"n = {n}")

    def test_known_values(self):
        # Textbook ranks: n = 10 gives x(2)..x(9), n = 48 x(17)..x(32).
        self.assertEqual(exact_rank(10), 2)
        self.assertEqual(exact_rank(48), 17)
        self.assertEqual(self.interval(range(1, 11)), (2, 9))
        self.assertEqual(self.interval(range(1, 49)), (17, 32))

    def test_the_interval_is_never_reversed(self):
        for n in (1075, 2000, 5000):
            low, high = self.interval(range(n))
            self.assertLessEqual(low, high, f"n = {n}")
            self.assertLess(low, (n - 1) / 2, f"n = {n}")
            self.assertGreater(high, (n - 1) / 2, f"n = {n}")


class Verdict(unittest.TestCase):
    def test_met_missed_and_inconclusive(self):
        self.assertEqual(bash("bench_interval_verdict", "", "0.971", "0.99", "0.97"), "target met")
        self.assertEqual(bash("bench_interval_verdict", "", "0.97", "0.99", "0.97"), "target met")
        self.assertEqual(bash("bench_interval_verdict", "", "0.95", "0.969", "0.97"), "TARGET MISSED")
        self.assertEqual(bash("bench_interval_verdict", "", "0.96", "0.98", "0.97"), "INCONCLUSIVE")


class Median(unittest.TestCase):
    def test_odd_and_even(self):
        self.assertEqual(float(bash("bench_median", "3\n1\n2\n")), 2.0)
        self.assertEqual(float(bash("bench_median", "4\n1\n3\n2\n")), 2.5)


if __name__ == "__main__":
    unittest.main()
