#!/usr/bin/env python3
"""Writes charts/vigil/dashboards/*.json, the Grafana dashboards of the chart.

The dashboards are generated so that they stay consistent (same variables, same layout rules);
edit this file and run it, then commit both. `--check` exits 1 when the committed JSON differs
from what this script writes (ctest `chart_dashboards` runs it).

Every series is selected with job="vigil" and the `instance` variable (one agent per node).
Only metric names that the agent exports are used (checked by tests/charts/check_chart.py).
"""
import json
import sys
from pathlib import Path

OUT = Path(__file__).resolve().parents[2] / "charts" / "vigil" / "dashboards"
SEL = 'job="vigil", instance=~"$instance"'
POD = SEL + ', namespace=~"$namespace", pod=~"$pod"'
RATE = "$__rate_interval"


def target(expr, legend, ref):
    return {"datasource": {"type": "prometheus", "uid": "${datasource}"}, "expr": expr,
            "legendFormat": legend, "refId": ref}


def panel(title, targets, unit="short", kind="timeseries", desc="", w=12, h=8, stack=False):
    p = {"type": kind, "title": title, "description": desc,
         "datasource": {"type": "prometheus", "uid": "${datasource}"},
         "targets": [target(e, l, chr(65 + i)) for i, (e, l) in enumerate(targets)],
         "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
         "gridPos": {"w": w, "h": h}, "options": {}}
    if kind == "timeseries":
        p["fieldConfig"]["defaults"]["custom"] = {"drawStyle": "line", "fillOpacity": 10,
                                                  "stacking": {"mode": "normal" if stack else "none"}}
        p["options"] = {"legend": {"displayMode": "table", "placement": "bottom", "calcs": ["mean", "max"]},
                        "tooltip": {"mode": "multi", "sort": "desc"}}
    elif kind == "stat":
        p["options"] = {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                        "colorMode": "value", "graphMode": "area"}
    return p


def row(title):
    return {"type": "row", "title": title, "collapsed": False, "panels": [], "gridPos": {"w": 24, "h": 1}}


def var_query(name, label, query, multi=True, include_all=True):
    return {"name": name, "label": label, "type": "query",
            "datasource": {"type": "prometheus", "uid": "${datasource}"},
            "query": {"query": query, "refId": f"{name}-var"}, "definition": query,
            "refresh": 2, "multi": multi, "includeAll": include_all, "allValue": ".*",
            "current": {}, "sort": 1, "regex": ""}


def dashboard(uid, title, desc, panels, pod_vars=False):
    # Lay the panels out left to right, top to bottom.
    x = y = 0
    line_h = 0
    for i, p in enumerate(panels):
        p["id"] = i + 1
        gp = p["gridPos"]
        if p["type"] == "row" or x + gp["w"] > 24:
            x, y = 0, y + line_h
            line_h = 0
        gp["x"], gp["y"] = x, y
        x += gp["w"]
        line_h = max(line_h, gp["h"])
        if p["type"] == "row":
            x, y, line_h = 0, y + 1, 0
    variables = [
        {"name": "datasource", "label": "Data source", "type": "datasource", "query": "prometheus",
         "current": {}, "refresh": 1, "regex": "", "hide": 0},
        var_query("instance", "Agent (node)", 'label_values(vigil_build_info{job="vigil"}, instance)'),
    ]
    if pod_vars:
        variables.append(var_query("namespace", "Namespace",
                                   'label_values(vigil_forward_packets_total{job="vigil", instance=~"$instance"}, namespace)'))
        variables.append(var_query("pod", "Pod",
                                   'label_values(vigil_forward_packets_total{job="vigil", instance=~"$instance", namespace=~"$namespace"}, pod)'))
    return {"uid": uid, "title": title, "description": desc, "tags": ["vigil"], "editable": True,
            "schemaVersion": 39, "version": 1, "time": {"from": "now-1h", "to": "now"},
            "refresh": "30s", "timezone": "", "graphTooltip": 1,
            "templating": {"list": variables}, "annotations": {"list": []}, "links": [
                {"type": "dashboards", "tags": ["vigil"], "asDropdown": True, "title": "Vigil"}],
            "panels": panels}


