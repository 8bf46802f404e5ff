// The kernel side of the agent: loads the CO-RE counters object, attaches its programs and
// reads its maps. One instance per agent; only the tick thread calls it.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "rules/core/result.h"

struct vigil_counters;  // the bpftool skeleton
struct vigil_slot;
struct vigil_traffic_value;
struct vigil_remote_value;
struct bpf_link;
struct bpf_program;
struct btf;

namespace vigil {

template <typename T>
class CpuArray;  // engine/bpf_maps.h

// Names of the running kernel's enum skb_drop_reason, read from its BTF, without the
// SKB_DROP_REASON_ prefix ("NETFILTER_DROP", "NO_SOCKET", ...).
class DropReasons {
 public:
  // From the running kernel's BTF, loaded by the caller (btf__load_vmlinux_btf).
  static Result<DropReasons> from_kernel_btf(const struct btf* vmlinux);
  std::string name(uint16_t value) const;
  size_t size() const { return names_.size(); }

 private:
  std::map<uint16_t, std::string> names_;
};

// What has to be decided before the eBPF object is loaded.
struct DatapathOptions {
  // Size of the lookback capture ring buffer (vigil_capture_rb) in bytes: a power of two and a
  // multiple of the page size, at most 1 GiB. Memory is taken at load, captures on or not.
  uint32_t capture_ring_bytes = 8u << 20;
  // Pod interfaces the datapath holds at once (config `max_pods`, at most VIGIL_MAX_PODS), and
  // remote-context keys (`remote_context.max_keys`, at most VIGIL_MAX_REMOTE_KEYS; 1 when no
  // pod opts in). They size the maps that hold an entry per CPU, whose memory is otherwise the
  // largest node's on every node (hundreds of MiB on 64 CPUs).
  uint32_t max_pods = 256;
  uint32_t remote_keys = 16384;
  // DNS requests waiting for their response, node-wide (`metrics.dns_max_pending`, 16 to
  // VIGIL_DNS_MAX_PENDING_LIMIT): memory taken as requests wait, not at load (6.1+).
  uint32_t dns_max_pending = 131072;  // VIGIL_DNS_MAX_PENDING (checked in datapath.cpp)
  // `metrics.dns_timeout`: a DNS response later than this after its request's first send counts
  // as a timeout in the kernel (the agent counts those with no response at all).
  uint64_t dns_timeout_ns = 5000000000ull;
  // Count each tracing program's runs in vigil_tp_runs (`metrics.tracepoint_audit`).
  bool count_tracing_runs = false;
  // One TC program on both hooks of a pod interface where the kernel can tell it the hook
  // (bpf_cast_to_kern_ctx, 6.3+); false: the ingress/egress pair older kernels get (for tests).
  bool one_tc_program = true;
  // TCX links where the kernel has them (6.6+); false: clsact filters, as older kernels get
  // (metrics.tcx, and tests).
  bool tcx = true;
};

// How many pods are marked for capture, shared by the datapath (which marks them) and the
// capture source's thread, which drains the ring buffer only while one is: with none it waits
// here instead of waking every poll period (100 times a second, each a context switch that a
// busy node's request path pays for).
class CaptureActivity {
 public:
  void set(size_t pods) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      pods_ = pods;
    }
    cv_.notify_all();
  }
  bool active() const {
    std::lock_guard<std::mutex> lock(mu_);
    return pods_ > 0;
  }
  // Wakes a wait(), which then sees its `stop` flag (set before this call).
  void interrupt() {
    { std::lock_guard<std::mutex> lock(mu_); }  // a waiter is either waiting or will see `stop`
    cv_.notify_all();
  }
  // Until a pod is marked, `stop` is set (and interrupt() called) or `limit` passes; whether a
  // pod is marked.
  bool wait(std::chrono::milliseconds limit, const std::atomic<bool>& stop) {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait_for(lock, limit, [&] { return pods_ > 0 || stop.load(); });
    return pods_ > 0;
  }

 private:
  mutable std::mutex mu_;
  std::condition_variable cv_;
  size_t pods_ = 0;
};

class Datapath {
 public:
  static Result<std::unique_ptr<Datapath>> open_and_load(const DatapathOptions& options = {});
  ~Datapath();
  Datapath(const Datapath&) = delete;
  Datapath& operator=(const Datapath&) = delete;

