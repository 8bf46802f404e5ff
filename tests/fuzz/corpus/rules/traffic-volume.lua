-- Warns when a pod's traffic volume leaves its usual range, in either direction (ingress,
-- egress) and either way: a surge (a flood, a retry storm, an exfiltration) or a collapse (the
-- pod stopped serving, its clients are gone, a route broke).
--
-- The baseline follows slow changes (a half-life of 10 minutes tracks the daily rhythm), so
-- only a change held for a minute warns. The spread has floors, 10% of the level and 10 kB/s,
-- so that jitter and small pods stay quiet: a pod at 1 MB/s warns below about 400 kB/s or above
-- about 1.6 MB/s. A lasting new level is learned after 30 minutes and the anomaly resolves.
-- A pod that goes away is no anomaly: its series stop and its group is forgotten.
rule {
  name = "pod-traffic-volume",
  metric = "vigil_forward_bytes_total",
  by = { "namespace", "pod", "direction" },
  detect = baseline.ewma { half_life = "10m", threshold = 6, direction = "both", min_stddev = 10000,
                           min_stddev_ratio = 0.1, warmup = "30m", relearn_after = "30m" },
  severity = "warning",
  pending = "1m",
  resolve_after = "1m",
  summary = "{namespace}/{pod} {direction} traffic is {value} bytes/s, usually {baseline}/s (z={score})",
  on_anomaly = function(a)
    notify("default", a)
  end,
}
