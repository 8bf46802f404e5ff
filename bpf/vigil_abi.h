/* The ABI between Vigil's eBPF programs and the agent: every struct that crosses the
 * kernel/user boundary is defined here, once, with plain fixed-width types. The C++ side
 * pins the layout with static_asserts (engine/bpf_abi_check.cpp). Kernel side: include after
 * vmlinux.h. User side: include after <linux/types.h>. */
#ifndef VIGIL_ABI_H
#define VIGIL_ABI_H

/* Direction is always from the pod's point of view. On the host-side veth, TC ingress sees
 * what the pod sends (egress) and TC egress sees what the pod receives (ingress). */
enum vigil_direction {
  VIGIL_DIR_INGRESS = 0,
  VIGIL_DIR_EGRESS = 1,
  VIGIL_DIR_MAX = 2,
};

/* vigil_traffic: per-CPU counters, one entry per attached pod interface, at the slot the agent
 * gives it. The TC programs find the slot without a hash lookup: vigil_slots is an array
 * indexed by the low bits of the ifindex, with the rare collision in vigil_slots_spill.
 *
 * Per-CPU without a per-CPU map: vigil_traffic and vigil_remote_values are plain arrays
 * (BPF_F_MMAPABLE) of VIGIL_MAX_PODS (VIGIL_MAX_REMOTE_KEYS) entries for each possible CPU,
 * CPU c's entry i at c * VIGIL_MAX_PODS + i. A per-CPU map's lookup reads a pointer table
 * before the value: one memory page more for every packet, which costs this machine's TC path
 * about 10 ns a packet (docs/benchmarks.md). The agent maps both arrays and reads them without
 * a system call. */
struct vigil_traffic_key {
  __u32 ifindex;
};

#define VIGIL_SLOT_TABLE 8192 /* power of two */

struct vigil_slot {
  __u32 ifindex;     /* 0: free */
  __u32 slot;        /* index into vigil_traffic, < VIGIL_MAX_PODS */
  __u32 remote_max;  /* remote context: distinct peers kept; 0 = off */
  __u32 remote_used; /* peers taken so far (atomic) */
  __u32 generation;  /* new, never 0, each time the agent writes the entry: remote_cache
                      * entries of an earlier owner of the slot never match */
  __u32 capture_snaplen; /* lookback capture (bpf/lib/capture.h): bytes copied of each packet
                          * into vigil_capture_rb, at most VIGIL_CAPTURE_MAX_SNAPLEN; 0 = off */
  __u32 pod_id;      /* the pod behind the interface (vigil_pod_netns' ids); 0 = unknown */
  __u32 pad;         /* 32 bytes: an entry never straddles two cache lines */
};

/* TCP flag counters, as Retina reports them: SYN without ACK and SYN+ACK are separate. */
enum vigil_tcp_flag {
  VIGIL_TCP_FIN = 0,
  VIGIL_TCP_SYN = 1,
  VIGIL_TCP_SYNACK = 2,
  VIGIL_TCP_RST = 3,
  VIGIL_TCP_PSH = 4,
  VIGIL_TCP_ACK = 5,
  VIGIL_TCP_URG = 6,
  VIGIL_TCP_ECE = 7,
  VIGIL_TCP_CWR = 8,
  VIGIL_TCP_FLAG_MAX = 10,
};

/* Segments whose flags byte is exactly ACK, or exactly PSH+ACK: nearly every segment of an
 * established connection. The TC programs count them with one add beside the packet counters
 * (tcp_plain), not flag by flag in tcp_flags; the agent adds them back: ACK = tcp_flags ACK +
 * both plain counters, PSH = tcp_flags PSH + plain PSH+ACK. */
enum vigil_tcp_plain {
  VIGIL_TCP_PLAIN_ACK = 0,
  VIGIL_TCP_PLAIN_PSH_ACK = 1,
  VIGIL_TCP_PLAIN_MAX = 2,
};

/* Where a packet stopped parsing. Such a packet is still counted as forwarded, once, and
 * additionally as malformed; nothing is read from the layers after the bad one. */
