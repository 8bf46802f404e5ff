// Finding a pod's interfaces: enter its network namespace (on a short-lived thread, so the
// agent's own threads never change namespace), list links and addresses over rtnetlink, and
// follow the veth to its host-side peer.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "rules/core/result.h"

namespace vigil {

struct PodInterface {
  uint32_t netns_inode = 0;     // inode of the pod's network namespace
  std::string netns_path;       // where it was found: /run/netns/NAME or /proc/PID/ns/net
  std::string pod_ifname;       // e.g. eth0, inside the pod
  uint32_t pod_ifindex = 0;     // its ifindex there (ifindexes repeat across namespaces)
  uint32_t host_ifindex = 0;    // host-side veth peer
  std::string host_ifname;      // e.g. veth1a2b3c
  std::vector<std::string> ips;  // the pod interface's addresses (no link-local)
};

// Looks up the pod's veth inside the namespace at `netns_path` (e.g. /run/netns/pod-a).
Result<PodInterface> find_pod_interface(const std::string& netns_path);

// Finds the namespace that holds `ip` among named namespaces (/run/netns) and those of
// running processes (/proc/*/ns/net), then does what find_pod_interface does.
Result<PodInterface> find_pod_interface_by_ip(const std::string& ip);

// A path that names the network namespace with this inode now (/run/netns/NAME, or
// /proc/PID/ns/net of a process in it), or "" when none does: for a namespace first found through
// a process that has since exited, while another process (or a name) still holds it.
std::string find_netns_path(uint64_t inode);

// Whether iface.netns_path still names the namespace the pod was found in (iface.netns_inode);
// if it does not (found through /proc/PID/ns/net of a process that has exited since, while the
// namespace lives on, held by another process or a name), a path that names it now in its place.
// True when the path is current, or was renewed; false when no path names the namespace now.
bool renew_netns_path(PodInterface& iface);

// The names of the agent's namespace's interfaces by ifindex, through one socket kept open
// (SIOCGIFNAME): the pod manager checks each attached pod's host-side veth every tick, and
// if_indextoname opens and closes a socket for each check (three system calls, not one).
class InterfaceNames {
 public:
  InterfaceNames();
  ~InterfaceNames();
  InterfaceNames(const InterfaceNames&) = delete;
  InterfaceNames& operator=(const InterfaceNames&) = delete;
  // Whether interface `ifindex` exists and is named `name` now.
  bool is(uint32_t ifindex, const std::string& name) const;

 private:
  int fd_ = -1;  // -1: no socket could be made; each check then takes if_indextoname's way
};

// Runs `fn` on a short-lived thread that has joined the namespace at `path`, so that no thread
// of the agent stays in a pod's namespace: what it makes there (a socket, a TCX link) keeps to
// that namespace after the thread is gone.
Result<int> run_in_netns(const std::string& path, const std::function<Result<int>()>& fn);

// Converts "10.0.0.1" or "fd00::1" into 16 bytes (IPv4 as ::ffff:a.b.c.d). False if invalid.
bool ip_to_key(const std::string& ip, uint8_t out[16]);
// The reverse: "10.0.0.1" for ::ffff:10.0.0.1, "fd00::1" otherwise.
std::string key_to_ip(const uint8_t key[16]);

}  // namespace vigil
