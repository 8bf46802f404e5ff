// vigil-packet-craft: hand-made frames for the hostile-packet tests, sent with AF_PACKET on a lab
// pod's interface, and a counter of the frames that arrive on another pod's interface.
//   list                                          print the kinds, one a line
//   send IFACE DST_MAC SRC4 DST4 SRC6 DST6 KIND[=COUNT]...
//                                                 send COUNT (default 1) frames of each KIND;
//                                                 prints "sent KIND N" for each
//   capture IFACE IDLE_MS MAX_MS                  count frames received on IFACE by kind; prints
//                                                 "ready" once listening, then "KIND N" for each
//                                                 kind seen and "other N" for frames of no kind.
//                                                 Stops IDLE_MS after the last frame (once one
//                                                 came) or after MAX_MS in all.
// Each kind is sent from its own source MAC (02:76:6b:00:00:<index+1>), so a capture knows what
// it got back whatever happened on the way. It only ever sends to the addresses it is given.
#include <arpa/inet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <netpacket/packet.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <string>
#include <vector>

namespace {

using Bytes = std::vector<uint8_t>;
using Mac = std::array<uint8_t, 6>;

struct Addrs {
  Mac dst_mac{};
  uint8_t src4[4]{}, dst4[4]{};
  uint8_t src6[16]{}, dst6[16]{};
};

constexpr uint16_t kEthIp = 0x0800, kEthIp6 = 0x86DD, kEth8021Q = 0x8100, kEth8021AD = 0x88A8;
constexpr uint8_t kTcp = 6, kUdp = 17, kHopByHop = 0, kRouting = 43, kFragment = 44, kAuth = 51, kDestOpts = 60;
constexpr uint16_t kDnsPort = 53, kDataPort = 9000, kSrcPort = 40053;

void put16(Bytes& b, uint16_t v) {
  b.push_back(static_cast<uint8_t>(v >> 8));
  b.push_back(static_cast<uint8_t>(v));
}
void set16(Bytes& b, size_t at, uint16_t v) {
  b[at] = static_cast<uint8_t>(v >> 8);
  b[at + 1] = static_cast<uint8_t>(v);
}
void append(Bytes& b, const Bytes& more) { b.insert(b.end(), more.begin(), more.end()); }

uint32_t sum16(const uint8_t* p, size_t n, uint32_t acc = 0) {
  for (size_t i = 0; i + 1 < n; i += 2) acc += (p[i] << 8) | p[i + 1];
  if (n & 1) acc += p[n - 1] << 8;
  return acc;
}
uint16_t fold(uint32_t acc) {
  while (acc >> 16) acc = (acc & 0xffff) + (acc >> 16);
  return static_cast<uint16_t>(~acc);
}

// ---- DNS messages ----

Bytes dns_header(uint16_t id, uint16_t flags, uint16_t qd, uint16_t an = 0, uint16_t ns = 0, uint16_t ar = 0) {
  Bytes b;
  for (uint16_t v : {id, flags, qd, an, ns, ar}) put16(b, v);
  return b;
}
Bytes dns_name(const std::string& dotted) {
  Bytes b;
  size_t start = 0;
  while (start < dotted.size()) {
    size_t dot = dotted.find('.', start);
    if (dot == std::string::npos) dot = dotted.size();
    b.push_back(static_cast<uint8_t>(dot - start));
    b.insert(b.end(), dotted.begin() + static_cast<long>(start), dotted.begin() + static_cast<long>(dot));
    start = dot + 1;
  }
  b.push_back(0);
  return b;
}
Bytes dns_question(const std::string& name, uint16_t qtype) {
  Bytes b = dns_name(name);
  put16(b, qtype);
  put16(b, 1);  // IN
  return b;
}
Bytes dns_query(uint16_t id, const std::string& name, uint16_t qtype) {
  Bytes b = dns_header(id, 0x0100, 1);  // RD
  append(b, dns_question(name, qtype));
  return b;
}

// ---- L4 ----

// Pseudo-header checksum over IPv4 or IPv6 addresses (the final destination).
uint16_t l4_checksum(bool v6, const Addrs& a, uint8_t proto, const Bytes& seg) {
  uint32_t acc = v6 ? sum16(a.src6, 16, sum16(a.dst6, 16)) : sum16(a.src4, 4, sum16(a.dst4, 4));
  acc += proto + static_cast<uint32_t>(seg.size());
  uint16_t c = fold(sum16(seg.data(), seg.size(), acc));
  return c ? c : 0xffff;
}
Bytes udp(bool v6, const Addrs& a, uint16_t dport, const Bytes& payload) {
  Bytes b;
  put16(b, kSrcPort);
  put16(b, dport);
  put16(b, static_cast<uint16_t>(8 + payload.size()));
  put16(b, 0);
  append(b, payload);
  set16(b, 6, l4_checksum(v6, a, kUdp, b));
  return b;
}
// Each TCP segment from a source port of its own: a connection of one segment each, so that the
// receiver's stream tracking (DNS over TCP) takes every crafted segment as new data, as it would
// the first segment of a connection opened before it looked, and never as a retransmission of the
// segment before (same ports, same sequence number).
Bytes tcp(bool v6, const Addrs& a, uint16_t dport, uint8_t flags, const Bytes& payload, uint8_t doff = 5) {
  static uint16_t next_port = 41000;
  if (next_port < 41000) next_port = 41000;  // wrapped
  Bytes b;
  put16(b, next_port++);
  put16(b, dport);
  for (uint16_t v : {0x1234, 0x5678, 0x0000, 0x0001}) put16(b, v);  // seq, ack
  b.push_back(static_cast<uint8_t>(doff << 4));
  b.push_back(flags);
  put16(b, 65535);  // window
  put16(b, 0);      // checksum
  put16(b, 0);      // urgent
  append(b, payload);
  set16(b, 16, l4_checksum(v6, a, kTcp, b));
  return b;
}
constexpr uint8_t kPshAck = 0x18;
Bytes tcp_dns(uint16_t len_prefix, const Bytes& msg) {
  Bytes b;
  put16(b, len_prefix);
  append(b, msg);
  return b;
}

// ---- L3 ----

uint16_t next_ip_id() {
  static uint16_t id = 0x7600;
  return ++id;
}
struct V4 {
  uint8_t proto = kUdp;
  Bytes options;         // padded to 4 bytes by the caller
  uint16_t frag = 0;     // flags and offset field as on the wire
  int ihl = -1;          // overrides the computed header length (in 4-byte words) when >= 0
  int version = 4;
  int tot_len = -1;      // overrides the computed total length when >= 0
};
Bytes ipv4(const Addrs& a, const V4& o, const Bytes& payload) {
  Bytes b;
  const size_t hlen = 20 + o.options.size();
  const int ihl = o.ihl >= 0 ? o.ihl : static_cast<int>(hlen / 4);
  b.push_back(static_cast<uint8_t>((o.version << 4) | (ihl & 0xf)));
  b.push_back(0);
  put16(b, static_cast<uint16_t>(o.tot_len >= 0 ? o.tot_len : hlen + payload.size()));
  put16(b, next_ip_id());
  put16(b, o.frag);
  b.push_back(64);
  b.push_back(o.proto);
  put16(b, 0);
  b.insert(b.end(), a.src4, a.src4 + 4);
  b.insert(b.end(), a.dst4, a.dst4 + 4);
  append(b, o.options);
  set16(b, 10, fold(sum16(b.data(), hlen)));
  append(b, payload);
  return b;
}
V4 v4_tcp() {
  V4 o;
  o.proto = kTcp;
  return o;
}
Bytes ipv6(const Addrs& a, uint8_t next, const Bytes& payload) {
  Bytes b = {0x60, 0, 0, 0};
  put16(b, static_cast<uint16_t>(payload.size()));
  b.push_back(next);
  b.push_back(64);
  b.insert(b.end(), a.src6, a.src6 + 16);
  b.insert(b.end(), a.dst6, a.dst6 + 16);
  append(b, payload);
  return b;
}
// An 8-byte options header (hop-by-hop or destination options) holding one PadN option.
Bytes opts_header(uint8_t next) { return {next, 0, 1, 4, 0, 0, 0, 0}; }
// A type 0 routing header with no segments left (so nothing on the way acts on it).
Bytes routing_header(uint8_t next) { return {next, 0, 0, 0, 0, 0, 0, 0}; }
Bytes fragment_header(uint8_t next, uint16_t offset8, bool more, uint32_t id) {
  Bytes b = {next, 0};
  put16(b, static_cast<uint16_t>((offset8 << 3) | (more ? 1 : 0)));
  for (int s = 24; s >= 0; s -= 8) b.push_back(static_cast<uint8_t>(id >> s));
  return b;
}
// HBH, routing and destination options before an L4 segment of protocol `l4`.
Bytes ipv6_ext(const Addrs& a, uint8_t l4, const Bytes& seg) {
  Bytes ext = opts_header(kRouting);
  append(ext, routing_header(kDestOpts));
  append(ext, opts_header(l4));
  append(ext, seg);
  return ipv6(a, kHopByHop, ext);
}

// ---- L2 ----

Bytes eth(const Addrs& a, const Mac& src, const std::vector<uint16_t>& types, const Bytes& payload) {
  Bytes b(a.dst_mac.begin(), a.dst_mac.end());
  b.insert(b.end(), src.begin(), src.end());
  // types: outer tag protocols with their TCI, then the payload's ethertype
  for (size_t i = 0; i < types.size(); ++i) {
    put16(b, types[i]);
    if (i + 1 < types.size()) put16(b, static_cast<uint16_t>(100 + i));  // VLAN id
  }
  append(b, payload);
  return b;
}

Bytes truncate(Bytes b, size_t n) {
  b.resize(n);
  return b;
}

struct Kind {
  const char* name;
  std::function<Bytes(const Addrs&, const Mac&)> build;
};

const std::vector<Kind>& kinds() {
  static const std::vector<Kind> k = {
      // --- malformed at L2: a truncated VLAN tag. The outer (802.1ad) tag is taken off by the
      // receiving device before TC runs, the inner one is left with 2 of its 4 bytes. (A frame
      // shorter than an Ethernet header cannot be sent through a veth at all.)
      {"vlan-truncated", [](const Addrs& a, const Mac& m) { return eth(a, m, {kEth8021AD, kEth8021Q}, {0x00, 0x07}); }},
      // --- malformed at L3
      {"ip4-truncated",
       [](const Addrs& a, const Mac& m) {
         return eth(a, m, {kEthIp}, truncate(ipv4(a, {}, udp(false, a, kDataPort, Bytes(16, 0x76))), 10));
       }},
      {"ip4-bad-ihl",
       [](const Addrs& a, const Mac& m) {
         V4 o;
         o.ihl = 4;
         return eth(a, m, {kEthIp}, ipv4(a, o, udp(false, a, kDataPort, Bytes(16, 0x76))));
       }},
      {"ip4-bad-version",
       [](const Addrs& a, const Mac& m) {
         V4 o;
         o.version = 5;
         return eth(a, m, {kEthIp}, ipv4(a, o, udp(false, a, kDataPort, Bytes(16, 0x76))));
       }},
      // 40 bytes of options (IHL 15, total length consistent), the frame ends after 24 bytes of
      // the IPv4 header.
      {"ip4-options-truncated",
       [](const Addrs& a, const Mac& m) {
         V4 o;
         o.options = Bytes(40, 0x01);
         return eth(a, m, {kEthIp}, truncate(ipv4(a, o, udp(false, a, kDataPort, Bytes(16, 0x76))), 24));
       }},
      {"ip6-truncated",
       [](const Addrs& a, const Mac& m) {
         return eth(a, m, {kEthIp6}, truncate(ipv6(a, kUdp, udp(true, a, kDataPort, Bytes(16, 0x76))), 30));
       }},
      // A hop-by-hop header that says 64 bytes, in a frame that ends after its first 8.
      {"ip6-ext-truncated",
       [](const Addrs& a, const Mac& m) {
         return eth(a, m, {kEthIp6}, ipv6(a, kHopByHop, {kUdp, 7, 1, 4, 0, 0, 0, 0}));
       }},
      // Seven destination options headers: one more than the parser walks.
      {"ip6-too-many-ext",
       [](const Addrs& a, const Mac& m) {
         Bytes ext;
         for (int i = 0; i < 6; ++i) append(ext, opts_header(kDestOpts));
         append(ext, opts_header(kUdp));
         append(ext, udp(true, a, kDataPort, Bytes(16, 0x76)));
         return eth(a, m, {kEthIp6}, ipv6(a, kDestOpts, ext));
       }},
      // --- malformed at L4
      {"tcp-truncated",
       [](const Addrs& a, const Mac& m) {
         V4 o;
         o.proto = kTcp;
         return eth(a, m, {kEthIp}, ipv4(a, o, truncate(tcp(false, a, kDataPort, 0x02, {}), 10)));
       }},
      {"tcp-bad-doff",
       [](const Addrs& a, const Mac& m) {
         V4 o;
         o.proto = kTcp;
         return eth(a, m, {kEthIp}, ipv4(a, o, tcp(false, a, kDataPort, 0x02, Bytes(8, 0x76), 3)));
       }},
      // The data offset says 60 bytes of header (40 of options); the segment has 20.
      {"tcp-options-truncated",
       [](const Addrs& a, const Mac& m) {
         V4 o;
         o.proto = kTcp;
         return eth(a, m, {kEthIp}, ipv4(a, o, tcp(false, a, kDataPort, 0x02, {}, 15)));
       }},
      {"udp-truncated",
       [](const Addrs& a, const Mac& m) {
         return eth(a, m, {kEthIp}, ipv4(a, {}, truncate(udp(false, a, kDataPort, {}), 6)));
       }},
      {"udp-bad-len",
       [](const Addrs& a, const Mac& m) {
         Bytes u = udp(false, a, kDataPort, Bytes(16, 0x76));
         set16(u, 4, 7);
         return eth(a, m, {kEthIp}, ipv4(a, {}, u));
       }},
      {"ip6-udp-truncated",
       [](const Addrs& a, const Mac& m) {
         return eth(a, m, {kEthIp6}, ipv6(a, kUdp, truncate(udp(true, a, kDataPort, {}), 4)));
       }},
      // Lengths that leave the L4 header, or the message, outside the IP packet: the frame
      // carries a whole segment or datagram after it, which the stack trims off and never reads.
      // The IPv4 total length says the header alone; a SYN follows.
      {"tcp-ip4-header-only",
       [](const Addrs& a, const Mac& m) {
         V4 o = v4_tcp();
         o.tot_len = 20;
         return eth(a, m, {kEthIp}, ipv4(a, o, tcp(false, a, kDataPort, 0x02, {})));
       }},
      // The same before a DNS query in UDP.
      {"dns-ip4-header-only",
       [](const Addrs& a, const Mac& m) {
         V4 o;
         o.tot_len = 20;
         return eth(a, m, {kEthIp}, ipv4(a, o, udp(false, a, kDnsPort, dns_query(0x7630, "ok.lab.test", 1))));
       }},
      // The IPv6 payload length says the UDP header alone, whose length says the query after it.
      {"dns-ip6-payload-short",
       [](const Addrs& a, const Mac& m) {
         Bytes b = ipv6(a, kUdp, udp(true, a, kDnsPort, dns_query(0x7631, "ok.lab.test", 28)));
         set16(b, 4, 8);
         return eth(a, m, {kEthIp6}, b);
       }},
      // The UDP length says 16 bytes more than the IPv4 packet holds.
      {"dns-udp-len-past-ip",
       [](const Addrs& a, const Mac& m) {
         Bytes u = udp(false, a, kDnsPort, dns_query(0x7632, "ok.lab.test", 1));
         set16(u, 4, static_cast<uint16_t>(u.size() + 16));
         return eth(a, m, {kEthIp}, ipv4(a, {}, u));
       }},
      // --- malformed at L3: a total length 40 bytes past the frame (a truncated packet).
      {"ip4-len-past-frame",
       [](const Addrs& a, const Mac& m) {
         Bytes u = udp(false, a, kDataPort, Bytes(16, 0x76));
         V4 o;
         o.tot_len = static_cast<int>(20 + u.size() + 40);
         return eth(a, m, {kEthIp}, ipv4(a, o, u));
       }},
      // --- malformed DNS, in well-formed IPv4/UDP to port 53 unless said otherwise
      // The UDP length ends the datagram after the DNS header, whose question then is missing;
      // the rest of the query follows in the IP packet, outside the datagram.
      {"dns-udp-len-short",
       [](const Addrs& a, const Mac& m) {
         Bytes u = udp(false, a, kDnsPort, dns_query(0x7633, "ok.lab.test", 1));
         set16(u, 4, 8 + 12);
         return eth(a, m, {kEthIp}, ipv4(a, {}, u));
       }},
      // A label, then a pointer back to the start of the name: a loop.
      {"dns-compression-loop",
       [](const Addrs& a, const Mac& m) {
         Bytes d = dns_header(0x7601, 0x0100, 1);
         append(d, {1, 'a', 0xC0, 12, 0, 1, 0, 1});
         return eth(a, m, {kEthIp}, ipv4(a, {}, udp(false, a, kDnsPort, d)));
       }},
      // A name that is only a pointer to itself.
      {"dns-compression-self",
       [](const Addrs& a, const Mac& m) {
         Bytes d = dns_header(0x7602, 0x0100, 1);
         append(d, {0xC0, 12, 0, 1, 0, 1});
         return eth(a, m, {kEthIp}, ipv4(a, {}, udp(false, a, kDnsPort, d)));
       }},
      {"dns-query-qd0",
       [](const Addrs& a, const Mac& m) {
         return eth(a, m, {kEthIp}, ipv4(a, {}, udp(false, a, kDnsPort, dns_header(0x7603, 0x0100, 0))));
       }},
      {"dns-qd2",
       [](const Addrs& a, const Mac& m) {
         Bytes d = dns_header(0x7604, 0x0100, 2);
         append(d, dns_question("ok.lab.test", 1));
         append(d, dns_question("nx.lab.test", 28));
         return eth(a, m, {kEthIp}, ipv4(a, {}, udp(false, a, kDnsPort, d)));
       }},
      {"dns-qd1-empty",
       [](const Addrs& a, const Mac& m) {
         return eth(a, m, {kEthIp}, ipv4(a, {}, udp(false, a, kDnsPort, dns_header(0x7605, 0x0100, 1))));
       }},
      {"dns-name-truncated",
       [](const Addrs& a, const Mac& m) {
         Bytes d = dns_header(0x7606, 0x0100, 1);
         append(d, {10, 'a', 'b', 'c'});
         return eth(a, m, {kEthIp}, ipv4(a, {}, udp(false, a, kDnsPort, d)));
       }},
      {"dns-label-64",
       [](const Addrs& a, const Mac& m) {
         Bytes d = dns_query(0x7607, std::string(64, 'x') + ".lab.test", 1);
         return eth(a, m, {kEthIp}, ipv4(a, {}, udp(false, a, kDnsPort, d)));
       }},
      // Four labels of 63: 257 bytes of name, over the 255 allowed.
      {"dns-name-257",
       [](const Addrs& a, const Mac& m) {
         std::string l(63, 'y');
         Bytes d = dns_query(0x7608, l + "." + l + "." + l + "." + l, 1);
         return eth(a, m, {kEthIp}, ipv4(a, {}, udp(false, a, kDnsPort, d)));
       }},
      // The name ends, QTYPE is there, QCLASS is not.
      {"dns-no-qclass",
       [](const Addrs& a, const Mac& m) {
         Bytes d = dns_header(0x7609, 0x0100, 1);
         append(d, dns_name("ok.lab.test"));
         put16(d, 1);
         return eth(a, m, {kEthIp}, ipv4(a, {}, udp(false, a, kDnsPort, d)));
       }},
      {"dns-short",
       [](const Addrs& a, const Mac& m) {
         return eth(a, m, {kEthIp}, ipv4(a, {}, udp(false, a, kDnsPort, Bytes(8, 0))));
       }},
      // A response (NXDOMAIN) whose question loops.
      {"dns-response-loop",
       [](const Addrs& a, const Mac& m) {
         Bytes d = dns_header(0x760a, 0x8183, 1);
         append(d, {0xC0, 12, 0, 1, 0, 1});
         Bytes u = udp(false, a, kDataPort, d);
         set16(u, 0, kDnsPort);  // from port 53
         set16(u, 2, kSrcPort);
         set16(u, 6, 0);
         return eth(a, m, {kEthIp}, ipv4(a, {}, u));
       }},
      // DNS over TCP: the length prefix and a message with two questions.
      {"dns-tcp-qd2",
       [](const Addrs& a, const Mac& m) {
         Bytes d = dns_header(0x760b, 0x0100, 2);
         append(d, dns_question("ok.lab.test", 1));
         append(d, dns_question("ok.lab.test", 1));
         V4 o;
         o.proto = kTcp;
         return eth(a, m, {kEthIp}, ipv4(a, o, tcp(false, a, kDnsPort, kPshAck, tcp_dns(static_cast<uint16_t>(d.size()), d))));
       }},
      // Behind IPv6 extension headers: a label of 64.
      {"dns-ip6-ext-label-64",
       [](const Addrs& a, const Mac& m) {
         Bytes d = dns_query(0x760c, std::string(64, 'z') + ".lab.test", 28);
         return eth(a, m, {kEthIp6}, ipv6_ext(a, kUdp, udp(true, a, kDnsPort, d)));
       }},
      // --- well-formed but unusual: counted as plain traffic
      {"ip4-options",  // router alert
       [](const Addrs& a, const Mac& m) {
         V4 o;
         o.options = {0x94, 0x04, 0x00, 0x00};
         return eth(a, m, {kEthIp}, ipv4(a, o, udp(false, a, kDataPort, Bytes(16, 0x76))));
       }},
      {"ip4-options-max",  // 40 bytes of options: NOPs and an end of list
       [](const Addrs& a, const Mac& m) {
         V4 o;
         o.options = Bytes(39, 0x01);
         o.options.push_back(0x00);
         return eth(a, m, {kEthIp}, ipv4(a, o, udp(false, a, kDataPort, Bytes(16, 0x76))));
       }},
      {"ip6-ext",
       [](const Addrs& a, const Mac& m) {
         return eth(a, m, {kEthIp6}, ipv6_ext(a, kUdp, udp(true, a, kDataPort, Bytes(16, 0x76))));
       }},
      // Six extension headers: as many as the parser walks.
      {"ip6-ext-6",
       [](const Addrs& a, const Mac& m) {
         Bytes ext;
         for (int i = 0; i < 5; ++i) append(ext, opts_header(kDestOpts));
         append(ext, opts_header(kUdp));
         append(ext, udp(true, a, kDataPort, Bytes(16, 0x76)));
         return eth(a, m, {kEthIp6}, ipv6(a, kDestOpts, ext));
       }},
      {"vlan",
       [](const Addrs& a, const Mac& m) {
         return eth(a, m, {kEth8021Q, kEthIp}, ipv4(a, {}, udp(false, a, kDataPort, Bytes(16, 0x76))));
       }},
      {"qinq",
       [](const Addrs& a, const Mac& m) {
         return eth(a, m, {kEth8021AD, kEth8021Q, kEthIp}, ipv4(a, {}, udp(false, a, kDataPort, Bytes(16, 0x76))));
       }},
      // First fragment: more fragments, offset 0, the UDP header claims the whole datagram.
      {"ip4-frag-first",
       [](const Addrs& a, const Mac& m) {
         Bytes u = udp(false, a, kDataPort, Bytes(24, 0x76));
         set16(u, 4, 1000);
         set16(u, 6, 0);
         V4 o;
         o.frag = 0x2000;
         return eth(a, m, {kEthIp}, ipv4(a, o, u));
       }},
      // A later fragment of a TCP datagram: its 4 bytes would be a truncated TCP header if read.
      {"ip4-frag-later",
       [](const Addrs& a, const Mac& m) {
         V4 o;
         o.proto = kTcp;
         o.frag = 100;  // offset 800 bytes, last fragment
         return eth(a, m, {kEthIp}, ipv4(a, o, {0x76, 0x76, 0x76, 0x76}));
       }},
      {"ip6-frag-first",
       [](const Addrs& a, const Mac& m) {
         Bytes u = udp(true, a, kDataPort, Bytes(24, 0x76));
         set16(u, 4, 1000);
         Bytes f = fragment_header(kUdp, 0, true, 0x76000001);
         append(f, u);
         return eth(a, m, {kEthIp6}, ipv6(a, kFragment, f));
       }},
      {"ip6-frag-later",
       [](const Addrs& a, const Mac& m) {
         Bytes f = fragment_header(kTcp, 100, false, 0x76000002);
         append(f, {0x76, 0x76, 0x76, 0x76});
         return eth(a, m, {kEthIp6}, ipv6(a, kFragment, f));
       }},
      // --- well-formed DNS queries behind unusual headers: counted as requests with their qtype
      {"dns-ip4-options",  // A
       [](const Addrs& a, const Mac& m) {
         V4 o;
         o.options = {0x94, 0x04, 0x00, 0x00};
         return eth(a, m, {kEthIp}, ipv4(a, o, udp(false, a, kDnsPort, dns_query(0x7610, "ok.lab.test", 1))));
       }},
      {"dns-ip6-ext",  // AAAA
       [](const Addrs& a, const Mac& m) {
         return eth(a, m, {kEthIp6}, ipv6_ext(a, kUdp, udp(true, a, kDnsPort, dns_query(0x7611, "ok.lab.test", 28))));
       }},
      {"dns-vlan",  // MX
       [](const Addrs& a, const Mac& m) {
         return eth(a, m, {kEth8021Q, kEthIp}, ipv4(a, {}, udp(false, a, kDnsPort, dns_query(0x7612, "nx.lab.test", 15))));
       }},
      {"dns-tcp-ip6-ext",  // TXT, over TCP
       [](const Addrs& a, const Mac& m) {
         Bytes d = dns_query(0x7613, "ok.lab.test", 16);
         return eth(a, m, {kEthIp6},
                    ipv6_ext(a, kTcp, tcp(true, a, kDnsPort, kPshAck, tcp_dns(static_cast<uint16_t>(d.size()), d))));
       }},
      // TCP segments with every flag, and with combinations the counters must tell apart (SYN
      // alone, SYN+ACK, ECE and CWR with a SYN as ECN negotiation sends them, FIN+ACK, no flag).
      {"tcp-flags-all", [](const Addrs& a, const Mac& m) { return eth(a, m, {kEthIp}, ipv4(a, v4_tcp(), tcp(false, a, kDataPort, 0xff, {}))); }},
      {"tcp-flags-syn-ece-cwr",
       [](const Addrs& a, const Mac& m) { return eth(a, m, {kEthIp6}, ipv6(a, kTcp, tcp(true, a, kDataPort, 0xc2, {}))); }},
      {"tcp-flags-fin-ack",
       [](const Addrs& a, const Mac& m) { return eth(a, m, {kEthIp}, ipv4(a, v4_tcp(), tcp(false, a, kDataPort, 0x11, {}))); }},
      {"tcp-flags-none", [](const Addrs& a, const Mac& m) { return eth(a, m, {kEthIp}, ipv4(a, v4_tcp(), tcp(false, a, kDataPort, 0x00, {}))); }},
      // ACK alone and PSH+ACK take the TC program's one-add path (vigil_abi.h, tcp_plain); URG
      // beside them does not.
      {"tcp-flags-ack", [](const Addrs& a, const Mac& m) { return eth(a, m, {kEthIp}, ipv4(a, v4_tcp(), tcp(false, a, kDataPort, 0x10, {}))); }},
      {"tcp-flags-psh-ack",
       [](const Addrs& a, const Mac& m) { return eth(a, m, {kEthIp6}, ipv6(a, kTcp, tcp(true, a, kDataPort, 0x18, {}))); }},
      {"tcp-flags-urg-psh-ack",
       [](const Addrs& a, const Mac& m) { return eth(a, m, {kEthIp}, ipv4(a, v4_tcp(), tcp(false, a, kDataPort, 0x38, {}))); }},
      // Frames of more than a page (the lab's MTU is raised for them): an AF_PACKET send puts
      // only their Ethernet header in the skb's linear part, the rest in its pages.
      {"udp-5000",
       [](const Addrs& a, const Mac& m) { return eth(a, m, {kEthIp}, ipv4(a, {}, udp(false, a, kDataPort, Bytes(5000, 0x76)))); }},
      {"tcp-5000-psh-ack",
       [](const Addrs& a, const Mac& m) {
         return eth(a, m, {kEthIp}, ipv4(a, v4_tcp(), tcp(false, a, kDataPort, kPshAck, Bytes(5000, 0x76))));
       }},
      {"dns-ip6-ext-5000",  // AAAA, in a datagram padded to 5000 bytes after the DNS message
       [](const Addrs& a, const Mac& m) {
         Bytes u = udp(true, a, kDnsPort, dns_query(0x7634, "ok.lab.test", 28));
         const uint16_t dns_len = static_cast<uint16_t>(u.size());
         u.resize(5000, 0);
         set16(u, 4, dns_len);  // the UDP length ends the datagram at the message; the rest is padding
         return eth(a, m, {kEthIp6}, ipv6_ext(a, kUdp, u));
       }},
      // An IPv6 payload length of 0 with no hop-by-hop header (no jumbogram) and no GSO: the
      // packet is its 40-byte header (the stack trims it so), and the UDP header is past its end.
      {"dns-ip6-payload-zero",
       [](const Addrs& a, const Mac& m) {
         Bytes b = ipv6(a, kUdp, udp(true, a, kDnsPort, dns_query(0x7635, "ok.lab.test", 28)));
         set16(b, 4, 0);
         return eth(a, m, {kEthIp6}, b);
       }},
      // A datagram's first fragment to port 53 holding the DNS header alone, padded to Ethernet's
      // 60 bytes: the padding is no question (it would read as the root name, qtype 0).
      {"dns-ip4-frag-first-padded",
       [](const Addrs& a, const Mac& m) {
         Bytes u = udp(false, a, kDnsPort, dns_header(0x7636, 0x0100, 1));
         set16(u, 4, 1000);
         set16(u, 6, 0);
         V4 o;
         o.frag = 0x2000;
         Bytes f = eth(a, m, {kEthIp}, ipv4(a, o, u));
         f.resize(60, 0);
         return f;
       }},
      // A segment to port 53 of 128 zero bytes: 64 messages of length 0, each malformed; one
      // malformed packet, and the segment read to its end in the 128 steps a segment gets.
      {"dns-tcp-zeros",
       [](const Addrs& a, const Mac& m) {
         return eth(a, m, {kEthIp}, ipv4(a, v4_tcp(), tcp(false, a, kDnsPort, kPshAck, Bytes(128, 0))));
       }},
      // A query behind an IPv6 authentication header (24 bytes: a 12-byte ICV). The parser does
      // not walk AH (IPsec in clusters is ESP, and one more kind of header in the walk would
      // double the verifier's work on the TC program): a forwarded packet, no DNS.
      {"dns-ip6-ah",
       [](const Addrs& a, const Mac& m) {
         Bytes ah = {kUdp, 4, 0, 0, 0, 0, 0x76, 0x01, 0, 0, 0, 1};
         ah.resize(24, 0x76);
         append(ah, udp(true, a, kDnsPort, dns_query(0x7637, "ok.lab.test", 1)));
         return eth(a, m, {kEthIp6}, ipv6(a, kAuth, ah));
       }},
      // A FORMERR response without a question: counted as a response, qtype other; no request
      // was seen for it, so it is also unmatched.
      {"dns-response-qd0",
       [](const Addrs& a, const Mac& m) {
         Bytes u = udp(false, a, kDataPort, dns_header(0x7614, 0x8101, 0));
         set16(u, 0, kDnsPort);
         set16(u, 2, kSrcPort);
         set16(u, 6, 0);
         return eth(a, m, {kEthIp}, ipv4(a, {}, u));
       }},
  };
  return k;
}

Mac kind_mac(size_t index) { return {0x02, 0x76, 0x6b, 0x00, 0x00, static_cast<uint8_t>(index + 1)}; }

bool parse_mac(const char* s, Mac& m) {
  unsigned v[6];
  if (std::sscanf(s, "%x:%x:%x:%x:%x:%x", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5]) != 6) return false;
  for (int i = 0; i < 6; ++i) m[i] = static_cast<uint8_t>(v[i]);
  return true;
}

