-- Warns when a pod retransmits an unusual share of the TCP segments it sends: a lossy path, a
-- congested or flapping link, a peer that stopped acknowledging.
--
-- The ratio is retransmits over the segments the pod sent with ACK set (every segment of a
-- connection after its first SYN), counted at the pod's interface, so 1 retransmit in 3 segments
-- is not 33% loss: ticks with fewer than 200 segments are not judged (min_volume) nor learned.
-- Each pod learns its usual ratio; 2% is the floor below which nothing is reported.
--
-- Each firing captures the pod's TCP headers: which connections retransmit, and how (Wireshark's
-- tcp.analysis flags). Linked from the notification.
rule {
  name = "tcp-retransmit-ratio",
  ratio = {
    numerator = { metric = "vigil_tcp_retransmits_total" },
    denominator = { metric = "vigil_tcp_flags_total", where = { direction = "egress", flag = "ACK" } },
    min_volume = 200,
  },
  by = { "namespace", "pod" },
  detect = baseline.ewma { half_life = "30m", threshold = 6, min_rate = 0.02, min_stddev = 0.005, warmup = "5m" },
  severity = "warning",
  pending = "30s",
  resolve_after = "1m",
  cooldown = "10m",
  summary = "{namespace}/{pod} retransmits {value} of the TCP segments it sends, usually {baseline} (z={score})",
  on_anomaly = function(a)
    capture { filter = "tcp" }  -- before notify, so the notification links to it
    notify("default", a)
  end,
}