  // The TC programs on the ingress and egress of the pod's host-side interface: TCX links
  // where the kernel has them (6.6+), else clsact filters. Gives the interface a traffic slot
  // first (kept until forget_counters), so its first packet is counted. `pod_id` (set_pod's)
  // lets drops on this interface be charged to its pod.
  //
  // With `pod_side`, what the pod receives is counted on the pod's own end of its veth, inside
  // its namespace, and the host-side egress hook is left off: a CNI that puts packets straight
  // into the pod's namespace (bpf_redirect_peer: Cilium) bypasses the host-side veth, and only
  // there does every packet the pod receives pass. A TCX link (vigil_tc_pod), or on kernels
  // before TCX a clsact filter whose classid names the pod (vigil_tc_podcls). Falls back to the
  // host-side egress hook, with a warning, when that attach fails.
  struct PodSide {
    std::string netns_path;  // where to join the pod's namespace (/run/netns/NAME, /proc/PID/ns/net)
    uint32_t netns_inode = 0;
    uint32_t ifindex = 0;    // in the pod's namespace
    std::string ifname;      // e.g. eth0
  };
  Result<void> attach_tc(uint32_t ifindex, const std::string& ifname, uint32_t pod_id = 0,
                         const PodSide* pod_side = nullptr);
  // Whether what the pod behind `ifindex` receives is counted on its own end (attach_tc's pod_side).
  bool counts_on_pod_side(uint32_t ifindex) const {
    auto it = tcx_links_.find(ifindex);
    return (it != tcx_links_.end() && it->second.pod >= 0) || clsact_pods_.count(ifindex) > 0;
  }
  // Whether attach_tc can take a pod_side here (the program for the kernel's way of attaching loaded).
  bool can_count_on_pod_side() const { return tcx_unsupported_ ? tc_podcls_ != nullptr : tc_pod_ != nullptr; }
  // Removes Vigil's clsact filter from the pod's own end, where an agent that was killed before
  // it could take it off left it: for a pod counted at the host side (attach_tc without
  // pod_side, or no programs). attach_tc with pod_side does the same, or replaces it.
  void clear_pod_side(const PodSide& side);
  // The pod behind `ifindex` is reached through another path now (the process whose
  // /proc/PID/ns/net it was has exited): where its own end's clsact filter is removed from.
  void renew_pod_side_path(uint32_t ifindex, const std::string& netns_path);
  // The name of another tool's program on either hook of `ifindex` (not Vigil's, nor another
  // Vigil's), or "": a CNI with an eBPF datapath, which may deliver past the veth. TCX links, and
  // clsact filters (CNIs that predate TCX or run on kernels without it: Cilium before 1.16).
  std::string other_tc_program(uint32_t ifindex) const;
  // Whether `ifindex` will get clsact filters (no TCX) and has a plain ingress qdisc (the CNI
  // bandwidth plugin's), which leaves no hook for what the pod receives: counted on its own end.
  bool ingress_qdisc_only(uint32_t ifindex) const;
  // A pod interface the TC programs are not on (metrics.packet_level): a traffic slot all the
  // same, so that drops on it are charged to `pod_id` and a capture can attach the programs
  // later (attach_tc) without a new slot. Undone by forget_counters.
  Result<void> track_interface(uint32_t ifindex, uint32_t pod_id) { return claim_slot(ifindex, pod_id); }
  // The traffic slots in use: host-side ifindex -> index into the vigil_traffic array.
  const std::map<uint32_t, uint32_t>& traffic_slots() const { return slot_of_; }
  uint32_t max_pods() const { return max_pods_; }
  uint32_t remote_keys() const { return remote_keys_; }
  // Removes only Vigil's programs (a clsact qdisc stays for others that may use it).
  void detach_tc(uint32_t ifindex);
  // Puts Vigil's TCX links back at the front of a hook's chain where another tool's program got
  // in front of them since they were attached (a CNI that re-attaches at the head when it
  // restarts): that program's verdict would end the chain before them. Checks every interface
  // at most every `every`; another Vigil's program in front is left there (it passes every
  // packet on). Between the old link's close and the new one, a packet may pass unseen.
  // With clsact filters (kernels before TCX) the same for a filter that runs before Vigil's:
  // cls_bpf runs the filters of one pref last added first, so a filter another tool adds (again)
  // at Vigil's pref 1 runs first; Vigil's is added again, which puts it first.
  void keep_tc_first(std::chrono::steady_clock::duration every = std::chrono::seconds(2));
  // Links put back at the front by keep_tc_first, by hook (0: ingress, 1: egress).
  const std::array<uint64_t, 2>& tc_relinked() const { return tc_relinked_; }