enum vigil_malformed_kind {
  VIGIL_MALFORMED_L2 = 0, /* truncated Ethernet or VLAN header */
  VIGIL_MALFORMED_L3 = 1, /* truncated or inconsistent IPv4/IPv6 header, too many extension headers, a
                           * length past the frame */
  VIGIL_MALFORMED_L4 = 2, /* truncated TCP/UDP header, bad data offset or length; a header or UDP length
                           * past the IP packet's length */
  VIGIL_MALFORMED_DNS = 3, /* a DNS message on port 53 that does not parse */
  VIGIL_MALFORMED_MAX = 4,
};

/* Remote context's per-CPU entry for the last peer of a pod interface in one direction: its index
 * in vigil_remote_values (see below) and the packets and bytes counted for it since it became
 * the last peer, which the TC program adds to vigil_remote_values[index] when another peer comes.
 * A peer's count is what vigil_remote_values holds plus what the entries naming its index hold
 * (the agent adds them). One cache line. */
struct vigil_remote_cache {
  __u8 addr[16];     /* the peer's address as the packet had it (not the bucket key) */
  __u32 generation;  /* vigil_slot.generation when cached; 0 = no peer (the next packet takes one) */
  __u32 index;       /* into vigil_remote_values */
  __u64 packets;     /* counted here, not yet in vigil_remote_values[index] */
  __u64 bytes;
  __u32 seq;         /* odd while the TC program empties the entry or changes its peer: the
                      * agent takes an entry only when it reads the same even seq before and
                      * after its fields */
  __u32 pad[5];
};

/* 448 bytes, seven cache lines: an entry (a pod interface on one CPU) starts on a line of its own,
 * each remote_cache entry is one line, and what a segment of an established connection adds to
 * (packets, bytes, tcp_plain) is the next line, so such a packet writes two lines. */
struct vigil_traffic_value {
  /* In the pod's entry, so that remote context's fast path touches no map element of its own.
   * Zeroed with the slot. */
  struct vigil_remote_cache remote_cache[VIGIL_DIR_MAX];
  __u64 packets[VIGIL_DIR_MAX];
  __u64 bytes[VIGIL_DIR_MAX];
  __u64 tcp_plain[VIGIL_DIR_MAX][VIGIL_TCP_PLAIN_MAX];
  __u64 tcp_flags[VIGIL_DIR_MAX][VIGIL_TCP_FLAG_MAX]; /* segments that are not plain (above) */
  __u64 malformed[VIGIL_DIR_MAX][VIGIL_MALFORMED_MAX];
  __u64 pad[4];
};

/* vigil_tcp: per-CPU, keyed by pod id; socket-level TCP events from tracepoints. */
enum vigil_tcp_event {
  VIGIL_TCP_EV_CONNECT = 0,          /* active open: CLOSE -> SYN_SENT */
  VIGIL_TCP_EV_ESTABLISHED_OUT = 1,  /* SYN_SENT -> ESTABLISHED */
  VIGIL_TCP_EV_ESTABLISHED_IN = 2,   /* SYN_RECV -> ESTABLISHED */
  VIGIL_TCP_EV_REFUSED = 3,          /* SYN_SENT -> CLOSE with ECONNREFUSED (RST answered the SYN) */
  VIGIL_TCP_EV_TIMEOUT = 4,          /* SYN_SENT -> CLOSE with ETIMEDOUT (no SYN-ACK) */
  VIGIL_TCP_EV_CONNECT_FAILED = 5,   /* SYN_SENT -> CLOSE for any other reason */
  VIGIL_TCP_EV_RETRANSMIT = 6,       /* tcp_retransmit_skb */
  VIGIL_TCP_EV_MAX = 8,
};

#define VIGIL_TCP_STATE_MAX 16
#define VIGIL_RTT_BUCKETS 24 /* log2 buckets of microseconds: [2^i, 2^(i+1)) */

struct vigil_tcp_value {
  __u64 events[VIGIL_TCP_EV_MAX];
  __u64 transitions[VIGIL_TCP_STATE_MAX]; /* by new state */
  __u64 rtt_buckets[VIGIL_RTT_BUCKETS];   /* srtt sampled when a connection leaves ESTABLISHED */
  __u64 rtt_sum_us;
};

