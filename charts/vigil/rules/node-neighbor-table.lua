-- The kernel's neighbour tables (ARP for IPv4, NDISC for IPv6: one each for the whole node, every
-- pod's namespace included). Past gc_thresh3 entries (1,024 by default), a new neighbour cannot
-- be added: "neighbour table overflow!" in the kernel log, and packets to it are dropped
-- (NEIGH_CREATEFAIL). Large clusters hit it when each node talks to many pods and nodes
-- directly (routed CNIs, host-network workloads).
--
-- node-neighbor-table-full: the table above 90 % of gc_thresh3 for 2 minutes (a fixed level),
-- per family, while there is time to raise the thresholds.
-- node-neighbor-table-overflow: any table_fulls: the overflow happened, neighbours were lost.
--
-- Both from the netstat family (vigil_node_neighbor_*, read every metrics.netstat.interval).
rule {
  name = "node-neighbor-table-full",
  ratio = {
    numerator = { metric = "vigil_node_neighbor_entries" },
    denominator = { metric = "vigil_node_neighbor_entries_limit" },
  },
  by = { "family" },
  detect = threshold { above = 0.9 },
  severity = "warning",
  pending = "2m",
  resolve_after = "5m",
  cooldown = "30m",
  summary = "{family} neighbour table of node {node} at {value} of gc_thresh3: new neighbours fail when it is full",
  on_anomaly = function(a)
    notify("default", a)
  end,
}

rule {
  name = "node-neighbor-table-overflow",
  metric = "vigil_node_neighbor_stats_total",
  where = { statistic = "table_fulls" },
  by = { "family" },
  detect = threshold { above = 0 },
  severity = "warning",
  resolve_after = "5m",
  cooldown = "30m",
  summary = "{family} neighbour table of node {node} overflowed ({value}/s): packets to new neighbours are dropped",
  on_anomaly = function(a)
    notify("default", a)
  end,
}
