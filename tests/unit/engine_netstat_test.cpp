// The netstat family's inputs: the /proc/net files' parsers on real and broken text (each error
// names the file and line), metrics.netstat in the config, and the check of statistic names
// against this kernel. The per-pod figures against the kernel's own are in
// tests/integration/netstat_test.cpp.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <algorithm>
#include <fstream>

#include "engine/agent.h"
#include "engine/config.h"
#include "engine/netns_stats.h"

namespace vigil {
namespace {

uint64_t value_of(const std::vector<MibCounter>& v, const std::string& group, const std::string& name) {
  for (const auto& c : v)
    if (c.group == group && c.name == name) return c.value;
  return ~0ull;
}

TEST(ProcNet, PairsOfHeaderAndValueLines) {
  const std::string text =
      "Ip: Forwarding DefaultTTL InReceives\n"
      "Ip: 2 64 780451\n"
      "Tcp: RtoAlgorithm MaxConn ActiveOpens OutRsts\n"
      "Tcp: 1 -1 86523 33980\n"
      "TcpExt: ListenDrops\n"
      "TcpExt: 18446744073709551615\n";
  auto r = parse_mib_pairs(text, "/proc/net/snmp");
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(value_of(*r, "Ip", "InReceives"), 780451u);
  EXPECT_EQ(value_of(*r, "Tcp", "OutRsts"), 33980u);
  EXPECT_EQ(value_of(*r, "TcpExt", "ListenDrops"), 18446744073709551615ull);
  // MaxConn is -1: a setting, left out rather than read as a huge counter.
  EXPECT_EQ(value_of(*r, "Tcp", "MaxConn"), ~0ull);
  EXPECT_EQ(r->size(), 7u);
}

TEST(ProcNet, BrokenPairsNameFileAndLine) {
  auto err = [](const std::string& text) {
    auto r = parse_mib_pairs(text, "/proc/net/netstat");
    return r.ok() ? std::string("(no error)") : r.error().message;
  };
  EXPECT_EQ(err("TcpExt: A B\nTcpExt: 1\n"), "/proc/net/netstat:2: TcpExt: has 2 names but 1 values");
  EXPECT_EQ(err("TcpExt: A B\nIpExt: 1 2\n"), "/proc/net/netstat:2: expected the values of TcpExt:");
  EXPECT_EQ(err("Ip: A\nIp: 1\nTcpExt: A B\n"), "/proc/net/netstat:3: header of TcpExt: without a line of values");
  EXPECT_EQ(err("TcpExt: A B\nTcpExt: 1 x2\n"), "/proc/net/netstat:2: TcpExt:B: 'x2' is not a number");
  EXPECT_EQ(err("TcpExt: A\nTcpExt: 99999999999999999999\n"),
            "/proc/net/netstat:2: TcpExt:A: '99999999999999999999' is not a number");
  EXPECT_EQ(err("garbage here\n"), "/proc/net/netstat:1: expected 'Group: Name ...', found 'garbage'");
  EXPECT_EQ(err(""), "(no error)");
}

TEST(ProcNet, Snmp6LinesByGroupPrefix) {
  auto r = parse_mib_snmp6("Ip6InReceives   \t28741\nIcmp6InErrors 3\nUdp6NoPorts 5\nUdpLite6InErrors 0\n"
                           "Ip6InOctets 9\nSomethingElse 4\n",
                           "/proc/net/snmp6");
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(value_of(*r, "Ip6", "InReceives"), 28741u);
  EXPECT_EQ(value_of(*r, "Icmp6", "InErrors"), 3u);
  EXPECT_EQ(value_of(*r, "Udp6", "NoPorts"), 5u);
  EXPECT_EQ(value_of(*r, "UdpLite6", "InErrors"), 0u);
  EXPECT_EQ(r->size(), 5u);  // SomethingElse is no group of snmp6
  auto bad = parse_mib_snmp6("Ip6InReceives 1\nUdp6NoPorts\n", "/proc/net/snmp6");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error().message, "/proc/net/snmp6:2: expected 'Name value'");
}

TEST(ProcNet, SockstatGroupsOfNameValuePairs) {
  auto r = parse_sockstat("sockets: used 8\nTCP: inuse 1 orphan 0 tw 7 alloc 1 mem 186\nTCP6: inuse 2\n", "/proc/net/sockstat");
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(value_of(*r, "TCP", "tw"), 7u);
  EXPECT_EQ(value_of(*r, "TCP6", "inuse"), 2u);
  auto bad = parse_sockstat("TCP: inuse 1 orphan\n", "/proc/net/sockstat");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error().message, "/proc/net/sockstat:1: expected 'GROUP: name value ...'");
}

