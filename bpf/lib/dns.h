/* DNS telemetry for the TC programs: requests and responses per pod by question type and
 * rcode, and request->response latency matched in the kernel by transaction id.
 *
 * What counts as a well-formed message (anything else is counted once as malformed DNS and
 * never attributed to a qtype or rcode):
 *   - UDP: the datagram (bounded by its UDP length) holds the 12-byte header.
 *     TCP: the segment's payload starts with the 2-byte length (>= 12) and holds the header;
 *     a segment with less payload (an ACK, a FIN, a length sent alone) is ignored, not
 *     malformed, since without stream state it cannot be told from a message start.
 *   - QDCOUNT is exactly 1, or 0 in a response (servers may answer FORMERR or NOTIMP without a
 *     question; such a response counts with qtype OTHER). A request without a question, or
 *     any message with more than one (RFC 9619), is malformed.
 *   - The question's name is plain labels of 1..63 bytes ending in the root label, 255 bytes at
 *     most in all (so at most 127 labels), inside the message. A compression pointer (nothing
 *     precedes a question to point at), an extended label type or a name that runs past the
 *     message is malformed. QTYPE and QCLASS must follow inside the message.
 * The opcode, QCLASS and the other sections are not checked.
 *
 * Latency: a request stores bpf_ktime_get_ns() under (ifindex, id, client port and address,
 * direction, protocol); the response in the opposite direction on the same pod takes it. A
 * retransmitted request restarts the clock. Responses with no stored request are counted as
 * unmatched.
 *
 * Include after vigil_abi.h, lib/packet.h and the vigil_errors map with count_error(). */
#ifndef VIGIL_LIB_DNS_H
#define VIGIL_LIB_DNS_H

#include "lib/log2.h"

#define VIGIL_DNS_PORT 53
#define VIGIL_DNS_HDR_LEN 12
#define VIGIL_DNS_MAX_NAME 255

struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_HASH);
  __uint(max_entries, VIGIL_DNS_MAX_KEYS);
  __type(key, struct vigil_dns_key);
  __type(value, __u64);
} vigil_dns_counts SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_HASH);
  __uint(max_entries, VIGIL_MAX_PODS);
  __type(key, __u32);
  __type(value, struct vigil_dns_latency_value);
} vigil_dns_latency SEC(".maps");

/* Shared, not per-CPU: the response is often handled on another CPU than its request. */
struct {
  __uint(type, BPF_MAP_TYPE_LRU_HASH);
  __uint(max_entries, VIGIL_DNS_MAX_PENDING);
  __type(key, struct vigil_dns_pending_key);
  __type(value, __u64);
} vigil_dns_pending SEC(".maps");

/* Creating a latency entry needs a zero value; 408 bytes do not fit next to the other
 * programs' locals in the 512-byte stack, so it lives in global data. */
static const struct vigil_dns_latency_value vigil_dns_latency_zero = {};

struct vigil_dns_hdr {
  __u16 id;
  __u16 flags;
  __u16 qdcount;
  __u16 ancount;
  __u16 nscount;
  __u16 arcount;
};

/* Ports are only ever set for TCP and UDP (lib/packet.h), so this is the whole per-packet cost
 * for everything that is not DNS. */
static __always_inline int vigil_is_dns(const struct vigil_pkt *p) {
  return p->sport == VIGIL_DNS_PORT || p->dport == VIGIL_DNS_PORT;
}

static __always_inline __u8 vigil_dns_qtype_bucket(__u16 qtype) {
  switch (qtype) {
    case 1: return VIGIL_DNS_QTYPE_A;
    case 28: return VIGIL_DNS_QTYPE_AAAA;
    case 5: return VIGIL_DNS_QTYPE_CNAME;
    case 15: return VIGIL_DNS_QTYPE_MX;
    case 2: return VIGIL_DNS_QTYPE_NS;
    case 12: return VIGIL_DNS_QTYPE_PTR;
    case 6: return VIGIL_DNS_QTYPE_SOA;
    case 33: return VIGIL_DNS_QTYPE_SRV;
    case 16: return VIGIL_DNS_QTYPE_TXT;
    case 65: return VIGIL_DNS_QTYPE_HTTPS;
    case 64: return VIGIL_DNS_QTYPE_SVCB;
    case 255: return VIGIL_DNS_QTYPE_ANY;
    default: return VIGIL_DNS_QTYPE_OTHER;
  }
}

