-- The rule `tests/bench/nab.sh` replays over every NAB file. Each series is one group (by = {})
-- seen as a gauge; ticks are the file's median step (5 minutes for most NAB files). One rule and
-- one parameter set for the whole corpus; every detector is online with fixed-size state.
--
-- New territory is what most NAB anomalies are: a value, or its moving average over 30 min, 2 h,
-- 6 h or 12 h, past anything learned before (baseline.range); baseline.seasonal adds the daily
-- rhythm for the few that stay inside the range, and a range of the 6 h average of the distance
-- from each hour of the day's mean (season = "1d") a change of daily shape. relearn_after = "5m" (one tick) keeps every
-- detector learning through an anomaly, and suppress gives one alarm per 12 h episode: NAB pays
-- only the first detection in a window and charges every later one outside it.
-- min_surprise = 2 (every range) calibrates each crossing by how rare so far a crossing is for
-- that series, times its size (docs/rules.md): a crossing counts when it is about 1 in 100 or
-- rarer, so a series that keeps pushing an edge (a trend, a noisy tail) stops alarming on each
-- new record, and the tolerances can be half what they were without it.
local learn = { direction = "both", relearn_after = "5m" }
local function with(t)
  for k, v in pairs(learn) do t[k] = v end
  return t
end

rule {
  name = "nab",
  metric = "nab_value",
  by = {},
  detect = any {
    baseline.range(with { tolerance = 0.015, min_surprise = 2 }),
    baseline.range(with { smooth = "30m", tolerance = 0.01, min_surprise = 2 }),
    baseline.range(with { smooth = "2h", tolerance = 0.005, min_surprise = 2 }),
    baseline.range(with { smooth = "6h", tolerance = 0.005, min_surprise = 2 }),
    baseline.range(with { smooth = "12h", tolerance = 0.005, min_surprise = 2 }),
    baseline.seasonal(with { period = "1d", slots = 24, threshold = 14, min_stddev_ratio = 0.05 }),
    baseline.range(with { smooth = "6h", season = "1d", tolerance = 0.025, min_surprise = 2 }),
    suppress = "12h",
  },
  pending = "0s",
  resolve_after = "0s",
}
