// SPDX-License-Identifier: GPL-2.0
/* A stand-in for another tool's TC filter (a CNI's policy, say) on the same device as Vigil:
 * drops IPv4 UDP datagrams to port 9000 and passes everything else. The TcHook integration
 * test puts it behind Vigil's programs and checks that it still decides. */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/pkt_cls.h>
#include <linux/udp.h>

#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "GPL";

SEC("tc")
int drop_udp_9000(struct __sk_buff *skb) {
  void *data = (void *)(long)skb->data, *end = (void *)(long)skb->data_end;
  struct ethhdr *eth = data;
  if ((void *)(eth + 1) > end || eth->h_proto != bpf_htons(ETH_P_IP)) return TC_ACT_OK;
  struct iphdr *ip = (void *)(eth + 1);
  if ((void *)(ip + 1) > end || ip->protocol != IPPROTO_UDP || ip->ihl != 5) return TC_ACT_OK;
  struct udphdr *udp = (void *)(ip + 1);
  if ((void *)(udp + 1) > end) return TC_ACT_OK;
  return udp->dest == bpf_htons(9000) ? TC_ACT_SHOT : TC_ACT_OK;
}
