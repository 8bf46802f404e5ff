#include "engine/netns_stats.h"

#include <fcntl.h>
#include <linux/inet_diag.h>
#include <linux/if_link.h>
#include <arpa/inet.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/nfnetlink_conntrack.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <linux/sock_diag.h>
#include <netinet/in.h>
#include <sched.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <thread>

#include "engine/netlink_dump.h"

namespace vigil {
namespace {

std::string errno_text(int err) { return std::strerror(err); }

std::vector<std::string_view> words(std::string_view line) {
  std::vector<std::string_view> out;
  size_t i = 0;
  while (i < line.size()) {
    while (i < line.size() && (line[i] == ' ' || line[i] == '\t')) ++i;
    size_t start = i;
    while (i < line.size() && line[i] != ' ' && line[i] != '\t') ++i;
    if (i > start) out.push_back(line.substr(start, i - start));
  }
  return out;
}

std::vector<std::string_view> lines_of(std::string_view text) {
  std::vector<std::string_view> out;
  while (!text.empty()) {
    size_t nl = text.find('\n');
    out.push_back(text.substr(0, nl));
    if (nl == std::string_view::npos) break;
    text.remove_prefix(nl + 1);
  }
  return out;
}

// An unsigned decimal that fills `word`; false for "-1", "12x", "" and overflow.
bool parse_u64(std::string_view word, uint64_t& out) {
  if (word.empty() || word[0] == '-' || word[0] == '+') return false;
  auto [end, ec] = std::from_chars(word.data(), word.data() + word.size(), out);
  return ec == std::errc() && end == word.data() + word.size();
}

Error at_line(const std::string& origin, size_t line, const std::string& what) {
  return make_error(origin + ":" + std::to_string(line + 1) + ": " + what);
}

}  // namespace

Result<std::vector<MibCounter>> parse_mib_pairs(std::string_view text, const std::string& origin) {
  auto lines = lines_of(text);
  std::vector<MibCounter> out;
  size_t i = 0;
  while (i < lines.size()) {
    auto header = words(lines[i]);
    if (header.empty()) {
      ++i;
      continue;
    }
    if (header[0].size() < 2 || header[0].back() != ':')
      return at_line(origin, i, "expected 'Group: Name ...', found '" + std::string(header[0]) + "'");
    if (i + 1 >= lines.size()) return at_line(origin, i, "header of " + std::string(header[0]) + " without a line of values");
    auto values = words(lines[i + 1]);
    if (values.empty() || values[0] != header[0])
      return at_line(origin, i + 1, "expected the values of " + std::string(header[0]));
    if (values.size() != header.size())
      return at_line(origin, i + 1,
                     std::string(header[0]) + " has " + std::to_string(header.size() - 1) + " names but " +
                         std::to_string(values.size() - 1) + " values");
    const std::string group(header[0].substr(0, header[0].size() - 1));
    for (size_t k = 1; k < header.size(); ++k) {
      uint64_t v = 0;
      if (parse_u64(values[k], v)) {
        out.push_back({group, std::string(header[k]), v});
      } else if (values[k].empty() || values[k][0] != '-' || !parse_u64(values[k].substr(1), v)) {
        return at_line(origin, i + 1,
                       group + ":" + std::string(header[k]) + ": '" + std::string(values[k]) + "' is not a number");
      }
    }
    i += 2;
  }
  return out;
}

Result<std::vector<MibCounter>> parse_mib_snmp6(std::string_view text, const std::string& origin) {
  // Longest prefix first: UdpLite6 before Udp6 would not matter ("UdpLite6" does not start with
  // "Udp6"), but Icmp6 and Ip6 must not be read as each other.
  static const char* kGroups[] = {"UdpLite6", "Icmp6", "Udp6", "Ip6"};
  auto lines = lines_of(text);
  std::vector<MibCounter> out;
  for (size_t i = 0; i < lines.size(); ++i) {
    auto w = words(lines[i]);
    if (w.empty()) continue;
    if (w.size() != 2) return at_line(origin, i, "expected 'Name value'");
    uint64_t v = 0;
    if (!parse_u64(w[1], v)) return at_line(origin, i, std::string(w[0]) + ": '" + std::string(w[1]) + "' is not a number");
    for (const char* g : kGroups) {
      const std::string_view group(g);
      if (w[0].size() > group.size() && w[0].substr(0, group.size()) == group) {
        out.push_back({std::string(group), std::string(w[0].substr(group.size())), v});
        break;
      }
    }
  }
  return out;
}

Result<std::vector<MibCounter>> parse_sockstat(std::string_view text, const std::string& origin) {
  auto lines = lines_of(text);
  std::vector<MibCounter> out;
  for (size_t i = 0; i < lines.size(); ++i) {
    auto w = words(lines[i]);
    if (w.empty()) continue;
    if (w[0].size() < 2 || w[0].back() != ':' || w.size() % 2 != 1)
      return at_line(origin, i, "expected 'GROUP: name value ...'");
    const std::string group(w[0].substr(0, w[0].size() - 1));
    for (size_t k = 1; k + 1 < w.size(); k += 2) {
      uint64_t v = 0;
      if (!parse_u64(w[k + 1], v))
        return at_line(origin, i, group + " " + std::string(w[k]) + ": '" + std::string(w[k + 1]) + "' is not a number");
      out.push_back({group, std::string(w[k]), v});
    }
  }
  return out;
}

Result<TableStats> parse_stat_table(std::string_view text, const std::string& origin, const std::string& group) {
  auto lines = lines_of(text);
  TableStats out;
  size_t first = 0;
  while (first < lines.size() && words(lines[first]).empty()) ++first;
  if (first == lines.size()) return out;
  const auto header = words(lines[first]);
  std::vector<uint64_t> sums(header.size(), 0);
  bool have_values = false;
  for (size_t i = first + 1; i < lines.size(); ++i) {
    auto w = words(lines[i]);
    if (w.empty()) continue;
    if (w.size() != header.size())
      return at_line(origin, i, std::to_string(header.size()) + " columns in the header but " + std::to_string(w.size()) +
                                    " values");
    for (size_t k = 0; k < w.size(); ++k) {
      uint64_t v = 0;
      auto [end, ec] = std::from_chars(w[k].data(), w[k].data() + w[k].size(), v, 16);
      if (ec != std::errc() || end != w[k].data() + w[k].size() || w[k][0] == '-' || w[k][0] == '+')
        return at_line(origin, i, std::string(header[k]) + ": '" + std::string(w[k]) + "' is not a hexadecimal number");
      if (header[k] == "entries") {
        if (!have_values) sums[k] = v;  // the table's size, printed on every CPU's line
      } else {
        sums[k] += v;
      }
    }
    have_values = true;
  }
  if (!have_values) return at_line(origin, first, "a header without a line of values");
  for (size_t k = 0; k < header.size(); ++k) {
    if (header[k] == "entries") {
      out.entries = sums[k];
      continue;
    }
    out.counters.push_back({group, std::string(header[k]), sums[k]});
  }
  return out;
}

Result<TableStats> parse_conntrack_stat(std::string_view text, const std::string& origin) {
  auto out = parse_stat_table(text, origin, "conntrack");
  if (!out) return out;
  for (auto& c : out->counters) {
    if (c.name == "clashres") c.name = "clash_resolve";
    else if (c.name == "chainlength") c.name = "chaintoolong";
    else if (c.name == "icmp_error") c.name = "error";
  }
  return out;
}

const char* tcp_state_name(int state) {
  static const char* kNames[kTcpStates] = {nullptr,      "ESTABLISHED", "SYN_SENT",   "SYN_RECV", "FIN_WAIT1",
                                           "FIN_WAIT2",  "TIME_WAIT",   "CLOSE",      "CLOSE_WAIT", "LAST_ACK",
                                           "LISTEN",     "CLOSING",     "NEW_SYN_RECV", "BOUND_INACTIVE"};
  return state >= 0 && state < kTcpStates ? kNames[state] : nullptr;
}

namespace {

// The whole of a /proc file of the calling thread's namespace. ENOENT (snmp6 with IPv6 off)
// is an empty text, not an error.
Result<std::string> read_proc_net(const char* file, bool optional) {
  const std::string path = std::string("/proc/thread-self/net/") + file;
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (optional && errno == ENOENT) return std::string();
    return make_error("open " + path + ": " + errno_text(errno));
  }
  std::string text;
  char buf[8192];
  for (int rounds = 0; rounds < 1024; ++rounds) {  // 8 MiB at most: these files are a few KiB
    ssize_t n = read(fd, buf, sizeof(buf));
    if (n < 0) {
      int e = errno;
      close(fd);
      return make_error("read " + path + ": " + errno_text(e));
    }
    if (n == 0) break;
    text.append(buf, static_cast<size_t>(n));
  }
  close(fd);
  return text;
}

// Counts the TCP sockets (IPv4 and IPv6) by state over sock_diag, as `ss` shows them: a closed
// socket that waits out its FIN_WAIT2 or TIME_WAIT (a timewait socket) by the state it is in.
// One dump of the older request (TCPDIAG_GETSOCK) covers both families: the kernel walks its
// whole TCP hash table (all namespaces share it) for each dump, whatever this namespace holds,
// and that walk is most of the cost (docs/benchmarks.md, "Netstat").
Result<void> count_tcp_states(std::array<uint64_t, kTcpStates>& states) {
  inet_diag_req r{};
  r.idiag_family = AF_UNSPEC;  // ignored by the kernel for this request: both families
  r.idiag_states = ((1u << kTcpStates) - 1) & ~1u;  // every state
  return netlink_dump(NETLINK_SOCK_DIAG, TCPDIAG_GETSOCK, r, "sock_diag", [&](const nlmsghdr* nh) {
    if (nh->nlmsg_type != TCPDIAG_GETSOCK || nh->nlmsg_len < NLMSG_LENGTH(sizeof(inet_diag_msg))) return;
    auto* msg = static_cast<const inet_diag_msg*>(NLMSG_DATA(nh));
    if (msg->idiag_state < kTcpStates) ++states[msg->idiag_state];
  });
}

// The error and drop counters of every interface but loopback (rtnetlink's 64-bit link
// statistics, what `ip -s -s link` shows), as group = the interface's name.
Result<void> read_links(std::vector<MibCounter>& out, std::vector<MibCounter>& traffic) {
  struct Field {
    const char* name;
    __u64 rtnl_link_stats64::*member;
  };
  static const Field kFields[] = {
      {"rx_errors", &rtnl_link_stats64::rx_errors},
      {"tx_errors", &rtnl_link_stats64::tx_errors},
      {"rx_dropped", &rtnl_link_stats64::rx_dropped},
      {"tx_dropped", &rtnl_link_stats64::tx_dropped},
      {"collisions", &rtnl_link_stats64::collisions},
      {"rx_length_errors", &rtnl_link_stats64::rx_length_errors},
      {"rx_over_errors", &rtnl_link_stats64::rx_over_errors},
      {"rx_crc_errors", &rtnl_link_stats64::rx_crc_errors},
      {"rx_frame_errors", &rtnl_link_stats64::rx_frame_errors},
      {"rx_fifo_errors", &rtnl_link_stats64::rx_fifo_errors},
      {"rx_missed_errors", &rtnl_link_stats64::rx_missed_errors},
      {"tx_aborted_errors", &rtnl_link_stats64::tx_aborted_errors},
      {"tx_carrier_errors", &rtnl_link_stats64::tx_carrier_errors},
      {"tx_fifo_errors", &rtnl_link_stats64::tx_fifo_errors},
      {"tx_heartbeat_errors", &rtnl_link_stats64::tx_heartbeat_errors},
      {"tx_window_errors", &rtnl_link_stats64::tx_window_errors},
      {"rx_nohandler", &rtnl_link_stats64::rx_nohandler},
      {"rx_otherhost_dropped", &rtnl_link_stats64::rx_otherhost_dropped},
  };
  ifinfomsg ifi{};
  ifi.ifi_family = AF_UNSPEC;
  return netlink_dump(NETLINK_ROUTE, RTM_GETLINK, ifi, "rtnetlink", [&](const nlmsghdr* nh) {
    if (nh->nlmsg_type != RTM_NEWLINK || nh->nlmsg_len < NLMSG_LENGTH(sizeof(ifinfomsg))) return;
    auto* ifi = static_cast<const ifinfomsg*>(NLMSG_DATA(nh));
    if (ifi->ifi_flags & IFF_LOOPBACK) return;
    std::string name;
    std::string_view kind;
    rtnl_link_stats64 stats{};
    bool have_stats = false;
    int len = static_cast<int>(nh->nlmsg_len - NLMSG_LENGTH(sizeof(ifinfomsg)));
    for (auto* at = IFLA_RTA(ifi); RTA_OK(at, len); at = RTA_NEXT(at, len)) {
      if (at->rta_type == IFLA_IFNAME) {
        name.assign(static_cast<const char*>(RTA_DATA(at)), strnlen(static_cast<const char*>(RTA_DATA(at)), RTA_PAYLOAD(at)));
      } else if (at->rta_type == IFLA_LINKINFO) {
        int info_len = static_cast<int>(RTA_PAYLOAD(at));
        for (auto* in = static_cast<const rtattr*>(RTA_DATA(at)); RTA_OK(in, info_len); in = RTA_NEXT(in, info_len))
          if (in->rta_type == IFLA_INFO_KIND)
            kind = std::string_view(static_cast<const char*>(RTA_DATA(in)),
                                    strnlen(static_cast<const char*>(RTA_DATA(in)), RTA_PAYLOAD(in)));
      } else if (at->rta_type == IFLA_STATS64) {
        // An older kernel sends a shorter struct: the fields it lacks stay 0.
        std::memcpy(&stats, RTA_DATA(at), std::min<size_t>(RTA_PAYLOAD(at), sizeof(stats)));
        have_stats = true;
      }
    }
    if (name.empty() || !have_stats) return;
    for (const auto& f : kFields) out.push_back({name, f.name, stats.*(f.member)});
    if (kind == "veth") return;
    traffic.push_back({name, "rx_packets", stats.rx_packets});
    traffic.push_back({name, "tx_packets", stats.tx_packets});
    traffic.push_back({name, "rx_bytes", stats.rx_bytes});
    traffic.push_back({name, "tx_bytes", stats.tx_bytes});
  });
}

// The endpoints of one ctnetlink conntrack message: its original and reply tuples' addresses.
// Returns how many it found (at most 4).
int conntrack_endpoints(const nlmsghdr* nh, Address16 (&out)[4]) {
  const size_t header = NLMSG_LENGTH(sizeof(nfgenmsg));
  if (nh->nlmsg_len < header) return 0;
  int found = 0;
  // Attributes in [at, end), 4-byte aligned; nested ones carry NLA_F_NESTED in their type.
  auto each = [](const char* at, const char* end, auto&& fn) {
    while (at + sizeof(nlattr) <= end) {
      auto* a = reinterpret_cast<const nlattr*>(at);
      if (a->nla_len < sizeof(nlattr) || at + a->nla_len > end) return;
      fn(a->nla_type & NLA_TYPE_MASK, at + NLA_HDRLEN, at + a->nla_len);
      at += NLA_ALIGN(a->nla_len);
    }
  };
  const char* base = reinterpret_cast<const char*>(nh);
  each(base + header, base + nh->nlmsg_len, [&](int type, const char* b, const char* e) {
    if (type != CTA_TUPLE_ORIG && type != CTA_TUPLE_REPLY) return;
    each(b, e, [&](int t, const char* ib, const char* ie) {
      if (t != CTA_TUPLE_IP) return;
      each(ib, ie, [&](int ip, const char* vb, const char* ve) {
        if (found == 4) return;
        Address16 a{};
        if ((ip == CTA_IP_V4_SRC || ip == CTA_IP_V4_DST) && ve - vb == 4) {
          a[10] = a[11] = 0xff;
          std::memcpy(a.data() + 12, vb, 4);
        } else if ((ip == CTA_IP_V6_SRC || ip == CTA_IP_V6_DST) && ve - vb == 16) {
          std::memcpy(a.data(), vb, 16);
        } else {
          return;
        }
        out[found++] = a;
      });
    });
  });
  return found;
}

uint64_t find(const std::vector<MibCounter>& v, std::string_view group, std::string_view name) {
  for (const auto& c : v)
    if (c.group == group && c.name == name) return c.value;
  return 0;
}

}  // namespace