  // Tells the drop program which namespace and addresses belong to pod `pod_id` (> 0).
  Result<void> set_pod(uint32_t pod_id, uint32_t netns_inode, const std::vector<std::string>& ips);
  // Takes pod `pod_id`'s namespace and addresses out, those that are still its own.
  void forget_pod(uint32_t pod_id, uint32_t netns_inode, const std::vector<std::string>& ips);
  // Which pod the drop program takes a namespace or an address for now, if any.
  std::optional<uint32_t> pod_of_netns(uint32_t netns_inode) const;
  std::optional<uint32_t> pod_of_ip(const std::string& ip) const;
  // Turns remote context on for pod `pod_id` behind `ifindex`, with at most `max_peers`
  // distinct peers (the rest count as "other"); max_peers 0 turns it off.
  Result<void> set_remote_context(uint32_t ifindex, uint32_t pod_id, uint32_t max_peers);
  // Lookback capture for the pod behind `ifindex` (bpf/lib/capture.h): the TC programs append
  // the first `snaplen` bytes (1..VIGIL_CAPTURE_MAX_SNAPLEN) of each of its packets to the
  // capture ring buffer (read by engine/capture_source.h); 0 turns it off. The pod's remote
  // context settings and peers are kept.
  Result<void> set_capture(uint32_t ifindex, uint32_t snaplen);
  // The snaplen set for `ifindex`; 0 when off or unknown.
  uint32_t capture_snaplen(uint32_t ifindex) const;
  // The ring buffer's and the per-slot loss counters' fds, for the reader's own thread
  // (CaptureSource); -1 before load.
  int capture_ring_fd() const;
  int capture_lost_fd() const;
  int errors_fd() const;

  // Deletes the pod's counters from the maps once its series have been read for the last time.
  void forget_counters(uint32_t ifindex, uint32_t pod_id);

  // Times connections to the Kubernetes API server (bpf/lib/apiserver.h): lists its
  // addresses (service and endpoints, {ip, port}), attaches the sock_ops program to the cgroup
  // v2 hierarchy at `cgroup_path` (every socket of the node belongs to it).
  struct ApiServerAddress {
    std::string ip;
    uint16_t port = 0;
  };
  // `no_response_ns`: apiserver.no_response_after, which the kernel holds answers against too.
  Result<void> watch_api_server(const std::vector<ApiServerAddress>& servers, const std::string& cgroup_path,
                                uint64_t no_response_ns);

  struct MapRef {
    int fd = -1;
    uint32_t max_entries = 0;
  };
  // A map of the loaded object by name ("vigil_traffic"); fd -1 if there is none.
  MapRef map(const char* name) const;

  struct ProgramStats {
    std::string name;
    uint64_t run_count = 0;    // 0 unless kernel.bpf_stats_enabled=1
    uint64_t run_time_ns = 0;
    // Runs the kernel skipped because the program was already running on that CPU (a softirq
    // or a preempting task hit the same hook mid-run); counted whether or not stats are on.
    uint64_t recursion_misses = 0;
  };
  std::vector<ProgramStats> program_stats() const;

  // Every CPU's counters of a traffic slot (traffic_slots()) and of a remote context index
  // (vigil_remote), read from the mapped arrays; false when out of range.
  bool read_traffic(uint32_t slot, std::vector<vigil_traffic_value>& per_cpu) const;
  bool read_remote(uint32_t index, std::vector<vigil_remote_value>& per_cpu) const;

  const DropReasons& drop_reasons() const { return reasons_; }
  // Pods marked for capture (set_capture), for the capture source's thread.
  std::shared_ptr<CaptureActivity> capture_activity() const { return capture_activity_; }

