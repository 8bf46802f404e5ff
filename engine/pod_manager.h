// Keeps the datapath in step with the pods the agent should watch: resolves each pod's
// host-side interface, attaches the TC programs, tells the drop program the pod's namespace
// and addresses, and undoes all of it when the pod goes away.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include "engine/config.h"
#include "engine/datapath.h"
#include "engine/netns.h"
#include "engine/pods.h"
#include "rules/core/series.h"

namespace vigil {

// The labels every per-pod series of `spec` carries: namespace, pod, the pod's labels as
// label_<key> and its workload (docs/config.md label_allowlist), sorted.
Labels metric_labels_of(const PodSpec& spec);

struct WatchedPod {
  PodSpec spec;
  Labels metric_labels;  // metric_labels_of(spec), made once (spec never changes in place)
  uint32_t id = 0;  // > 0, stable for as long as the pod is watched
  bool attached = false;  // its interface resolved and known to the datapath
  // Which attach this is, unique among every pod's: the programs' counters start at 0 with each.
  uint64_t attach_serial = 0;
  // The pod's packets are counted by the TC programs (wants_packet_level, or remote context);
  // false: its forward counts come from its interface's statistics, and no program sees its
  // packets.
  bool packet_level = true;
  bool programs = false;  // the TC programs are on its interface (packet_level, or a capture)
  // What it receives is counted on its own end of its veth (metrics.ingress_hook), while the
  // programs are on.
  bool ingress_on_pod_side = false;
  bool pod_side_refused = false;  // its own end was wanted and could not be attached: host side
  // A pod without packet-level programs whose ingress_hook is its own end: what it receives is
  // read from its own end's statistics (in its namespace), which count what a CNI delivers past
  // the host-side veth; the host side's do not.
  bool stats_on_pod_side = false;
  std::string programs_error;  // why a capture could not put them on (logged once)
  PodInterface iface;
  std::string last_error;  // why the pod is not attached
  std::chrono::steady_clock::time_point retry_at{};  // not before: resolving costs a thread and netlink dumps
  std::chrono::steady_clock::time_point netns_search_at{};  // keep_netns_path: not before
};

// metrics.packet_level as a PodManager::PacketPolicy: the pod's own say (PodSpec::packet_level)
// first, then `pods: all`, or the namespaces and labels it selects.
bool wants_packet_level(const MetricsConfig::PacketLevel& config, const PodSpec& pod);

class PodManager {
 public:
  // How many remote peers to track for a pod (0: no remote context for it).
  using RemotePolicy = std::function<uint32_t(const PodSpec&)>;
  // Whether a pod gets the TC programs for its counts (metrics.packet_level; none: every pod).
  using PacketPolicy = std::function<bool(const PodSpec&)>;
  explicit PodManager(Datapath& datapath, RemotePolicy remote = {}, PacketPolicy packet = {})
      : dp_(datapath), remote_(std::move(remote)), packet_(std::move(packet)) {}
  ~PodManager();

  // Makes the watched set equal `desired`. Returns the pods that were removed, so their
  // series can be dropped after a last read.
  std::vector<WatchedPod> reconcile(const std::vector<PodSpec>& desired);
  // Retries pods that are not attached and notices interfaces that vanished.
  void refresh();
  // The pods ("namespace/name") whose packets captures need: those without packet-level
  // counting get the TC programs while they are listed and lose them when they no longer
  // are. Pods with packet-level counting have them anyway.
  void hold_programs(const std::set<std::string>& keys);
  // metrics.ingress_hook: "host" (the default here), "pod" or "auto".
  void set_ingress_hook(const std::string& hook) { ingress_hook_ = hook; }

  const std::map<std::string, WatchedPod>& pods() const { return pods_; }
  const WatchedPod* by_ifindex(uint32_t ifindex) const;
  const WatchedPod* by_id(uint32_t id) const;
  const WatchedPod* by_ip(const std::string& ip) const;
  std::vector<PodMeta> metadata(const std::string& node) const;

 private:
  void try_attach(WatchedPod& pod);
  void reindex();
  void detach(WatchedPod& pod);
  // Puts the TC programs on the pod's interface, counting what it receives where
  // metrics.ingress_hook says.
  Result<void> attach_programs(WatchedPod& pod, const PodInterface& iface);
  // Keeps pod.iface.netns_path naming the pod's namespace, through which the families read it (its
  // own end's statistics, netstat) and the programs are put on its own end: renew_netns_path, once
  // a tick, for a pod found through a process that has exited since.
  void keep_netns_path(const std::string& key, WatchedPod& pod);
  // Whether metrics.ingress_hook puts what the pod behind `iface` receives on its own end; with
  // "auto", the name of the other tool's program that decided it in *why.
  bool wants_pod_side(const PodInterface& iface, std::string* why) const;
  // metrics.ingress_hook: auto, at most every `every`: a pod counted on the host side whose
  // host-side veth has since got another tool's TC program (TCX or clsact) is attached again, on its own end.
  void move_ingress_to_pod_side(std::chrono::steady_clock::duration every = std::chrono::seconds(2));

  Datapath& dp_;
  InterfaceNames names_;  // refresh()'s check that each attached pod's host-side veth is still there
  RemotePolicy remote_;
  PacketPolicy packet_;
  std::string ingress_hook_ = "host";
  std::chrono::steady_clock::time_point next_hook_check_{};
  std::map<std::string, WatchedPod> pods_;  // by namespace/name
  uint32_t next_id_ = 1;
  uint64_t attaches_ = 0;
  // Lookups the tick does for every map entry; rebuilt whenever pods_ changes.
  std::unordered_map<uint32_t, const WatchedPod*> by_ifindex_;
  std::unordered_map<uint32_t, const WatchedPod*> by_id_;
  std::unordered_map<std::string, const WatchedPod*> by_ip_;
};

}  // namespace vigil
