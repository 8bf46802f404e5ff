-- Warns when a pod's outgoing TCP connections start failing: refused (nothing listens, a
-- NetworkPolicy rejects) or timed out (a peer or a route is gone), well above its usual rate.
--
-- Some failures are normal (clients that probe, retries during a rollout), so the rule learns
-- each pod's rate; a pod that never fails has a baseline of 0 from the moment it is known and a
-- handful of failures per second, held for 10 s, warns.
--
-- Each firing captures the pod's TCP headers: the SYNs with no answer or a reset for one, and
-- to which addresses and ports. Linked from the notification.
rule {
  name = "tcp-connect-failures",
  metric = "vigil_tcp_connect_failures_total",
  by = { "namespace", "pod" },
  detect = baseline.ewma { half_life = "10m", threshold = 6, min_rate = 2, min_stddev = 0.5, min_stddev_ratio = 0.2,
                           warmup = "2m" },
  severity = "warning",
  pending = "10s",
  resolve_after = "30s",
  summary = "{namespace}/{pod} fails {value} TCP connections/s (refused or timed out), usually {baseline}/s (z={score})",
  on_anomaly = function(a)
    capture { filter = "tcp" }  -- before notify, so the notification links to it
    notify("default", a)
  end,
}