/* What a dropped packet was addressed to: one host, a group, every host on the link, or the
 * pod itself (127.0.0.0/8, ::1: it never left the pod, such as a datagram to a local port nobody
 * listens on). Multicast and broadcast flood a bridge to every port, and each pod drops what it
 * has not joined (ip6_mc_input, NOT_SPECIFIED): such drops, like loopback ones, say nothing about
 * the pod's traffic on the network. */
enum vigil_cast {
  VIGIL_CAST_UNICAST = 0,
  VIGIL_CAST_MULTICAST = 1,
  VIGIL_CAST_BROADCAST = 2,
  VIGIL_CAST_LOOPBACK = 3,
  VIGIL_CAST_MAX = 4,
};

/* vigil_drops: per-CPU, keyed by pod, direction, the kernel's own drop reason
 * (enum skb_drop_reason; names are read from the running kernel's BTF by the agent) and
 * the packet's cast (enum vigil_cast). */
struct vigil_drop_key {
  __u32 pod_id;
  __u16 reason;
  __u8 direction;
  __u8 cast;
};

struct vigil_drop_value {
  __u64 packets;
  __u64 bytes;
};

/* vigil_pod_ip: pod addresses, written by the agent. IPv4 is stored as an IPv4-mapped
 * IPv6 address (::ffff:a.b.c.d) so one key type serves both families. */
struct vigil_ip_key {
  __u8 addr[16];
};

/* vigil_pod_side: the pod's own end of its veth, inside the pod's namespace, where vigil_tc_pod
 * counts what the pod receives when a CNI may deliver past the host-side veth
 * (bpf_redirect_peer): the namespace's inode and the interface's ifindex there (ifindexes repeat
 * across namespaces: every pod's eth0 may be 2) -> the host-side veth's ifindex, whose slot holds
 * the counters. Written by the agent. */
struct vigil_pod_side_key {
  __u32 netns_inode;
  __u32 ifindex;
};

/* vigil_pod_sides: where vigil_tc_pod looks first, an array of VIGIL_SLOT_TABLE entries at
 * VIGIL_POD_SIDE_INDEX (an array lookup is inlined by the verifier; a hash lookup is a helper
 * call and a hash, ~20 ns a packet). A key whose place another holds goes to the hash
 * vigil_pod_side. netns_inode 0: a free place. On kernels before TCX (clsact filters,
 * vigil_tc_podcls) an entry may be at any free place: the filter's classid names it. */
struct vigil_pod_side_entry {
  struct vigil_pod_side_key key;
  __u32 host_ifindex;
  __u32 pad;
};
/* Namespace inodes come in sequence and a pod's interface is often ifindex 2 in its namespace:
 * the inode's low bits spread the places, the ifindex's product a pod's second interface. */
#define VIGIL_POD_SIDE_INDEX(inode, ifindex) (((inode) ^ ((ifindex) * 0x9E3779B1u)) & (VIGIL_SLOT_TABLE - 1))

/* vigil_errors: per-CPU array of counters of things that went wrong in the kernel, so that
 * nothing is lost silently. The agent exports them as vigil_bpf_errors_total{site}. */
enum vigil_error_site {
  VIGIL_ERR_TRAFFIC_MAP_FULL = 0, /* a packet on an interface with the TC programs and no traffic slot: not counted */
  VIGIL_ERR_DROP_MAP_FULL = 1,
  VIGIL_ERR_DROP_READ_HEADER = 2,
  VIGIL_ERR_TCP_MAP_FULL = 3,
  VIGIL_ERR_REMOTE_MAP_FULL = 4,
  VIGIL_ERR_DNS_MAP_FULL = 5,     /* vigil_dns_counts or vigil_dns_latency full */
  VIGIL_ERR_DNS_PENDING_FULL = 6, /* a request could not be stored in vigil_dns_pending */
  VIGIL_ERR_DNS_LOAD_BYTES = 7,   /* bpf_skb_load_bytes failed inside bounds already checked */
  VIGIL_ERR_CAPTURE_RING_FULL = 8, /* a captured packet found vigil_capture_rb full (also in vigil_capture_lost) */
  VIGIL_ERR_DNS_TCP_UNTRACKED = 9, /* a DNS-over-TCP message not counted: its header or question lay
                                    * across segments, or bytes of its stream went missing before
                                    * this hook (docs: bpf/lib/dns.h) */
  VIGIL_ERR_API_PENDING_FULL = 10, /* a connection to the API server could not be stored in vigil_api_pending */
  VIGIL_ERR_API_UNTRACKED = 11,    /* a connection to the API server not timed: no memory for its
                                    * socket's entry in vigil_api_flags */
  VIGIL_ERR_MAX = 12,
};

