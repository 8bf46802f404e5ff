// SPDX-License-Identifier: GPL-2.0
/* Per-pod traffic and drop counters. All aggregation happens here, in per-CPU maps; the
 * agent reads totals once a tick. The only packets sent to user space are those of the pods
 * the agent marks for lookback capture (vigil_slot.capture_snaplen), and only their first
 * capture_snaplen bytes (lib/capture.h); no other pod's packet ever leaves the kernel. */
#include "vmlinux.h"

#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

#include "vigil_abi.h"
#include "lib/packet.h"

/* What an observer returns: TC_ACT_UNSPEC (TCX_NEXT) lets the programs and filters after ours
 * (a CNI's, a user's) run and decide. TC_ACT_OK would end the TC layer's work on the packet
 * there, and with it theirs. */
#define TC_ACT_UNSPEC (-1)
#define ETH_P_IP 0x0800
#define ETH_P_IPV6 0x86DD
#define IPPROTO_TCP_ 6
#define ECONNREFUSED_ 111
#define ETIMEDOUT_ 110
#define EAGAIN_ 11
#define ENOMEM_ 12
#define EBUSY_ 16
#define EINVAL_ 22
#define EHOSTUNREACH_ 113
#define ECONNRESET_ 104
#define EPIPE_ 32

char LICENSE[] SEC("license") = "GPL";

/* Per-CPU counters by traffic slot, laid out [cpu][slot] in a plain array (vigil_abi.h); the
 * agent sets max_entries to VIGIL_MAX_PODS times the CPU count at load and maps it. */
struct {
  __uint(type, BPF_MAP_TYPE_ARRAY);
  __uint(map_flags, BPF_F_MMAPABLE);
  __uint(max_entries, VIGIL_MAX_PODS);
  __type(key, __u32);
  __type(value, struct vigil_traffic_value);
} vigil_traffic SEC(".maps");

/* Entries per CPU of vigil_traffic (pod interfaces) and vigil_remote_values (remote peers),
 * set by the agent before load from its config (max_pods, remote_context.max_keys), so that
 * the per-CPU memory follows the node's needs instead of the largest node's: read-only data,
 * the verifier sees the values. The defaults are the ABI's upper bounds. */
const volatile __u32 vigil_pods_per_cpu = VIGIL_MAX_PODS;
const volatile __u32 vigil_remote_keys_per_cpu = VIGIL_MAX_REMOTE_KEYS;
/* metrics.dns_timeout: a DNS response later than this after its request's first send counts as
 * a timeout (lib/dns.h). */
const volatile __u64 vigil_dns_timeout_ns = 5000000000ULL;

/* This CPU's entry `index` of an array laid out [cpu][index], `per_cpu` entries per CPU. */
static __always_inline void *cpu_elem(void *map, __u32 per_cpu, __u32 index) {
  if (index >= per_cpu) return 0;
  __u32 key = bpf_get_smp_processor_id() * per_cpu + index;
  return bpf_map_lookup_elem(map, &key);
}

struct {
  __uint(type, BPF_MAP_TYPE_ARRAY);
  __uint(max_entries, VIGIL_SLOT_TABLE);
  __type(key, __u32);
  __type(value, struct vigil_slot);
} vigil_slots SEC(".maps");

/* Interfaces whose vigil_slots place another interface holds: keyed by ifindex. */
struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, VIGIL_MAX_PODS);
  __type(key, __u32);
  __type(value, struct vigil_slot);
} vigil_slots_spill SEC(".maps");

static __always_inline struct vigil_slot *slot_of(__u32 ifindex) {
  __u32 i = ifindex & (VIGIL_SLOT_TABLE - 1);
  struct vigil_slot *s = bpf_map_lookup_elem(&vigil_slots, &i);
  if (s && s->ifindex == ifindex) return s;
  return bpf_map_lookup_elem(&vigil_slots_spill, &ifindex);
}

struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_HASH);
  __uint(max_entries, VIGIL_MAX_DROP_KEYS);
  __type(key, struct vigil_drop_key);
  __type(value, struct vigil_drop_value);
} vigil_drops SEC(".maps");

/* netns inode number -> pod id, for drops that happen inside a pod's namespace. */
struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, VIGIL_MAX_PODS);
  __type(key, __u32);
  __type(value, __u32);
} vigil_pod_netns SEC(".maps");

/* pod address -> pod id, for drops on the host's side of the pod's traffic. */
struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, VIGIL_MAX_PODS * 2);
  __type(key, struct vigil_ip_key);
  __type(value, __u32);
} vigil_pod_ip SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_HASH);
  __uint(max_entries, VIGIL_MAX_PODS);
  __type(key, __u32);
  __type(value, struct vigil_tcp_value);
} vigil_tcp SEC(".maps");


/* Remote context (vigil_abi.h): peer key -> index, counters by index, free indices; each CPU's
 * last peer per pod interface and direction is in the traffic value. */
struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, VIGIL_MAX_REMOTE_KEYS);
  __type(key, struct vigil_remote_key);
  __type(value, __u32);
} vigil_remote SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_ARRAY);
  __uint(map_flags, BPF_F_MMAPABLE);
  __uint(max_entries, VIGIL_MAX_REMOTE_KEYS); /* times the CPU count, like vigil_traffic */
  __type(key, __u32);
  __type(value, struct vigil_remote_value);
} vigil_remote_values SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_QUEUE);
  __uint(max_entries, VIGIL_MAX_REMOTE_KEYS);
  __type(value, __u32);
} vigil_remote_free SEC(".maps");


struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
  __uint(max_entries, VIGIL_ERR_MAX);
  __type(key, __u32);
  __type(value, __u64);
} vigil_errors SEC(".maps");

static __always_inline void count_error(__u32 site) {
  __u64 *n = bpf_map_lookup_elem(&vigil_errors, &site);
  if (n) *n += 1;
}

/* Runs of each tracing program, counted first thing in each run, before anything may return:
 * the same events as the tracepoint's hits, unless the kernel did not run the program for some
 * (vigil_abi.h). Only while the agent audits that (vigil_tp_audit, read-only data: otherwise the
 * verifier removes the count). */
const volatile __u8 vigil_tp_audit = 0;

struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
  __uint(max_entries, VIGIL_TP_MAX);
  __type(key, __u32);
  __type(value, __u64);
} vigil_tp_runs SEC(".maps");

static __always_inline void count_tp_run(__u32 program) {
  if (!vigil_tp_audit) return;
  __u64 *n = bpf_map_lookup_elem(&vigil_tp_runs, &program);
  if (n) *n += 1;
}

/* DNS and captures need count_error(), so they come after it. */
#include "lib/dns.h"
#include "lib/apiserver.h"
#include "lib/capture.h"

/* The traffic entry of an attached pod interface; 0 for an interface the agent has no slot for
 * (a filter left from an earlier agent, or one attached a moment before its slot was set). */
static __always_inline struct vigil_traffic_value *traffic_of(const struct vigil_slot *s) {
  return cpu_elem(&vigil_traffic, vigil_pods_per_cpu, s->slot);
}

/* A segment whose flags byte is ACK alone or PSH+ACK (nearly every segment of an established
 * connection) is one add, on the line of the packet counters (vigil_abi.h, tcp_plain). Other
 * segments are counted flag by flag, without branches: which flags they carry changes from one
 * segment to the next (SYN, FIN+ACK, RST...), and each mispredicted branch costs more than an
 * add to a counter on a line already brought in. */
static __always_inline void count_tcp_flags(struct vigil_traffic_value *v, int dir, __u8 flags) {
  if ((flags & ~0x08) == 0x10) {
    v->tcp_plain[dir & 1][(flags >> 3) & 1] += 1;
    return;
  }
  __u64 *f = v->tcp_flags[dir & 1];
  const __u64 syn = (flags >> 1) & 1, ack = (flags >> 4) & 1;
  f[VIGIL_TCP_FIN] += flags & 1;
  f[VIGIL_TCP_SYN] += syn & (ack ^ 1);
  f[VIGIL_TCP_SYNACK] += syn & ack;
  f[VIGIL_TCP_RST] += (flags >> 2) & 1;
  f[VIGIL_TCP_PSH] += (flags >> 3) & 1;
  f[VIGIL_TCP_ACK] += ack;
  f[VIGIL_TCP_URG] += (flags >> 5) & 1;
  f[VIGIL_TCP_ECE] += (flags >> 6) & 1;
  f[VIGIL_TCP_CWR] += (flags >> 7) & 1;
}

struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, VIGIL_MAX_PODS);
  __type(key, __u32);
  __type(value, __u32);
} vigil_remote_pod SEC(".maps");

/* Addresses that say nothing about a pod's peers: IPv6 link-local (fe80::/10) and multicast
 * (ff00::/8), IPv4 multicast and broadcast, the unspecified address :: (the source of duplicate
 * address detection's solicitations and of MLD reports sent before an interface has an address;
 * as a key it would be the "other" bucket's), and loopback (127.0.0.0/8, ::1: the pod talking to
 * itself, which the tracing programs see, a refused connect to a sidecar on localhost, say). On
 * a shared L2 segment every pod hears its neighbours' solicitations; they share one bucket
 * instead of taking max_peers slots. */
static __always_inline int local_scope(const __u8 a[16]) {
  if (a[0] == 0xff || (a[0] == 0xfe && (a[1] & 0xc0) == 0x80)) return 1;
  __u64 hi, lo;
  __builtin_memcpy(&hi, a, 8);
  __builtin_memcpy(&lo, a + 8, 8);
  if (hi == 0 && (lo == 0 || lo == bpf_cpu_to_be64(1))) return 1;
  if (a[10] == 0xff && a[11] == 0xff && a[0] == 0 && a[8] == 0)
    return (a[12] & 0xf0) == 0xe0 || a[12] == 127 ||
           (a[12] == 0xff && a[13] == 0xff && a[14] == 0xff && a[15] == 0xff);
  return 0;
}

/* The index of `key` in vigil_remote, taking a free index for it if it has none (then *made is
 * set); -1 when no index is left (counted). Two CPUs racing on the same new key: one insert
 * wins, the other gives its index back and uses the winner's. */
static __always_inline __s64 remote_index(const struct vigil_remote_key *key, int *made) {
  __u32 *found = bpf_map_lookup_elem(&vigil_remote, key);
  if (found) return *found;
  __u32 index;
  if (bpf_map_pop_elem(&vigil_remote_free, &index)) {
    count_error(VIGIL_ERR_REMOTE_MAP_FULL);
    return -1;
  }
  if (bpf_map_update_elem(&vigil_remote, key, &index, BPF_NOEXIST) == 0) {
    *made = 1;
    return index;
  }
  bpf_map_push_elem(&vigil_remote_free, &index, 0);
  found = bpf_map_lookup_elem(&vigil_remote, key);
  if (found) return *found;
  count_error(VIGIL_ERR_REMOTE_MAP_FULL);
  return -1;
}

