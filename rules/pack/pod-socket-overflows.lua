-- A pod's own kernel turns traffic away because the application does not keep up: the packets
-- arrived, Vigil counted them as forwarded, and no drop reason on the node names the loss (it
-- happens inside the pod's network namespace, in the socket layer). Both from the netstat family
-- (vigil_netstat_total, the pod's own SNMP counters, read every metrics.netstat.interval; the
-- rules see the rate between two reads).
--
-- pod-listen-overflows: a listening socket's accept queue is full (the server is overloaded,
-- stalled, or listens with too small a backlog for its bursts), so the kernel drops the
-- handshake's last ACK (TcpExt:ListenOverflows). The client believes it is connected; its request
-- waits for the server's SYN-ACK retransmits (1 s, 3 s, ...) or fails. Any rate above zero,
-- for 30 seconds (three reads at the default interval): a pause of a few seconds (a restart,
-- a garbage collection) stays quiet.
--
-- pod-udp-receive-drops: datagrams that reached a pod's UDP socket and were dropped because its
-- receive buffer was full (Udp:RcvbufErrors and Udp6:RcvbufErrors): a DNS server, a metrics or
-- log collector, a game or media server reading too slowly, or with too small an SO_RCVBUF. The
-- sender learns nothing. Same floor and wait.
rule {
  name = "pod-listen-overflows",
  metric = "vigil_netstat_total",
  where = { group = "TcpExt", statistic = "ListenOverflows" },
  by = { "namespace", "pod" },
  detect = threshold { above = 0 },
  severity = "warning",
  pending = "30s",
  resolve_after = "5m",
  cooldown = "30m",
  summary = "{namespace}/{pod}: {value} connections/s dropped by a full accept queue (TcpExt:ListenOverflows): "
    .. "the server does not accept fast enough, or its listen backlog is too small",
  on_anomaly = function(a)
    notify("default", a)
  end,
}

rule {
  name = "pod-udp-receive-drops",
  metric = "vigil_netstat_total",
  where = { group = { "Udp", "Udp6" }, statistic = "RcvbufErrors" },
  by = { "namespace", "pod" },
  detect = threshold { above = 0 },
  severity = "warning",
  pending = "30s",
  resolve_after = "5m",
  cooldown = "30m",
  summary = "{namespace}/{pod}: {value} UDP datagrams/s dropped by full socket receive buffers (RcvbufErrors): "
    .. "the application reads too slowly, or its SO_RCVBUF is too small",
  on_anomaly = function(a)
    notify("default", a)
  end,
}
