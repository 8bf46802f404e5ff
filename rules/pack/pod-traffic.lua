-- Warns when a pod receives many times its usual packet rate (a flood, a retry storm).
-- The threshold and minimum rate are high on purpose: ordinary bursts must stay quiet.
--
-- Each firing captures the pod's packets (headers, the agent's defaults): who floods it, with what.
rule {
  name = "pod-ingress-flood",
  metric = "vigil_forward_packets_total",
  where = { direction = "ingress" },
  by = { "namespace", "pod" },
  detect = baseline.zscore { window = "5m", threshold = 10, min_rate = 500, warmup = "2m" },
  severity = "warning",
  pending = "15s",
  resolve_after = "30s",
  summary = "{namespace}/{pod} receives {value} packets/s, usually {baseline}/s (z={score})",
  on_anomaly = function(a)
    capture {}  -- before notify, so the notification links to it
    notify("default", a)
  end,
}
