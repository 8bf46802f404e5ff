-- Pages when a pod suddenly drops far more ingress packets than it usually does.
--
-- A pod's drop counter series only appears with its first drop; the engine seeds the pod's
-- group with a rate of 0 from the moment the pod is known, so the baseline has been learning
-- the quiet period and the first burst of drops scores high.
rule {
  name = "pod-drop-surge",
  metric = "vigil_drop_packets_total",
  where = { direction = "ingress" },
  by = { "namespace", "pod" },
  detect = baseline.zscore { window = "2m", threshold = 4, min_rate = 1, warmup = "20s" },
  severity = "critical",
  pending = "0s",
  resolve_after = "10s",
  summary = "{namespace}/{pod} drops {value} packets/s on ingress, usually {baseline}/s (z={score})",
  on_anomaly = function(a)
    notify("default", a)
  end,
}
