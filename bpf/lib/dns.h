/* DNS telemetry for the TC programs: requests and responses per pod by question type and
 * rcode, and request->response latency matched in the kernel by transaction id.
 *
 * What counts as a well-formed message (anything else is counted once as malformed DNS and
 * never attributed to a qtype or rcode):
 *   - UDP: the datagram (bounded by its UDP length) holds the 12-byte header.
 *     TCP (RFC 7766): each message follows its 2-byte length (>= 12), at the places the stream
 *     says (below), and the header and question lie in one segment.
 *   - QDCOUNT is exactly 1, or 0 in a response (servers may answer FORMERR or NOTIMP without a
 *     question; such a response counts with qtype OTHER). A request without a question, or
 *     any message with more than one (RFC 9619), is malformed.
 *   - The question's name is plain labels of 1..63 bytes ending in the root label, 255 bytes at
 *     most in all (so at most 127 labels), inside the message. A compression pointer (nothing
 *     precedes a question to point at), an extended label type or a name that runs past the
 *     message is malformed. QTYPE and QCLASS must follow inside the message.
 * The opcode, QCLASS and the other sections are not checked.
 *
 * DNS over TCP: one segment may hold several messages, one message may span several segments,
 * its length may come in a segment of its own, and a segment may come again (retransmitted,
 * when it was lost after this hook). Each connection's direction on each pod interface keeps,
 * in vigil_dns_streams, the sequence number where its next length or message starts: a message
 * is counted when the segment that holds its start passes, once; bytes before that place
 * (retransmissions, the rest of a long message) are skipped, not parsed. A SYN sets the place
 * (and its data, with TCP Fast Open, is read from there).
 * A connection first seen after it opened (the agent started later, or its LRU entry went) is
 * taken to start a message at its next segment with data. Not counted, as dns_tcp_untracked in
 * vigil_errors: a message whose header or question lies across two segments, and everything
 * after a gap (bytes of the stream that never passed this hook), where message starts cannot be
 * told any more. *
 * Latency: a request stores bpf_ktime_get_ns() under (ifindex, id, client port and address,
 * direction, protocol); the response in the opposite direction on the same pod takes it. A
 * request sent again while the first waits (a resolver's retry: the same bytes from the same
 * socket, glibc after its 5 s timeout) is counted as a retry and keeps the first one's time, so
 * the latency is what the client waited, lost first tries included. A response that comes more
 * than vigil_dns_timeout_ns after the first send counts as a timeout (late) besides its latency;
 * the agent counts the requests that wait twice that long with no response, and takes them out
 * (docs/config.md, metrics.dns_timeout). Responses with no stored request (or that lose the
 * race to take it: a duplicate, or the agent's scan) are counted as unmatched.
 *
 * Include after vigil_abi.h, lib/packet.h and the vigil_errors map with count_error(). */
#ifndef VIGIL_LIB_DNS_H
#define VIGIL_LIB_DNS_H

#include "lib/log2.h"

#define VIGIL_DNS_PORT 53
#define VIGIL_DNS_HDR_LEN 12
#define VIGIL_DNS_MAX_NAME 255
#define VIGIL_DNS_MAX_STREAMS 8192
/* Framing steps (a length, or a message) taken in one TCP segment: 64 messages of a segment,
 * more than a 1500-byte MTU's segment holds of queries for short names (about 30 bytes each). A segment with more
 * (pipelined queries coalesced into a large GSO packet) loses its stream's place: counted in
 * vigil_bpf_errors_total{site="dns_tcp_untracked"}, as a stream first seen mid-message is. */
#define VIGIL_DNS_TCP_STEPS 128

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

/* Shared, not per-CPU: the response is often handled on another CPU than its request. A plain
 * hash, not an LRU: the agent takes out requests that wait longer than metrics.dns_timeout and
 * counts them as timeouts, so an LRU's evictions would hide exactly the requests of an outage
 * (at 10,000 unanswered queries a second, 16,384 entries last 1.6 s, and none would live to
 * time out). Full, a new request is not stored and counted (VIGIL_ERR_DNS_PENDING_FULL) while
 * the ones already waiting time out. Sized by the agent (metrics.dns_max_pending). */
struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, VIGIL_DNS_MAX_PENDING);
  __type(key, struct vigil_dns_pending_key);
  __type(value, __u64);
} vigil_dns_pending SEC(".maps");

enum vigil_dns_phase {
  VIGIL_DNS_AT_LEN = 0,  /* the 2-byte length of the next message starts at `next` */
  VIGIL_DNS_AT_LOW = 1,  /* its second byte is at `next` (the first is in len) */
  VIGIL_DNS_AT_MSG = 2,  /* a message of len bytes starts at `next` */
  VIGIL_DNS_LOST = 3,    /* bytes went missing: where messages start is not known any more */
};

struct vigil_dns_stream {
  __u32 next;  /* TCP sequence number of the next byte to read */
  __u16 len;
  __u8 phase;  /* enum vigil_dns_phase */
  __u8 pad;
};

struct {
  __uint(type, BPF_MAP_TYPE_LRU_HASH);
  __uint(max_entries, VIGIL_DNS_MAX_STREAMS);
  __type(key, struct vigil_dns_stream_key);
  __type(value, struct vigil_dns_stream);
} vigil_dns_streams SEC(".maps");

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
  VIGIL_DNS_SHORT = -3, /* the name runs past the end given */
};

/* Walks the question name that starts at `off`; on success *qtype_off is where QTYPE is. */
static __always_inline int vigil_dns_walk_name(struct __sk_buff *skb, __u32 off, __u32 end, __u32 *qtype_off) {
  __u32 name_len = 0;
  /* 127 labels of one byte and the root fill 255 bytes: 128 rounds always reach a verdict. */
#pragma clang loop unroll(disable)
  for (int i = 0; i < 128; i++) {
    __u8 len;
    if (off >= end) return VIGIL_DNS_SHORT;
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

#define VIGIL_EEXIST 17

/* The side of the pod a request went out from (client) or came in to (server): 0 or 1. */
static __always_inline __u32 vigil_dns_side(__u8 request_dir) {
  return request_dir == VIGIL_DIR_EGRESS ? VIGIL_DNS_SIDE_CLIENT : VIGIL_DNS_SIDE_SERVER;
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
  pk.ifindex = pkt->ifindex;
  pk.id = id;
  pk.l4_proto = pkt->l4_proto;
  __u64 now = bpf_ktime_get_ns();
  if (!qr) {
    pk.client_port = pkt->sport;
    __builtin_memcpy(pk.client_addr, pkt->saddr, 16);
    __builtin_memcpy(pk.server_addr, pkt->daddr, 16);
    pk.request_dir = dir;
    long err = bpf_map_update_elem(&vigil_dns_pending, &pk, &now, BPF_NOEXIST);
    if (err == -VIGIL_EEXIST) {
      /* The same request again while the first waits: a retry, timed from the first. */
      struct vigil_dns_latency_value *l = vigil_dns_latency_of(pk.ifindex);
      if (l) l->retries[vigil_dns_side(pk.request_dir)] += 1;
    } else if (err) {
      count_error(VIGIL_ERR_DNS_PENDING_FULL);
    }
    return;
  }
  pk.client_port = pkt->dport;
  __builtin_memcpy(pk.client_addr, pkt->daddr, 16);
  __builtin_memcpy(pk.server_addr, pkt->saddr, 16);
  pk.request_dir = dir ^ 1;
  struct vigil_dns_latency_value *l = vigil_dns_latency_of(pk.ifindex);
  if (!l) return;
  __u64 *found = bpf_map_lookup_elem(&vigil_dns_pending, &pk);
  if (!found) {
    l->unmatched_responses += 1;
    return;
  }
  const __u64 sent = *found;
  /* Only the one that takes the entry out counts it: a duplicate response on another CPU, or
   * the agent's scan of requests that waited too long, may race for it. */
  if (bpf_map_delete_elem(&vigil_dns_pending, &pk)) {
    l->unmatched_responses += 1;
    return;
  }
  __u64 ns = now > sent ? now - sent : 0;
  __u32 side = vigil_dns_side(pk.request_dir);
  if (ns > vigil_dns_timeout_ns) l->late[side] += 1;
  __u32 b = vigil_log2_bucket(ns / 1000, VIGIL_DNS_LATENCY_BUCKETS - 1);
  if (b < VIGIL_DNS_LATENCY_BUCKETS) l->buckets[side][b] += 1;
  l->sum_ns[side] += ns;
}

/* What vigil_dns_message() did with a message. */
enum {
  VIGIL_DNS_COUNTED = 0,
  VIGIL_DNS_MALFORMED = 1, /* the caller counts it as malformed DNS */
  VIGIL_DNS_UNTRACKED = 2, /* its header or question goes on in a later segment: not counted */
  VIGIL_DNS_FAILED = 3,    /* a helper failed (counted in vigil_errors) */
};

#define VIGIL_DNS_WHOLE 2 /* with the direction in vigil_dns_message's `how` */

/* Counts the message at [off, end) of the packet, as the pod saw it in direction `how & 1`;
 * `how & VIGIL_DNS_WHOLE` is 0 when the message goes on past `end`, in later TCP segments.
 * Global, so that the verifier checks it once, not once for each of the messages a TCP segment
 * may hold (and five arguments at most: hence `how`). */
__noinline int vigil_dns_message(struct __sk_buff *skb, const struct vigil_pkt *pkt, __u32 off, __u32 end, __u32 how) {
  if (!pkt) return VIGIL_DNS_FAILED;
  const __u32 dir = how & 1, whole = how & VIGIL_DNS_WHOLE;
  if (end < off + VIGIL_DNS_HDR_LEN) return whole ? VIGIL_DNS_MALFORMED : VIGIL_DNS_UNTRACKED;
  struct vigil_dns_hdr h;
  if (bpf_skb_load_bytes(skb, off, &h, sizeof(h))) {
    count_error(VIGIL_ERR_DNS_LOAD_BYTES);
    return VIGIL_DNS_FAILED;
  }
  __u16 flags = bpf_ntohs(h.flags);
  __u16 qdcount = bpf_ntohs(h.qdcount);
  int qr = flags >> 15;
  struct vigil_dns_key key = {
      .ifindex = pkt->ifindex,
      .direction = dir,
      .qr = qr,
      .qtype = VIGIL_DNS_QTYPE_OTHER,
      .rcode = qr ? (flags & 0xf) : 0,
  };
  if (qdcount == 1) {
    __u32 qtype_off = 0;
    int r = vigil_dns_walk_name(skb, off + VIGIL_DNS_HDR_LEN, end, &qtype_off);
    if (r == VIGIL_DNS_FAULT) return VIGIL_DNS_FAILED;
    if (r == VIGIL_DNS_SHORT || (r == VIGIL_DNS_OK && qtype_off + 4 > end))
      return whole ? VIGIL_DNS_MALFORMED : VIGIL_DNS_UNTRACKED;
    if (r != VIGIL_DNS_OK) return VIGIL_DNS_MALFORMED;
    __u16 qtype;
    if (bpf_skb_load_bytes(skb, qtype_off, &qtype, 2)) {
      count_error(VIGIL_ERR_DNS_LOAD_BYTES);
      return VIGIL_DNS_FAILED;
    }
    key.qtype = vigil_dns_qtype_bucket(bpf_ntohs(qtype));
  } else if (!(qr && qdcount == 0)) {
    return VIGIL_DNS_MALFORMED;
  }
  vigil_dns_count(&key);
  vigil_dns_match(skb, pkt, h.id, qr, dir);
  return VIGIL_DNS_COUNTED;
}

/* What vigil_dns_tcp_step() did. */
enum {
  VIGIL_DNS_STEP_MORE = 0,      /* took a step: another may start in this segment */
  VIGIL_DNS_STEP_MALFORMED = 1, /* took a step over a malformed message (the caller counts it) */
  VIGIL_DNS_STEP_DONE = 2,      /* nothing more starts in this segment, or the stream is lost */
};

/* One framing step of a DNS-over-TCP stream in the segment whose payload starts at sequence
 * number `seq`: reads a message's length (or a byte of it) or counts the message at st->next. */
static __always_inline int vigil_dns_tcp_step_in(struct __sk_buff *skb, const struct vigil_pkt *pkt,
                                                 struct vigil_dns_stream *st, __u32 seq, __u32 dir) {
  dir &= 1;
  const __u32 payload = pkt->l3_end > pkt->payload_off ? pkt->l3_end - pkt->payload_off : 0;
  const __u32 end_seq = seq + payload;
  const __u32 next = st->next;
  if ((__s32)(next - end_seq) >= 0) return VIGIL_DNS_STEP_DONE; /* the next start is in a later segment */
  const __s32 rel = (__s32)(next - seq);
  if (st->phase == VIGIL_DNS_LOST) return VIGIL_DNS_STEP_DONE;
  if (rel < 0) { /* bytes between next and this segment never passed here */
    st->phase = VIGIL_DNS_LOST;
    count_error(VIGIL_ERR_DNS_TCP_UNTRACKED);
    return VIGIL_DNS_STEP_DONE;
  }
  const __u32 pos = pkt->payload_off + (__u32)rel;
  const __u32 avail = end_seq - next;
  __u8 b[2];
  if (st->phase == VIGIL_DNS_AT_LEN && avail >= 2) {
    if (bpf_skb_load_bytes(skb, pos, b, 2)) {
      count_error(VIGIL_ERR_DNS_LOAD_BYTES);
      return VIGIL_DNS_STEP_DONE;
    }
    st->len = ((__u16)b[0] << 8) | b[1];
    st->next = next + 2;
    st->phase = VIGIL_DNS_AT_MSG;
    return VIGIL_DNS_STEP_MORE;
  }
  if (st->phase == VIGIL_DNS_AT_LEN || st->phase == VIGIL_DNS_AT_LOW) {
    if (bpf_skb_load_bytes(skb, pos, b, 1)) {
      count_error(VIGIL_ERR_DNS_LOAD_BYTES);
      return VIGIL_DNS_STEP_DONE;
    }
    if (st->phase == VIGIL_DNS_AT_LEN) {
      st->len = (__u16)b[0] << 8;
      st->phase = VIGIL_DNS_AT_LOW;
    } else {
      st->len |= b[0];
      st->phase = VIGIL_DNS_AT_MSG;
    }
    st->next = next + 1;
    return VIGIL_DNS_STEP_MORE;
  }
  const __u32 len = st->len;
  int r;
  if (len < VIGIL_DNS_HDR_LEN) r = VIGIL_DNS_MALFORMED;
  else if (len <= avail) r = vigil_dns_message(skb, pkt, pos, pos + len, dir | VIGIL_DNS_WHOLE);
  else r = vigil_dns_message(skb, pkt, pos, pos + avail, dir);
  if (r == VIGIL_DNS_UNTRACKED) count_error(VIGIL_ERR_DNS_TCP_UNTRACKED);
  st->next = next + len;
  st->phase = VIGIL_DNS_AT_LEN;
  return r == VIGIL_DNS_MALFORMED ? VIGIL_DNS_STEP_MALFORMED : VIGIL_DNS_STEP_MORE;
}

/* The segment's last step (or'ed into `dir`): when it leaves messages in the segment, their place
 * in the stream is lost (VIGIL_DNS_TCP_STEPS), said once, not at every later segment. */
#define VIGIL_DNS_STEP_LAST 2

/* vigil_dns_tcp_step_in, and the end of the steps. Global, so that the verifier checks it once:
 * inlined in vigil_dns_tcp's loop, each of its steps (64 then) was explored again with the phases the
 * earlier ones could leave (about 400,000 of the 498,000 instructions the verifier processed for
 * vigil_tc, most of a 2 s agent start). */
__noinline int vigil_dns_tcp_step(struct __sk_buff *skb, const struct vigil_pkt *pkt, struct vigil_dns_stream *st,
                                  __u32 seq, __u32 dir) {
  if (!skb || !pkt || !st) return VIGIL_DNS_STEP_DONE;
  const int r = vigil_dns_tcp_step_in(skb, pkt, st, seq, dir);
  if ((dir & VIGIL_DNS_STEP_LAST) && r != VIGIL_DNS_STEP_DONE && st->phase != VIGIL_DNS_LOST) {
    /* Lost only if the segment goes on past the last step: its bytes were not read. */
    const __u32 payload = pkt->l3_end > pkt->payload_off ? pkt->l3_end - pkt->payload_off : 0;
    if ((__s32)(st->next - (seq + payload)) < 0) {
      st->phase = VIGIL_DNS_LOST;
      count_error(VIGIL_ERR_DNS_TCP_UNTRACKED);
    }
  }
  return r;
}

/* A TCP segment to or from port 53: the messages whose starts it holds, where the stream says
 * they are (see the top of this file). */
static __always_inline void vigil_dns_tcp(struct __sk_buff *skb, const struct vigil_pkt *pkt,
                                          struct vigil_traffic_value *v, int dir) {
  struct vigil_dns_stream_key key = {};
  __builtin_memcpy(key.saddr, pkt->saddr, 16);
  __builtin_memcpy(key.daddr, pkt->daddr, 16);
  key.ifindex = pkt->ifindex;
  key.sport = pkt->sport;
  key.dport = pkt->dport;
  __u32 seq;
  if (bpf_skb_load_bytes(skb, pkt->l4_off + 4, &seq, 4)) {
    count_error(VIGIL_ERR_DNS_LOAD_BYTES);
    return;
  }
  seq = bpf_ntohl(seq);
  const __u32 payload = pkt->l3_end > pkt->payload_off ? pkt->l3_end - pkt->payload_off : 0;
  if (pkt->tcp_flags & 0x02) { /* SYN: the stream's first byte comes next */
    struct vigil_dns_stream fresh = {.next = seq + 1, .phase = VIGIL_DNS_AT_LEN};
    bpf_map_update_elem(&vigil_dns_streams, &key, &fresh, BPF_ANY);
    seq += 1; /* data on a SYN (TCP Fast Open) is that first byte on */
  }
  if (payload == 0) return;
  struct vigil_dns_stream *st = bpf_map_lookup_elem(&vigil_dns_streams, &key);
  if (!st) {
    struct vigil_dns_stream fresh = {.next = seq, .phase = VIGIL_DNS_AT_LEN};
    bpf_map_update_elem(&vigil_dns_streams, &key, &fresh, BPF_NOEXIST);
    st = bpf_map_lookup_elem(&vigil_dns_streams, &key);
    if (!st) return;
  }
  dir &= 1;
  int malformed = 0;
  for (int i = 0; i < VIGIL_DNS_TCP_STEPS; i++) {
    const int r = vigil_dns_tcp_step(skb, pkt, st, seq, dir | (i == VIGIL_DNS_TCP_STEPS - 1 ? VIGIL_DNS_STEP_LAST : 0));
    if (r == VIGIL_DNS_STEP_DONE) break;
    if (r == VIGIL_DNS_STEP_MALFORMED) malformed = 1;
  }
  /* A packet counts once as malformed, however many malformed messages it holds. */
  if (malformed) v->malformed[dir][VIGIL_MALFORMED_DNS] += 1;
}

/* Called for every parsed TCP/UDP packet to or from port 53; v is the pod's traffic value, dir
 * the pod's direction. Not inlined: the TC program's code for every other packet stays short and
 * in one piece (fewer instruction cache lines a packet). */
static __noinline int vigil_dns_observe(struct __sk_buff *skb, const struct vigil_pkt *pkt,
                                        struct vigil_traffic_value *v, int dir) {
  dir &= 1;
  if (pkt->l4_proto == VIGIL_IPPROTO_TCP) {
    vigil_dns_tcp(skb, pkt, v, dir);
    return 0;
  }
  if (pkt->l4_proto != VIGIL_IPPROTO_UDP) return 0;
  __u16 ulen;
  if (bpf_skb_load_bytes(skb, pkt->l4_off + 4, &ulen, 2)) {
    count_error(VIGIL_ERR_DNS_LOAD_BYTES);
    return 0;
  }
  /* The UDP length, not the frame, bounds the message: Ethernet padding is not DNS. In a
   * datagram's first fragment (its UDP length past the IP packet's end) the fragment's end does:
   * a message cut there is not counted, neither as a message nor as malformed. */
  __u32 end = pkt->l4_off + bpf_ntohs(ulen), whole = VIGIL_DNS_WHOLE;
  if (end > pkt->l3_end) {
    end = pkt->l3_end;
    whole = 0;
  }
  if (vigil_dns_message(skb, pkt, pkt->payload_off, end, dir | whole) == VIGIL_DNS_MALFORMED)
    v->malformed[dir][VIGIL_MALFORMED_DNS] += 1;
  return 0;
}

#endif /* VIGIL_LIB_DNS_H */
