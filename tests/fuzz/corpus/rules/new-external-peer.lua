-- Tells when a pod starts sending to an address outside the cluster that it never used while
-- the rule learned it: a new dependency, a misconfiguration, or exfiltration.
--
-- Needs remote context (`remote_context` in the config) for the pods to watch. Peers that are
-- known pods carry remote_pod and are left out, as are the kernel's "other" bucket (peers past
-- `max_peers`, which names no address) and link-local/multicast ("local-scope"). Each pod
-- learns its peers for an hour (a pod of a workload rolled out daily would never be judged
-- after a day of learning; a rescheduled pod starts from its workload's learned set), then each
-- new address is told once, at severity info, and remembered from then on. Pods that answer
-- clients from the internet see new addresses all the time: do not opt them in to remote
-- context, or exclude them here with a `where` on namespace or pod.
rule {
  name = "new-external-peer",
  metric = "vigil_remote_forward_packets_total",
  where = { direction = "egress", remote_pod = "", remote_ip = { except = { "other", "local-scope" } } },
  by = { "namespace", "pod" },
  detect = first_seen { label = "remote_ip", learn = "1h", max_values = 256 },
  severity = "info",
  resolve_after = "1m",
  on_anomaly = function(a)
    notify("default", a)
  end,
}
