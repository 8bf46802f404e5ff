#include "engine/netns.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <linux/if_link.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <map>
#include <optional>
#include <set>
#include <thread>

#include "engine/netlink_dump.h"

namespace vigil {
namespace {

std::string errno_text(int err) { return std::strerror(err); }

struct Link {
  int ifindex = 0;
  std::string name;
  std::string kind;
  int peer_ifindex = 0;  // IFLA_LINK
  bool peer_in_other_netns = false;
  std::vector<std::string> ips;
};

// A minimal rtnetlink dump: one request, `each` for every message.
template <typename F>
Result<void> rtnl_dump(int type, unsigned char family, F&& each) {
  rtgenmsg g{};
  g.rtgen_family = family;
  return netlink_dump(NETLINK_ROUTE, static_cast<uint16_t>(type), g, "rtnetlink",
                      [&](const nlmsghdr* nh) { each(const_cast<nlmsghdr*>(nh)); });
}

Result<std::map<int, Link>> list_links() {
  std::map<int, Link> links;
  auto r = rtnl_dump(RTM_GETLINK, AF_UNSPEC, [&](nlmsghdr* nh) {
    if (nh->nlmsg_type != RTM_NEWLINK) return;
    auto* ifi = static_cast<ifinfomsg*>(NLMSG_DATA(nh));
    Link link;
    link.ifindex = ifi->ifi_index;
    int len = IFLA_PAYLOAD(nh);
    for (auto* a = IFLA_RTA(ifi); RTA_OK(a, len); a = RTA_NEXT(a, len)) {
      switch (a->rta_type) {
        case IFLA_IFNAME: link.name = static_cast<const char*>(RTA_DATA(a)); break;
        case IFLA_LINK: link.peer_ifindex = *static_cast<const int*>(RTA_DATA(a)); break;
        case IFLA_LINK_NETNSID: link.peer_in_other_netns = true; break;
        case IFLA_LINKINFO: {
          int ilen = RTA_PAYLOAD(a);
          for (auto* b = static_cast<rtattr*>(RTA_DATA(a)); RTA_OK(b, ilen); b = RTA_NEXT(b, ilen))
            if (b->rta_type == IFLA_INFO_KIND) link.kind = static_cast<const char*>(RTA_DATA(b));
          break;
        }
        default: break;
      }
    }
    links[link.ifindex] = link;
  });
  if (!r) return r.error();
  auto a = rtnl_dump(RTM_GETADDR, AF_UNSPEC, [&](nlmsghdr* nh) {
    if (nh->nlmsg_type != RTM_NEWADDR) return;
    auto* ifa = static_cast<ifaddrmsg*>(NLMSG_DATA(nh));
    if (ifa->ifa_scope == RT_SCOPE_LINK || ifa->ifa_scope == RT_SCOPE_HOST) return;
    int len = IFA_PAYLOAD(nh);
    for (auto* at = IFA_RTA(ifa); RTA_OK(at, len); at = RTA_NEXT(at, len)) {
      if (at->rta_type != IFA_ADDRESS) continue;
      char text[INET6_ADDRSTRLEN] = {};
      inet_ntop(ifa->ifa_family, RTA_DATA(at), text, sizeof(text));
      auto it = links.find(static_cast<int>(ifa->ifa_index));
      if (it != links.end()) it->second.ips.push_back(text);
    }
  });
  if (!a) return a.error();
  return links;
}

// Runs `fn` on a new thread that has joined the namespace at `path`. The thread ends after,
// so no thread of the agent is ever left in a pod's namespace.
template <typename T, typename F>
Result<T> in_netns(const std::string& path, F&& fn) {
  std::optional<Result<T>> out;
  std::thread t([&] {
    int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
      out = Result<T>(make_error("open " + path + ": " + errno_text(errno)));
      return;
    }
    if (setns(fd, CLONE_NEWNET) != 0) {
      int e = errno;
      close(fd);
      out = Result<T>(make_error("setns " + path + ": " + errno_text(e)));
      return;
    }
    close(fd);
    out = fn();
  });
  t.join();
  return std::move(*out);
}

Result<PodInterface> pod_interface_in(const std::string& netns_path, const std::string& want_ip) {
  struct stat st {};
  if (stat(netns_path.c_str(), &st) != 0) return make_error("stat " + netns_path + ": " + errno_text(errno));
  auto links = in_netns<std::map<int, Link>>(netns_path, [] { return list_links(); });
  if (!links) return links.error();
  const Link* pod_link = nullptr;
  for (const auto& [idx, link] : *links) {
    if (link.kind != "veth" || !link.peer_in_other_netns) continue;
    if (!want_ip.empty()) {
      bool has = false;
      for (const auto& ip : link.ips) has = has || ip == want_ip;
      if (!has) continue;
    }
    // Prefer the interface that carries addresses (eth0) over any secondary veth.
    if (!pod_link || (pod_link->ips.empty() && !link.ips.empty())) pod_link = &link;
  }
  if (!pod_link) return make_error("no veth with a peer outside " + netns_path + (want_ip.empty() ? "" : " holding " + want_ip));
  PodInterface out;
  out.netns_inode = static_cast<uint32_t>(st.st_ino);
  out.netns_path = netns_path;
  out.pod_ifname = pod_link->name;
  out.pod_ifindex = static_cast<uint32_t>(pod_link->ifindex);
  out.host_ifindex = static_cast<uint32_t>(pod_link->peer_ifindex);
  out.ips = pod_link->ips;
  char name[IF_NAMESIZE] = {};
  if (!if_indextoname(out.host_ifindex, name))
    return make_error("host-side peer of " + pod_link->name + " in " + netns_path + " (ifindex " +
                      std::to_string(out.host_ifindex) + ") is not in the agent's namespace");
  out.host_ifname = name;
  return out;
}

}  // namespace