def node_overview():
    return dashboard("vigil-node-overview", "Vigil / Node overview",
                     "Every pod of the selected nodes together: traffic, drops, TCP, DNS, anomalies.", [
        row("Pods and anomalies"),
        panel("Pods watched", [(f'sum by (state) (vigil_pods{{{SEL}}})', "{{state}}")], kind="stat", w=6, h=5),
        panel("Anomalies started (1h)", [(f'sum(increase(vigil_anomalies_total{{{SEL}}}[1h]))', "anomalies")],
              kind="stat", w=6, h=5),
        panel("Captures running", [(f'sum(vigil_captures_running{{{SEL}}})', "running")], kind="stat", w=6, h=5),
        panel("Agents", [(f'count(vigil_build_info{{{SEL}}})', "agents")], kind="stat", w=6, h=5),
        row("Traffic"),
        panel("Packets/s by direction", [(f'sum by (direction) (rate(vigil_forward_packets_total{{{SEL}}}[{RATE}]))', "{{direction}}")], "pps"),
        panel("Bytes/s by direction", [(f'sum by (direction) (rate(vigil_forward_bytes_total{{{SEL}}}[{RATE}]))', "{{direction}}")], "Bps"),
        panel("Drops/s by reason", [(f'topk(10, sum by (reason) (rate(vigil_drop_packets_total{{{SEL}}}[{RATE}])))', "{{reason}}")], "pps", stack=True),
        panel("Top pods by bytes/s", [(f'topk(10, sum by (namespace, pod) (rate(vigil_forward_bytes_total{{{SEL}}}[{RATE}])))', "{{namespace}}/{{pod}}")], "Bps"),
        row("TCP and DNS"),
        panel("TCP connect failures/s by reason", [(f'sum by (reason) (rate(vigil_tcp_connect_failures_total{{{SEL}}}[{RATE}]))', "{{reason}}")], "ops", w=8),
        panel("TCP resets/s", [(f'sum by (direction) (rate(vigil_tcp_resets_total{{{SEL}}}[{RATE}]))', "{{direction}}")], "ops", w=8),
        panel("DNS responses/s by rcode", [(f'sum by (rcode) (rate(vigil_dns_responses_total{{{SEL}}}[{RATE}]))', "{{rcode}}")], "ops", w=8),
        row("The node's own namespace (metrics.netstat)"),
        panel("Node TCP sockets by state", [(f'sum by (state) (vigil_node_tcp_sockets{{{SEL}}})', "{{state}}")], "short", w=8, stack=True),
        panel("Node interface drops and errors/s", [(f'sum by (instance, interface, statistic) (rate(vigil_node_interface_stats_total{{{SEL}}}[{RATE}]))', "{{instance}} {{interface}} {{statistic}}")], "ops", w=8,
              desc="rx_missed_errors and rx_fifo_errors are frames the NIC lost before the kernel saw them: no drop reason names those."),
        panel("Node SNMP drop and error counters/s", [(f'topk(10, sum by (group, statistic) (rate(vigil_node_netstat_total{{{SEL}, statistic!~"ActiveOpens|PassiveOpens"}}[{RATE}])))', "{{group}}:{{statistic}}")], "ops", w=8),
        panel("Node interfaces: bytes/s", [(f'sum by (instance, interface, direction) (rate(vigil_node_interface_bytes_total{{{SEL}}}[{RATE}]))', "{{instance}} {{interface}} {{direction}}")], "Bps", w=24,
              desc="The kernel's own counts of the node's NICs, bridges and tunnels, host traffic included (the pods' veths are the per-pod panels)."),
        panel("Conntrack table: share of nf_conntrack_max", [(f'max by (instance) (vigil_node_conntrack_entries{{{SEL}}} / vigil_node_conntrack_entries_limit{{{SEL}}})', "{{instance}}")], "percentunit", w=12,
              desc="The node's conntrack table (kube-proxy's). At 100 % the kernel evicts unanswered connections, then drops new ones (rule node-conntrack-full warns at 90 %)."),
        panel("Conntrack drops, evictions and insert failures/s", [(f'sum by (instance, statistic) (rate(vigil_node_conntrack_stats_total{{{SEL}, statistic=~"drop|early_drop|insert_failed"}}[{RATE}]))', "{{instance}} {{statistic}}")], "ops", w=12,
              desc="drop and early_drop: the table was full; insert_failed: a new connection's packet lost in a clash (slow DNS lookups). The drop reasons show these as NETFILTER_DROP."),
        panel("Conntrack table: top pods (while it is half full)", [(f'topk(10, max by (instance, namespace, pod) (vigil_node_conntrack_pod_entries{{{SEL}}}))', "{{instance}} {{namespace}}/{{pod}}")], "short", w=24,
              desc="Entries of the node's conntrack table to or from each pod, counted while the table holds metrics.netstat.conntrack_by_pod of nf_conntrack_max (50 % by default): who fills it."),
        panel("Neighbour tables: share of gc_thresh3", [(f'max by (instance, family) (vigil_node_neighbor_entries{{{SEL}}} / vigil_node_neighbor_entries_limit{{{SEL}}})', "{{instance}} {{family}}")], "percentunit", w=12,
              desc="The kernel's ARP (ipv4) and NDISC (ipv6) tables, one for all of a node's namespaces. Past gc_thresh3 new neighbours fail (rule node-neighbor-table-full warns at 90 %)."),
        panel("Neighbour table overflows and failed resolutions/s", [(f'sum by (instance, family, statistic) (rate(vigil_node_neighbor_stats_total{{{SEL}, statistic=~"table_fulls|res_failed|unresolved_discards"}}[{RATE}]))', "{{instance}} {{family}} {{statistic}}")], "ops", w=12,
              desc="table_fulls: a neighbour could not be added (packets to it dropped); res_failed: a neighbour did not answer; unresolved_discards: packets dropped while waiting for an answer."),
        row("Anomalies"),
        panel("Anomalies started by rule", [(f'sum by (rule) (increase(vigil_anomalies_total{{{SEL}}}[{RATE}]))', "{{rule}}")], "short", w=24, stack=True),
    ])