 private:
  Datapath() = default;
  vigil_counters* skel_ = nullptr;
  DropReasons reasons_;
  std::map<uint32_t, std::string> attached_;  // ifindex -> name
  struct TcxLinks {
    int in = -1, out = -1;  // the host-side veth's hooks (out: -1 when pod-side counts; kLinkLost: see below)
    int pod = -1;           // TC ingress of the pod's end, in its namespace (attach_tc's pod_side)
    uint32_t pod_netns_inode = 0, pod_ifindex = 0;  // with `pod`: its vigil_pod_side key
  };
  std::map<uint32_t, TcxLinks> tcx_links_;  // host-side ifindex -> TCX link fds
  // A hook whose link keep_tc_first closed to move it to the front and could not make again,
  // neither at the front nor at the back: its next check tries again.
  static constexpr int kLinkLost = -2;
  bool tcx_unsupported_ = false;  // the kernel refused TCX once: clsact from then on
  std::array<uint64_t, 2> tc_relinked_{};  // keep_tc_first's moves, by hook
  void keep_clsact_first();  // keep_tc_first's part for clsact filters
  std::array<uint32_t, 2> tc_ids_{};       // the kernel's ids of tc_in_ and tc_out_, once loaded
  std::chrono::steady_clock::time_point next_order_check_{};
  struct bpf_program* tc_in_ = nullptr;   // what runs at TC ingress of a pod interface
  struct bpf_program* tc_out_ = nullptr;  // and at egress (the same program on 6.3+)
  struct bpf_program* tc_pod_ = nullptr;  // at ingress of a pod's own end (vigil_tc_pod; 6.3+)
  struct bpf_program* tc_podcls_ = nullptr;  // the same as a clsact filter (vigil_tc_podcls; before TCX)
  // Pods whose own end counts through a clsact filter (kernels before TCX): host-side ifindex ->
  // where the filter is and which place of vigil_pod_sides its classid names.
  struct ClsactPodSide {
    PodSide side;
    uint32_t index = 0;
  };
  std::map<uint32_t, ClsactPodSide> clsact_pods_;
  uint32_t pod_side_cursor_ = 0;  // where the next clsact pod side's place is looked for
  // Devices with a clsact qdisc (one rtnetlink dump for all, renewed at most once a second), so
  // that other_tc_program reads the filters only of those.
  mutable std::vector<uint32_t> clsact_devices_;
  mutable std::chrono::steady_clock::time_point clsact_devices_at_{};
  mutable std::vector<uint32_t> ingress_devices_;  // with a plain ingress qdisc (ingress_qdisc_only)
  mutable std::chrono::steady_clock::time_point ingress_devices_at_{};
  // What keep_clsact_first read of the host-side devices whose two hooks it checks: when, and
  // another tool's filter there ("" for none), so that other_tc_program need not read them again.
  std::map<uint32_t, std::pair<std::chrono::steady_clock::time_point, std::string>> clsact_others_;
  std::vector<struct bpf_link*> api_links_;  // sock_ops on the cgroup root
  std::map<uint32_t, uint32_t> slot_of_;  // ifindex -> slot
  std::map<uint32_t, uint32_t> remote_max_of_;  // ifindex -> max_peers, when on
  std::map<uint32_t, uint32_t> capture_of_;     // ifindex -> snaplen, when on
  std::shared_ptr<CaptureActivity> capture_activity_ = std::make_shared<CaptureActivity>();
  std::map<uint32_t, uint32_t> pod_of_;         // ifindex -> pod id, when known
  std::vector<bool> slot_taken_;
  uint32_t max_pods_ = 0, remote_keys_ = 0;  // DatapathOptions', set at load
  uint32_t slot_guess_mask_ = 0;             // VIGIL_IMM_SLOT_GUESS_MASK's value
  uint32_t generation_ = 0;  // of the last slot entry written (vigil_slot.generation)
  // vigil_traffic and vigil_remote_values, mapped ([cpu][index], bpf/vigil_abi.h).
  std::unique_ptr<CpuArray<vigil_traffic_value>> traffic_;
  std::unique_ptr<CpuArray<vigil_remote_value>> remote_values_;

  // Puts vigil_tc_pod on TC ingress of the pod's end (and its vigil_pod_side entry): the link's
  // fd, or -1 with `error` set.
  int link_pod_side(uint32_t ifindex, const PodSide& side, std::string& error);
  // Removes the vigil_pod_side entry of that key (from the array's place or the hash) if it is
  // still the one for host-side `host_ifindex`.
  void forget_pod_side(uint32_t netns_inode, uint32_t pod_ifindex, uint32_t host_ifindex);
  // Kernels before TCX: vigil_tc_podcls as a clsact filter on TC ingress of the pod's end, its
  // classid the place of the pod's entry in vigil_pod_sides (plus one); false with `error` set.
  bool filter_pod_side(uint32_t ifindex, const PodSide& side, std::string& error);
  // Removes that filter (where the pod's namespace still is) and frees its place.
  void unfilter_pod_side(uint32_t ifindex);
  // Puts every index of vigil_remote_values in the vigil_remote_free queue (at load).
  Result<void> fill_remote_free();

  Result<void> claim_slot(uint32_t ifindex, uint32_t pod_id);
  void release_slot(uint32_t ifindex);
  // Writes the slot table entry of `ifindex` where the kernel looks for it (vigil_slots at the
  // ifindex's low bits, or vigil_slots_spill when another interface holds that place).
  Result<void> write_slot(const vigil_slot& entry);
  // The slot entry of an interface that has a slot, from the settings kept here.
  vigil_slot slot_entry_of(uint32_t ifindex) const;
};

}  // namespace vigil