/* vigil_tp_runs: per-CPU array, a run count for each tracing program, indexed by
 * enum vigil_tp_program; counted only when the agent audits tracepoint delivery
 * (metrics.tracepoint_audit; engine/tracepoint_audit.h compares it with the tracepoint's own hits
 * in a tracefs instance, to tell the hits the kernel did not run the program for). */
enum vigil_tp_program {
  VIGIL_TP_KFREE_SKB = 0,        /* vigil_kfree_skb on skb/kfree_skb */
  VIGIL_TP_TCP_RETRANSMIT = 1,   /* vigil_tcp_retransmit on tcp/tcp_retransmit_skb */
  VIGIL_TP_SOCK_STATE = 2,       /* vigil_sock_state on sock/inet_sock_set_state */
  VIGIL_TP_TCP_RETRANSMIT_SYNACK = 3, /* vigil_tcp_retransmit_synack on tcp/tcp_retransmit_synack */
  VIGIL_TP_MAX = 4,
};

/* Remote context: traffic of an opted-in pod by remote address and direction.
 *   vigil_remote (hash): vigil_remote_key -> __u32 index into vigil_remote_values;
 *   vigil_remote_values (VIGIL_MAX_REMOTE_KEYS per CPU, laid out like vigil_traffic): the
 *     counters;
 *   vigil_remote_free (queue): the indices not in use; the agent fills it at load and gives an
 *     index back (its values zeroed) when it deletes the key;
 *   vigil_traffic_value.remote_cache[direction] (per CPU, per pod interface): the last peer
 *     seen and its index, so that a packet to or from the same peer as the one before it on
 *     this CPU takes one array lookup more than counting it at all, and no hash lookup. */
struct vigil_remote_key {
  __u32 ifindex;
  __u8 direction;
  __u8 pad[3];
  __u8 addr[16]; /* IPv4 as ::ffff:a.b.c.d; all zero = "other" */
};

struct vigil_remote_value {
  __u64 packets; /* forwarded, from the TC programs */
  __u64 bytes;
  __u64 drop_packets; /* dropped (kfree_skb), in the pod's direction */
  __u64 drop_bytes;
  __u64 tcp_retransmits;      /* egress: segments the pod retransmitted to the peer */
  __u64 tcp_connect_failures; /* egress: connects of the pod to the peer refused or timed out */
};

/* vigil_remote_pod: pod id -> host-side ifindex, for the opted-in pods, so that the drop and
 * socket programs (which know pods by id) reach the same per-peer entries as TC. */

#define VIGIL_MAX_PODS 4096

/* Immediates the agent writes into the TC programs' instructions before load (Datapath::open_and_load):
 * each program holds `rX = VIGIL_IMM_...` (BPF_ALU64 | BPF_MOV | BPF_K) where it needs the value,
 * and the agent replaces the marker with the value. The TC programs compute the address of a
 * packet's counters from them: read from memory (read-only data), the value would be a load the
 * counters' load must wait for, ~20 ns a packet on a guest whose TLB is flushed at every system
 * call (docs/benchmarks.md); an immediate costs nothing. Loading fails if a marker is left. */
#define VIGIL_IMM_PODS_PER_CPU 0x56504f44    /* entries per CPU of vigil_traffic: max_pods */
#define VIGIL_IMM_SLOT_GUESS_MASK 0x56474d4b /* the largest power of two <= max_pods, minus 1 */
#define VIGIL_MAX_REMOTE_KEYS 65536
#define VIGIL_MAX_DROP_KEYS 16384

/* ---- DNS (bpf/lib/dns.h): messages to or from port 53 seen by the TC programs ---- */