/* The slow path of remote_count() and the way of remote_entry_of_pod(): the peer's index by hash
 * lookup, a new one for a new peer while max_peers are not taken, else the pod's "other" entry;
 * link-local and multicast peers share the local-scope entry. When no index is left node-wide (remote_context.max_keys, counted
 * as remote_map_full) the packet goes to "other", whose entries the agent makes with the pod's
 * remote context, so that it is still counted. */
static __noinline __s64 remote_lookup(struct vigil_slot *s, int dir, const __u8 *addr) {
  struct vigil_remote_key key = {.ifindex = s->ifindex, .direction = dir};
  __s64 index = -1;
  int made = 0;
  if (local_scope(addr)) {
    key.addr[15] = 1; /* the local-scope bucket (as a peer, ::1 is local scope too) */
    index = remote_index(&key, &made);
  } else {
    __builtin_memcpy(key.addr, addr, 16);
    __u32 *found = bpf_map_lookup_elem(&vigil_remote, &key);
    if (found) return *found;
    /* A peer already named the other way (what the pod sent it, what it received from it)
     * takes no more of max_peers: max_peers counts peers, not peers and directions. */
    struct vigil_remote_key twin = key;
    twin.direction = dir ^ 1;
    if (bpf_map_lookup_elem(&vigil_remote, &twin)) {
      index = remote_index(&key, &made);
    } else if (s->remote_used < s->remote_max && __sync_fetch_and_add(&s->remote_used, 1) < s->remote_max) {
      /* Reserved first, so that CPUs racing on new peers never exceed max_peers; given back
       * when no entry was made for it (no index left node-wide, or another CPU made it), so
       * that a shortage of max_keys does not use up the pod's max_peers for good. */
      index = remote_index(&key, &made);
      if (!made) __sync_fetch_and_add(&s->remote_used, -1);
    }
  }
  if (index >= 0) return index;
  __builtin_memset(key.addr, 0, 16); /* "other" */
  return remote_index(&key, &made);
}

/* The counters of peer `index` on this CPU. */
static __always_inline struct vigil_remote_value *remote_value(__u32 index) {
  return cpu_elem(&vigil_remote_values, vigil_remote_keys_per_cpu, index);
}

/* The slow path of remote_count(): the packet's peer is not the one this CPU's entry holds (or
 * the slot was written since). What the entry holds goes to its peer's vigil_remote_values entry,
 * and the entry takes the packet's peer, counting the packet. `seq` is odd meanwhile, so that the
 * agent, which reads the entries while they change, leaves this one alone for the tick. Only the
 * TC programs write the entries, and a TC program never runs nested in another on one CPU (ingress
 * in softirq, egress with softirqs off). An entry's index stays its pod's until the agent forgets
 * the pod, and the agent zeroes the entries before it gives the slot to another interface, so the
 * counts an entry holds always belong where its index says. */
static __noinline void remote_switch(struct vigil_slot *s, struct vigil_remote_cache *c, int dir, const __u8 *addr,
                                     __u32 len) {
  __s64 i = remote_lookup(s, dir, addr);
  c->seq += 1;
  asm volatile("" ::: "memory");
  if (c->packets || c->bytes) {
    struct vigil_remote_value *old = remote_value(c->index);
    if (old) {
      old->packets += c->packets;
      old->bytes += c->bytes;
    }
  }
  c->generation = 0;
  c->packets = 0;
  c->bytes = 0;
  if (i >= 0) {
    __builtin_memcpy(c->addr, addr, 16);
    c->index = (__u32)i;
    c->packets = 1;
    c->bytes = len;
    c->generation = s->generation;
  }
  asm volatile("" ::: "memory");
  c->seq += 1;
}

/* Remote context for pods that opted in: counts a packet of `len` bytes of the pod behind `s` to
 * or from the peer `addr` (its "other" entry once max_peers are taken, its local-scope entry for
 * link-local and multicast peers). The last peer of each pod interface and direction on each CPU
 * is counted in that CPU's remote_cache entry, beside the packet counters: a packet of the same
 * peer as the one before it touches nothing else (no second load to wait for, docs/benchmarks.md).
 * When the peer changes, the entry's counts go to vigil_remote_values (remote_switch); the agent
 * adds what the entries hold to what vigil_remote_values holds (engine/families/remote.cpp). */
static __always_inline void remote_count(struct vigil_slot *s, struct vigil_traffic_value *v, int dir,
                                         const __u8 addr[16], __u32 len) {
  if (!s->remote_max) return;
  struct vigil_remote_cache *c = &v->remote_cache[dir & 1];
  const __u32 gen = s->generation;
  __u64 a0, a1;
  __builtin_memcpy(&a0, addr, 8);
  __builtin_memcpy(&a1, addr + 8, 8);
  if (c->generation == gen && gen && *(__u64 *)c->addr == a0 && *(__u64 *)(c->addr + 8) == a1) {
    c->packets += 1;
    c->bytes += len;
    return;
  }
  remote_switch(s, c, dir, addr, len);
}

/* The per-peer counters of a pod known by id (drops, sockets: rare events), by hash lookup; the
 * per-CPU entries of remote_count() are the TC programs' alone. */
