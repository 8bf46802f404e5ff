// SPDX-License-Identifier: GPL-2.0
/* A stand-in for another tool's TCX program that passes every packet with a verdict of its own
 * (TC_ACT_OK, as a CNI's programs do), which ends the device's TCX chain: a program behind it
 * never runs. The TcHook integration test attaches it before the agent starts. */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>

#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "GPL";

SEC("tc")
int pass_all(struct __sk_buff *skb) { return TC_ACT_OK; }