TEST(ProcNet, ConntrackStatsSummedOverCpusByConntrackSNames) {
  // As Linux 6.18 prints it: the table's size on every CPU's line, the counts per CPU in hex.
  const std::string text =
      "entries  clashres found new invalid ignore delete chainlength insert insert_failed drop early_drop icmp_error  "
      "expect_new expect_create expect_delete search_restart\n"
      "0000012c  00000001 00000000 00000000 0000000a 00000000 00000000 00000000 00000000 00000003 00000000 00000010 "
      "00000000  00000000 00000000 00000000 00000002\n"
      "0000012c  00000002 00000000 00000000 ffffffff 00000000 00000000 00000000 00000000 00000004 00000001 00000001 "
      "00000005  00000000 00000000 00000000 00000000\n";
  auto r = parse_conntrack_stat(text, "/proc/net/stat/nf_conntrack");
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->entries, 300u);  // not 600: one table, printed twice
  EXPECT_EQ(value_of(r->counters, "conntrack", "clash_resolve"), 3u);
  EXPECT_EQ(value_of(r->counters, "conntrack", "invalid"), 10u + 0xffffffffull);  // no 32-bit wrap in the sum
  EXPECT_EQ(value_of(r->counters, "conntrack", "insert_failed"), 7u);
  EXPECT_EQ(value_of(r->counters, "conntrack", "drop"), 1u);
  EXPECT_EQ(value_of(r->counters, "conntrack", "early_drop"), 17u);
  EXPECT_EQ(value_of(r->counters, "conntrack", "error"), 5u);
  EXPECT_EQ(value_of(r->counters, "conntrack", "search_restart"), 2u);
  EXPECT_EQ(value_of(r->counters, "conntrack", "chaintoolong"), 0u);
  EXPECT_EQ(value_of(r->counters, "conntrack", "entries"), ~0ull);  // a gauge, not a counter
  EXPECT_EQ(r->counters.size(), 16u);
  // An older kernel's columns come through by their own names.
  auto old = parse_conntrack_stat("entries  searched found\n00000002  00000009 0000000a\n", "f");
  ASSERT_TRUE(old.ok()) << old.error().message;
  EXPECT_EQ(old->entries, 2u);
  EXPECT_EQ(value_of(old->counters, "conntrack", "searched"), 9u);
  // Broken text names the file, the line and the column.
  auto err = [](const std::string& t) {
    auto b = parse_conntrack_stat(t, "/proc/net/stat/nf_conntrack");
    return b.ok() ? std::string("(no error)") : b.error().message;
  };
  EXPECT_EQ(err("entries drop\n00000001 00000002\n00000001\n"),
            "/proc/net/stat/nf_conntrack:3: 2 columns in the header but 1 values");
  EXPECT_EQ(err("entries drop\n00000001 0000000g\n"),
            "/proc/net/stat/nf_conntrack:2: drop: '0000000g' is not a hexadecimal number");
  EXPECT_EQ(err("entries drop\n00000001 -1\n"), "/proc/net/stat/nf_conntrack:2: drop: '-1' is not a hexadecimal number");
  EXPECT_EQ(err("entries drop\n"), "/proc/net/stat/nf_conntrack:1: a header without a line of values");
  EXPECT_EQ(err(""), "(no error)");
}

TEST(ProcNet, TheAgentsOwnNamespaceReadsWhole) {
  auto samples = read_netns_samples({NetnsTarget{}});
  ASSERT_EQ(samples.size(), 1u);
  ASSERT_TRUE(samples[0].ok()) << samples[0].error().message;
  EXPECT_NE(value_of(samples[0]->mibs, "Udp", "NoPorts"), ~0ull);
  EXPECT_NE(value_of(samples[0]->mibs, "TcpExt", "ListenDrops"), ~0ull);
  EXPECT_TRUE(samples[0]->has_tcp_states);
  auto known = known_statistics();
  ASSERT_TRUE(known.ok()) << known.error().message;
  EXPECT_TRUE(std::binary_search(known->begin(), known->end(), "Tcp:OutRsts"));
  // A namespace that is not there is an error for that target alone.
  samples = read_netns_samples({NetnsTarget{"/nonexistent/netns"}, NetnsTarget{.path = "", .inode = 0, .tcp_states = false}});
  ASSERT_EQ(samples.size(), 2u);
  ASSERT_FALSE(samples[0].ok());
  EXPECT_EQ(samples[0].error().message, "open /nonexistent/netns: No such file or directory");
  ASSERT_TRUE(samples[1].ok());
  EXPECT_FALSE(samples[1]->has_tcp_states);
  // Gone, and so no read error: a path that is not there, or that names another namespace.
  EXPECT_TRUE(netns_gone({"/nonexistent/netns"}));
  struct stat st {};
  ASSERT_EQ(stat("/proc/self/ns/net", &st), 0);
  EXPECT_FALSE(netns_gone({"/proc/self/ns/net", st.st_ino}));
  EXPECT_TRUE(netns_gone({"/proc/self/ns/net", st.st_ino + 1}));
  EXPECT_FALSE(netns_gone({}));
}