static __always_inline struct vigil_remote_value *remote_entry_of_pod(__u32 pod_id, int dir, const __u8 addr[16]) {
  __u32 *ifindex = bpf_map_lookup_elem(&vigil_remote_pod, &pod_id);
  if (!ifindex) return 0;
  struct vigil_slot *s = slot_of(*ifindex);
  if (!s || !s->remote_max) return 0;
  __s64 i = remote_lookup(s, dir, addr);
  return i >= 0 ? remote_value((__u32)i) : 0;
}

/* An immediate the agent writes into the program before load (vigil_abi.h, VIGIL_IMM_*). */
#define VIGIL_IMM(marker)                                   \
  ({                                                        \
    __u64 imm_;                                             \
    asm volatile("%0 = %1" : "=r"(imm_) : "i"(marker));     \
    (__u32)imm_;                                            \
  })

/* The traffic entry of the pod interface `ifindex` on this CPU, with its slot entry in *slot.
 * The agent gives an interface the traffic slot ifindex & VIGIL_IMM_SLOT_GUESS_MASK when that one
 * is free (Datapath::claim_slot), and the entries per CPU are an immediate, so the counters'
 * address follows from the ifindex and the CPU alone: their load does not wait for the slot
 * entry's (nor for read-only data), the CPU runs both at once and confirms the guess with a branch
 * it predicts. Each memory access that waits for another costs ~20 ns a packet on a guest whose
 * TLB is flushed at every system call (docs/benchmarks.md). An interface whose guessed slot another
 * holds takes the lookup at the slot its entry names. */
static __always_inline struct vigil_traffic_value *traffic_of_ifindex(__u32 ifindex, struct vigil_slot **slot) {
  const __u32 per_cpu = VIGIL_IMM(VIGIL_IMM_PODS_PER_CPU);
  const __u32 guess = ifindex & VIGIL_IMM(VIGIL_IMM_SLOT_GUESS_MASK);
  if (guess >= per_cpu) return 0;
  __u32 key = bpf_get_smp_processor_id() * per_cpu + guess;
  struct vigil_traffic_value *v = bpf_map_lookup_elem(&vigil_traffic, &key);
  struct vigil_slot *s = slot_of(ifindex);
  *slot = s;
  if (!s) return 0;
  if (s->slot == guess) return v;
  return traffic_of(s);
}

/* Counts the packet for the pod behind the host-side veth `ifindex` (the interface the program
 * runs on, or for vigil_tc_pod that interface's peer), in the pod's direction `dir`. */
static __always_inline int observe(struct __sk_buff *skb, __u32 ifindex, int dir) {
  struct vigil_slot *s;
  struct vigil_traffic_value *v = traffic_of_ifindex(ifindex, &s);
  if (!v || !s) {
    /* A pod interface with the programs on it and no traffic slot: the agent claims the slot
     * before it links the programs and takes them off before it releases it, so this is a packet
     * lost to a fault, and said. */
    count_error(VIGIL_ERR_TRAFFIC_MAP_FULL);
    return TC_ACT_UNSPEC;
  }
  dir &= 1;
  v->packets[dir] += 1;
  v->bytes[dir] += skb->len;
  /* Lookback: every packet of a marked pod, before parsing, so malformed ones are kept too. */
  const __u32 snaplen = s->capture_snaplen;
  if (snaplen) vigil_capture(skb, snaplen, s->slot, dir, ifindex);

  struct vigil_pkt pkt = {.ifindex = ifindex};
  int r = vigil_parse(skb, &pkt);
  if (r < 0) r = vigil_parse_pulled(skb, &pkt); /* its headers partly in the skb's pages? */
  if (r < 0) {
    __u32 kind = pkt.malformed - 1;
    if (kind < VIGIL_MALFORMED_MAX) v->malformed[dir][kind] += 1;
    return TC_ACT_UNSPEC;
  }
  if (r > 0) return TC_ACT_UNSPEC; /* not IP */
  if (vigil_is_dns(&pkt)) vigil_dns_observe(skb, &pkt, v, dir);
  if (pkt.l4_proto == VIGIL_IPPROTO_TCP) count_tcp_flags(v, dir, pkt.tcp_flags);
  /* The peer is the destination of what the pod sends and the source of what it receives. */
  remote_count(s, v, dir, dir == VIGIL_DIR_EGRESS ? pkt.daddr : pkt.saddr, skb->len);
  return TC_ACT_UNSPEC;
}

extern void *bpf_cast_to_kern_ctx(void *obj) __ksym;

/* Attached to both TC hooks of a pod's host-side veth, where the kernel has
 * bpf_cast_to_kern_ctx (6.3+): one program instead of the two below, so that the run at egress,
 * right after the sender's at ingress, finds the program's pages still in the TLB (on a guest that
 * flushes it at every system call, a second program costs ~45 ns a packet more, docs/benchmarks.md).
 * The hook is the skb's own flag: ingress of the host-side veth is what the pod sends. */
SEC("tc")
int vigil_tc(struct __sk_buff *skb) {
  const struct sk_buff *kskb = bpf_cast_to_kern_ctx(skb);
  return observe(skb, skb->ifindex, BPF_CORE_READ_BITFIELD(kskb, tc_at_ingress) ? VIGIL_DIR_EGRESS : VIGIL_DIR_INGRESS);
}

/* The pod's own end of its veth, inside its namespace (vigil_abi.h, vigil_pod_side_key): the
 * agent's way to what a pod receives when it may arrive past the host-side veth. The keys whose
 * place in vigil_pod_sides another holds. */
struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, VIGIL_MAX_PODS);
  __type(key, struct vigil_pod_side_key);
  __type(value, __u32);
} vigil_pod_side SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_ARRAY);
  __uint(max_entries, VIGIL_SLOT_TABLE);
  __type(key, __u32);
  __type(value, struct vigil_pod_side_entry);
} vigil_pod_sides SEC(".maps");

/* Attached to TC ingress of the pod's end of its veth, in the pod's namespace, for the pods whose
 * CNI may put packets straight into that namespace with bpf_redirect_peer (Cilium's delivery to
 * pods: BPF host routing, and pod to pod on one node): those never leave the host-side veth, so
 * its egress hook never sees them. Here every packet the pod receives passes, whichever way it
 * came; the host-side egress hook is then left off, so each counts once. The counters are the
 * host-side veth's, found through the namespace and the ifindex in it. Needs TCX (6.6+), and so
 * bpf_cast_to_kern_ctx (6.3+). */
SEC("tc")
int vigil_tc_pod(struct __sk_buff *skb) {
  const struct sk_buff *kskb = bpf_cast_to_kern_ctx(skb);
  const __u32 inode = kskb->dev->nd_net.net->ns.inum, ifindex = skb->ifindex;
  __u32 i = VIGIL_POD_SIDE_INDEX(inode, ifindex);
  const struct vigil_pod_side_entry *e = bpf_map_lookup_elem(&vigil_pod_sides, &i);
  __u32 host;
  if (e && e->key.netns_inode == inode && e->key.ifindex == ifindex) {
    host = e->host_ifindex;
  } else {
    struct vigil_pod_side_key key = {.netns_inode = inode, .ifindex = ifindex};
    __u32 *spilled = bpf_map_lookup_elem(&vigil_pod_side, &key);
    if (!spilled) return TC_ACT_UNSPEC;
    host = *spilled;
  }
  /* One call: observe() is inlined, and a second copy of it would double the program's pages. */
  return observe(skb, host, VIGIL_DIR_INGRESS);
}

/* The same as vigil_tc_pod on kernels before TCX, as a clsact filter (cls_bpf) on TC ingress of
 * the pod's own end. The filter's classid is the place of the pod's entry in vigil_pod_sides plus
 * one: cls_bpf puts a filter's classid in the skb (tc_classid, its low 16 bits) before running its
 * program, so the program knows its pod without reading the device's namespace (which needs
 * bpf_cast_to_kern_ctx, 6.3+). The entry's ifindex must be the device's: a filter left on another
 * pod's interface (its place since given to another pod) counts nothing. Any kernel with clsact. */
SEC("tc")
int vigil_tc_podcls(struct __sk_buff *skb) {
  __u32 i = (skb->tc_classid & 0xffff) - 1;
  const struct vigil_pod_side_entry *e = bpf_map_lookup_elem(&vigil_pod_sides, &i);
  if (!e || !e->host_ifindex || e->key.ifindex != skb->ifindex) return TC_ACT_UNSPEC;
  return observe(skb, e->host_ifindex, VIGIL_DIR_INGRESS);
}

/* Older kernels: attached to TC ingress of a pod's host-side veth: the pod is sending. */
SEC("tc")
int vigil_tc_ingress(struct __sk_buff *skb) {
  return observe(skb, skb->ifindex, VIGIL_DIR_EGRESS);
}

/* Attached to TC egress of a pod's host-side veth: the pod is receiving. */
SEC("tc")
int vigil_tc_egress(struct __sk_buff *skb) {
  return observe(skb, skb->ifindex, VIGIL_DIR_INGRESS);
}

static __always_inline __u32 pod_of_ip(const struct vigil_ip_key *key) {
  __u32 *id = bpf_map_lookup_elem(&vigil_pod_ip, key);
  return id ? *id : 0;
}

/* Reads the source and destination address of the skb's network header, as IPv4-mapped
 * IPv6 keys. Returns 0 on success; a header that says IP and cannot be read is counted
 * (drop_read_header: the drop is then known by its device or socket only). */
static __always_inline int read_addresses(struct sk_buff *skb, struct vigil_ip_key *src, struct vigil_ip_key *dst) {
  unsigned char *head = skb->head;
  __u16 nh = skb->network_header;
  __u16 proto = bpf_ntohs(skb->protocol);
  if (nh == (__u16)~0U || !head) return -1;
  if (proto == ETH_P_IP) {
    struct iphdr ip;
    if (bpf_probe_read_kernel(&ip, sizeof(ip), head + nh)) {
      count_error(VIGIL_ERR_DROP_READ_HEADER);
      return -1;
    }
    if (ip.version != 4) return -1;
    __builtin_memset(src, 0, sizeof(*src));
    __builtin_memset(dst, 0, sizeof(*dst));
    src->addr[10] = src->addr[11] = 0xff;
    dst->addr[10] = dst->addr[11] = 0xff;
    __builtin_memcpy(&src->addr[12], &ip.saddr, 4);
    __builtin_memcpy(&dst->addr[12], &ip.daddr, 4);
    return 0;
  }
  if (proto == ETH_P_IPV6) {
    struct ipv6hdr ip6;
    if (bpf_probe_read_kernel(&ip6, sizeof(ip6), head + nh)) {
      count_error(VIGIL_ERR_DROP_READ_HEADER);
      return -1;
    }
    if (ip6.version != 6) return -1;
    __builtin_memcpy(src->addr, &ip6.saddr, 16);
    __builtin_memcpy(dst->addr, &ip6.daddr, 16);
    return 0;
  }
  return -1;
}

