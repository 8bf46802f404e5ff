#include "engine/pod_manager.h"


#include <optional>
#include <set>
#include <spdlog/spdlog.h>

namespace vigil {

PodManager::~PodManager() {
  for (auto& [key, pod] : pods_) detach(pod);
}

namespace {

}  // namespace

Labels metric_labels_of(const PodSpec& spec) {
  // One value per pod, so no series more than pods.
  Labels l = make_labels({{"namespace", spec.namespace_}, {"pod", spec.name}});
  // Two keys with one series name (a.b and a-b, which the pods file and the allow-list refuse):
  // the first only, so that no series ever has a label twice (Prometheus would refuse the scrape).
  std::set<std::string> names;
  for (const auto& [k, v] : spec.labels)
    if (!v.empty())
      if (std::string name = series_label_name(k); names.insert(name).second) l.emplace_back(std::move(name), v);
  if (!spec.workload_kind.empty()) {
    l.emplace_back("workload_kind", spec.workload_kind);
    l.emplace_back("workload", spec.workload_name);
  }
  sort_labels(l);
  return l;
}

bool wants_packet_level(const MetricsConfig::PacketLevel& config, const PodSpec& pod) {
  if (pod.packet_level) return *pod.packet_level;
  return config.all || pod_selected(config.namespaces, config.pod_labels, pod.namespace_, pod.labels);
}

std::vector<WatchedPod> PodManager::reconcile(const std::vector<PodSpec>& desired) {
  std::map<std::string, const PodSpec*> want;
  for (const auto& spec : desired) want[spec.key()] = &spec;

  std::vector<WatchedPod> removed;
  for (auto it = pods_.begin(); it != pods_.end();) {
    auto w = want.find(it->first);
    if (w != want.end() && *w->second == it->second.spec) {
      ++it;
      continue;
    }
    spdlog::info("pod {}: {}", it->first, w == want.end() ? "removed" : "changed, re-attaching");
    detach(it->second);
    removed.push_back(std::move(it->second));
    it = pods_.erase(it);
  }
  for (const auto& spec : desired) {
    if (pods_.count(spec.key())) continue;
    WatchedPod pod;
    pod.spec = spec;
    pod.metric_labels = metric_labels_of(spec);
    pod.id = next_id_++;
    try_attach(pod);
    pods_.emplace(spec.key(), std::move(pod));
  }
  reindex();
  return removed;
}

void PodManager::refresh() {
  for (auto& [key, pod] : pods_) {
    if (pod.attached) {
      // A deleted namespace takes its veth pair with it; a reused ifindex gets a new name.
      if (names_.is(pod.iface.host_ifindex, pod.iface.host_ifname)) {
        keep_netns_path(key, pod);
        continue;
      }
      spdlog::warn("pod {}: interface {} is gone; will re-resolve", key, pod.iface.host_ifname);
      detach(pod);
      pod.retry_at = {};
    }
    if (std::chrono::steady_clock::now() >= pod.retry_at) try_attach(pod);
  }
  reindex();
  dp_.keep_tc_first();
  move_ingress_to_pod_side();
}

void PodManager::keep_netns_path(const std::string& key, WatchedPod& pod) {
  const auto now = std::chrono::steady_clock::now();
  if (now < pod.netns_search_at) return;
  const std::string was = pod.iface.netns_path;
  if (!renew_netns_path(pod.iface)) {
    // Nothing names it now: it is going away, and its veth with it, which the next look sees.
    // Looked for again in 2 s, not at every tick (a search reads every process's namespace).
    pod.netns_search_at = now + std::chrono::seconds(2);
    return;
  }
  if (pod.iface.netns_path == was) return;
  spdlog::info("pod {}: its network namespace is now reached through {} ({} is gone)", key, pod.iface.netns_path, was);
  // Where a clsact filter on its own end is taken off from (kernels before TCX).
  if (pod.programs) dp_.renew_pod_side_path(pod.iface.host_ifindex, pod.iface.netns_path);
}

void PodManager::move_ingress_to_pod_side(std::chrono::steady_clock::duration every) {
  if (ingress_hook_ != "auto" || !dp_.can_count_on_pod_side()) return;
  const auto now = std::chrono::steady_clock::now();
  if (now < next_hook_check_) return;
  next_hook_check_ = now + every;
  for (auto& [key, pod] : pods_) {
    if (!pod.attached) continue;
    if (!pod.packet_level && !pod.stats_on_pod_side && wants_pod_side(pod.iface, nullptr)) {
      // Counted from statistics: from now on what it receives is read from its own end's.
      spdlog::info("pod {}: another tool's program is on {} now: what the pod receives is read from its own {}'s "
                   "statistics", key, pod.iface.host_ifname, pod.iface.pod_ifname);
      pod.stats_on_pod_side = true;
    }
    if (!pod.programs || pod.ingress_on_pod_side || pod.pod_side_refused || !wants_pod_side(pod.iface, nullptr)) continue;
    // A CNI's programs that came after the pod was attached (a CNI installed or restarted
    // since): from now on it may deliver to the pod past the host-side veth. The links are made
    // again (attach_programs says why); the counters stay (the slot is the interface's), a packet
    // may pass unseen meanwhile.
    if (auto r = attach_programs(pod, pod.iface); !r) {
      spdlog::error("pod {}: attaching the programs again: {}; will re-resolve", key, r.error().message);
      detach(pod);
      pod.retry_at = {};
    }
  }
}

void PodManager::reindex() {
  by_ifindex_.clear();
  by_id_.clear();
  by_ip_.clear();
  for (const auto& [key, pod] : pods_) {
    by_id_[pod.id] = &pod;
    if (!pod.attached) continue;
    by_ifindex_[pod.iface.host_ifindex] = &pod;
    for (const auto& ip : pod.iface.ips) by_ip_[ip] = &pod;
  }
}

void PodManager::try_attach(WatchedPod& pod) {
  auto iface = pod.spec.netns.empty() ? find_pod_interface_by_ip(pod.spec.ip) : find_pod_interface(pod.spec.netns);
  if (!iface) {
    if (pod.last_error != iface.error().message)
      spdlog::warn("pod {}: not attached yet: {}", pod.spec.key(), iface.error().message);
    pod.last_error = iface.error().message;
    pod.retry_at = std::chrono::steady_clock::now() + std::chrono::seconds(2);
    return;
  }
  // Counters of an earlier pod that had this ifindex must not leak into this one.
  dp_.forget_counters(iface->host_ifindex, pod.id);
  // A failure here (a map or max_pods full, an attach refused) is retried every 2 s and logged
  // when it first happens or changes, not on every retry.
  auto failed = [&](const std::string& message) {
    if (pod.last_error != message) spdlog::error("pod {}: {}", pod.spec.key(), message);
    pod.last_error = message;
    pod.retry_at = std::chrono::steady_clock::now() + std::chrono::seconds(2);
  };
  if (auto r = dp_.set_pod(pod.id, iface->netns_inode, iface->ips); !r) {
    failed(r.error().message);
    return;
  }
  const uint32_t peers = remote_ ? remote_(pod.spec) : 0;
  // Remote context counts what the programs see, so a pod that opts in gets them.
  pod.packet_level = !packet_ || packet_(pod.spec) || peers > 0;
  auto linked = pod.packet_level ? attach_programs(pod, *iface) : dp_.track_interface(iface->host_ifindex, pod.id);
  pod.stats_on_pod_side = !pod.packet_level && wants_pod_side(*iface, nullptr);
  if (!linked) {
    dp_.forget_pod(pod.id, iface->netns_inode, iface->ips);
    // The traffic slot attach_tc may have claimed: a pod that goes before a retry succeeds is
    // not attached, so detach() would not give it back.
    dp_.forget_counters(iface->host_ifindex, pod.id);
    failed(linked.error().message);
    return;
  }
  if (peers) {
    if (auto r = dp_.set_remote_context(iface->host_ifindex, pod.id, peers); !r)
      spdlog::error("pod {}: remote context: {}", pod.spec.key(), r.error().message);
  }
  // A filter on its own end that an agent killed before it could take it off left there.
  if (!pod.ingress_on_pod_side)
    dp_.clear_pod_side(Datapath::PodSide{iface->netns_path, iface->netns_inode, iface->pod_ifindex, iface->pod_ifname});
  pod.iface = *iface;
  pod.attached = true;
  pod.attach_serial = ++attaches_;
  pod.programs = pod.packet_level;
  pod.last_error.clear();
  spdlog::info("pod {}: attached to {} (ifindex {}), addresses [{}]{}{}", pod.spec.key(), pod.iface.host_ifname,
               pod.iface.host_ifindex, fmt::join(pod.iface.ips, ", "),
               pod.packet_level ? ""
               : pod.stats_on_pod_side
                   ? "; counted from the interfaces' statistics (no packet-level programs), what it receives from its own " +
                         pod.iface.pod_ifname + "'s"
                   : std::string("; counted from the interface's statistics (no packet-level programs)"),
               pod.ingress_on_pod_side ? "; what it receives is counted on its own " + pod.iface.pod_ifname : "");
}

bool PodManager::wants_pod_side(const PodInterface& iface, std::string* why) const {
  if (ingress_hook_ == "pod") return true;
  // Whatever ingress_hook says: the host side has no hook for it (Datapath::attach_tc).
  if (dp_.ingress_qdisc_only(iface.host_ifindex)) return true;
  if (ingress_hook_ != "auto") return false;
  // A CNI with an eBPF datapath has its programs on the pod's host-side veth; such a CNI may
  // deliver to the pod past that veth (Cilium does, with bpf_redirect_peer).
  std::string other = dp_.other_tc_program(iface.host_ifindex);
  if (other.empty()) return false;
  if (why) *why = std::move(other);
  return true;
}

Result<void> PodManager::attach_programs(WatchedPod& pod, const PodInterface& iface) {
  std::optional<Datapath::PodSide> side;
  std::string other;
  if (wants_pod_side(iface, &other) && (ingress_hook_ == "pod" || dp_.can_count_on_pod_side())) {
    if (dp_.ingress_qdisc_only(iface.host_ifindex))
      spdlog::info("pod {}: {} has an ingress qdisc, not clsact (the CNI bandwidth plugin's, say), with no hook for what "
                   "the pod receives: counted on its own {}",
                   pod.spec.key(), iface.host_ifname, iface.pod_ifname);
    else if (!other.empty())
      spdlog::info("pod {}: another tool's program ({}) is on {}: counting what the pod receives on its own {}, "
                   "which also sees packets delivered past {} (metrics.ingress_hook: auto)",
                   pod.spec.key(), other, iface.host_ifname, iface.pod_ifname, iface.host_ifname);
    // The path may have gone since the tick's look (keep_netns_path).
    PodInterface current = iface;
    renew_netns_path(current);
    side = Datapath::PodSide{current.netns_path, iface.netns_inode, iface.pod_ifindex, iface.pod_ifname};
  }
  auto r = dp_.attach_tc(iface.host_ifindex, iface.host_ifname, pod.id, side ? &*side : nullptr);
  pod.ingress_on_pod_side = r && dp_.counts_on_pod_side(iface.host_ifindex);
  // attach_tc said why (a warning) and counts at the host side: not tried again every 2 s.
  pod.pod_side_refused = r && side && !pod.ingress_on_pod_side;
  return r;
}

void PodManager::hold_programs(const std::set<std::string>& keys) {
  for (auto& [key, pod] : pods_) {
    if (!pod.attached || pod.packet_level) continue;
    const bool want = keys.count(key) > 0;
    if (want == pod.programs) continue;
    if (!want) {
      dp_.detach_tc(pod.iface.host_ifindex);
      pod.programs = false;
      pod.ingress_on_pod_side = false;
      spdlog::info("pod {}: packet-level programs off {} again (no capture needs them)", key, pod.iface.host_ifname);
      continue;
    }
    if (auto r = attach_programs(pod, pod.iface); !r) {
      // Tried again at every tick while the capture wants it; logged when it first fails or changes.
      if (pod.programs_error != r.error().message)
        spdlog::error("pod {}: attaching the programs for a capture: {}", key, r.error().message);
      pod.programs_error = r.error().message;
      continue;
    }
    pod.programs_error.clear();
    pod.programs = true;
    spdlog::info("pod {}: packet-level programs on {} while a capture needs them", key, pod.iface.host_ifname);
  }
}

void PodManager::detach(WatchedPod& pod) {
  if (!pod.attached) return;
  if (pod.programs) dp_.detach_tc(pod.iface.host_ifindex);
  pod.programs = false;
  pod.ingress_on_pod_side = false;
  pod.stats_on_pod_side = false;
  dp_.forget_pod(pod.id, pod.iface.netns_inode, pod.iface.ips);
  dp_.forget_counters(pod.iface.host_ifindex, pod.id);
  pod.attached = false;
}

const WatchedPod* PodManager::by_ifindex(uint32_t ifindex) const {
  auto it = by_ifindex_.find(ifindex);
  return it == by_ifindex_.end() ? nullptr : it->second;
}

const WatchedPod* PodManager::by_ip(const std::string& ip) const {
  auto it = by_ip_.find(ip);
  return it == by_ip_.end() ? nullptr : it->second;
}

const WatchedPod* PodManager::by_id(uint32_t id) const {
  auto it = by_id_.find(id);
  return it == by_id_.end() ? nullptr : it->second;
}

std::vector<PodMeta> PodManager::metadata(const std::string& node) const {
  std::vector<PodMeta> out;
  // Baselines follow a workload's pods across reschedules when the source names the owner.
  for (const auto& [key, pod] : pods_)
    out.push_back(PodMeta{pod.spec.namespace_, pod.spec.name, pod.spec.labels, node,
                          pod.spec.workload_kind.empty()
                              ? std::string()
                              : pod.spec.namespace_ + "/" + pod.spec.workload_kind + "/" + pod.spec.workload_name});
  return out;
}

}  // namespace vigil