def pod_traffic():
    return dashboard("vigil-pod-traffic", "Vigil / Pod traffic and drops",
                     "Per pod: packets and bytes by direction (the pod's), kernel drops by skb_drop_reason, malformed packets, remote peers.", [
        row("Traffic"),
        panel("Packets/s", [(f'sum by (namespace, pod, direction) (rate(vigil_forward_packets_total{{{POD}}}[{RATE}]))', "{{namespace}}/{{pod}} {{direction}}")], "pps"),
        panel("Bytes/s", [(f'sum by (namespace, pod, direction) (rate(vigil_forward_bytes_total{{{POD}}}[{RATE}]))', "{{namespace}}/{{pod}} {{direction}}")], "Bps"),
        row("Drops"),
        panel("Dropped packets/s by reason", [(f'sum by (namespace, pod, direction, reason) (rate(vigil_drop_packets_total{{{POD}}}[{RATE}]))', "{{namespace}}/{{pod}} {{direction}} {{reason}}")], "pps", stack=True),
        panel("Dropped bytes/s by reason", [(f'sum by (namespace, pod, direction, reason) (rate(vigil_drop_bytes_total{{{POD}}}[{RATE}]))', "{{namespace}}/{{pod}} {{direction}} {{reason}}")], "Bps", stack=True),
        panel("Drop share of packets", [(f'sum by (namespace, pod, direction) (rate(vigil_drop_packets_total{{{POD}}}[{RATE}])) / (sum by (namespace, pod, direction) (rate(vigil_forward_packets_total{{{POD}}}[{RATE}])) + sum by (namespace, pod, direction) (rate(vigil_drop_packets_total{{{POD}}}[{RATE}])))', "{{namespace}}/{{pod}} {{direction}}")], "percentunit"),
        panel("Malformed packets/s by layer", [(f'sum by (namespace, pod, layer) (rate(vigil_malformed_packets_total{{{POD}}}[{RATE}]))', "{{namespace}}/{{pod}} {{layer}}")], "pps"),
        row("Remote peers (pods that opt in to remote_context)"),
        panel("Top peers by bytes/s", [(f'topk(10, sum by (namespace, pod, remote_namespace, remote_pod, remote_ip) (rate(vigil_remote_forward_bytes_total{{{POD}}}[{RATE}])))', "{{namespace}}/{{pod}} <-> {{remote_namespace}}/{{remote_pod}}{{remote_ip}}")], "Bps"),
        panel("Top peers by dropped packets/s", [(f'topk(10, sum by (namespace, pod, remote_namespace, remote_pod, remote_ip) (rate(vigil_remote_drop_packets_total{{{POD}}}[{RATE}])))', "{{namespace}}/{{pod}} <-> {{remote_namespace}}/{{remote_pod}}{{remote_ip}}")], "pps"),
    ], pod_vars=True)


