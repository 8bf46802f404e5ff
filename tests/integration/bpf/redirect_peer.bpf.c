// SPDX-License-Identifier: GPL-2.0
/* A stand-in for a CNI that delivers to pods past their host-side veth, as Cilium does (BPF host
 * routing, and pod to pod on one node): on TC ingress of a pod's host-side veth (what that pod
 * sends), an IPv4 packet to an address in `redirect_to` goes straight into the namespace of the
 * pod that holds it with bpf_redirect_peer, and never crosses that pod's host-side veth. The
 * packet is addressed to the other pod's MAC (one L2 segment), which is not the veth's, so it is
 * marked as for the host first, as a CNI whose pods route through it finds it. Everything else
 * passes on with TC_ACT_OK, as a CNI's programs do. The RedirectPeer integration test fills the
 * map. */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/pkt_cls.h>

#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "GPL";

struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, 16);
  __type(key, __u32);   /* IPv4 destination, network byte order */
  __type(value, __u32); /* ifindex of the host-side veth of the pod that holds it */
} redirect_to SEC(".maps");

SEC("tc")
int redirect_peer(struct __sk_buff *skb) {
  void *data = (void *)(long)skb->data;
  void *data_end = (void *)(long)skb->data_end;
  struct ethhdr *eth = data;
  struct iphdr *ip = data + sizeof(*eth);
  if ((void *)(ip + 1) > data_end || eth->h_proto != bpf_htons(ETH_P_IP)) return TC_ACT_OK;
  __u32 daddr = ip->daddr;
  __u32 *ifindex = bpf_map_lookup_elem(&redirect_to, &daddr);
  if (!ifindex) return TC_ACT_OK;
  bpf_skb_change_type(skb, 0 /* PACKET_HOST */);
  return bpf_redirect_peer(*ifindex, 0);
}