#define VIGIL_PACKET_BROADCAST 1 /* skb->pkt_type, include/uapi/linux/if_packet.h */
#define VIGIL_PACKET_MULTICAST 2
#define VIGIL_PACKET_LOOPBACK 5 /* a sender's own copy of its multicast or broadcast */

/* The dropped packet's cast: from its IP destination when it has one (an IPv6 ff00::/8 or IPv4
 * 224.0.0.0/4 group, the IPv4 limited broadcast), else from what the link layer saw on receive
 * (a subnet's broadcast address is only known there). A sender's looped-back copy
 * (dev_loopback_xmit) of a datagram to a subnet's broadcast address is a broadcast too: only
 * multicast and broadcast are looped back that way, and multicast was told by its address. */
static __always_inline __u8 cast_of(struct sk_buff *skb, int have_addresses, const struct vigil_ip_key *dst) {
  if (have_addresses) {
    const __u8 *a = dst->addr;
    if (a[0] == 0xff) return VIGIL_CAST_MULTICAST;
    const int mapped = !(a[0] | a[1] | a[2] | a[3] | a[4] | a[5] | a[6] | a[7] | a[8] | a[9]) && a[10] == 0xff &&
                       a[11] == 0xff;
    if (mapped && (a[12] & 0xf0) == 0xe0) return VIGIL_CAST_MULTICAST;
    if (mapped && (a[12] & a[13] & a[14] & a[15]) == 0xff) return VIGIL_CAST_BROADCAST;
    if (mapped && a[12] == 127) return VIGIL_CAST_LOOPBACK;
    if (!(a[0] | a[1] | a[2] | a[3] | a[4] | a[5] | a[6] | a[7] | a[8] | a[9] | a[10] | a[11] | a[12] | a[13] | a[14]) &&
        a[15] == 1)
      return VIGIL_CAST_LOOPBACK; /* ::1 */
  }
  const __u8 type = BPF_CORE_READ_BITFIELD(skb, pkt_type);
  if (type == VIGIL_PACKET_BROADCAST) return VIGIL_CAST_BROADCAST;
  if (type == VIGIL_PACKET_MULTICAST) return VIGIL_CAST_MULTICAST;
  if (type == VIGIL_PACKET_LOOPBACK) return VIGIL_CAST_BROADCAST;
  return VIGIL_CAST_UNICAST;
}

/* The inode of the agent's network namespace, where the pods' host-side interfaces are (set at
 * load). */
const volatile __u32 vigil_host_netns = 0;

/* Per CPU: the next member of a dropped skb's frag_list, whose own drop events follow the skb's
 * (0: none). */
struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
  __uint(max_entries, 1);
  __type(key, __u32);
  __type(value, __u64);
} vigil_drop_skip SEC(".maps");

SEC("tp_btf/kfree_skb")
int BPF_PROG(vigil_kfree_skb, struct sk_buff *skb, void *location, enum skb_drop_reason reason) {
  count_tp_run(VIGIL_TP_KFREE_SKB);
  if (reason == SKB_CONSUMED) return 0;

  /* A reassembled IP datagram is one skb whose frag_list holds its other fragments; dropped, it
   * is freed with them, and the kernel reports each member with the datagram's reason, right
   * after the datagram, on the same CPU. The datagram's length covers them: they are one drop,
   * not one per fragment. (A GRO packet with a frag_list, likewise, is one packet here as it is
   * at the TC hooks.) */
  __u32 zero = 0;
  __u64 *skip = bpf_map_lookup_elem(&vigil_drop_skip, &zero);
  if (skip && *skip) {
    if (*skip == (__u64)skb) {
      *skip = (__u64)skb->next;
      return 0;
    }
    *skip = 0; /* another drop came between: the list is over, or was never freed here */
  }
  /* Only a nonlinear skb has data outside its head, frag_list members included: a linear one
   * (most drops: small packets) costs no read. */
  if (skip && skb->data_len) {
    struct sk_buff *members = 0;
    const unsigned char *shinfo = skb->head + skb->end;
    bpf_probe_read_kernel(&members, sizeof(members), shinfo + bpf_core_field_offset(struct skb_shared_info, frag_list));
    *skip = (__u64)members;
  }

  struct vigil_ip_key src, dst;
  __u32 src_pod = 0, dst_pod = 0;
  const int have_addresses = read_addresses(skb, &src, &dst) == 0;
  if (have_addresses) {
    src_pod = pod_of_ip(&src);
    dst_pod = pod_of_ip(&dst);
  }

  /* A drop inside a pod's own namespace belongs to that pod, whatever the addresses. The
   * namespace is the device's; a packet a pod's socket made that has no device yet (dropped in
   * its OUTPUT chain, say, before routing) is in its socket's: without that, a drop on its way
   * out of one pod to another would be counted as the other's ingress. */
  __u32 pod = 0;
  __u8 dir = VIGIL_DIR_INGRESS;
  struct net_device *dev = skb->dev;
  struct sock *sk = skb->sk;
  __u32 inum = 0;
  if (dev) inum = dev->nd_net.net->ns.inum;
  else if (sk) inum = sk->__sk_common.skc_net.net->ns.inum;
  if (inum) {
    __u32 *netns_pod = bpf_map_lookup_elem(&vigil_pod_netns, &inum);
    if (netns_pod) {
      pod = *netns_pod;
      dir = (src_pod == pod && dst_pod != pod) ? VIGIL_DIR_EGRESS : VIGIL_DIR_INGRESS;
    }
  }
  /* A drop on a pod's host-side interface (a TC filter's, say) belongs to that pod: egress
   * for what it sent, ingress for what was on its way to it. Only a device of the agent's own
   * namespace is one: interface indexes are per namespace, and a device of any other (a
   * container's that is not a watched pod) may have the same. */
  if (!pod && dev && inum == vigil_host_netns) {
    struct vigil_slot *s = slot_of(dev->ifindex);
    if (s && s->pod_id) {
      pod = s->pod_id;
      dir = (have_addresses && src_pod == pod) ? VIGIL_DIR_EGRESS : VIGIL_DIR_INGRESS;
    }
  }
  if (!pod) {
    if (dst_pod) {
      pod = dst_pod;
      dir = VIGIL_DIR_INGRESS;
    } else if (src_pod) {
      pod = src_pod;
      dir = VIGIL_DIR_EGRESS;
    } else {
      return 0; /* not a pod's packet */
    }
  }

  struct vigil_drop_key key = {
      .pod_id = pod, .reason = (__u16)reason, .direction = dir, .cast = cast_of(skb, have_addresses, &dst)};
  struct vigil_drop_value *v = bpf_map_lookup_elem(&vigil_drops, &key);
  if (!v) {
    struct vigil_drop_value zero = {};
    bpf_map_update_elem(&vigil_drops, &key, &zero, BPF_NOEXIST);
    v = bpf_map_lookup_elem(&vigil_drops, &key);
    if (!v) {
      count_error(VIGIL_ERR_DROP_MAP_FULL);
      return 0;
    }
  }
  __u32 len = skb->len;
  v->packets += 1;
  v->bytes += len;
  if (have_addresses) {
    struct vigil_remote_value *rv = remote_entry_of_pod(pod, dir, dir == VIGIL_DIR_EGRESS ? dst.addr : src.addr);
    if (rv) {
      rv->drop_packets += 1;
      rv->drop_bytes += len;
    }
  }
  return 0;
}