def dns():
    return dashboard("vigil-dns", "Vigil / DNS",
                     "DNS seen on port 53 of each pod: requests, answers by rcode, latency matched by transaction id.", [
        panel("Requests/s by qtype", [(f'sum by (qtype) (rate(vigil_dns_requests_total{{{POD}, direction="egress"}}[{RATE}]))', "{{qtype}}")], "ops"),
        panel("Responses/s by rcode (received)", [(f'sum by (rcode) (rate(vigil_dns_responses_total{{{POD}, direction="ingress"}}[{RATE}]))', "{{rcode}}")], "ops", stack=True),
        panel("Error share (NXDOMAIN, SERVFAIL, REFUSED) by pod", [(f'sum by (namespace, pod) (rate(vigil_dns_responses_total{{{POD}, direction="ingress", rcode=~"NXDOMAIN|SERVFAIL|REFUSED"}}[{RATE}])) / sum by (namespace, pod) (rate(vigil_dns_responses_total{{{POD}, direction="ingress"}}[{RATE}]))', "{{namespace}}/{{pod}}")], "percentunit"),
        panel("Client latency p50 / p99", [
            (f'histogram_quantile(0.5, sum by (le) (rate(vigil_dns_latency_seconds_bucket{{{POD}, side="client"}}[{RATE}])))', "p50"),
            (f'histogram_quantile(0.99, sum by (le) (rate(vigil_dns_latency_seconds_bucket{{{POD}, side="client"}}[{RATE}])))', "p99")], "s"),
        panel("Mean client latency by pod", [(f'sum by (namespace, pod) (rate(vigil_dns_latency_seconds_sum{{{POD}, side="client"}}[{RATE}])) / sum by (namespace, pod) (rate(vigil_dns_latency_seconds_count{{{POD}, side="client"}}[{RATE}]))', "{{namespace}}/{{pod}}")], "s"),
        panel("Unmatched responses/s and malformed DNS/s", [
            (f'sum by (namespace, pod) (rate(vigil_dns_unmatched_responses_total{{{POD}}}[{RATE}]))', "unmatched {{namespace}}/{{pod}}"),
            (f'sum by (namespace, pod) (rate(vigil_malformed_packets_total{{{POD}, layer="dns"}}[{RATE}]))', "malformed {{namespace}}/{{pod}}")], "ops"),
        panel("Requests with no response/s (timeouts) by pod and side", [(f'sum by (namespace, pod, side) (rate(vigil_dns_timeouts_total{{{POD}}}[{RATE}]))', "{{namespace}}/{{pod}} {{side}}")], "ops",
              desc="Requests unanswered metrics.dns_timeout (5 s) after their first send: each is a lookup that took 5 s more (answered after the resolver's retry) or failed. Client side: the pod sent it; server side: a DNS server pod received it."),
        panel("Retries/s by pod and side", [(f'sum by (namespace, pod, side) (rate(vigil_dns_request_retries_total{{{POD}}}[{RATE}]))', "{{namespace}}/{{pod}} {{side}}")], "ops",
              desc="Requests sent again (same id, same socket) while the first waited: the resolver's retries. Latency is timed from the first send."),
    ], pod_vars=True)


