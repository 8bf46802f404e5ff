-- Pages when a pod suddenly drops far more ingress packets than it usually does.
--
-- A pod's drop counter series only appears with its first drop; the engine seeds the pod's
-- group with a rate of 0 from the moment the pod is known, so the baseline has been learning
-- the quiet period and the first burst of drops scores high.
--
-- Some kfree_skb reasons are an endpoint's socket housekeeping, not packets lost on the way:
-- a socket closed with unread data (QUEUE_PURGE, SOCKET_CLOSE, TCP_CLOSE), duplicates of data
-- already received (TCP_OLD_DATA, TCP_OLD_SEQUENCE, TCP_OLD_ACK, TCP_TOO_OLD_ACK, TCP_OFOMERGE,
-- the PAWS checks), a retransmitted SYN on a connection already open (TCP_INVALID_SYN), a reset
-- that did its job (TCP_RESET; tcp-resets.lua watches those), data after the application aborted
-- (TCP_ABORT_ON_DATA). They follow client timeouts and the peer's own losses in bursts (a client
-- of a lossy pod gets its server's retransmissions twice), so they are left out here;
-- vigil_drop_packets_total still counts them, with their reason.
--
-- min_rate: a page needs at least 10 drops/s. A pod that never drops has a spread of zero, and
-- without a floor three stray drops in one tick would score as an outlier.
--
-- Only unicast drops count. Multicast and broadcast frames flood a bridge to every pod on it,
-- and each pod drops the groups it has not joined: a node's interfaces coming up send bursts
-- of IPv6 neighbour discovery and MLD reports that every other pod drops (NOT_SPECIFIED, in
-- ip6_mc_input). They are counted with cast="multicast" or "broadcast", and say nothing about
-- the pod's own traffic. Nor do cast="loopback" drops, which never left the pod (a metrics
-- client sending to a local port whose agent is not up drops every datagram as NO_SOCKET).
--
-- Each firing captures the pod's packets (the agent's defaults: 30 s from the firing, 128 bytes of
-- each, and the seconds before where the pod keeps a lookback ring): the flows that lose packets
-- and their retransmissions, for Wireshark. Linked from the notification.
rule {
  name = "pod-drop-surge",
  metric = "vigil_drop_packets_total",
  where = {
    direction = "ingress",
    cast = "unicast",
    reason = { except = { "QUEUE_PURGE", "SOCKET_CLOSE", "TCP_CLOSE", "TCP_OLD_DATA", "TCP_OLD_SEQUENCE",
                           "TCP_OLD_ACK", "TCP_TOO_OLD_ACK", "TCP_OFOMERGE", "TCP_RFC7323_PAWS",
                           "TCP_RFC7323_PAWS_ACK", "TCP_RFC7323_TW_PAWS", "TCP_INVALID_SYN", "TCP_RESET",
                           "TCP_ABORT_ON_DATA" } },
  },
  by = { "namespace", "pod" },
  detect = baseline.zscore { window = "2m", threshold = 4, min_rate = 10, warmup = "20s" },
  severity = "critical",
  pending = "0s",
  resolve_after = "10s",
  summary = "{namespace}/{pod} drops {value} packets/s on ingress, usually {baseline}/s (z={score})",
  on_anomaly = function(a)
    capture {}  -- before notify, so the notification links to it
    notify("default", a)
  end,
}
