-- The rule `tests/bench/nab.sh` replays over every NAB file. Each series is one group (by = {})
-- seen as a gauge; ticks are the file's median step (5 minutes for most NAB files).
rule {
  name = "nab",
  metric = "nab_value",
  by = {},
  detect = any {
    baseline.ewma { half_life = "6h", threshold = 4, direction = "both", relearn_after = "5m", min_stddev_ratio = 0.01 },
    baseline.mad { window = "1d", threshold = 5, direction = "both", relearn_after = "5m", min_stddev_ratio = 0.01 },
    change.cusum { half_life = "1d", threshold = 8, slack = 1, direction = "both", relearn_after = "5m", min_stddev_ratio = 0.01 },
    suppress = "12h",
  },
  pending = "0s",
  resolve_after = "0s",
}
