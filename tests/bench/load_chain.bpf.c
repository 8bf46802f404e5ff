// SPDX-License-Identifier: GPL-2.0
/* load_chain.sh's programs: what a TC program's memory loads cost when one waits for another.
 * Compiled once per VARIANT (clang -DVARIANT=n), each a counter per interface and CPU as the
 * agent's TC program keeps, found in a different way:
 *   0 nothing (the baseline);
 *   1 the counters at an address from the ifindex and the CPU alone;
 *   2 a slot entry first (a 256 KiB table, like vigil_slots), then the counters at the slot it
 *     names: the counters' load waits for the entry's;
 *   3 the counters at the ifindex's guess, the slot entry loaded beside them and checked after
 *     (what vigil_tc does since the guessed slots);
 *   4 as 1, with the per-CPU block size read from read-only data: the counters' load waits for it
 *     (what vigil_tc did before the immediates). */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>

#include <bpf/bpf_helpers.h>

#ifndef VARIANT
#define VARIANT 0
#endif

char LICENSE[] SEC("license") = "GPL";

struct slot {
  __u32 ifindex, slot, pad[6];
};
struct counters {
  __u64 packets, bytes, rest[38];
};

struct {
  __uint(type, BPF_MAP_TYPE_ARRAY);
  __uint(max_entries, 8192);
  __type(key, __u32);
  __type(value, struct slot);
} chain_slots SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_ARRAY);
  __uint(map_flags, BPF_F_MMAPABLE);
  __uint(max_entries, 8192);
  __type(key, __u32);
  __type(value, struct counters);
} chain_counters SEC(".maps");

const volatile __u32 chain_per_cpu = 4096;

static __always_inline int count(struct counters *c, struct __sk_buff *skb) {
  if (c) {
    c->packets += 1;
    c->bytes += skb->len;
  }
  return TC_ACT_UNSPEC;
}

SEC("tc")
int vigil_load_chain(struct __sk_buff *skb) {
  const __u32 ifindex = skb->ifindex;
  __u32 key = bpf_get_smp_processor_id() * 4096 + (ifindex & 4095);
  if (VARIANT == 0) return TC_ACT_UNSPEC;
  if (VARIANT == 1) return count(bpf_map_lookup_elem(&chain_counters, &key), skb);
  if (VARIANT == 4) {
    key = bpf_get_smp_processor_id() * chain_per_cpu + (ifindex & 4095);
    return count(bpf_map_lookup_elem(&chain_counters, &key), skb);
  }
  /* The table's entries are all zero: every interface's entry says slot 0 for ifindex 0, and
   * the programs treat that as theirs, so that both variants do the same work. */
  __u32 index = ifindex & 8191;
  if (VARIANT == 2) {
    struct slot *s = bpf_map_lookup_elem(&chain_slots, &index);
    if (!s || s->ifindex != 0) return TC_ACT_UNSPEC;
    key = bpf_get_smp_processor_id() * 4096 + ((ifindex & 4095) + s->slot);
    return count(bpf_map_lookup_elem(&chain_counters, &key), skb);
  }
  struct counters *c = bpf_map_lookup_elem(&chain_counters, &key);
  struct slot *s = bpf_map_lookup_elem(&chain_slots, &index);
  if (!s || s->ifindex != 0) return TC_ACT_UNSPEC;
  return count(c, skb);
}
