-- The node's conntrack table, where kube-proxy keeps every connection it translates (Services,
-- NodePorts, SNAT). Two ways it costs connections, neither of which an eBPF drop reason names
-- (both are NETFILTER_DROP, like any firewall rule):
--
-- node-conntrack-full: the table is filling. At nf_conntrack_max the kernel first evicts an
-- unanswered connection for each new one, then drops the first packet of every new connection
-- ("nf_conntrack: table full, dropping packet"): clients see timeouts everywhere at once. Warned
-- at 90 % for 2 minutes, while there is time to raise the limit or find the pod that opens
-- connections by the thousand (a fixed level: how full is too full does not depend on the
-- node's history). From half full on, the agent counts the table's entries by pod
-- (vigil_node_conntrack_pod_entries, metrics.netstat.conntrack_by_pod).
--
-- node-conntrack-drops: it happens. `drop` (a new connection dropped, the table full of
-- answered ones), `early_drop` (an unanswered connection evicted to make room) and
-- `insert_failed` (two packets of a new connection raced on two CPUs and the loser was dropped:
-- the classic 5 s DNS lookups when a resolver sends its A and AAAA queries from one socket).
-- Each one is a lost packet or connection, so any rate above zero, told once per statistic and
-- held back for 30 minutes after.
--
-- pod-conntrack-drops: the same in a pod's own conntrack table, which a pod has when its own
-- netfilter tracks connections (a service mesh's redirect rules, a NetworkPolicy enforced inside
-- the pod): its entries count against the same nf_conntrack_max, and its insert races lose the
-- pod's own DNS queries. Per pod and statistic.
--
-- All from the netstat family (vigil_node_conntrack_*, vigil_conntrack_*, read every
-- metrics.netstat.interval; the rules see the rate between two reads).
rule {
  name = "node-conntrack-full",
  ratio = {
    numerator = { metric = "vigil_node_conntrack_entries" },
    denominator = { metric = "vigil_node_conntrack_entries_limit" },
  },
  by = {},
  detect = threshold { above = 0.9 },
  severity = "warning",
  pending = "2m",
  resolve_after = "5m",
  cooldown = "30m",
  summary = "conntrack table of node {node} at {value} of nf_conntrack_max: new connections are dropped when it is full "
    .. "(vigil_node_conntrack_pod_entries: the pods that hold most)",
  on_anomaly = function(a)
    notify("default", a)
  end,
}

rule {
  name = "node-conntrack-drops",
  metric = "vigil_node_conntrack_stats_total",
  where = { statistic = { "drop", "early_drop", "insert_failed" } },
  by = { "statistic" },
  detect = threshold { above = 0 },
  severity = "warning",
  resolve_after = "5m",
  cooldown = "30m",
  summary = "node {node}: conntrack {statistic} at {value}/s, connections or their first packets lost",
  on_anomaly = function(a)
    notify("default", a)
  end,
}

rule {
  name = "pod-conntrack-drops",
  metric = "vigil_conntrack_stats_total",
  where = { statistic = { "drop", "early_drop", "insert_failed" } },
  by = { "namespace", "pod", "statistic" },
  detect = threshold { above = 0 },
  severity = "warning",
  resolve_after = "5m",
  cooldown = "30m",
  summary = "{namespace}/{pod}: conntrack {statistic} at {value}/s in the pod's own table, connections or their first "
    .. "packets lost",
  on_anomaly = function(a)
    notify("default", a)
  end,
}
