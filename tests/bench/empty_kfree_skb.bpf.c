// SPDX-License-Identifier: GPL-2.0
/* The baseline for drop_cost.sh: a program on the kfree_skb tracepoint (where the agent counts
 * drops by reason) that does nothing. BPF stats time every run, and the timing costs tens of
 * nanoseconds; subtracting this program's ns/run from the agent's leaves Vigil's own work. */
#include <linux/bpf.h>

#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "GPL";

SEC("tp_btf/kfree_skb")
int vigil_bench_empty_drop(void *ctx) {
  return 0;
}