/* Question types, bounded: anything else is OTHER (also a response without a question). */
enum vigil_dns_qtype {
  VIGIL_DNS_QTYPE_A = 0,
  VIGIL_DNS_QTYPE_AAAA = 1,
  VIGIL_DNS_QTYPE_CNAME = 2,
  VIGIL_DNS_QTYPE_MX = 3,
  VIGIL_DNS_QTYPE_NS = 4,
  VIGIL_DNS_QTYPE_PTR = 5,
  VIGIL_DNS_QTYPE_SOA = 6,
  VIGIL_DNS_QTYPE_SRV = 7,
  VIGIL_DNS_QTYPE_TXT = 8,
  VIGIL_DNS_QTYPE_HTTPS = 9,
  VIGIL_DNS_QTYPE_SVCB = 10,
  VIGIL_DNS_QTYPE_ANY = 11,
  VIGIL_DNS_QTYPE_OTHER = 12,
  VIGIL_DNS_QTYPE_MAX = 13,
};

#define VIGIL_DNS_RCODE_MAX 16 /* the header's 4-bit RCODE; EDNS extended rcodes are not read */

/* vigil_dns_counts: per-CPU, one __u64 message count per key. Keyed like vigil_traffic by the
 * pod's host-side ifindex. Requests (qr 0) always have rcode 0. */
struct vigil_dns_key {
  __u32 ifindex;
  __u8 direction; /* enum vigil_direction */
  __u8 qr;        /* 0 request, 1 response */
  __u8 qtype;     /* enum vigil_dns_qtype */
  __u8 rcode;
};

/* Which end of a transaction measured a latency: a client pod sends the request (egress) and
 * receives the response; a server pod receives the request (ingress) and sends the response. */
enum vigil_dns_side {
  VIGIL_DNS_SIDE_CLIENT = 0,
  VIGIL_DNS_SIDE_SERVER = 1,
  VIGIL_DNS_SIDE_MAX = 2,
};

#define VIGIL_DNS_LATENCY_BUCKETS 24 /* log2 buckets of microseconds: [2^i, 2^(i+1)), 0 in the first */

/* vigil_dns_latency: per-CPU, keyed by the pod's host-side ifindex (__u32). */
struct vigil_dns_latency_value {
  __u64 buckets[VIGIL_DNS_SIDE_MAX][VIGIL_DNS_LATENCY_BUCKETS];
  __u64 sum_ns[VIGIL_DNS_SIDE_MAX];
  __u64 unmatched_responses; /* responses with no pending request (seen before attach, not stored for a full
                              * table, taken out as timed out, duplicates) */
  __u64 retries[VIGIL_DNS_SIDE_MAX]; /* requests seen again while the first waited: timed from the first */
  __u64 late[VIGIL_DNS_SIDE_MAX];    /* responses more than the DNS timeout after the first send: timeouts */
};

/* vigil_dns_pending: hash of requests waiting for their response; value: bpf_ktime_get_ns()
 * when the request was first seen (a retry keeps it). The response looks up the same key from
 * its destination and takes the entry out; the agent takes out those that waited twice
 * metrics.dns_timeout, so that a retry's response after the timeout still finds its request. */
/* vigil_dns_streams (LRU, bpf/lib/dns.h): DNS over TCP, one connection's direction on one pod
 * interface; the value, where its next length or message starts, is the programs' own. */
struct vigil_dns_stream_key {
  __u8 saddr[16];
  __u8 daddr[16];
  __u32 ifindex;
  __u16 sport, dport; /* host byte order */
};

struct vigil_dns_pending_key {
  __u32 ifindex;
  __u16 id;          /* DNS transaction id, as on the wire */
  __u16 client_port; /* host byte order */
  __u8 client_addr[16]; /* IPv4 as ::ffff:a.b.c.d */
  __u8 server_addr[16]; /* the request's destination, the response's source: a resolver that asks
                         * several nameservers at once with one id and socket (musl) makes one
                         * request for each, not retries */
  __u8 request_dir;  /* enum vigil_direction of the request */
  __u8 l4_proto;
  __u16 pad;
};

#define VIGIL_DNS_MAX_KEYS 32768
#define VIGIL_DNS_MAX_PENDING 131072 /* default; metrics.dns_max_pending sets it (at most 1,048,576) */
#define VIGIL_DNS_MAX_PENDING_LIMIT 1048576