Result<int> run_in_netns(const std::string& path, const std::function<Result<int>()>& fn) {
  return in_netns<int>(path, fn);
}

Result<PodInterface> find_pod_interface(const std::string& netns_path) { return pod_interface_in(netns_path, ""); }

Result<PodInterface> find_pod_interface_by_ip(const std::string& ip) {
  uint8_t key[16];
  if (!ip_to_key(ip, key)) return make_error("'" + ip + "' is not an IP address");
  std::vector<std::string> candidates;
  std::set<ino_t> seen;
  struct stat self {};
  if (stat("/proc/self/ns/net", &self) == 0) seen.insert(self.st_ino);
  auto consider = [&](const std::string& path) {
    struct stat st {};
    if (stat(path.c_str(), &st) == 0 && seen.insert(st.st_ino).second) candidates.push_back(path);
  };
  if (DIR* d = opendir("/run/netns")) {
    while (dirent* e = readdir(d))
      if (e->d_name[0] != '.') consider(std::string("/run/netns/") + e->d_name);
    closedir(d);
  }
  if (DIR* d = opendir("/proc")) {
    while (dirent* e = readdir(d))
      if (e->d_name[0] >= '1' && e->d_name[0] <= '9') consider(std::string("/proc/") + e->d_name + "/ns/net");
    closedir(d);
  }
  for (const auto& path : candidates) {
    auto r = pod_interface_in(path, ip);
    if (r) return r;
  }
  return make_error("no network namespace on this host has an interface with address " + ip);
}

std::string find_netns_path(uint64_t inode) {
  auto same = [&](const std::string& path) {
    struct stat st {};
    return stat(path.c_str(), &st) == 0 && st.st_ino == inode;
  };
  std::string found;
  if (DIR* d = opendir("/run/netns")) {
    while (dirent* e = readdir(d))
      if (e->d_name[0] != '.' && found.empty() && same(std::string("/run/netns/") + e->d_name))
        found = std::string("/run/netns/") + e->d_name;
    closedir(d);
  }
  if (!found.empty()) return found;
  if (DIR* d = opendir("/proc")) {
    while (dirent* e = readdir(d))
      if (e->d_name[0] >= '1' && e->d_name[0] <= '9' && found.empty() &&
          same(std::string("/proc/") + e->d_name + "/ns/net"))
        found = std::string("/proc/") + e->d_name + "/ns/net";
    closedir(d);
  }
  return found;
}

bool renew_netns_path(PodInterface& iface) {
  struct stat st {};
  if (stat(iface.netns_path.c_str(), &st) == 0 && st.st_ino == iface.netns_inode) return true;
  std::string now = find_netns_path(iface.netns_inode);
  if (now.empty()) return false;
  iface.netns_path = std::move(now);
  return true;
}

InterfaceNames::InterfaceNames() : fd_(socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0)) {}

InterfaceNames::~InterfaceNames() {
  if (fd_ >= 0) close(fd_);
}

bool InterfaceNames::is(uint32_t ifindex, const std::string& name) const {
  if (fd_ < 0) {
    char found[IF_NAMESIZE] = {};
    return if_indextoname(ifindex, found) && name == found;
  }
  ifreq ifr{};
  ifr.ifr_ifindex = static_cast<int>(ifindex);
  if (ioctl(fd_, SIOCGIFNAME, &ifr) != 0) return false;
  ifr.ifr_name[IFNAMSIZ - 1] = '\0';
  return name == ifr.ifr_name;
}

bool ip_to_key(const std::string& ip, uint8_t out[16]) {
  in_addr v4{};
  if (inet_pton(AF_INET, ip.c_str(), &v4) == 1) {
    std::memset(out, 0, 16);
    out[10] = out[11] = 0xff;
    std::memcpy(out + 12, &v4, 4);
    return true;
  }
  in6_addr v6{};
  if (inet_pton(AF_INET6, ip.c_str(), &v6) == 1) {
    std::memcpy(out, &v6, 16);
    return true;
  }
  return false;
}

std::string key_to_ip(const uint8_t key[16]) {
  static const uint8_t v4_prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  char text[INET6_ADDRSTRLEN] = {};
  if (std::memcmp(key, v4_prefix, 12) == 0) inet_ntop(AF_INET, key + 12, text, sizeof(text));
  else inet_ntop(AF_INET6, key, text, sizeof(text));
  return text;
}

}  // namespace vigil
