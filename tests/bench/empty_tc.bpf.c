// SPDX-License-Identifier: GPL-2.0
/* The baseline for bpf_cost.sh: a TC program that does nothing. With kernel.bpf_stats_enabled
 * the kernel times every program run, and the timing itself costs tens of nanoseconds;
 * subtracting this program's ns/run from Vigil's leaves the cost of Vigil's own work. */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>

#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "GPL";

/* TC_ACT_UNSPEC, as Vigil's programs return: the packet goes on to whatever comes after on the hook
 * (on TCX, the kernel's legacy TC layer, tc_run), so that as the floor of wrk_ratio.sh
 * (ATTACH=empty, BASE=empty) it pays the same fallthrough an observer pays. Until session 11 it
 * returned TC_ACT_OK, which skips that step (about 0.13 % of a request's CPU, tc_profile.sh). */
SEC("tc")
int vigil_bench_empty(struct __sk_buff *skb) {
  return TC_ACT_UNSPEC;
}