def tcp():
    return dashboard("vigil-tcp", "Vigil / TCP health",
                     "TCP of each pod's sockets: opens, failures, resets, retransmits, RTT; and the node's connections to the API server.", [
        row("Connections"),
        panel("Connect attempts/s and established/s", [
            (f'sum by (namespace, pod) (rate(vigil_tcp_connect_attempts_total{{{POD}}}[{RATE}]))', "attempts {{namespace}}/{{pod}}"),
            (f'sum by (namespace, pod, role) (rate(vigil_tcp_connections_established_total{{{POD}}}[{RATE}]))', "established {{role}} {{namespace}}/{{pod}}")], "ops"),
        panel("Connect failures/s by reason", [(f'sum by (namespace, pod, reason) (rate(vigil_tcp_connect_failures_total{{{POD}}}[{RATE}]))', "{{namespace}}/{{pod}} {{reason}}")], "ops"),
        panel("Resets/s (egress = sent)", [(f'sum by (namespace, pod, direction) (rate(vigil_tcp_resets_total{{{POD}}}[{RATE}]))', "{{namespace}}/{{pod}} {{direction}}")], "ops"),
        panel("Retransmit ratio (retransmits / ACK segments sent)", [(f'sum by (namespace, pod) (rate(vigil_tcp_retransmits_total{{{POD}}}[{RATE}])) / sum by (namespace, pod) (rate(vigil_tcp_flags_total{{{POD}, direction="egress", flag="ACK"}}[{RATE}]))', "{{namespace}}/{{pod}}")], "percentunit"),
        panel("Smoothed RTT p50 / p99 (at connection close)", [
            (f'histogram_quantile(0.5, sum by (le) (rate(vigil_tcp_rtt_seconds_bucket{{{POD}}}[{RATE}])))', "p50"),
            (f'histogram_quantile(0.99, sum by (le) (rate(vigil_tcp_rtt_seconds_bucket{{{POD}}}[{RATE}])))', "p99")], "s"),
        panel("State transitions/s", [(f'sum by (state) (rate(vigil_tcp_state_transitions_total{{{POD}}}[{RATE}]))', "{{state}}")], "ops"),
        panel("Segments/s by flag", [(f'sum by (flag, direction) (rate(vigil_tcp_flags_total{{{POD}}}[{RATE}]))', "{{flag}} {{direction}}")], "ops", w=24),
        row("The kernel's own counters (metrics.netstat, read every 10 s)"),
        panel("Listen queue overflows and drops/s", [(f'sum by (namespace, pod, statistic) (rate(vigil_netstat_total{{{POD}, group="TcpExt", statistic=~"ListenOverflows|ListenDrops"}}[{RATE}]))', "{{namespace}}/{{pod}} {{statistic}}")], "ops",
              desc="SYNs and connections the kernel dropped because a listener's accept queue was full: a server that does not accept fast enough."),
        panel("Top SNMP drop and error counters/s", [(f'topk(10, sum by (namespace, pod, group, statistic) (rate(vigil_netstat_total{{{POD}, statistic!~"ActiveOpens|PassiveOpens"}}[{RATE}])))', "{{namespace}}/{{pod}} {{group}}:{{statistic}}")], "ops",
              desc="metrics.netstat.statistics as nstat names them (Udp:NoPorts, Tcp:OutRsts, TcpExt:TCPTimeouts, ...)."),
        panel("TCP sockets by state", [(f'sum by (state) (vigil_tcp_sockets{{{POD}}})', "{{state}}")], "short", stack=True,
              desc="Per pod with metrics.netstat.sockets: all (each count walks the node's TCP hash table)."),
        panel("Interface drops and errors/s (the pod's view)", [(f'sum by (namespace, pod, interface, statistic) (rate(vigil_interface_stats_total{{{POD}}}[{RATE}]))', "{{namespace}}/{{pod}} {{interface}} {{statistic}}")], "ops"),
        panel("TCP sockets in use and in TIME_WAIT", [(f'sum by (namespace, pod) (vigil_tcp_sockets_in_use{{{POD}}})', "{{namespace}}/{{pod}} in use"),
                                                    (f'sum by (namespace, pod) (vigil_tcp_sockets_time_wait{{{POD}}})', "{{namespace}}/{{pod}} TIME_WAIT")], "short", w=24,
              desc="Every pod, no socket dump (/proc/net/sockstat): sockets that only grow in use are a leak (CLOSE_WAIT: the application never closes them)."),
        row("API server connections (apiserver.addresses)"),
        panel("Handshake and first response p99", [
            (f'histogram_quantile(0.99, sum by (instance, le) (rate(vigil_apiserver_handshake_seconds_bucket{{{SEL}}}[{RATE}])))', "handshake {{instance}}"),
            (f'histogram_quantile(0.99, sum by (instance, le) (rate(vigil_apiserver_first_response_seconds_bucket{{{SEL}}}[{RATE}])))', "first response {{instance}}")], "s"),
        panel("No response and resets/s", [
            (f'sum by (instance, stage) (rate(vigil_apiserver_no_response_total{{{SEL}}}[{RATE}]))', "no response {{stage}} {{instance}}"),
            (f'sum by (instance, stage) (rate(vigil_apiserver_resets_total{{{SEL}}}[{RATE}]))', "reset {{stage}} {{instance}}")], "ops"),
    ], pod_vars=True)