int usage() {
  std::fprintf(stderr,
               "usage: vigil-packet-craft list\n"
               "       vigil-packet-craft send IFACE DST_MAC SRC4 DST4 SRC6 DST6 KIND[=COUNT]...\n"
               "       vigil-packet-craft capture IFACE IDLE_MS MAX_MS\n");
  return 2;
}

int send_frames(int argc, char** argv) {
  if (argc < 9) return usage();
  Addrs a;
  if (!parse_mac(argv[3], a.dst_mac) || inet_pton(AF_INET, argv[4], a.src4) != 1 ||
      inet_pton(AF_INET, argv[5], a.dst4) != 1 || inet_pton(AF_INET6, argv[6], a.src6) != 1 ||
      inet_pton(AF_INET6, argv[7], a.dst6) != 1)
    return usage();
  unsigned ifindex = if_nametoindex(argv[2]);
  if (!ifindex) {
    std::perror(argv[2]);
    return 1;
  }
  int fd = socket(AF_PACKET, SOCK_RAW, 0);  // protocol 0: this socket receives nothing
  if (fd < 0) {
    std::perror("socket(AF_PACKET)");
    return 1;
  }
  sockaddr_ll to{};
  to.sll_family = AF_PACKET;
  to.sll_ifindex = static_cast<int>(ifindex);
  to.sll_halen = 6;
  std::memcpy(to.sll_addr, a.dst_mac.data(), 6);
  int rc = 0;
  for (int i = 8; i < argc; ++i) {
    std::string arg = argv[i], name = arg;
    long count = 1;
    if (auto eq = arg.find('='); eq != std::string::npos) {
      name = arg.substr(0, eq);
      count = std::strtol(arg.c_str() + eq + 1, nullptr, 10);
    }
    if (count < 0 || count > 10000) return usage();
    size_t k = 0;
    while (k < kinds().size() && name != kinds()[k].name) ++k;
    if (k == kinds().size()) {
      std::fprintf(stderr, "unknown kind %s\n", name.c_str());
      return 2;
    }
    long sent = 0;
    for (long n = 0; n < count; ++n) {
      Bytes frame = kinds()[k].build(a, kind_mac(k));
      if (sendto(fd, frame.data(), frame.size(), 0, reinterpret_cast<sockaddr*>(&to), sizeof(to)) ==
          static_cast<ssize_t>(frame.size()))
        ++sent;
      else
        std::fprintf(stderr, "%s: %s\n", name.c_str(), std::strerror(errno));
    }
    std::printf("sent %s %ld\n", name.c_str(), sent);
    if (sent != count) rc = 1;
  }
  close(fd);
  return rc;
}

