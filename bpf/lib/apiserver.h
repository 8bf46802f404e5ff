/* Latency of connections to the Kubernetes API server, for every socket of the node (host and
 * pods alike), from socket events rather than packets: one sock_ops program on the root of the
 * cgroup v2 hierarchy, attached by the agent only when API server addresses are configured.
 *
 * sock_ops runs at a handful of points in a connection's life (connect, established, ...), not per
 * segment, for every TCP socket of the node. Per-segment callbacks are turned on only for the
 * sockets that connect to a listed address, and off again once their first answer is in, so no
 * other socket's segments run anything of ours, either way. Per connection, keyed by socket
 * cookie (the socket's own addresses are what the client asked for, the service address before
 * any DNAT, so the service and its endpoints both match):
 *   connect() to a listed address:port    -> SYN_SENT, clock starts     (TCP_CONNECT_CB)
 *   SYN-ACK, the socket established        -> handshake latency; IDLE    (ACTIVE_ESTABLISHED_CB)
 *   first segment out with payload         -> REQUEST_SENT, clock restarts, data segments in
 *                                             noted (HDR_OPT_LEN_CB, one per segment sent, on
 *                                             these sockets only)
 *   first segment out after data came in   -> first-response latency; forgotten (HDR_OPT_LEN_CB)
 *   the socket closes with a reset error   -> counted as a reset in SYN_SENT or REQUEST_SENT;
 *                                             forgotten (STATE_CB)
 * The receive side has no sock_ops callback that sees every segment (PARSE_HDR_OPT runs only on
 * TCP's slow path), but the answer shows on the way out: the first data a connection receives
 * puts TCP in quick-ACK mode, so the socket ACKs it at once, in the same softirq (or, when the
 * owner holds the socket, as soon as it lets go: when TCP itself sees the segment), and that ACK
 * is a segment sent, whose callback finds the socket's count of segments received with payload
 * (data_segs_in, counted on arrival, in or out of order; a FIN alone is not one) above what it was
 * when the request went out. So no program runs for the segments other sockets receive (a
 * tcp_probe program did, four runs a request under wrk, docs/benchmarks.md). A first answer whose ACK TCP delays (a socket
 * already in ping-pong mode, TCP_QUICKACK off) is timed to that ACK, at most the delayed-ACK
 * timer (40 ms and up) late. A server that closes without a word (FIN, no data) leaves the wait
 * open: no response.
 * Connections that stay in SYN_SENT or REQUEST_SENT past the configured time (the server never
 * answered, or the client gave up first) are counted as "no response" by the agent, which reads
 * and prunes vigil_api_pending each tick. A SYN-ACK, answer or RST that comes later than that
 * time, before the agent's next look, is a no response too, counted here, so that the verdict
 * does not depend on when the tick falls. A wait ends with its entry's delete, here or in the
 * agent, and only the delete that takes the entry out counts it: never both, never twice. Only
 * the first request of a connection is timed (clients such as kubelet keep connections open for
 * long).
 *
 * Include after vigil_abi.h. */
#ifndef VIGIL_LIB_APISERVER_H
#define VIGIL_LIB_APISERVER_H

#include "lib/log2.h"

struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, VIGIL_API_MAX_SERVERS);
  __type(key, struct vigil_api_server_key);
  __type(value, __u64);
} vigil_api_servers SEC(".maps");

/* Shared, not per-CPU: the answer is often handled on another CPU than the request. A plain hash,
 * not an LRU: the agent takes out and counts the connections that wait too long, and an LRU
 * would evict the oldest, the very ones an outage leaves waiting. Full, a new connection is not
 * timed and is counted (VIGIL_ERR_API_PENDING_FULL). */
