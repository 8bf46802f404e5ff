-- Warns when a pod's DNS lookups start failing: far more NXDOMAIN or SERVFAIL responses than
-- the pod usually sees.
--
-- Kubernetes search paths make NXDOMAIN common (with ndots:5 a lookup of "api.example.com"
-- first tries the cluster suffixes), so the rule learns each pod's usual rate and warns on a
-- clear surge only, held for 10 s. Responses count where the pod sees them: received by a
-- client (ingress) and sent by a DNS server pod such as CoreDNS (egress), so both ends show.
-- The pod's group exists from the moment the pod is known, with a rate of 0 until its first
-- error response, so a pod that never failed a lookup has a baseline of silence.
--
-- Each firing captures the pod's DNS messages whole (512 bytes, UDP's classic limit): the names
-- that fail and the answers, for Wireshark. Linked from the notification.
rule {
  name = "dns-error-surge",
  metric = "vigil_dns_responses_total",
  where = { rcode = { "NXDOMAIN", "SERVFAIL" } },
  by = { "namespace", "pod" },
  detect = baseline.ewma { half_life = "5m", threshold = 6, min_rate = 5, min_stddev = 1, min_stddev_ratio = 0.2,
                           warmup = "2m" },
  severity = "warning",
  pending = "10s",
  resolve_after = "30s",
  summary = "{namespace}/{pod} sees {value} NXDOMAIN/SERVFAIL DNS responses/s, usually {baseline}/s (z={score})",
  on_anomaly = function(a)
    capture { filter = "port 53", snaplen = 512 }  -- before notify, so the notification links to it
    notify("default", a)
  end,
}