/* ---- API server latency (bpf/lib/apiserver.h): sock_ops on the root cgroup ---- */

/* vigil_api_servers: the API server's addresses (service and endpoints), set by the agent; the
 * value is apiserver.no_response_after in ns (__u64). */
struct vigil_api_server_key {
  __u8 addr[16]; /* IPv4 as ::ffff:a.b.c.d */
  __u16 port;    /* host byte order */
  __u16 pad;
};

/* Where a connection to the API server stands, in vigil_api_pending (keyed by socket cookie). */
enum vigil_api_stage {
  VIGIL_API_SYN_SENT = 0,     /* SYN out, waiting for the SYN-ACK */
  VIGIL_API_IDLE = 1,         /* established, first request not sent yet */
  VIGIL_API_REQUEST_SENT = 2, /* first request out, waiting for the first byte of the answer */
};

struct vigil_api_pending {
  __u64 since_ns; /* bpf_ktime_get_ns() when the stage began */
  __u32 stage;    /* enum vigil_api_stage */
  __u32 data_segs_in; /* REQUEST_SENT: segments with payload the socket had received then */
  __u64 limit_ns; /* its server's no_response_after: a SYN-ACK, answer or RST later is no response */
};

#define VIGIL_API_BUCKETS 24 /* log2 buckets of microseconds: [2^i, 2^(i+1)), 0 in the first */

/* vigil_api_latency: per-CPU array of one entry. */
struct vigil_api_value {
  __u64 handshake[VIGIL_API_BUCKETS]; /* SYN to SYN-ACK */
  __u64 handshake_sum_ns;
  __u64 response[VIGIL_API_BUCKETS]; /* first request byte out to first answer byte in */
  __u64 response_sum_ns;
  __u64 resets[2]; /* a RST instead of the SYN-ACK [0] or of the first answer [1] */
  __u64 no_response[2]; /* a SYN-ACK [0], answer [1] or RST that came after limit_ns, before the
                           agent took the wait out (it counts those it takes out itself) */
};

#define VIGIL_API_MAX_SERVERS 64

#define VIGIL_API_MAX_PENDING 8192

/* ---- Lookback captures (bpf/lib/capture.h): packets of the pods the agent marks ---- */

/* For a slot with capture_snaplen > 0, the TC programs append one record per packet to the
 * ring buffer vigil_capture_rb: this header, then cap_len bytes of the packet from its
 * Ethernet header on. Records are 8-byte aligned in the ring; the kernel adds its own 8-byte
 * record header. */
#define VIGIL_CAPTURE_MAX_SNAPLEN 1536
#define VIGIL_CAPTURE_RING_DEFAULT (8u << 20) /* bytes; a power of two, a multiple of the page size */

struct vigil_capture_hdr {
  __u64 ts_ns;     /* bpf_ktime_get_ns(): CLOCK_MONOTONIC */
  __u64 lost;      /* packets of this slot this CPU could not put in the ring before this record,
                    * since the object was loaded (vigil_capture_lost[slot] on this CPU) */
  __u64 lost_ns;   /* bpf_ktime_get_ns() of the latest of them; 0 when lost is 0 */
  __u32 ifindex;   /* the pod's host-side interface */
  __u32 wire_len;  /* skb->len: the packet's length from its Ethernet header on */
  __u16 cap_len;   /* bytes that follow: min(wire_len, capture_snaplen) */
  __u8 direction;  /* enum vigil_direction, from the pod's point of view */
  __u8 pad;
  __u16 cpu;       /* the CPU that wrote the record; with slot, the key of `lost` */
  __u16 slot;      /* vigil_slot.slot */
};

/* vigil_capture_lost: per-CPU array of VIGIL_MAX_PODS, at the slot: packets of a capturing pod
 * that found the ring full. Never reset while the object is loaded, so that the cumulative
 * values in the records and in this map can be compared by (slot, cpu). */
struct vigil_capture_lost {
  __u64 lost;
  __u64 last_ns;   /* bpf_ktime_get_ns() of the latest loss */
  __u32 ifindex;   /* the interface of the latest loss */
  __u32 pad;
};

#endif /* VIGIL_ABI_H */
