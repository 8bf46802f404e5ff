/* Packet parsing for TC programs: Ethernet (with up to two VLAN tags), IPv4 (options),
 * IPv6 (a bounded walk over extension headers), TCP and UDP. Reads packet bytes directly, so
 * it needs no vmlinux types beyond __sk_buff. Every bound the verifier needs is explicit, and a
 * packet that does not parse says where it failed instead of being guessed at. */
#ifndef VIGIL_LIB_PACKET_H
#define VIGIL_LIB_PACKET_H

#define VIGIL_ETH_HLEN 14
#define VIGIL_ETH_P_IP 0x0800
#define VIGIL_ETH_P_IPV6 0x86DD
#define VIGIL_ETH_P_8021Q 0x8100
#define VIGIL_ETH_P_8021AD 0x88A8
#define VIGIL_IPPROTO_TCP 6
#define VIGIL_IPPROTO_UDP 17
#define VIGIL_IPPROTO_ICMPV6 58
#define VIGIL_IPV6_MAX_EXT 6

struct vigil_pkt {
  __u8 saddr[16] __attribute__((aligned(8))); /* IPv4 as ::ffff:a.b.c.d; aligned: read as two __u64 */
  __u8 daddr[16] __attribute__((aligned(8)));
  __u32 l4_off;      /* offset of the L4 header from the start of the packet */
  __u32 payload_off; /* offset of the L4 payload */
  __u32 l3_end;      /* where the IP packet ends (its length field; Ethernet padding is not in it) */
  __u16 sport, dport; /* host byte order */
  __u8 l4_proto;     /* 0 when there is no L4 header to read (non-first fragment) */
  __u8 tcp_flags;    /* raw flags byte of the TCP header */
  __u8 ipv6;
  __u8 malformed;    /* enum vigil_malformed_kind + 1, or 0 */
  __u32 ifindex;     /* the pod's host-side veth, whose slot the packet counts in (set by observe()) */
};

static __always_inline int vigil_malformed(struct vigil_pkt *p, int kind) {
  p->malformed = kind + 1;
  return -1;
}

/* Returns 0 with *p filled, 1 for a packet that is not IP (ARP, ...), or -1 when malformed
 * (p->malformed says at which layer). */