def anomalies_captures():
    return dashboard("vigil-anomalies-captures", "Vigil / Anomalies and captures",
                     "What the rules found, what was told to whom, and the packet captures taken.", [
        row("Rules"),
        panel("Anomalies started by rule", [(f'sum by (rule) (increase(vigil_anomalies_total{{{SEL}}}[{RATE}]))', "{{rule}}")], "short", stack=True),
        panel("Rule errors/s by rule and kind", [(f'sum by (rule, kind) (rate(vigil_rule_errors_total{{{SEL}}}[{RATE}]))', "{{rule}} {{kind}}")], "ops"),
        panel("Groups pending and firing by rule", [(f'sum by (rule, state) (vigil_rule_groups{{{SEL}, state=~"pending|firing"}})', "{{rule}} {{state}}")], "short",
              desc="Pending: anomalous, waiting out the rule's `pending` (their pods keep a lookback ring, captures.lookback.pending); firing: an open anomaly.", w=24),
        panel("Quarantined rules", [(f'sum by (instance, rule) (vigil_rule_quarantined{{{SEL}}}) > 0', "{{rule}} {{instance}}")], "short", kind="table", w=24, h=6),
        row("Notifications"),
        panel("Sent, failed, retried, dropped /s by channel", [
            (f'sum by (channel) (rate(vigil_notifications_sent_total{{{SEL}}}[{RATE}]))', "sent {{channel}}"),
            (f'sum by (channel) (rate(vigil_notifications_failed_total{{{SEL}}}[{RATE}]))', "failed {{channel}}"),
            (f'sum by (channel) (rate(vigil_notifications_retried_total{{{SEL}}}[{RATE}]))', "retried {{channel}}"),
            (f'sum by (channel) (rate(vigil_notifications_dropped_total{{{SEL}}}[{RATE}]))', "dropped {{channel}}")], "ops", w=8),
        panel("Outbox depth by channel", [(f'sum by (channel) (vigil_notification_queue_depth{{{SEL}}})', "{{channel}}")], "short", w=8),
        panel("Delivery time p99 by channel", [(f'histogram_quantile(0.99, sum by (channel, le) (rate(vigil_notification_delivery_seconds_bucket{{{SEL}}}[{RATE}])))', "{{channel}}")], "s", w=8),
        panel("Suppressed and TLS errors /s", [
            (f'sum by (channel) (rate(vigil_notifications_suppressed_total{{{SEL}}}[{RATE}]))', "suppressed {{channel}}"),
            (f'sum by (channel) (rate(vigil_notifications_tls_errors_total{{{SEL}}}[{RATE}]))', "tls errors {{channel}}")], "ops", w=24, h=6),
        row("Captures"),
        panel("Captures started, completed, failed", [
            (f'sum(increase(vigil_captures_started_total{{{SEL}}}[{RATE}]))', "started"),
            (f'sum(increase(vigil_captures_completed_total{{{SEL}}}[{RATE}]))', "completed"),
            (f'sum(increase(vigil_captures_failed_total{{{SEL}}}[{RATE}]))', "failed")], "short", w=8),
        panel("Captures refused by reason", [(f'sum by (reason) (increase(vigil_captures_refused_total{{{SEL}}}[{RATE}]))', "{{reason}}")], "short", w=8, stack=True),
        panel("Running captures and disk used", [
            (f'sum by (instance) (vigil_captures_running{{{SEL}}})', "running {{instance}}"),
            (f'sum by (instance) (vigil_capture_disk_bytes{{{SEL}}}) / 1048576', "disk MiB {{instance}}")], "short", w=8),
        panel("Captured packets/s: written and lost", [
            (f'sum(rate(vigil_capture_packets_written_total{{{SEL}}}[{RATE}]))', "written"),
            (f'sum(rate(vigil_capture_packets_lost_total{{{SEL}}}[{RATE}]))', "lost in captures"),
            (f'sum(rate(vigil_capture_ring_records_total{{{SEL}}}[{RATE}]))', "ring: read"),
            (f'sum(rate(vigil_capture_ring_lost_total{{{SEL}}}[{RATE}]))', "ring: lost (full)")], "pps"),
        panel("Lookback rings", [
            (f'sum by (instance) (vigil_lookback_pods{{{SEL}}})', "pods {{instance}}"),
            (f'sum by (instance) (vigil_lookback_bytes{{{SEL}}}) / 1048576', "MiB {{instance}}"),
            (f'sum by (instance) (rate(vigil_lookback_evicted_total{{{SEL}}}[{RATE}]))', "evicted/s {{instance}}"),
            (f'sum by (instance) (vigil_lookback_packets{{{SEL}}})', "packets {{instance}}")], "short"),
    ])


