/* Latency of connections to the Kubernetes API server, for every socket of the node (host and
 * pods alike): cgroup_skb programs on the root of the cgroup v2 hierarchy, attached by the agent
 * only when API server addresses are configured, so no other traffic pays for them otherwise.
 *
 * Per connection, keyed by socket cookie (stable across NAT, unlike the addresses: egress sees
 * the endpoint after the node's DNAT, ingress the service address again after de-NAT):
 *   egress SYN to a listed address:port        -> SYN_SENT, clock starts
 *   ingress SYN-ACK                            -> handshake latency; IDLE
 *   egress first segment with payload          -> REQUEST_SENT, clock restarts
 *   ingress first segment with payload         -> first-response latency; forgotten
 *   ingress RST while SYN_SENT / REQUEST_SENT  -> counted as a reset; forgotten
 * Connections that stay in SYN_SENT or REQUEST_SENT past the configured time are counted as
 * "no response" by the agent, which reads and prunes vigil_api_pending each tick. Only the first
 * request of a connection is timed (clients such as kubelet keep connections open for long).
 * Addresses are matched on IPv4 and on IPv6 without extension headers before TCP.
 *
 * Include after vigil_abi.h. */
#ifndef VIGIL_LIB_APISERVER_H
#define VIGIL_LIB_APISERVER_H

#include "lib/log2.h"

struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, VIGIL_API_MAX_SERVERS);
  __type(key, struct vigil_api_server_key);
  __type(value, __u8);
} vigil_api_servers SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_ARRAY);
  __uint(max_entries, 1);
  __type(key, __u32);
  __type(value, struct vigil_api_ports);
} vigil_api_ports SEC(".maps");

/* Shared, not per-CPU: the answer is often handled on another CPU than the request. */
struct {
  __uint(type, BPF_MAP_TYPE_LRU_HASH);
  __uint(max_entries, VIGIL_API_MAX_PENDING);
  __type(key, __u64);
  __type(value, struct vigil_api_pending);
} vigil_api_pending SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
  __uint(max_entries, 1);
  __type(key, __u32);
  __type(value, struct vigil_api_value);
} vigil_api_latency SEC(".maps");

#define VIGIL_API_TCP_FIN 0x01
#define VIGIL_API_TCP_SYN 0x02
#define VIGIL_API_TCP_RST 0x04
#define VIGIL_API_TCP_ACK 0x10

struct vigil_api_seg {
  struct vigil_api_server_key local, remote;
  __u8 flags;
  __u32 payload; /* bytes of TCP payload in this skb (all segments of a GSO skb) */
};

/* Whether `port` is one of the API servers' (or the list is too long to say). */
static __always_inline int vigil_api_port_listed(__u16 port) {
  __u32 zero = 0;
  struct vigil_api_ports *p = bpf_map_lookup_elem(&vigil_api_ports, &zero);
  if (!p) return 0;
  const __u32 n = p->count;
  if (n > VIGIL_API_MAX_PORTS) return 1;
#pragma unroll
  for (int i = 0; i < VIGIL_API_MAX_PORTS; i++)
    if (i < n && p->ports[i] == port) return 1;
  return 0;
}

struct vigil_api_tcp {
  __u16 sport, dport;
  __u32 seq, ack;
  __u8 doff, flags;
};

/* cgroup_skb data starts at the IP header. Returns 0 for a TCP segment whose server-side port
 * (the destination when `to_server`, else the source) is an API server's, -1 otherwise. The
 * headers are read in place when they are in the linear part (almost always), else copied. */
