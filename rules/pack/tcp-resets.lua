-- Warns on a storm of TCP resets at a pod: resets it sends (a crashed listener, connections
-- refused by the kernel, a port scan answered) and resets it receives (peers refusing or
-- aborting its connections), summed over both directions.
--
-- Resets are part of normal life (keep-alive connections cut by load balancers, clients that
-- abort), so the rule learns each pod's rate and the minimum is high: 20 resets/s, clearly
-- above the learned rate, for 10 s.
--
-- Each firing captures the pod's TCP headers: who resets which connections, and after what.
rule {
  name = "tcp-rst-storm",
  metric = "vigil_tcp_resets_total",
  by = { "namespace", "pod" },
  detect = baseline.ewma { half_life = "10m", threshold = 8, min_rate = 20, min_stddev = 2, min_stddev_ratio = 0.25,
                           warmup = "2m" },
  severity = "warning",
  pending = "10s",
  resolve_after = "30s",
  summary = "{namespace}/{pod} sends and receives {value} TCP resets/s, usually {baseline}/s (z={score})",
  on_anomaly = function(a)
    capture { filter = "tcp" }  -- before notify, so the notification links to it
    notify("default", a)
  end,
}