def self_health():
    return dashboard("vigil-health", "Vigil / Agent health",
                     "Vigil's own health: scrapes, tick, eBPF errors and map use, Kubernetes API sync.", [
        row("Agent"),
        panel("Agents up", [('sum(up{job="vigil", instance=~"$instance"})', "up"),
                            ('count(up{job="vigil", instance=~"$instance"})', "targets")], kind="stat", w=6, h=5),
        panel("Versions", [(f'count by (version) (vigil_build_info{{{SEL}}})', "{{version}}")], kind="stat", w=6, h=5),
        panel("Ticks/s", [(f'sum by (instance) (rate(vigil_tick_duration_seconds_count{{{SEL}}}[{RATE}]))', "{{instance}}")], "ops", w=12, h=5),
        panel("Tick duration p50 / p99", [
            (f'histogram_quantile(0.5, sum by (instance, le) (rate(vigil_tick_duration_seconds_bucket{{{SEL}}}[{RATE}])))', "p50 {{instance}}"),
            (f'histogram_quantile(0.99, sum by (instance, le) (rate(vigil_tick_duration_seconds_bucket{{{SEL}}}[{RATE}])))', "p99 {{instance}}")], "s"),
        panel("Pods by state, and those with packet-level programs", [
            (f'sum by (instance, state) (vigil_pods{{{SEL}}})', "{{state}} {{instance}}"),
            (f'sum by (instance) (vigil_pods_with_programs{{{SEL}}})', "with programs {{instance}}")], "short",
              desc="metrics.packet_level: pods whose packets Vigil's TC programs see (a capture adds its pod while it runs)."),
        row("eBPF"),
        panel("eBPF errors/s by site (counts lost)", [(f'sum by (instance, site) (rate(vigil_bpf_errors_total{{{SEL}}}[{RATE}]))', "{{site}} {{instance}}")], "ops"),
        panel("Map use (entries / max entries)", [(f'max by (map) (vigil_bpf_map_entries{{{SEL}}} / vigil_bpf_map_max_entries{{{SEL}}})', "{{map}}")], "percentunit"),
        panel("Program time per run (kernel.bpf_stats_enabled=1)", [(f'sum by (program) (rate(vigil_bpf_program_run_seconds_total{{{SEL}}}[{RATE}])) / sum by (program) (rate(vigil_bpf_program_runs_total{{{SEL}}}[{RATE}]))', "{{program}}")], "s"),
        panel("Program CPU (share of one core)", [(f'sum by (program) (rate(vigil_bpf_program_run_seconds_total{{{SEL}}}[{RATE}]))', "{{program}}")], "percentunit"),
        panel("Tracepoint hits/s the kernel ran no program for, and recursion misses/s", [
            (f'sum by (instance, program) (rate(vigil_tracepoint_undelivered_total{{{SEL}}}[{RATE}]))', "undelivered {{program}} {{instance}}"),
            (f'sum by (instance, program) (rate(vigil_bpf_program_recursion_misses_total{{{SEL}}}[{RATE}]))', "recursion {{program}} {{instance}}")], "ops", w=24,
              desc="Events of drops, TCP states and retransmits missing from Vigil's counts because the kernel did not run its tracing program. Undelivered needs metrics.tracepoint_audit: true (a lower bound)."),
        row("Kubernetes API"),
        panel("Pod view age (seconds since confirmed; -1 = never)", [(f'max by (instance) (vigil_kube_sync_age_seconds{{{SEL}}})', "{{instance}}")], "s", w=8),
        panel("API errors/s by kind", [(f'sum by (kind) (rate(vigil_kube_errors_total{{{SEL}}}[{RATE}]))', "{{kind}}")], "ops", w=8),
        panel("Consecutive failed requests", [(f'max by (instance) (vigil_kube_consecutive_errors{{{SEL}}})', "{{instance}}")], "short", w=8),
        panel("Pods the API server reports, by state", [(f'sum by (state) (vigil_kube_pods{{{SEL}}})', "{{state}}")], "short", w=24, stack=True),
    ])


DASHBOARDS = {
    "vigil-node-overview.json": node_overview,
    "vigil-pod-traffic.json": pod_traffic,
    "vigil-dns.json": dns,
    "vigil-tcp.json": tcp,
    "vigil-anomalies-captures.json": anomalies_captures,
    "vigil-health.json": self_health,
}


def main():
    check = "--check" in sys.argv[1:]
    bad = 0
    for name, make in DASHBOARDS.items():
        text = json.dumps(make(), indent=2, sort_keys=True) + "\n"
        path = OUT / name
        if check:
            if not path.exists() or path.read_text() != text:
                print(f"make_dashboards: {path} differs from what tests/charts/make_dashboards.py writes; run it")
                bad = 1
        else:
            path.write_text(text)
            print(f"wrote {path}")
    extra = sorted(p.name for p in OUT.glob("*.json") if p.name not in DASHBOARDS)
    if extra:
        print(f"make_dashboards: dashboards not made by this script: {extra}")
        bad = 1
    return bad


if __name__ == "__main__":
    sys.exit(main())