static __always_inline int vigil_api_parse(struct __sk_buff *skb, struct vigil_api_seg *s, int to_server) {
  void *data = (void *)(long)skb->data;
  void *end = (void *)(long)skb->data_end;
  __u32 l4;
  struct iphdr ip;
  struct ipv6hdr ip6;
  const int v4 = skb->protocol == bpf_htons(0x0800);
  if (v4) {
    if (data + sizeof(ip) <= end) __builtin_memcpy(&ip, data, sizeof(ip));
    else if (bpf_skb_load_bytes(skb, 0, &ip, sizeof(ip))) return -1;
    if (ip.protocol != 6 || (bpf_ntohs(ip.frag_off) & 0x1fff)) return -1;
    l4 = (ip.ihl & 0xf) * 4;
  } else if (skb->protocol == bpf_htons(0x86DD)) {
    if (data + sizeof(ip6) <= end) __builtin_memcpy(&ip6, data, sizeof(ip6));
    else if (bpf_skb_load_bytes(skb, 0, &ip6, sizeof(ip6))) return -1;
    if (ip6.nexthdr != 6) return -1;
    l4 = sizeof(ip6);
  } else {
    return -1;
  }
  struct vigil_api_tcp t;
  if (data + l4 + sizeof(t) <= end) __builtin_memcpy(&t, data + l4, sizeof(t));
  else if (bpf_skb_load_bytes(skb, l4, &t, sizeof(t))) return -1;
  if (!vigil_api_port_listed(bpf_ntohs(to_server ? t.dport : t.sport))) return -1;
  if (v4) {
    __builtin_memset(s->local.addr, 0, 10);
    __builtin_memset(s->remote.addr, 0, 10);
    s->local.addr[10] = s->local.addr[11] = s->remote.addr[10] = s->remote.addr[11] = 0xff;
    __builtin_memcpy(&s->local.addr[12], &ip.saddr, 4);
    __builtin_memcpy(&s->remote.addr[12], &ip.daddr, 4);
  } else {
    __builtin_memcpy(s->local.addr, &ip6.saddr, 16);
    __builtin_memcpy(s->remote.addr, &ip6.daddr, 16);
  }
  s->local.port = bpf_ntohs(t.sport);
  s->remote.port = bpf_ntohs(t.dport);
  s->local.pad = s->remote.pad = 0;
  s->flags = t.flags;
  __u32 hdrs = l4 + (t.doff >> 4) * 4;
  s->payload = skb->len > hdrs ? skb->len - hdrs : 0;
  return 0;
}

/* Latency bucket: log2 of microseconds. */
static __always_inline __u32 vigil_api_bucket(__u64 ns) { return vigil_log2_bucket(ns / 1000, VIGIL_API_BUCKETS - 1); }

SEC("cgroup_skb/egress")
int vigil_api_egress(struct __sk_buff *skb) {
  struct vigil_api_seg s;
  if (vigil_api_parse(skb, &s, 1)) return 1;
  if (!bpf_map_lookup_elem(&vigil_api_servers, &s.remote)) return 1;
  __u64 cookie = bpf_get_socket_cookie(skb);
  if ((s.flags & (VIGIL_API_TCP_SYN | VIGIL_API_TCP_ACK)) == VIGIL_API_TCP_SYN) {
    /* A retransmitted SYN keeps the first one's time: the handshake the client waited for. */
    struct vigil_api_pending p = {.since_ns = bpf_ktime_get_ns(), .stage = VIGIL_API_SYN_SENT};
    bpf_map_update_elem(&vigil_api_pending, &cookie, &p, BPF_NOEXIST);
    return 1;
  }
  if (s.payload) {
    struct vigil_api_pending *p = bpf_map_lookup_elem(&vigil_api_pending, &cookie);
    if (p && p->stage == VIGIL_API_IDLE) {
      p->since_ns = bpf_ktime_get_ns();
      p->stage = VIGIL_API_REQUEST_SENT;
    }
  }
  return 1;
}

SEC("cgroup_skb/ingress")
int vigil_api_ingress(struct __sk_buff *skb) {
  struct vigil_api_seg s;
  if (vigil_api_parse(skb, &s, 0)) return 1;
  /* Received: the server is the source. */
  if (!bpf_map_lookup_elem(&vigil_api_servers, &s.local)) return 1;
  __u64 cookie = bpf_get_socket_cookie(skb);
  struct vigil_api_pending *p = bpf_map_lookup_elem(&vigil_api_pending, &cookie);
  if (!p) return 1;
  __u32 zero = 0;
  struct vigil_api_value *v = bpf_map_lookup_elem(&vigil_api_latency, &zero);
  if (!v) return 1;
  __u64 now = bpf_ktime_get_ns();
  __u64 ns = now > p->since_ns ? now - p->since_ns : 0;
  if (p->stage == VIGIL_API_SYN_SENT) {
    if (s.flags & VIGIL_API_TCP_RST) {
      v->resets[0] += 1;
      bpf_map_delete_elem(&vigil_api_pending, &cookie);
    } else if ((s.flags & (VIGIL_API_TCP_SYN | VIGIL_API_TCP_ACK)) == (VIGIL_API_TCP_SYN | VIGIL_API_TCP_ACK)) {
      v->handshake[vigil_api_bucket(ns)] += 1;
      v->handshake_sum_ns += ns;
      p->stage = VIGIL_API_IDLE;
      p->since_ns = now;
    }
  } else if (p->stage == VIGIL_API_REQUEST_SENT) {
    if (s.payload) {
      v->response[vigil_api_bucket(ns)] += 1;
      v->response_sum_ns += ns;
      bpf_map_delete_elem(&vigil_api_pending, &cookie);
    } else if (s.flags & VIGIL_API_TCP_RST) {
      v->resets[1] += 1;
      bpf_map_delete_elem(&vigil_api_pending, &cookie);
    }
  }
  return 1;
}

#endif /* VIGIL_LIB_APISERVER_H */