TEST(ProcNet, TheNodesConntrackTableAndItsLimit) {
  auto samples = read_netns_samples({NetnsTarget{.path = "", .inode = 0, .tcp_states = false}});
  ASSERT_TRUE(samples[0].ok()) << samples[0].error().message;
  struct stat ct {};
  const bool kernel_has_conntrack = stat("/proc/net/stat/nf_conntrack", &ct) == 0;
  ASSERT_EQ(samples[0]->has_conntrack, kernel_has_conntrack);
  if (!kernel_has_conntrack) GTEST_SKIP() << "this kernel has no conntrack";
  std::ifstream max_file("/proc/sys/net/netfilter/nf_conntrack_max");
  uint64_t max = 0;
  ASSERT_TRUE(max_file >> max);
  EXPECT_EQ(samples[0]->conntrack_limit, max);
  EXPECT_NE(value_of(samples[0]->conntrack.counters, "conntrack", "insert_failed"), ~0ull);
  EXPECT_NE(value_of(samples[0]->conntrack.counters, "conntrack", "drop"), ~0ull);
}

TEST(ProcNet, NeighbourTablesStatsByTheirOwnNames) {
  // /proc/net/stat/arp_cache as Linux 6.18 prints it.
  const std::string text =
      "entries  allocs   destroys hash_grows lookups  hits     res_failed rcv_probes_mcast rcv_probes_ucast "
      "periodic_gc_runs forced_gc_runs unresolved_discards table_fulls\n"
      "00000002 00000014 00000009 00000000   00000044 0000000a 00000000   00000000         00000000         "
      "00000000         00000000       00000000            00000003\n"
      "00000002 00000006 0000000f 00000000   0000004e 00000008 00000001   00000000         00000000         "
      "0000005f         00000000       00000000            00000000\n";
  auto r = parse_stat_table(text, "/proc/net/stat/arp_cache", "neighbor");
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->entries, 2u);
  EXPECT_EQ(value_of(r->counters, "neighbor", "allocs"), 26u);
  EXPECT_EQ(value_of(r->counters, "neighbor", "res_failed"), 1u);
  EXPECT_EQ(value_of(r->counters, "neighbor", "periodic_gc_runs"), 95u);
  EXPECT_EQ(value_of(r->counters, "neighbor", "table_fulls"), 3u);
  EXPECT_EQ(r->counters.size(), 12u);
  // The node's own tables, with their limits (gc_thresh3), as the kernel shows them.
  auto samples = read_netns_samples({NetnsTarget{.path = "", .inode = 0, .tcp_states = false}});
  ASSERT_TRUE(samples[0].ok()) << samples[0].error().message;
  ASSERT_FALSE(samples[0]->neighbors.empty());
  EXPECT_EQ(samples[0]->neighbors[0].family, "ipv4");
  std::ifstream thresh("/proc/sys/net/ipv4/neigh/default/gc_thresh3");
  uint64_t limit = 0;
  ASSERT_TRUE(thresh >> limit);
  EXPECT_EQ(samples[0]->neighbors[0].limit, limit);
  EXPECT_NE(value_of(samples[0]->neighbors[0].stats.counters, "neighbor", "table_fulls"), ~0ull);
}

TEST(ProcNet, Addresses16AsConntrackGivesThem) {
  auto v4 = parse_address16("10.1.2.3");
  ASSERT_TRUE(v4.has_value());
  EXPECT_EQ(*v4, (Address16{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 1, 2, 3}));
  auto v6 = parse_address16("fd00::3");
  ASSERT_TRUE(v6.has_value());
  EXPECT_EQ((*v6)[0], 0xfd);
  EXPECT_EQ((*v6)[15], 3);
  EXPECT_FALSE(parse_address16("10.1.2").has_value());
  EXPECT_FALSE(parse_address16("").has_value());
}

