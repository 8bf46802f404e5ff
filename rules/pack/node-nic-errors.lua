-- Warns when a network interface of the node loses frames in its hardware or driver: CRC,
-- frame and length errors (a bad cable, optic or port), missed frames and FIFO overruns (the
-- NIC's receive ring was full: the host did not keep up), carrier, heartbeat and window errors
-- (the link itself). No eBPF program sees these losses: the frames never became packets that
-- the kernel could drop, so kfree_skb and every per-pod counter miss them. The kernel's own link
-- statistics count them (netstat family: vigil_node_interface_stats_total, read every
-- metrics.netstat.interval; the rule sees the rate between two reads).
--
-- A healthy link has none at all, so a fixed floor rather than a learned baseline: a link that
-- always loses frames is still broken, and a baseline would learn it as normal. At least one
-- frame a second (10 in a 10 s read) for a minute, per interface and kind of error (the
-- counters are read every 10 s, so a burst of 30 s can span four reads: shorter bursts when
-- a host is busy for a moment stay quiet). Left out:
-- rx_dropped and tx_dropped (many drivers count frames of protocols or VLANs nobody asked for as
-- rx_dropped, and pod-drop-surge sees the stack's own drops), rx_errors and tx_errors (sums of
-- the others), rx_nohandler and rx_otherhost_dropped (frames for nobody here).
rule {
  name = "node-nic-errors",
  metric = "vigil_node_interface_stats_total",
  where = {
    statistic = { "rx_crc_errors", "rx_frame_errors", "rx_length_errors", "rx_over_errors", "rx_fifo_errors",
                  "rx_missed_errors", "tx_aborted_errors", "tx_carrier_errors", "tx_fifo_errors",
                  "tx_heartbeat_errors", "tx_window_errors" },
  },
  by = { "interface", "statistic" },
  detect = threshold { above = 1 },
  severity = "warning",
  pending = "1m",
  resolve_after = "2m",
  cooldown = "10m",
  summary = "{interface} on node {node}: {value} {statistic}/s, frames lost in the NIC or its driver",
  on_anomaly = function(a)
    notify("default", a)
  end,
}
