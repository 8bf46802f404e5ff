-- Warns when the Kubernetes API server answers this node slowly: the mean time from a new
-- connection's first request to the first byte of the answer (vigil_apiserver_first_response_seconds,
-- needs `apiserver.addresses` in the config) shifts well above its usual level.
--
-- Clients keep their connections open, so there are few samples (one per new connection) and
-- each tick with at least one is judged. A CUSUM adds up the evidence of slow samples: with a
-- spread of at least 100 ms and a slack of 2, a mean of 600 ms where 30 ms is usual warns after
-- about 17 judged ticks, one of 2 s after 4, while a single slow answer (a big LIST taking
-- 3 s) adds less than the threshold and drains away over the next normal samples. Means under
-- 200 ms never warn. While the anomaly fires, its values are held and the sums restart: a
-- regression that lasts longer than `resolve_after` (15 minutes) is told again after that.
rule {
  name = "apiserver-latency-regression",
  ratio = {
    numerator = { metric = "vigil_apiserver_first_response_seconds_sum" },
    denominator = { metric = "vigil_apiserver_first_response_seconds_count" },
    min_volume = 1,
  },
  by = {},
  detect = change.cusum { half_life = "1h", slack = 2, threshold = 60, direction = "up", min_rate = 0.2,
                          min_stddev = 0.1, warmup = "15m" },
  severity = "warning",
  resolve_after = "15m",
  summary = "the API server answers this node in {value} s on average, usually {baseline} s (cusum {score})",
  on_anomaly = function(a)
    notify("default", a)
  end,
}
