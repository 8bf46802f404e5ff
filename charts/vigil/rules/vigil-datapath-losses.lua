-- Tells when Vigil itself loses counts in the kernel: one of its eBPF maps is full (more pods,
-- drop reasons, DNS answer kinds or remote peers than it was sized for), a DNS request or an API
-- server connection could not be tracked (metrics.dns_max_pending, the 8,192 connections), or a
-- read of a packet failed. Its numbers are then too low, and rules may miss what they watch.
-- The same as the chart's VigilBpfErrors Prometheus alert, through Vigil's own channels, for
-- nodes whose metrics nobody alerts on. Left out, as there: dns_tcp_untracked (DNS-over-TCP
-- messages whose bytes the network lost before the hook: not Vigil's loss) and
-- capture_ring_full (every capture whose window it touches says so in its manifest).
-- Any loss, per site, told once and held back an hour after it resolves.
rule {
  name = "vigil-datapath-losses",
  metric = "vigil_bpf_errors_total",
  where = { site = { except = { "dns_tcp_untracked", "capture_ring_full" } } },
  by = { "site" },
  detect = threshold { above = 0 },
  severity = "warning",
  resolve_after = "10m",
  cooldown = "1h",
  summary = "Vigil on node {node} loses counts in the kernel ({site}, {value}/s): compare vigil_bpf_map_entries "
    .. "with vigil_bpf_map_max_entries and raise the size that ran out",
  on_anomaly = function(a)
    notify("default", a)
  end,
}

-- And when the kernel itself did not run one of Vigil's tracing programs for some hits of its
-- tracepoint, with no recursion miss counted (docs/architecture.md, "Kernel side"): drops, TCP
-- states or retransmits missing from Vigil's counts. Counted only with metrics.tracepoint_audit.
-- Any, per program, told once and held back an hour after it resolves; info, since it is not
-- Vigil's to mend, but its counts are short by at least that much.
rule {
  name = "vigil-tracepoint-undelivered",
  metric = "vigil_tracepoint_undelivered_total",
  by = { "program", "tracepoint" },
  detect = threshold { above = 0 },
  severity = "info",
  resolve_after = "10m",
  cooldown = "1h",
  summary = "The kernel on node {node} ran no {program} for some {tracepoint} hits ({value}/s): Vigil's counts "
    .. "from it are short; compare with vigil_netstat_total",
  on_anomaly = function(a)
    notify("default", a)
  end,
}
