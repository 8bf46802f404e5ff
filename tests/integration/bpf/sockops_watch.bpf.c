// SPDX-License-Identifier: GPL-2.0
/* A stand-in for another tool's sock_ops program (one that watches connections' state changes,
 * or writes TCP header options) on the cgroup of a pod: it asks for the state-change and the
 * per-segment callbacks on every connection that pod makes, and counts what it gets in `seen`:
 * [0] connections, [1] closes, [2] segments with payload sent after the first data came in. The
 * ApiServerLatency integration test checks that the agent, timing the same connections, leaves
 * those callbacks on. */
#include <linux/bpf.h>

#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "GPL";

struct {
  __uint(type, BPF_MAP_TYPE_ARRAY);
  __uint(max_entries, 3);
  __type(key, __u32);
  __type(value, __u64);
} seen SEC(".maps");

SEC("sockops")
int watch_sockets(struct bpf_sock_ops *ctx) {
  __u32 i;
  switch (ctx->op) {
  case BPF_SOCK_OPS_TCP_CONNECT_CB:
    bpf_sock_ops_cb_flags_set(ctx, ctx->bpf_sock_ops_cb_flags | BPF_SOCK_OPS_STATE_CB_FLAG |
                                       BPF_SOCK_OPS_WRITE_HDR_OPT_CB_FLAG);
    i = 0;
    break;
  case BPF_SOCK_OPS_STATE_CB:
    if (ctx->args[1] != BPF_TCP_CLOSE) return 1;
    i = 1;
    break;
  case BPF_SOCK_OPS_HDR_OPT_LEN_CB:
    if (!ctx->data_segs_in || !ctx->skb_len) return 1;
    i = 2;
    break;
  default:
    return 1;
  }
  __u64 *n = bpf_map_lookup_elem(&seen, &i);
  if (n) __sync_fetch_and_add(n, 1);
  return 1;
}