struct {
  __uint(type, BPF_MAP_TYPE_HASH);
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

/* The callbacks this program turned on for a socket it times: those that were off when it asked
 * for them. Done with the socket, it turns off only those (vigil_api_unmark), so that another
 * sock_ops program on the same socket (one that writes TCP header options, or watches state
 * changes) keeps what it asked for. Stored with the socket and gone with it; a socket without an
 * entry is not one this program times, whatever its flags. */
struct {
  __uint(type, BPF_MAP_TYPE_SK_STORAGE);
  __uint(map_flags, BPF_F_NO_PREALLOC);
  __type(key, int);
  __type(value, __u32);
} vigil_api_flags SEC(".maps");

#define VIGIL_AF_INET 2
#define VIGIL_AF_INET6 10
/* A socket we time: STATE_CB (its close tells a reset) doubles as our mark. */
#define VIGIL_API_MARK BPF_SOCK_OPS_STATE_CB_FLAG
#define VIGIL_API_FLAGS (BPF_SOCK_OPS_STATE_CB_FLAG | BPF_SOCK_OPS_WRITE_HDR_OPT_CB_FLAG)

/* Latency bucket: log2 of microseconds. */
static __always_inline __u32 vigil_api_bucket(__u64 ns) { return vigil_log2_bucket(ns / 1000, VIGIL_API_BUCKETS - 1); }

static __always_inline struct vigil_api_value *vigil_api_value(void) {
  __u32 zero = 0;
  return bpf_map_lookup_elem(&vigil_api_latency, &zero);
}

/* The callbacks this program turned on for the socket (vigil_api_flags), or 0: not a socket it
 * times. `create`: make the entry, for a socket it starts to time. */
static __always_inline __u32 *vigil_api_ours(struct bpf_sock_ops *ctx, int create) {
  struct bpf_sock *sk = ctx->sk;
  if (!sk) return 0;
  return bpf_sk_storage_get(&vigil_api_flags, sk, 0, create ? BPF_SK_STORAGE_GET_F_CREATE : 0);
}

/* Turns `flags` on, noting in *ours those that were off. */
static __always_inline void vigil_api_turn_on(struct bpf_sock_ops *ctx, __u32 *ours, __u32 flags) {
  const __u32 now = ctx->bpf_sock_ops_cb_flags;
  *ours |= flags & ~now;
  bpf_sock_ops_cb_flags_set(ctx, now | flags);
}

/* Done with the socket: turns the per-segment callbacks off if this program turned them on. The
 * state callbacks stay on for the socket's life (a few runs a connection, which find no entry):
 * another program that asked for them in the same callback, after this one, keeps them too. */
static __always_inline void vigil_api_unmark(struct bpf_sock_ops *ctx, const __u32 *ours) {
  const __u32 off = *ours & BPF_SOCK_OPS_WRITE_HDR_OPT_CB_FLAG;
  if (off) bpf_sock_ops_cb_flags_set(ctx, ctx->bpf_sock_ops_cb_flags & ~off);
  struct bpf_sock *sk = ctx->sk;
  if (sk) bpf_sk_storage_delete(&vigil_api_flags, sk);
}

static __always_inline void vigil_api_connect(struct bpf_sock_ops *ctx) {
  struct vigil_api_server_key key = {};
  if (ctx->family == VIGIL_AF_INET) {
    key.addr[10] = key.addr[11] = 0xff;
    __u32 ip = ctx->remote_ip4;
    __builtin_memcpy(&key.addr[12], &ip, 4);
  } else if (ctx->family == VIGIL_AF_INET6) {
    __u32 ip6[4] = {ctx->remote_ip6[0], ctx->remote_ip6[1], ctx->remote_ip6[2], ctx->remote_ip6[3]};
    __builtin_memcpy(key.addr, ip6, 16);
  } else {
    return;
  }
  key.port = (__u16)bpf_ntohl(ctx->remote_port);
  __u64 *limit = bpf_map_lookup_elem(&vigil_api_servers, &key);
  if (!limit) return;
  __u32 *ours = vigil_api_ours(ctx, 1);
  if (!ours) {
    count_error(VIGIL_ERR_API_UNTRACKED);
    return;
  }
  *ours = 0;
  __u64 cookie = bpf_get_socket_cookie(ctx);
  struct vigil_api_pending p = {.since_ns = bpf_ktime_get_ns(), .stage = VIGIL_API_SYN_SENT, .limit_ns = *limit};
  if (bpf_map_update_elem(&vigil_api_pending, &cookie, &p, BPF_ANY)) {
    count_error(VIGIL_ERR_API_PENDING_FULL);
    vigil_api_unmark(ctx, ours);
    return;
  }
  vigil_api_turn_on(ctx, ours, VIGIL_API_MARK);
}

/* How long the wait that began at `since` has lasted, now. */
static __always_inline __u64 vigil_api_waited(__u64 since, __u64 now) { return now > since ? now - since : 0; }

/* Counts a wait of `ns` in a latency histogram (buckets[] and its sum). */
static __always_inline void vigil_api_observe(__u64 ns, __u64 *buckets, __u64 *sum_ns) {
  buckets[vigil_api_bucket(ns)] += 1;
  *sum_ns += ns;
}

static __always_inline void vigil_api_established(struct bpf_sock_ops *ctx, __u32 *ours) {
  __u64 cookie = bpf_get_socket_cookie(ctx);
  struct vigil_api_pending *p = bpf_map_lookup_elem(&vigil_api_pending, &cookie);
  if (!p || p->stage != VIGIL_API_SYN_SENT) return;
  struct vigil_api_value *v = vigil_api_value();
  if (!v) return;
  const __u64 now = bpf_ktime_get_ns(), ns = vigil_api_waited(p->since_ns, now);
  if (ns > p->limit_ns) {
    /* Too late: no response, as the agent would have counted it at its next look; the
     * connection is not timed further. The agent looks at an entry only once it is older than
     * the limit, and this one is: whichever delete takes it out counts it. */
    if (bpf_map_delete_elem(&vigil_api_pending, &cookie) == 0) v->no_response[0] += 1;
    vigil_api_unmark(ctx, ours);
    return;
  }
  /* In time: the agent, which takes out only entries older than the limit, leaves it alone. */
  vigil_api_observe(ns, v->handshake, &v->handshake_sum_ns);
  p->since_ns = now;
  p->stage = VIGIL_API_IDLE;
  vigil_api_turn_on(ctx, ours, VIGIL_API_FLAGS);
}

/* Once per segment sent (and per MSS computation, with no segment: skb_len 0), only while our
 * WRITE_HDR_OPT flag is set. Reserves nothing: the header is left as it is. The first segment
 * with payload is the request; the first callback after a segment with payload came in is the
 * ACK of the first answer (see the top of this file). */
static __always_inline void vigil_api_sending(struct bpf_sock_ops *ctx, __u32 *ours) {
  __u64 cookie = bpf_get_socket_cookie(ctx);
  struct vigil_api_pending *p = bpf_map_lookup_elem(&vigil_api_pending, &cookie);
  if (!p) {
    /* Answered, reset or given up on by the agent: nothing more to see on this socket. */
    vigil_api_unmark(ctx, ours);
    return;
  }
  if (p->stage == VIGIL_API_IDLE) {
    if (ctx->skb_len > 0) {
      p->since_ns = bpf_ktime_get_ns();
      p->data_segs_in = ctx->data_segs_in;
      p->stage = VIGIL_API_REQUEST_SENT;
    }
    return;
  }
  if (p->stage != VIGIL_API_REQUEST_SENT || ctx->data_segs_in == p->data_segs_in) return;
  struct vigil_api_value *v = vigil_api_value();
  if (!v) return;
  /* Read before the delete: the entry may be another's right after it. */
  const __u64 ns = vigil_api_waited(p->since_ns, bpf_ktime_get_ns()), limit = p->limit_ns;
  if (bpf_map_delete_elem(&vigil_api_pending, &cookie) == 0) {
    if (ns > limit) v->no_response[1] += 1;
    else vigil_api_observe(ns, v->response, &v->response_sum_ns);
  }
  vigil_api_unmark(ctx, ours);
}

/* A socket we time changes state. Only its close matters: with a reset's error (tcp_reset() sets
 * sk_err before the socket moves to CLOSE: ECONNREFUSED in SYN_SENT, EPIPE in CLOSE_WAIT,
 * ECONNRESET otherwise) the wait ends as a reset; an idle connection is forgotten; SYN_SENT or
 * REQUEST_SENT closed without one (the client gave up, its retries ran out, an ICMP error such
 * as host unreachable ended it: no SYN-ACK or answer came, and no RST) stays for the agent to
 * count as no response. */
static __always_inline void vigil_api_state(struct bpf_sock_ops *ctx) {
  if (ctx->args[1] != BPF_TCP_CLOSE) return;
  __u64 cookie = bpf_get_socket_cookie(ctx);
  struct vigil_api_pending *p = bpf_map_lookup_elem(&vigil_api_pending, &cookie);
  if (!p) return;
  if (p->stage == VIGIL_API_IDLE) {
    bpf_map_delete_elem(&vigil_api_pending, &cookie);
    return;
  }
  struct bpf_sock *sk = ctx->sk;
  if (!sk) return;
  struct tcp_sock *tp = bpf_skc_to_tcp_sock(sk);
  if (!tp) return;
  int err = tp->inet_conn.icsk_inet.sk.sk_err;
  if (err != ECONNREFUSED_ && err != ECONNRESET_ && err != EPIPE_) return;
  struct vigil_api_value *v = vigil_api_value();
  if (!v) return;
  const int stage = p->stage == VIGIL_API_SYN_SENT ? 0 : 1;
  const __u64 ns = vigil_api_waited(p->since_ns, bpf_ktime_get_ns()), limit = p->limit_ns;
  if (bpf_map_delete_elem(&vigil_api_pending, &cookie) != 0) return;  /* the agent counted it */
  if (ns > limit) v->no_response[stage] += 1; /* a RST after the limit: no response in time */
  else v->resets[stage] += 1;
}

SEC("sockops")
int vigil_api_sockops(struct bpf_sock_ops *ctx) {
  const __u32 op = ctx->op;
  if (op == BPF_SOCK_OPS_TCP_CONNECT_CB) {
    vigil_api_connect(ctx);
    return 1;
  }
  if (op != BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB && op != BPF_SOCK_OPS_HDR_OPT_LEN_CB && op != BPF_SOCK_OPS_STATE_CB)
    return 1;
  /* Our callbacks are on for the sockets we time, and perhaps for others' (another program's);
   * the socket's entry tells. */
  if (!(ctx->bpf_sock_ops_cb_flags & VIGIL_API_MARK)) return 1;
  __u32 *ours = vigil_api_ours(ctx, 0);
  if (!ours) return 1;
  if (op == BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB) vigil_api_established(ctx, ours);
  else if (op == BPF_SOCK_OPS_HDR_OPT_LEN_CB) vigil_api_sending(ctx, ours);
  else vigil_api_state(ctx);
  return 1;
}

#endif /* VIGIL_LIB_APISERVER_H */