/* TCP socket events, attributed to the pod whose network namespace owns the socket. */
static __always_inline __u32 pod_of_sock(const struct sock *sk) {
  __u32 inum = sk->__sk_common.skc_net.net->ns.inum;
  __u32 *pod = bpf_map_lookup_elem(&vigil_pod_netns, &inum);
  return pod ? *pod : 0;
}

/* The peer of a connection for remote context, as the maps write addresses: `c` is the
 * connection's own (a socket's, or a request socket's while it waits for its handshake), `sk` the
 * socket whose namespace names the pod. */
static __always_inline struct vigil_remote_value *remote_of_conn(const struct sock *sk, const struct sock_common *c,
                                                                  int family) {
  __u32 pod = pod_of_sock(sk);
  if (!pod) return 0;
  __u8 addr[16] = {};
  if (family == 10 /* AF_INET6 */) {
    __builtin_memcpy(addr, c->skc_v6_daddr.in6_u.u6_addr8, 16);
  } else {
    __u32 a = c->skc_daddr;
    addr[10] = addr[11] = 0xff;
    __builtin_memcpy(&addr[12], &a, 4);
  }
  return remote_entry_of_pod(pod, VIGIL_DIR_EGRESS, addr);
}

static __always_inline struct vigil_remote_value *remote_of_sock(const struct sock *sk) {
  return remote_of_conn(sk, &sk->__sk_common, sk->__sk_common.skc_family);
}

static __always_inline struct vigil_tcp_value *tcp_of_sock(const struct sock *sk) {
  __u32 id = pod_of_sock(sk);
  if (!id) return 0;
  struct vigil_tcp_value *v = bpf_map_lookup_elem(&vigil_tcp, &id);
  if (v) return v;
  struct vigil_tcp_value zero = {};
  bpf_map_update_elem(&vigil_tcp, &id, &zero, BPF_NOEXIST);
  v = bpf_map_lookup_elem(&vigil_tcp, &id);
  if (!v) count_error(VIGIL_ERR_TCP_MAP_FULL);
  return v;
}

/* Whether tcp_retransmit_skb passes the attempt's result as a third argument (Linux 6.17 and
 * later, where it fires for failed attempts too); set by the agent from the kernel's BTF. With it
 * 0, the branch that reads the argument is dead code the verifier never looks at, so older
 * kernels, whose tracepoint has two arguments, load the same program. */
const volatile __u8 vigil_rtx_has_err = 0;