static __always_inline int vigil_parse(struct __sk_buff *skb, struct vigil_pkt *p) {
  void *data = (void *)(long)skb->data;
  void *data_end = (void *)(long)skb->data_end;
  __u32 off = VIGIL_ETH_HLEN;
  if (data + VIGIL_ETH_HLEN > data_end) return vigil_malformed(p, VIGIL_MALFORMED_L2);
  __u16 proto = bpf_ntohs(*(__u16 *)(data + 12));
#pragma unroll
  for (int i = 0; i < 2; i++) {
    if (proto != VIGIL_ETH_P_8021Q && proto != VIGIL_ETH_P_8021AD) break;
    if (data + off + 4 > data_end) return vigil_malformed(p, VIGIL_MALFORMED_L2);
    proto = bpf_ntohs(*(__u16 *)(data + off + 2));
    off += 4;
  }

  __u8 next;
  int fragment = 0; /* the first fragment of a datagram: its L4 length is the whole datagram's */
  if (proto == VIGIL_ETH_P_IP) {
    struct iphdr *ip = data + off;
    if ((void *)(ip + 1) > data_end) return vigil_malformed(p, VIGIL_MALFORMED_L3);
    __u32 ihl = ip->ihl * 4;
    __u32 tot_len = bpf_ntohs(ip->tot_len);
    /* BIG TCP (IPv4, Linux 6.3+): a GSO packet over 64 KiB has no length of its own, 0. */
    if (tot_len == 0 && skb->gso_size) tot_len = skb->len - off;
    if (ip->version != 4 || ihl < 20 || tot_len < ihl) return vigil_malformed(p, VIGIL_MALFORMED_L3);
    /* Options that run past the packet are a truncated IPv4 header, whatever follows them. */
    if (data + off + ihl > data_end) return vigil_malformed(p, VIGIL_MALFORMED_L3);
    /* ::ffff:a.b.c.d, three stores an address instead of byte by byte. */
    *(__u64 *)p->saddr = 0;
    *(__u32 *)(p->saddr + 8) = bpf_htonl(0xffff);
    *(__u32 *)(p->saddr + 12) = ip->saddr;
    *(__u64 *)p->daddr = 0;
    *(__u32 *)(p->daddr + 8) = bpf_htonl(0xffff);
    *(__u32 *)(p->daddr + 12) = ip->daddr;
    next = ip->protocol;
    /* A length past the frame: a truncated packet, which IP drops (INTRUNCATEDPKTS). */
    p->l3_end = off + tot_len;
    if (p->l3_end > skb->len) return vigil_malformed(p, VIGIL_MALFORMED_L3);
    /* A non-first fragment carries no L4 header: count it, parse no further. */
    const __u16 frag_off = bpf_ntohs(ip->frag_off);
    if (frag_off & 0x1fff) {
      p->l4_proto = 0;
      return 0;
    }
    fragment = frag_off & 0x2000; /* more fragments */
    off += ihl;
  } else if (proto == VIGIL_ETH_P_IPV6) {
    struct ipv6hdr *ip6 = data + off;
    if ((void *)(ip6 + 1) > data_end) return vigil_malformed(p, VIGIL_MALFORMED_L3);
    if (ip6->version != 6) return vigil_malformed(p, VIGIL_MALFORMED_L3);
    __builtin_memcpy(p->saddr, &ip6->saddr, 16);
    __builtin_memcpy(p->daddr, &ip6->daddr, 16);
    p->ipv6 = 1;
    next = ip6->nexthdr;
    /* A payload length of 0: BIG TCP's GSO packet over 64 KiB, or a jumbogram (its length in a
     * hop-by-hop option): the frame. Otherwise an empty payload, whatever follows (the stack
     * trims the packet to its header). */
    const __u32 payload_len = bpf_ntohs(ip6->payload_len);
    p->l3_end = payload_len || !(skb->gso_size || next == 0) ? off + 40 + payload_len : skb->len;
    if (p->l3_end > skb->len) return vigil_malformed(p, VIGIL_MALFORMED_L3);
    off += 40;
#pragma unroll
    for (int i = 0; i < VIGIL_IPV6_MAX_EXT; i++) {
      /* hop-by-hop 0, routing 43, destination options 60: length in 8-byte units + 8 */
      if (next == 0 || next == 43 || next == 60) {
        if (off > 512 || data + off + 2 > data_end) return vigil_malformed(p, VIGIL_MALFORMED_L3);
        __u8 *ext = data + off;
        next = ext[0];
        off += (ext[1] + 1) * 8;
      } else if (next == 44) { /* fragment header, 8 bytes */
        if (off > 512 || data + off + 8 > data_end) return vigil_malformed(p, VIGIL_MALFORMED_L3);
        __u8 *frag = data + off;
        next = frag[0];
        off += 8;
        if ((bpf_ntohs(*(__u16 *)(frag + 2)) & 0xfff8) != 0) {
          p->l4_proto = 0;
          return 0;
        }
        fragment = 1;
      } else {
        break;
      }
    }
    if (next == 0 || next == 43 || next == 60 || next == 44) return vigil_malformed(p, VIGIL_MALFORMED_L3);
    /* An extension header that runs past the frame, or past the payload length, is a
     * truncated IPv6 header. */
    if (off > 1024 || data + off > data_end || off > p->l3_end) return vigil_malformed(p, VIGIL_MALFORMED_L3);
  } else {
    return 1;
  }

  p->l4_proto = next;
  if (off > 1024) return vigil_malformed(p, VIGIL_MALFORMED_L3);
  p->l4_off = off;
  /* An L4 header must fit in the frame and in the IP packet's length: bytes past that length
   * are not the packet's (the stack trims them off), whatever they look like. */
  if (next == VIGIL_IPPROTO_TCP) {
    struct tcphdr *tcp = data + off;
    if ((void *)(tcp + 1) > data_end || off + 20 > p->l3_end) return vigil_malformed(p, VIGIL_MALFORMED_L4);
    /* A data offset below 20 bytes, or options that run past the packet. */
    __u32 doff = tcp->doff * 4;
    if (doff < 20 || data + off + doff > data_end || off + doff > p->l3_end) return vigil_malformed(p, VIGIL_MALFORMED_L4);
    p->sport = bpf_ntohs(tcp->source);
    p->dport = bpf_ntohs(tcp->dest);
    p->tcp_flags = ((__u8 *)tcp)[13];
    p->payload_off = off + doff;
  } else if (next == VIGIL_IPPROTO_UDP) {
    struct udphdr *udp = data + off;
    if ((void *)(udp + 1) > data_end || off + 8 > p->l3_end) return vigil_malformed(p, VIGIL_MALFORMED_L4);
    /* A length below its header, or past the IP packet's end (UDP drops it as too short),
     * unless the packet is a datagram's first fragment. */
    const __u32 udp_len = bpf_ntohs(udp->len);
    if (udp_len < 8 || (!fragment && off + udp_len > p->l3_end)) return vigil_malformed(p, VIGIL_MALFORMED_L4);
    p->sport = bpf_ntohs(udp->source);
    p->dport = bpf_ntohs(udp->dest);
    p->payload_off = off + 8;
  }
  return 0;
}

/* The most of a packet vigil_parse reads: VLAN tags, IPv6 extension headers (an offset up to
 * 1024) and a TCP header with options. */
#define VIGIL_PARSE_PULL 1088

/* vigil_parse again, for a packet that failed it, once its headers are in the skb's linear part.
 * A packet whose headers are partly in its pages fails for want of bytes it has: an AF_PACKET
 * send of a frame of a page or more (a raw socket's, a packet replayer's, at a jumbo MTU) puts
 * only the Ethernet header in the linear part. Packets that parse never come here, so the pull,
 * which may copy the skb's head, costs only those. Global: the parser's second copy is verified
 * once and sits apart from the packet path's code. It changes the packet's data, so the caller
 * keeps no packet pointer across it. Returns as vigil_parse; when nothing can be pulled, -1
 * with *p as the first parse left it. */
__noinline int vigil_parse_pulled(struct __sk_buff *skb, struct vigil_pkt *p) {
  if (!skb || !p) return -1;
  const __u32 len = skb->len;
  if (bpf_skb_pull_data(skb, len < VIGIL_PARSE_PULL ? len : VIGIL_PARSE_PULL)) return -1;
  const __u32 ifindex = p->ifindex;
  __builtin_memset(p, 0, sizeof(*p));
  p->ifindex = ifindex;
  return vigil_parse(skb, p);
}

#endif /* VIGIL_LIB_PACKET_H */
