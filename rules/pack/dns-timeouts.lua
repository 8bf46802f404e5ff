-- Warns when a pod's DNS requests go unanswered: requests it sent (side client) or, for a DNS
-- server pod such as CoreDNS, requests it received (side server) with no response within
-- metrics.dns_timeout (5 s, what resolvers wait before they try again) of their first send,
-- whether the resolver's retry was then answered or not. The lookup then takes 5 s or fails,
-- so users see slow or broken requests well before anything errors.
--
-- Causes: a DNS server that is overloaded, unreachable or dropping (a NetworkPolicy, a full
-- conntrack table), and the conntrack insert race that loses one of the A and AAAA queries a
-- resolver sends together from one socket (node-conntrack-drops shows its insert_failed). A
-- healthy cluster has none, so a fixed floor rather than a learned baseline: 12 a minute for a
-- minute. A lone timeout now and then stays quiet.
--
-- Each firing captures the pod's DNS messages whole: the queries that get no answer, their
-- retries and the servers they went to. Linked from the notification.
rule {
  name = "dns-timeouts",
  metric = "vigil_dns_timeouts_total",
  by = { "namespace", "pod", "side" },
  detect = threshold { above = 0.2 },
  severity = "warning",
  pending = "1m",
  resolve_after = "2m",
  cooldown = "10m",
  summary = "{namespace}/{pod}: {value} DNS requests/s time out ({side} side): each a slow or failed lookup",
  on_anomaly = function(a)
    capture { filter = "port 53", snaplen = 512 }  -- before notify, so the notification links to it
    notify("default", a)
  end,
}