SEC("tp_btf/tcp_retransmit_skb")
int vigil_tcp_retransmit(__u64 *ctx) {
  count_tp_run(VIGIL_TP_TCP_RETRANSMIT);
  /* The kernel counts a retransmit (TcpRetransSegs, tcp_info's total_retrans) once it got past
   * the checks before the send, whether the send then works or not: a netfilter drop on the
   * way out (-EPERM), a full qdisc (NET_XMIT_DROP) or no buffer for the clone (-ENOBUFS) are
   * counted (and in TcpExtTCPRetransFail too). What returns before that sent nothing and is not
   * counted: the first copy still in a qdisc (-EBUSY), no route (-EHOSTUNREACH), no window
   * (-EAGAIN), no memory to split the skb (-ENOMEM), an skb already acknowledged (-EINVAL). */
  if (vigil_rtx_has_err) {
    const int err = (int)ctx[2];
    if (err == -EBUSY_ || err == -EHOSTUNREACH_ || err == -EAGAIN_ || err == -ENOMEM_ || err == -EINVAL_) return 0;
  }
  const struct sock *sk = (const struct sock *)ctx[0];
  struct vigil_tcp_value *v = tcp_of_sock(sk);
  if (!v) return 0;
  /* Segments, as the kernel counts them: a retransmitted GSO skb holds several (its
   * tcp_skb_pcount(), the tcp_gso_segs of its control block), which the tracepoint fires once
   * for. */
  const struct sk_buff *skb = (const struct sk_buff *)ctx[1];
  const struct tcp_skb_cb *cb = (const struct tcp_skb_cb *)__builtin_preserve_access_index(&skb->cb);
  __u16 segs = BPF_CORE_READ(cb, tcp_gso_segs);
  if (segs == 0) segs = 1;
  v->events[VIGIL_TCP_EV_RETRANSMIT] += segs;
  struct vigil_remote_value *rv = remote_of_sock(sk);
  if (rv) rv->tcp_retransmits += segs;
  return 0;
}

/* A SYN-ACK sent again (its handshake's ACK did not come, or the SYN came again): a retransmit
 * of the listening pod, as the kernel counts it (TcpRetransSegs, TcpExtTCPSynRetrans), which
 * tcp_retransmit_skb does not see. `sk` is the listener; the request socket holds the peer. */
SEC("tp_btf/tcp_retransmit_synack")
int BPF_PROG(vigil_tcp_retransmit_synack, const struct sock *sk, const struct request_sock *req) {
  count_tp_run(VIGIL_TP_TCP_RETRANSMIT_SYNACK);
  struct vigil_tcp_value *v = tcp_of_sock(sk);
  if (!v) return 0;
  v->events[VIGIL_TCP_EV_RETRANSMIT] += 1;
  /* The handshake's own family: an IPv4 SYN to a dual-stack IPv6 listener makes a request socket
   * of the listener's family (AF_INET6) that holds IPv4 addresses only (tcp_v4_init_req); its
   * operations are IPv4's. */
  struct vigil_remote_value *rv = remote_of_conn(sk, &req->__req_common, BPF_CORE_READ(req, rsk_ops, family));
  if (rv) rv->tcp_retransmits += 1;
  return 0;
}

/* floor(log2(v)) without a loop, clamped to the last bucket. */
static __always_inline __u32 log2_bucket(__u32 v) {
  __u32 r, shift;
  r = (v > 0xFFFF) << 4;
  v >>= r;
  shift = (v > 0xFF) << 3;
  v >>= shift;
  r |= shift;
  shift = (v > 0xF) << 2;
  v >>= shift;
  r |= shift;
  shift = (v > 0x3) << 1;
  v >>= shift;
  r |= shift;
  r |= (v >> 1);
  return r < VIGIL_RTT_BUCKETS ? r : VIGIL_RTT_BUCKETS - 1;
}

SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(vigil_sock_state, const struct sock *sk, int oldstate, int newstate) {
  count_tp_run(VIGIL_TP_SOCK_STATE);
  if (sk->sk_protocol != IPPROTO_TCP_) return 0;
  struct vigil_tcp_value *v = tcp_of_sock(sk);
  if (!v) return 0;
  /* The empty asm pins the index to one register, so the bound the verifier learns from the
   * test is on the register used to index (with -mcpu=v3 clang may otherwise test a 32-bit copy
   * and index with the 64-bit original). */
  __u32 state = (__u32)newstate;
  asm volatile("" : "+r"(state));
  /* An entry into a state, not a call that leaves it where it was: a socket shut down for
   * writing (FIN_WAIT1) and then closed is set to FIN_WAIT1 a second time. */
  if (state < VIGIL_TCP_STATE_MAX && oldstate != newstate) v->transitions[state] += 1;
  if (oldstate == TCP_CLOSE && newstate == TCP_SYN_SENT) {
    v->events[VIGIL_TCP_EV_CONNECT] += 1;
  } else if (newstate == TCP_ESTABLISHED) {
    if (oldstate == TCP_SYN_SENT) v->events[VIGIL_TCP_EV_ESTABLISHED_OUT] += 1;
    else if (oldstate == TCP_SYN_RECV) v->events[VIGIL_TCP_EV_ESTABLISHED_IN] += 1;
  } else if (oldstate == TCP_SYN_SENT && newstate == TCP_CLOSE) {
    /* tcp_done_with_error() sets sk_err before it moves the socket to CLOSE. */
    int err = sk->sk_err;
    if (err == ECONNREFUSED_) v->events[VIGIL_TCP_EV_REFUSED] += 1;
    else if (err == ETIMEDOUT_) v->events[VIGIL_TCP_EV_TIMEOUT] += 1;
    else v->events[VIGIL_TCP_EV_CONNECT_FAILED] += 1;
    struct vigil_remote_value *rv = remote_of_sock(sk);
    if (rv) rv->tcp_connect_failures += 1;
  }
  if (oldstate == TCP_ESTABLISHED) {
    /* srtt_us is kept << 3 by the kernel. */
    const struct tcp_sock *tp = (const struct tcp_sock *)sk;
    __u32 srtt = BPF_CORE_READ(tp, srtt_us) >> 3;
    if (srtt) {
      __u32 b = log2_bucket(srtt);
      if (b < VIGIL_RTT_BUCKETS) v->rtt_buckets[b] += 1;
      v->rtt_sum_us += srtt;
    }
  }
  return 0;
}
