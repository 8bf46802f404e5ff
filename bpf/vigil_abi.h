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

/* vigil_traffic: per-CPU, keyed by the host-side interface index of a pod. */
struct vigil_traffic_key {
  __u32 ifindex;
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

/* Where a packet stopped parsing. Such a packet is still counted as forwarded, once, and
 * additionally as malformed; nothing is read from the layers after the bad one. */
enum vigil_malformed_kind {
  VIGIL_MALFORMED_L2 = 0, /* truncated Ethernet or VLAN header */
  VIGIL_MALFORMED_L3 = 1, /* truncated or inconsistent IPv4/IPv6 header, too many extension headers */
  VIGIL_MALFORMED_L4 = 2, /* truncated TCP/UDP header, bad data offset or length */
  VIGIL_MALFORMED_DNS = 3, /* a DNS message on port 53 that does not parse */
  VIGIL_MALFORMED_MAX = 4,
};

struct vigil_traffic_value {
  __u64 packets[VIGIL_DIR_MAX];
  __u64 bytes[VIGIL_DIR_MAX];
  __u64 tcp_flags[VIGIL_DIR_MAX][VIGIL_TCP_FLAG_MAX];
  __u64 malformed[VIGIL_DIR_MAX][VIGIL_MALFORMED_MAX];
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

/* vigil_drops: per-CPU, keyed by pod, direction and the kernel's own drop reason
 * (enum skb_drop_reason; names are read from the running kernel's BTF by the agent). */
struct vigil_drop_key {
  __u32 pod_id;
  __u16 reason;
  __u8 direction;
  __u8 pad;
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

/* vigil_errors: per-CPU array of counters of things that went wrong in the kernel, so that
 * nothing is lost silently. The agent exports them as vigil_bpf_errors_total{site}. */
enum vigil_error_site {
  VIGIL_ERR_TRAFFIC_MAP_FULL = 0,
  VIGIL_ERR_DROP_MAP_FULL = 1,
  VIGIL_ERR_DROP_READ_HEADER = 2,
  VIGIL_ERR_TCP_MAP_FULL = 3,
  VIGIL_ERR_MAX = 8,
};

#define VIGIL_MAX_PODS 4096
#define VIGIL_MAX_DROP_KEYS 16384

#endif /* VIGIL_ABI_H */
