// SPDX-License-Identifier: GPL-2.0
/* The baseline for bpf_cost.sh: a TC program that does nothing. With kernel.bpf_stats_enabled
 * the kernel times every program run, and the timing itself costs tens of nanoseconds;
 * subtracting this program's ns/run from Vigil's leaves the cost of Vigil's own work. */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>

#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "GPL";

SEC("tc")
int vigil_bench_empty(struct __sk_buff *skb) {
  return TC_ACT_OK;
}