TEST(NetstatConfig, DefaultsAndEveryErrorWithItsLine) {
  auto c = parse_config("", "vigil.yaml", "");
  ASSERT_TRUE(c.ok());
  EXPECT_TRUE(c->metrics.netstat.enabled);
  EXPECT_EQ(c->metrics.netstat.interval_seconds, 10);
  EXPECT_EQ(c->metrics.netstat.sockets, "node");
  EXPECT_EQ(c->metrics.netstat.statistics, default_netstat_statistics());
  EXPECT_TRUE(c->metrics.netstat.statistic_lines.empty());
  EXPECT_EQ(c->metrics.netstat.conntrack_by_pod_above, 0.5);
  for (const auto& [text, share] : std::vector<std::pair<std::string, double>>{
           {"always", 0}, {"never", 2}, {"12.5%", 0.125}, {"0%", 0}, {"100%", 1}}) {
    c = parse_config("metrics: {netstat: {conntrack_by_pod: '" + text + "'}}\n", "vigil.yaml", "");
    ASSERT_TRUE(c.ok()) << text << ": " << c.error().message;
    EXPECT_EQ(c->metrics.netstat.conntrack_by_pod_above, share) << text;
  }

  c = parse_config("metrics:\n  netstat:\n    interval: 2s\n    sockets: all\n    statistics:\n      - Udp:NoPorts\n      - TcpExt:ListenDrops\n",
                   "vigil.yaml", "");
  ASSERT_TRUE(c.ok()) << c.error().message;
  EXPECT_EQ(c->metrics.netstat.interval_seconds, 2);
  EXPECT_EQ(c->metrics.netstat.statistics, (std::vector<std::string>{"Udp:NoPorts", "TcpExt:ListenDrops"}));
  EXPECT_EQ(c->metrics.netstat.statistic_lines, (std::vector<int>{6, 7}));
  EXPECT_EQ(c->metrics.netstat.sockets, "all");

  auto err = [](const std::string& text) {
    auto r = parse_config(text, "vigil.yaml", "");
    return r.ok() ? std::string("(no error)") : r.error().message;
  };
  EXPECT_EQ(err("metrics: {netstat: {statistics: [ListenDrops]}}\n"),
            "vigil.yaml:1: metrics.netstat.statistics[0]: 'ListenDrops' is not Group:Name (e.g. TcpExt:ListenDrops, "
            "Udp:NoPorts, Udp6:InErrors)");
  EXPECT_EQ(err("metrics:\n  netstat:\n    statistics: [Udp:NoPorts, Tcp:CurrEstab]\n"),
            "vigil.yaml:3: metrics.netstat.statistics[1]: 'Tcp:CurrEstab' is a setting or a gauge, not a counter");
  EXPECT_EQ(err("metrics: {netstat: {statistics: [Udp:NoPorts, Udp:NoPorts]}}\n"),
            "vigil.yaml:1: metrics.netstat.statistics[1]: 'Udp:NoPorts' is listed twice");
  EXPECT_EQ(err("metrics: {netstat: {interval: 0s}}\n"), "vigil.yaml:1: metrics.netstat.interval: must be more than 0 and at most 1h");
  EXPECT_EQ(err("metrics: {netstat: {every: 1s}}\n"),
            "vigil.yaml:1: metrics.netstat: unknown key 'every' (known: enabled, interval, sockets, statistics, "
            "conntrack_by_pod)");
  for (const std::string bad : {"auto", "50", "150%", "-1%", "x%", "%", "5%%"})
    EXPECT_EQ(err("metrics:\n  netstat:\n    conntrack_by_pod: '" + bad + "'\n"),
              "vigil.yaml:3: metrics.netstat.conntrack_by_pod: expected a share of nf_conntrack_max such as 50%, or always "
              "or never; got '" + bad + "'");
  EXPECT_EQ(err("metrics: {netstat: {sockets: pods}}\n"), "vigil.yaml:1: metrics.netstat.sockets: expected node, all or none");
}

TEST(NetstatConfig, AStatisticThisKernelLacksStopsTheStartWithTheClosestName) {
  auto c = parse_config("metrics:\n  netstat:\n    statistics:\n      - Udp:NoPorts\n      - TcpExt:ListenDrop\n", "vigil.yaml", "");
  ASSERT_TRUE(c.ok()) << c.error().message;
  c->path = "vigil.yaml";
  auto r = check_netstat_statistics(*c);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().message,
            "vigil.yaml:5: metrics.netstat.statistics[1]: 'TcpExt:ListenDrop' is not a statistic of this kernel "
            "(nstat -az lists them); did you mean 'TcpExt:ListenDrops'?");
  // The defaults are not checked: a kernel without one of them (no MPTCP) just has no series.
  EXPECT_TRUE(check_netstat_statistics(*parse_config("", "vigil.yaml", "")).ok());
}

}  // namespace
}  // namespace vigil