int capture(int argc, char** argv) {
  if (argc != 5) return usage();
  unsigned ifindex = if_nametoindex(argv[2]);
  const long idle_ms = std::strtol(argv[3], nullptr, 10), max_ms = std::strtol(argv[4], nullptr, 10);
  if (!ifindex || idle_ms <= 0 || max_ms <= 0) return usage();
  int fd = socket(AF_PACKET, SOCK_RAW, htons(0x0003));  // ETH_P_ALL
  if (fd < 0) {
    std::perror("socket(AF_PACKET)");
    return 1;
  }
  sockaddr_ll at{};
  at.sll_family = AF_PACKET;
  at.sll_protocol = htons(0x0003);
  at.sll_ifindex = static_cast<int>(ifindex);
  if (bind(fd, reinterpret_cast<sockaddr*>(&at), sizeof(at)) != 0) {
    std::perror("bind");
    return 1;
  }
  // Room for the whole burst: frames of a jumbo MTU take 16 KiB each of the receive buffer, and
  // the default (about 200 KiB) overflowed with frames still arriving, a loss not the datapath's.
  const int room = 16 << 20;
  if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &room, sizeof(room)) != 0) {
    std::perror("setsockopt SO_RCVBUFFORCE");
    return 1;
  }
  std::printf("ready\n");
  std::fflush(stdout);
  using clock = std::chrono::steady_clock;
  const auto end = clock::now() + std::chrono::milliseconds(max_ms);
  auto idle_end = end;
  std::map<std::string, long> counts;
  uint8_t buf[2048];
  while (clock::now() < end && clock::now() < idle_end) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(std::min(end, idle_end) - clock::now()).count();
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, static_cast<int>(std::max<long>(left, 1))) <= 0) continue;
    sockaddr_ll from{};
    socklen_t fl = sizeof(from);
    ssize_t n = recvfrom(fd, buf, sizeof(buf), 0, reinterpret_cast<sockaddr*>(&from), &fl);
    if (n < 12 || from.sll_pkttype == PACKET_OUTGOING) continue;
    std::string kind = "other";
    Mac src;
    std::memcpy(src.data(), buf + 6, 6);
    for (size_t k = 0; k < kinds().size(); ++k)
      if (src == kind_mac(k)) kind = kinds()[k].name;
    counts[kind] += 1;
    idle_end = clock::now() + std::chrono::milliseconds(idle_ms);
  }
  for (const auto& [kind, n] : counts) std::printf("%s %ld\n", kind.c_str(), n);
  close(fd);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) return usage();
  std::string cmd = argv[1];
  if (cmd == "list") {
    for (const auto& k : kinds()) std::printf("%s\n", k.name);
    return 0;
  }
  if (cmd == "send") return send_frames(argc, argv);
  if (cmd == "capture") return capture(argc, argv);
  return usage();
}
