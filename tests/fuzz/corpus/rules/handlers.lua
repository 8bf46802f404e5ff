-- A rule with handlers, a custom summary and a capture, so mutations start from those paths.
rule {
  name = "handlers",
  metric = "vigil_pod_drop_packets_total",
  by = { "namespace", "pod", "reason" },
  where = { direction = "ingress" },
  detect = baseline.ewma { half_life = "1m", threshold = 3, min_rate = 1 },
  severity = "warning",
  summary = "{pod} drops {value}/s ({reason})",
  capture = { before = "5s", after = "10s", filter = "udp" },
  on_anomaly = function(a)
    if a.score > 5 then notify("oncall", a) end
  end,
  on_resolve = function(a) notify("default", a) end,
}