std::optional<Address16> parse_address16(const std::string& text) {
  Address16 a{};
  if (inet_pton(AF_INET, text.c_str(), a.data() + 12) == 1) {
    a[10] = a[11] = 0xff;
    return a;
  }
  if (inet_pton(AF_INET6, text.c_str(), a.data()) == 1) return a;
  return std::nullopt;
}

Result<std::vector<uint64_t>> count_conntrack_by_address(const std::vector<Address16>& addresses, uint64_t& total) {
  std::vector<std::pair<Address16, size_t>> sorted;
  for (size_t i = 0; i < addresses.size(); ++i) sorted.emplace_back(addresses[i], i);
  std::sort(sorted.begin(), sorted.end());
  std::vector<uint64_t> counts(addresses.size(), 0);
  total = 0;
  nfgenmsg req{};
  req.nfgen_family = AF_UNSPEC;  // IPv4 and IPv6
  req.version = NFNETLINK_V0;
  const uint16_t type = (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_GET;
  const uint16_t entry = (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_NEW;  // what a dump answers with
  auto r = netlink_dump(NETLINK_NETFILTER, type, req, "ctnetlink", [&](const nlmsghdr* nh) {
    if (nh->nlmsg_type != entry) return;
    ++total;
    Address16 ends[4];
    const int n = conntrack_endpoints(nh, ends);
    size_t seen[4];
    int seen_count = 0;
    for (int k = 0; k < n; ++k) {
      auto it = std::lower_bound(sorted.begin(), sorted.end(), ends[k],
                                 [](const auto& entry, const Address16& key) { return entry.first < key; });
      for (; it != sorted.end() && it->first == ends[k]; ++it) {
        if (std::find(seen, seen + seen_count, it->second) != seen + seen_count) continue;
        if (seen_count < 4) seen[seen_count++] = it->second;
        ++counts[it->second];
      }
    }
  });
  if (!r) return r.error();
  return counts;
}

namespace {

// A number alone in a file of /proc/sys/net, as the calling thread's namespace sees it.
Result<uint64_t> read_proc_sys_net(const char* file) {
  const std::string path = std::string("/proc/sys/net/") + file;
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return make_error("open " + path + ": " + errno_text(errno));
  char buf[64];
  ssize_t n = read(fd, buf, sizeof(buf) - 1);
  int e = errno;
  close(fd);
  if (n < 0) return make_error("read " + path + ": " + errno_text(e));
  std::string_view text(buf, static_cast<size_t>(n));
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.remove_suffix(1);
  uint64_t v = 0;
  if (!parse_u64(text, v)) return make_error(path + ": '" + std::string(text) + "' is not a number");
  return v;
}

// Everything of the calling thread's current namespace; TCP sockets by state only if asked, the
// conntrack limit (one for all namespaces) only for the node.
// The calling thread's network namespace's cookie; 0 where the kernel has none (before 5.14).
uint64_t netns_cookie_here() {
#ifndef SO_NETNS_COOKIE
#define SO_NETNS_COOKIE 71
#endif
  const int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return 0;
  uint64_t cookie = 0;
  socklen_t len = sizeof(cookie);
  if (getsockopt(fd, SOL_SOCKET, SO_NETNS_COOKIE, &cookie, &len) != 0) cookie = 0;
  close(fd);
  return cookie;
}

Result<NetnsSample> sample_here(const NetnsTarget& target, bool node) {
  const bool tcp_states = target.tcp_states;
  NetnsSample out;
  out.netns_cookie = netns_cookie_here();
  struct File {
    const char* name;
    bool optional;
    Result<std::vector<MibCounter>> (*parse)(std::string_view, const std::string&);
  };
  static const File kMibFiles[] = {{"snmp", false, parse_mib_pairs},
                                   {"netstat", false, parse_mib_pairs},
                                   {"snmp6", true, parse_mib_snmp6}};
  for (const auto& f : kMibFiles) {
    auto text = read_proc_net(f.name, f.optional);
    if (!text) return text.error();
    auto parsed = f.parse(*text, std::string("/proc/net/") + f.name);
    if (!parsed) return parsed.error();
    out.mibs.insert(out.mibs.end(), parsed->begin(), parsed->end());
  }
  std::vector<MibCounter> sock;
  for (const char* name : {"sockstat", "sockstat6"}) {
    auto text = read_proc_net(name, true);
    if (!text) return text.error();
    auto parsed = parse_sockstat(*text, std::string("/proc/net/") + name);
    if (!parsed) return parsed.error();
    sock.insert(sock.end(), parsed->begin(), parsed->end());
  }
  if (auto r = read_links(out.links, out.link_traffic); !r) return r.error();
  {
    auto text = read_proc_net("stat/nf_conntrack", true);
    if (!text) return text.error();
    if (!text->empty()) {
      auto parsed = parse_conntrack_stat(*text, "/proc/net/stat/nf_conntrack");
      if (!parsed) return parsed.error();
      out.has_conntrack = true;
      out.conntrack = std::move(*parsed);
      if (node) {
        auto limit = read_proc_sys_net("netfilter/nf_conntrack_max");
        if (!limit) return limit.error();
        out.conntrack_limit = *limit;
      }
      if (node && !target.conntrack_addresses.empty() &&
          conntrack_full_enough(out.conntrack.entries, out.conntrack_limit, target.conntrack_by_address_above)) {
        uint64_t total = 0;
        if (auto counts = count_conntrack_by_address(target.conntrack_addresses, total)) {
          out.has_conntrack_by_address = true;
          out.conntrack_by_address = std::move(*counts);
        } else {
          out.conntrack_by_address_error = counts.error().message;
        }
      }
    }
  }
  // The neighbour tables are the kernel's, not a namespace's: only the node's namespace shows
  // them.
  struct Neigh {
    const char* family;
    const char* stat;
    const char* limit;
  };
  static const Neigh kNeighbors[] = {{"ipv4", "stat/arp_cache", "ipv4/neigh/default/gc_thresh3"},
                                     {"ipv6", "stat/ndisc_cache", "ipv6/neigh/default/gc_thresh3"}};
  for (const auto& n : kNeighbors) {
    if (!node) break;
    auto text = read_proc_net(n.stat, true);
    if (!text) return text.error();
    if (text->empty()) continue;  // no IPv6
    auto parsed = parse_stat_table(*text, std::string("/proc/net/") + n.stat, "neighbor");
    if (!parsed) return parsed.error();
    auto limit = read_proc_sys_net(n.limit);
    if (!limit) return limit.error();
    out.neighbors.push_back({n.family, std::move(*parsed), *limit});
  }
  if (tcp_states) {
    if (auto r = count_tcp_states(out.tcp_states); r) out.has_tcp_states = true;
    else out.tcp_states_error = r.error().message;
  }
  out.udp_sockets = find(sock, "UDP", "inuse") + find(sock, "UDP6", "inuse");
  out.tcp_in_use = find(sock, "TCP", "inuse") + find(sock, "TCP6", "inuse");
  out.tcp_time_wait = find(sock, "TCP", "tw");  // one count for IPv4 and IPv6
  return out;
}

// Moves the calling thread into the namespace at `path` (which must still be `inode`, when set):
// "" or why not.
std::string join_netns(const std::string& path, uint64_t inode) {
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return "open " + path + ": " + errno_text(errno);
  struct stat st {};
  if (fstat(fd, &st) != 0 || (inode != 0 && st.st_ino != inode)) {
    close(fd);
    return path + " is no longer the pod's network namespace";
  }
  if (setns(fd, CLONE_NEWNET) != 0) {
    int e = errno;
    close(fd);
    return "setns " + path + ": " + errno_text(e);
  }
  close(fd);
  return "";
}

}  // namespace

std::vector<Result<NetnsSample>> read_netns_samples(const std::vector<NetnsTarget>& targets) {
  std::vector<Result<NetnsSample>> out(targets.size(), Result<NetnsSample>(make_error("not read")));
  std::thread t([&] {
    // The agent's own namespace first (targets with no path), before this thread leaves it.
    for (size_t i = 0; i < targets.size(); ++i)
      if (targets[i].path.empty()) out[i] = sample_here(targets[i], true);
    for (size_t i = 0; i < targets.size(); ++i) {
      const auto& target = targets[i];
      if (target.path.empty()) continue;
      if (std::string e = join_netns(target.path, target.inode); !e.empty()) {
        out[i] = make_error(e);
        continue;
      }
      out[i] = sample_here(target, false);
    }
  });
  t.join();
  return out;
}

bool netns_gone(const NetnsTarget& target) {
  if (target.path.empty()) return false;
  struct stat st {};
  return stat(target.path.c_str(), &st) != 0 || (target.inode != 0 && st.st_ino != target.inode);
}

Result<std::map<uint32_t, LinkTraffic>> read_link_traffic() {
  std::map<uint32_t, LinkTraffic> out;
  if_stats_msg req{};
  req.family = AF_UNSPEC;
  req.filter_mask = IFLA_STATS_FILTER_BIT(IFLA_STATS_LINK_64);
  auto r = netlink_dump(NETLINK_ROUTE, RTM_GETSTATS, req, "rtnetlink", [&](const nlmsghdr* nh) {
    if (nh->nlmsg_type != RTM_NEWSTATS || nh->nlmsg_len < NLMSG_LENGTH(sizeof(if_stats_msg))) return;
    auto* ifsm = static_cast<const if_stats_msg*>(NLMSG_DATA(nh));
    int len = static_cast<int>(nh->nlmsg_len - NLMSG_LENGTH(sizeof(if_stats_msg)));
    auto* at = reinterpret_cast<const rtattr*>(reinterpret_cast<const char*>(ifsm) + NLMSG_ALIGN(sizeof(if_stats_msg)));
    for (; RTA_OK(at, len); at = RTA_NEXT(at, len)) {
      if (at->rta_type != IFLA_STATS_LINK_64) continue;
      rtnl_link_stats64 stats{};  // an older kernel's shorter struct leaves the rest 0
      std::memcpy(&stats, RTA_DATA(at), std::min<size_t>(RTA_PAYLOAD(at), sizeof(stats)));
      out[ifsm->ifindex] = {stats.rx_packets, stats.tx_packets, stats.rx_bytes, stats.tx_bytes};
    }
  });
  if (!r) return r.error();
  return out;
}

std::vector<Result<LinkTraffic>> read_link_traffic_in(const std::vector<LinkInNetns>& links) {
  std::vector<Result<LinkTraffic>> out(links.size(), Result<LinkTraffic>(make_error("not read")));
  std::thread t([&] {
    for (size_t i = 0; i < links.size(); ++i) {
      if (std::string e = join_netns(links[i].path, links[i].inode); !e.empty()) {
        out[i] = make_error(e);
        continue;
      }
      auto all = read_link_traffic();
      if (!all) {
        out[i] = all.error();
        continue;
      }
      auto it = all->find(links[i].ifindex);
      out[i] = it == all->end() ? Result<LinkTraffic>(make_error("no interface " + std::to_string(links[i].ifindex) +
                                                                  " in " + links[i].path))
                                : Result<LinkTraffic>(it->second);
    }
  });
  t.join();
  return out;
}

Result<std::vector<std::string>> known_statistics() {
  auto samples = read_netns_samples({NetnsTarget{.path = "", .inode = 0, .tcp_states = false}});  // names only: no socket dump
  if (!samples[0]) return samples[0].error();
  std::vector<std::string> out;
  for (const auto& c : samples[0]->mibs) out.push_back(c.group + ":" + c.name);
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

}  // namespace vigil
