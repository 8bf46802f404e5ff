-- Warns when a pod's DNS lookups get slow: the mean time from its request to the answer
-- (vigil_dns_latency_seconds, the client side, matched in the kernel) is far above what the pod
-- usually gets, for a minute.
--
-- The mean is a ratio, seconds waited over answers, judged only on ticks with at least 10
-- answers: a pod that resolves a name now and then says nothing about DNS latency (a 1 s tick
-- needs 10 lookups/s). Cluster DNS answers in about a millisecond; the spread has floors (2 ms
-- and 25% of the level) and a mean under 20 ms never warns, so a cache miss or two stays quiet.
--
-- Each firing captures the pod's DNS messages whole: which names and servers are slow.
rule {
  name = "dns-latency-regression",
  ratio = {
    numerator = { metric = "vigil_dns_latency_seconds_sum", where = { side = "client" } },
    denominator = { metric = "vigil_dns_latency_seconds_count", where = { side = "client" } },
    min_volume = 10,
  },
  by = { "namespace", "pod" },
  detect = baseline.ewma { half_life = "15m", threshold = 6, min_rate = 0.02, min_stddev = 0.002,
                           min_stddev_ratio = 0.25, warmup = "10m" },
  severity = "warning",
  pending = "1m",
  resolve_after = "1m",
  summary = "{namespace}/{pod} waits {value} s for a DNS answer on average, usually {baseline} s (z={score})",
  on_anomaly = function(a)
    capture { filter = "port 53", snaplen = 512 }  -- before notify, so the notification links to it
    notify("default", a)
  end,
}
