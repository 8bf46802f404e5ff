// The kernel's own network statistics of a network namespace, as `nstat`, `ss` and `ip -s link`
// see them: its SNMP counters (/proc/net/snmp, snmp6, netstat: ListenDrops, UDP NoPorts, ...),
// its sockets by TCP state (sock_diag) and its interfaces' error and drop counters (rtnetlink).
// Read per pod (each pod is a namespace) and for the node.
//
// No descriptor into a pod's namespace is kept between reads: an open /proc/net file or netlink
// socket holds a reference on its namespace, which would keep a deleted pod's namespace (and
// its veth) alive. Each read joins the namespaces one after the other on one short-lived thread.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "rules/core/result.h"

namespace vigil {

struct MibCounter {
  std::string group;  // "Tcp", "TcpExt", "Udp6", ...
  std::string name;   // "OutRsts", "ListenDrops", "NoPorts", ...
  uint64_t value = 0;
  bool operator==(const MibCounter&) const = default;
};

// /proc/net/snmp and /proc/net/netstat: pairs of lines, "Group: Name1 Name2 ..." then
// "Group: v1 v2 ...". `origin` names the file in errors, with the line: a value line whose
// group or count differs from its header's, or a value that is not a number. Signed values
// (Tcp MaxConn is -1) are kept out: they are settings, not counters.
Result<std::vector<MibCounter>> parse_mib_pairs(std::string_view text, const std::string& origin);
// /proc/net/snmp6: one "Ip6InReceives   123" per line; the group is the known prefix (Ip6,
// Icmp6, Udp6, UdpLite6). Lines of other prefixes are skipped.
Result<std::vector<MibCounter>> parse_mib_snmp6(std::string_view text, const std::string& origin);
// /proc/net/sockstat and sockstat6: "TCP: inuse 5 orphan 0 tw 2 alloc 7 mem 1", as group "TCP",
// names "inuse", "tw", ... (UDP6 and the like as they are written).
Result<std::vector<MibCounter>> parse_sockstat(std::string_view text, const std::string& origin);

// A table's statistics in /proc/net/stat (nf_conntrack, arp_cache, ndisc_cache): a header of
// column names, then one line of hexadecimal values per CPU. `entries` is the table's size (the
// same on every line); the other columns are per-CPU counts, summed, in group `group` by the
// header's names. Columns of other kernels come through by their own names.
struct TableStats {
  uint64_t entries = 0;
  std::vector<MibCounter> counters;
};
Result<TableStats> parse_stat_table(std::string_view text, const std::string& origin, const std::string& group);
// /proc/net/stat/nf_conntrack, group "conntrack", the counters named as `conntrack -S` prints
// them (clashres is clash_resolve, chainlength chaintoolong, icmp_error error).
Result<TableStats> parse_conntrack_stat(std::string_view text, const std::string& origin);
using ConntrackStats = TableStats;

// One of the node's neighbour tables (ARP for IPv4, NDISC for IPv6), shared by every namespace.
struct NeighborTable {
  std::string family;  // "ipv4", "ipv6"
  TableStats stats;    // group "neighbor": allocs, res_failed, forced_gc_runs, table_fulls, ...
  uint64_t limit = 0;  // gc_thresh3: the entries (permanent ones aside) the table may hold
};

// TCP states as the kernel numbers them (include/net/tcp_states.h); index 0 is unused.
constexpr int kTcpStates = 14;
const char* tcp_state_name(int state);  // "ESTABLISHED", ...; nullptr for an unknown number

// An address as conntrack and the pods file give it, in 16 bytes: IPv4 as ::ffff:a.b.c.d.
using Address16 = std::array<uint8_t, 16>;
// "10.1.2.3" or "fd00::3"; nullopt for anything else.
std::optional<Address16> parse_address16(const std::string& text);

// For each of `addresses`, how many entries of the calling thread's namespace's conntrack table
// have it for an endpoint, in either direction and before or after NAT (a pod's connection to a
// Service counts for the pod, and for the backend pod, the Service's address aside); an entry
// between two of them counts for both. One ctnetlink dump of the whole table, which the kernel
// builds entry by entry (docs/benchmarks.md, "Netstat"). `total` gets the entries seen.
Result<std::vector<uint64_t>> count_conntrack_by_address(const std::vector<Address16>& addresses, uint64_t& total);

// Whether a conntrack table of `entries` holds at least `share` of `limit` (share above 1:
// never), the point from which the node's entries are counted by pod.
inline bool conntrack_full_enough(uint64_t entries, uint64_t limit, double share) {
  return share <= 1 && static_cast<double>(entries) >= share * static_cast<double>(limit);
}

struct NetnsSample {
  // The namespace's cookie (SO_NETNS_COOKIE, Linux 5.14+; 0 where unknown): never given to
  // another namespace, unlike its inode number, so a pod's counters can tell a new namespace
  // behind the same pod (made again within series_grace) from the one they were reading.
  uint64_t netns_cookie = 0;
  std::vector<MibCounter> mibs;                // snmp, netstat and snmp6 (when IPv6 is on)
  // Each interface's error and drop counters (rx_dropped, tx_carrier_errors, ...: what
  // `ip -s -s link` shows), loopback left out; `group` is the interface's name.
  std::vector<MibCounter> links;
  // Each interface's traffic (rx_packets, tx_packets, rx_bytes, tx_bytes), loopback and veths
  // left out (a pod's traffic is counted on its veth by the datapath): the node's NICs, bridges
  // and tunnels, host traffic included. `group` is the interface's name.
  std::vector<MibCounter> link_traffic;
  bool has_tcp_states = false;                 // tcp_states was read (NetnsTarget::tcp_states)
  std::string tcp_states_error;                // why they were asked for and not read (no
                                               // sock_diag in the kernel, say); the rest stands
  std::array<uint64_t, kTcpStates> tcp_states{};  // sockets (IPv4 and IPv6) in each state
  uint64_t udp_sockets = 0;                    // UDP sockets (IPv4 and IPv6) with a local port
  // From /proc/net/sockstat{,6}, no socket dump: TCP sockets (IPv4 and IPv6) the namespace has
  // hashed, in any state but TIME_WAIT (listeners included), and its timewait sockets (TIME_WAIT,
  // and FIN_WAIT2 once closed: the kernel keeps both as timewait sockets).
  uint64_t tcp_in_use = 0;
  uint64_t tcp_time_wait = 0;
  // The namespace's connection tracking table (netfilter's, as `conntrack -S` and
  // nf_conntrack_count show it); absent from a kernel without conntrack. Every namespace has its
  // own table, in use once a rule of the namespace needs it (kube-proxy's on the node, a service
  // mesh's redirect in a pod); their sizes count against one limit, nf_conntrack_max.
  bool has_conntrack = false;
  ConntrackStats conntrack;
  uint64_t conntrack_limit = 0;  // nf_conntrack_max; read for the node only (0 for a pod)
  std::vector<NeighborTable> neighbors;  // the node's only (the tables are not per namespace)
  // NetnsTarget::conntrack_addresses' entries, when the table was full enough to count them.
  bool has_conntrack_by_address = false;
  std::vector<uint64_t> conntrack_by_address;
  std::string conntrack_by_address_error;  // why they were to be counted and were not; the rest stands
};

struct NetnsTarget {
  std::string path;     // e.g. /run/netns/pod-a or /proc/PID/ns/net; "" = the agent's own
  uint64_t inode = 0;   // when set, the namespace at `path` must still be this one
  // Count TCP sockets by state: a sock_diag dump, in which the kernel walks the node's whole TCP
  // hash table (shared by all namespaces; ~3 ms for 262,144 buckets here), however few sockets
  // the namespace has. The rest of a sample is a few small /proc files.
  bool tcp_states = true;
  // Count the table's entries by these addresses (count_conntrack_by_address) when it holds at
  // least this share of nf_conntrack_max: 0 always, above 1 never.
  double conntrack_by_address_above = 2;
  std::vector<Address16> conntrack_addresses{};
};

// Reads every target on one thread that joins each namespace in turn; result i is target i's.
// A target that cannot be read (gone, replaced: inode differs) gets an error, the others a
// sample. Never leaves a thread of the agent in another namespace.
std::vector<Result<NetnsSample>> read_netns_samples(const std::vector<NetnsTarget>& targets);

// Whether a target's namespace is gone (its path no longer exists, or names another namespace):
// a pod deleted since the tick resolved it, which is no read error.
bool netns_gone(const NetnsTarget& target);

// Every interface's traffic counters in the calling thread's namespace, by ifindex, as
// `ip -s link` shows them (the driver's, Ethernet headers included): one RTM_GETSTATS dump
// that asks for IFLA_STATS_LINK_64 only (~200 bytes an interface).
struct LinkTraffic {
  uint64_t rx_packets = 0, tx_packets = 0, rx_bytes = 0, tx_bytes = 0;
};
Result<std::map<uint32_t, LinkTraffic>> read_link_traffic();

// The counters of one interface in each of these namespaces, on one thread that joins each in
// turn (none of the agent's threads stays in a pod's namespace); an error for a namespace gone or
// replaced (inode differs) or an interface gone.
struct LinkInNetns {
  std::string path;
  uint64_t inode = 0;
  uint32_t ifindex = 0;
};
std::vector<Result<LinkTraffic>> read_link_traffic_in(const std::vector<LinkInNetns>& links);

// The statistic names ("Group:Name") the agent's own namespace has, sorted: what
// metrics.netstat.statistics may name.
Result<std::vector<std::string>> known_statistics();

}  // namespace vigil
