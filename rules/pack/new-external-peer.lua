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
--
-- Each new address starts a capture of the pod's traffic with it (from the firing on; the very
-- first packets only where the pod keeps a lookback ring), linked from the notification.
rule {
  name = "new-external-peer",
  metric = "vigil_remote_forward_packets_total",
  where = { direction = "egress", remote_pod = "", remote_ip = { except = { "other", "local-scope" } } },
  by = { "namespace", "pod" },
  detect = first_seen { label = "remote_ip", learn = "1h", max_values = 256 },
  severity = "info",
  resolve_after = "1m",
  on_anomaly = function(a)
    -- The pod's packets to and from the new addresses ("a|b" when several came in one tick),
    -- 256 bytes of each: enough for a TLS ClientHello's server name or a plain request line.
    local hosts = {}
    for ip in string.gmatch(a.labels.remote_ip or "", "[^|]+") do
      hosts[#hosts + 1] = "host " .. ip
    end
    if #hosts > 0 then
      capture { filter = table.concat(hosts, " or "), snaplen = 256 }
    end
    notify("default", a)
  end,
}
