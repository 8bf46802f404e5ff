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

struct vigil_traffic_value {
  __u64 packets[VIGIL_DIR_MAX];
  __u64 bytes[VIGIL_DIR_MAX];
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
  VIGIL_ERR_MAX = 8,
};

#define VIGIL_MAX_PODS 4096
#define VIGIL_MAX_DROP_KEYS 16384

#endif /* VIGIL_ABI_H */