enum {
  VIGIL_DNS_OK = 0,
  VIGIL_DNS_BAD = -1,   /* the message is malformed */
  VIGIL_DNS_FAULT = -2, /* a helper failed: counted in vigil_errors, the message is not counted */
};

/* Walks the question name that starts at `off`; on success *qtype_off is where QTYPE is. */
static __always_inline int vigil_dns_walk_name(struct __sk_buff *skb, __u32 off, __u32 end, __u32 *qtype_off) {
  __u32 name_len = 0;
  /* 127 labels of one byte and the root fill 255 bytes: 128 rounds always reach a verdict. */
#pragma clang loop unroll(disable)
  for (int i = 0; i < 128; i++) {
    __u8 len;
    if (off >= end) return VIGIL_DNS_BAD; /* runs past the message */
    if (bpf_skb_load_bytes(skb, off, &len, 1)) {
      count_error(VIGIL_ERR_DNS_LOAD_BYTES);
      return VIGIL_DNS_FAULT;
    }
    if (len == 0) {
      *qtype_off = off + 1;
      return VIGIL_DNS_OK;
    }
    /* 0xC0: compression pointer; 0x40, 0x80: extended or reserved label types, or read as a
     * length, more than 63 bytes. */
    if (len > 63) return VIGIL_DNS_BAD;
    name_len += len + 1;
    if (name_len + 1 > VIGIL_DNS_MAX_NAME) return VIGIL_DNS_BAD;
    off += len + 1;
  }
  return VIGIL_DNS_BAD;
}

static __always_inline struct vigil_dns_latency_value *vigil_dns_latency_of(__u32 ifindex) {
  struct vigil_dns_latency_value *l = bpf_map_lookup_elem(&vigil_dns_latency, &ifindex);
  if (l) return l;
  bpf_map_update_elem(&vigil_dns_latency, &ifindex, &vigil_dns_latency_zero, BPF_NOEXIST);
  l = bpf_map_lookup_elem(&vigil_dns_latency, &ifindex);
  if (!l) count_error(VIGIL_ERR_DNS_MAP_FULL);
  return l;
}

static __always_inline void vigil_dns_count(const struct vigil_dns_key *key) {
  __u64 *n = bpf_map_lookup_elem(&vigil_dns_counts, key);
  if (!n) {
    __u64 zero = 0;
    bpf_map_update_elem(&vigil_dns_counts, key, &zero, BPF_NOEXIST);
    n = bpf_map_lookup_elem(&vigil_dns_counts, key);
    if (!n) {
      count_error(VIGIL_ERR_DNS_MAP_FULL);
      return;
    }
  }
  *n += 1;
}

static __always_inline void vigil_dns_match(struct __sk_buff *skb, const struct vigil_pkt *pkt, __u16 id, int qr,
                                            int dir) {
  struct vigil_dns_pending_key pk = {};
  pk.ifindex = skb->ifindex;
  pk.id = id;
  pk.l4_proto = pkt->l4_proto;
  __u64 now = bpf_ktime_get_ns();
  if (!qr) {
    pk.client_port = pkt->sport;
    __builtin_memcpy(pk.client_addr, pkt->saddr, 16);
    pk.request_dir = dir;
    if (bpf_map_update_elem(&vigil_dns_pending, &pk, &now, BPF_ANY)) count_error(VIGIL_ERR_DNS_PENDING_FULL);
    return;
  }
  pk.client_port = pkt->dport;
  __builtin_memcpy(pk.client_addr, pkt->daddr, 16);
  pk.request_dir = dir ^ 1;
  struct vigil_dns_latency_value *l = vigil_dns_latency_of(pk.ifindex);
  if (!l) return;
  __u64 *sent = bpf_map_lookup_elem(&vigil_dns_pending, &pk);
  if (!sent) {
    l->unmatched_responses += 1;
    return;
  }
  __u64 ns = now > *sent ? now - *sent : 0;
  /* A duplicate response racing on another CPU may also have found the entry; at worst one
   * extra sample, never a negative one. */
  bpf_map_delete_elem(&vigil_dns_pending, &pk);
  __u32 side = pk.request_dir == VIGIL_DIR_EGRESS ? VIGIL_DNS_SIDE_CLIENT : VIGIL_DNS_SIDE_SERVER;
  __u32 b = vigil_log2_bucket(ns / 1000, VIGIL_DNS_LATENCY_BUCKETS - 1);
  if (b < VIGIL_DNS_LATENCY_BUCKETS) l->buckets[side & 1][b] += 1;
  l->sum_ns[side & 1] += ns;
}

/* Called for every parsed TCP/UDP packet to or from port 53; v is the pod's traffic value, dir
 * the pod's direction. */
static __always_inline void vigil_dns_observe(struct __sk_buff *skb, const struct vigil_pkt *pkt,
                                              struct vigil_traffic_value *v, int dir) {
  dir &= 1;
  __u32 skb_len = skb->len;
  __u32 msg_off, msg_end;
  struct vigil_dns_hdr h;
  if (pkt->l4_proto == VIGIL_IPPROTO_UDP) {
    struct {
      __u16 sport, dport, len, check;
      struct vigil_dns_hdr h;
    } u;
    msg_off = pkt->payload_off;
    if (skb_len < msg_off + VIGIL_DNS_HDR_LEN) goto malformed;
    if (bpf_skb_load_bytes(skb, pkt->l4_off, &u, sizeof(u))) {
      count_error(VIGIL_ERR_DNS_LOAD_BYTES);
      return;
    }
    /* The UDP length, not the frame, bounds the message: Ethernet padding is not DNS. */
    msg_end = pkt->l4_off + bpf_ntohs(u.len);
    if (msg_end > skb_len) msg_end = skb_len;
    if (msg_end < msg_off + VIGIL_DNS_HDR_LEN) goto malformed;
    h = u.h;
  } else if (pkt->l4_proto == VIGIL_IPPROTO_TCP) {
    struct {
      __u16 len;
      struct vigil_dns_hdr h;
    } t;
    msg_off = pkt->payload_off + 2;
    if (skb_len < msg_off + VIGIL_DNS_HDR_LEN) return; /* no message starts in this segment */
    if (bpf_skb_load_bytes(skb, pkt->payload_off, &t, sizeof(t))) {
      count_error(VIGIL_ERR_DNS_LOAD_BYTES);
      return;
    }
    __u32 len = bpf_ntohs(t.len);
    if (len < VIGIL_DNS_HDR_LEN) goto malformed;
    msg_end = msg_off + len;
    if (msg_end > skb_len) msg_end = skb_len; /* the rest follows in later segments */
    h = t.h;
  } else {
    return;
  }

  __u16 flags = bpf_ntohs(h.flags);
  __u16 qdcount = bpf_ntohs(h.qdcount);
  int qr = flags >> 15;
  struct vigil_dns_key key = {
      .ifindex = skb->ifindex,
      .direction = dir,
      .qr = qr,
      .qtype = VIGIL_DNS_QTYPE_OTHER,
      .rcode = qr ? (flags & 0xf) : 0,
  };
  if (qdcount == 1) {
    __u32 qtype_off = 0;
    int r = vigil_dns_walk_name(skb, msg_off + VIGIL_DNS_HDR_LEN, msg_end, &qtype_off);
    if (r == VIGIL_DNS_FAULT) return;
    if (r != VIGIL_DNS_OK || qtype_off + 4 > msg_end) goto malformed;
    __u16 qtype;
    if (bpf_skb_load_bytes(skb, qtype_off, &qtype, 2)) {
      count_error(VIGIL_ERR_DNS_LOAD_BYTES);
      return;
    }
    key.qtype = vigil_dns_qtype_bucket(bpf_ntohs(qtype));
  } else if (!(qr && qdcount == 0)) {
    goto malformed;
  }
  vigil_dns_count(&key);
  vigil_dns_match(skb, pkt, h.id, qr, dir);
  return;

malformed:
  v->malformed[dir][VIGIL_MALFORMED_DNS] += 1;
}

#endif /* VIGIL_LIB_DNS_H */
