#include "engine/datapath.h"

#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>
#include <arpa/inet.h>
#include <linux/if_ether.h>
#include <linux/pkt_cls.h>
#include <linux/pkt_sched.h>
#include <linux/rtnetlink.h>
#include <linux/types.h>
#include <net/if.h>
#include <fcntl.h>
#include <sys/utsname.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <optional>

#include <spdlog/spdlog.h>

#include "engine/bpf_immediates.h"
#include "engine/bpf_maps.h"
#include "engine/netlink_dump.h"
#include "engine/netns.h"
#include "vigil_abi.h"
#include "counters.skel.h"

namespace vigil {
namespace {

std::string err_text(int err) { return std::strerror(err < 0 ? -err : err); }

// What the kernel says of the program behind `fd`; nothing when it cannot be read.
std::optional<bpf_prog_info> prog_info(int fd) {
  bpf_prog_info info{};
  uint32_t len = sizeof(info);
  if (bpf_obj_get_info_by_fd(fd, &info, &len) != 0) return std::nullopt;
  return info;
}

// The name of a program, by id; "" when it is gone.
std::string program_name(uint32_t id) {
  const int fd = bpf_prog_get_fd_by_id(id);
  if (fd < 0) return "";
  auto info = prog_info(fd);
  close(fd);
  return info ? info->name : "";
}

// libbpf's messages go to the agent's log, not raw to stderr: its warnings as warnings, the
// rest at debug. Inside an ExpectedFailure scope (a call made to clean up what may not be
// there) its warnings are expected answers and logged at debug too.
thread_local int expected_failures = 0;

struct ExpectedFailure {
  ExpectedFailure() { ++expected_failures; }
  ~ExpectedFailure() { --expected_failures; }
  ExpectedFailure(const ExpectedFailure&) = delete;
  ExpectedFailure& operator=(const ExpectedFailure&) = delete;
};

int libbpf_to_log(libbpf_print_level level, const char* format, va_list args) {
  const auto to = level == LIBBPF_WARN && expected_failures == 0 ? spdlog::level::warn : spdlog::level::debug;
  if (!spdlog::should_log(to)) return 0;
  char line[1024];
  va_list copy;
  va_copy(copy, args);
  const int n = std::vsnprintf(line, sizeof(line), format, copy);
  va_end(copy);
  std::string text;
  if (n >= static_cast<int>(sizeof(line))) {  // a verifier log: print it whole
    text.resize(static_cast<size_t>(n) + 1);
    std::vsnprintf(text.data(), text.size(), format, args);
    text.resize(static_cast<size_t>(n));
  } else if (n > 0) {
    text.assign(line, static_cast<size_t>(n));
  }
  while (!text.empty() && text.back() == '\n') text.pop_back();
  if (!text.empty()) spdlog::log(to, "{}", text);  // libbpf starts its messages with "libbpf: "
  return 0;
}

vigil_slot slot_entry(uint32_t ifindex, uint32_t slot, uint32_t remote_max) {
  vigil_slot s{};
  s.ifindex = ifindex;
  s.slot = slot;
  s.remote_max = remote_max;
  return s;
}

// The running kernel's release is MAJOR.MINOR or later.
bool kernel_at_least(int major, int minor) {
  utsname u{};
  int have_major = 0, have_minor = 0;
  if (uname(&u) != 0 || std::sscanf(u.release, "%d.%d", &have_major, &have_minor) != 2) return false;
  return have_major > major || (have_major == major && have_minor >= minor);
}

// The running kernel's BTF has the function (a kfunc the programs may call).
bool kernel_has_func(const btf* vmlinux, const char* name) {
  return btf__find_by_name_kind(vmlinux, name, BTF_KIND_FUNC) >= 0;
}

// The running kernel's BTF has the value `name` in enum `type` (BPF_TCX_INGRESS in
// bpf_attach_type: the kernel has TCX, whatever its build inlined).
bool kernel_has_enum_value(const btf* vmlinux, const char* type, const char* name) {
  const int id = btf__find_by_name_kind(vmlinux, type, BTF_KIND_ENUM);
  if (id < 0) return false;
  const btf_type* t = btf__type_by_id(vmlinux, id);
  const struct btf_enum* e = btf_enum(t);
  for (int i = 0; i < btf_vlen(t); ++i, ++e)
    if (const char* n = btf__name_by_offset(vmlinux, e->name_off); n && std::strcmp(n, name) == 0) return true;
  return false;
}

// How many arguments the kernel passes to tracepoint `name`'s programs (its btf_trace_NAME
// typedef: a pointer to a function whose first parameter is the tracepoint's own data), or -1.
int tracepoint_args(const btf* vmlinux, const std::string& name) {
  const int id = btf__find_by_name_kind(vmlinux, ("btf_trace_" + name).c_str(), BTF_KIND_TYPEDEF);
  if (id < 0) return -1;
  const btf_type* t = btf__type_by_id(vmlinux, btf__type_by_id(vmlinux, id)->type);
  if (!t || !btf_is_ptr(t)) return -1;
  t = btf__type_by_id(vmlinux, t->type);
  if (!t || !btf_is_func_proto(t)) return -1;
  return btf_vlen(t) - 1;
}

}  // namespace

Result<DropReasons> DropReasons::from_kernel_btf(const btf* vmlinux) {
  DropReasons out;
  int id = btf__find_by_name_kind(vmlinux, "skb_drop_reason", BTF_KIND_ENUM);
  if (id < 0) return make_error("kernel BTF has no enum skb_drop_reason (kernel older than 5.17?)");
  const btf_type* t = btf__type_by_id(vmlinux, id);
  const struct btf_enum* e = btf_enum(t);
  static const std::string prefix = "SKB_DROP_REASON_";
  for (int i = 0; i < btf_vlen(t); ++i, ++e) {
    std::string name = btf__name_by_offset(vmlinux, e->name_off);
    if (name.rfind(prefix, 0) == 0) name = name.substr(prefix.size());
    out.names_[static_cast<uint16_t>(e->val)] = name;
  }
  return out;
}

std::string DropReasons::name(uint16_t value) const {
  auto it = names_.find(value);
  return it != names_.end() ? it->second : "UNKNOWN_" + std::to_string(value);
}

static_assert(DatapathOptions{}.dns_max_pending == VIGIL_DNS_MAX_PENDING);

Result<void> check_capture_ring_bytes(uint32_t bytes) {
  const long page = sysconf(_SC_PAGESIZE) > 0 ? sysconf(_SC_PAGESIZE) : 4096;
  if (bytes == 0 || (bytes & (bytes - 1)) != 0 || bytes % page != 0 || bytes > (1u << 30))
    return make_error("capture ring buffer size " + std::to_string(bytes) +
                      " bytes: must be a power of two, a multiple of the page size (" + std::to_string(page) +
                      " bytes) and at most 1 GiB");
  return {};
}

Result<std::unique_ptr<Datapath>> Datapath::open_and_load(const DatapathOptions& options) {
  libbpf_set_print(libbpf_to_log);
  if (auto r = check_capture_ring_bytes(options.capture_ring_bytes); !r) return r.error();
  if (options.max_pods < 1 || options.max_pods > VIGIL_MAX_PODS)
    return make_error("max_pods " + std::to_string(options.max_pods) + ": must be from 1 to " + std::to_string(VIGIL_MAX_PODS));
  if (options.remote_keys < 1 || options.remote_keys > VIGIL_MAX_REMOTE_KEYS)
    return make_error("remote_context.max_keys " + std::to_string(options.remote_keys) + ": must be from 1 to " +
                      std::to_string(VIGIL_MAX_REMOTE_KEYS));
  if (options.dns_max_pending < 16 || options.dns_max_pending > VIGIL_DNS_MAX_PENDING_LIMIT)
    return make_error("metrics.dns_max_pending " + std::to_string(options.dns_max_pending) + ": must be from 16 to " +
                      std::to_string(VIGIL_DNS_MAX_PENDING_LIMIT));
  // The kernel's BTF, read once: the drop reasons' names and the kfuncs the programs may use.
  std::unique_ptr<btf, void (*)(btf*)> vmlinux(btf__load_vmlinux_btf(), btf__free);
  if (!vmlinux) return make_error("load kernel BTF (/sys/kernel/btf/vmlinux): " + err_text(errno));
  auto reasons = DropReasons::from_kernel_btf(vmlinux.get());
  if (!reasons) return reasons.error();
  std::unique_ptr<Datapath> dp(new Datapath());
  dp->reasons_ = std::move(*reasons);
  dp->skel_ = vigil_counters__open();
  if (!dp->skel_) return make_error("open eBPF object vigil_counters: " + err_text(errno));
  if (int err = bpf_map__set_max_entries(dp->skel_->maps.vigil_capture_rb, options.capture_ring_bytes))
    return make_error("size map vigil_capture_rb: " + err_text(err));
  // The per-CPU counter arrays hold one block of entries per possible CPU ([cpu][index]); the
  // programs learn the block sizes from read-only data. The other maps with an entry per CPU
  // per pod (or per remote key) are sized to match.
  dp->max_pods_ = options.max_pods;
  dp->remote_keys_ = options.remote_keys;
  dp->skel_->rodata->vigil_pods_per_cpu = options.max_pods;
  dp->skel_->rodata->vigil_remote_keys_per_cpu = options.remote_keys;
  dp->skel_->rodata->vigil_dns_timeout_ns = options.dns_timeout_ns;
  dp->skel_->rodata->vigil_tp_audit = options.count_tracing_runs ? 1 : 0;
  dp->skel_->rodata->vigil_rtx_has_err = tracepoint_args(vmlinux.get(), "tcp_retransmit_skb") >= 3 ? 1 : 0;
  // The namespace whose interfaces the pods' host-side veths are (the drop program's check).
  struct stat own_netns {};
  if (stat("/proc/self/ns/net", &own_netns) != 0) return make_error("stat /proc/self/ns/net: " + err_text(errno));
  dp->skel_->rodata->vigil_host_netns = static_cast<uint32_t>(own_netns.st_ino);
  const uint32_t cpus = static_cast<uint32_t>(possible_cpus());
  const std::pair<bpf_map*, uint32_t> sizes[] = {
      {dp->skel_->maps.vigil_traffic, options.max_pods * cpus},
      {dp->skel_->maps.vigil_remote_values, options.remote_keys * cpus},
      {dp->skel_->maps.vigil_remote, options.remote_keys},
      {dp->skel_->maps.vigil_remote_free, options.remote_keys},
      {dp->skel_->maps.vigil_tcp, options.max_pods},
      {dp->skel_->maps.vigil_dns_latency, options.max_pods},
      {dp->skel_->maps.vigil_capture_lost, options.max_pods},
      {dp->skel_->maps.vigil_dns_pending, options.dns_max_pending},
  };
  for (const auto& [map, entries] : sizes)
    if (int err = bpf_map__set_max_entries(map, entries))
      return make_error(std::string("size map ") + bpf_map__name(map) + ": " + err_text(err));
  // The hashes whose keys come with what happens on the node (drop reasons, DNS answers by type
  // and code, DNS requests waiting) take memory for a key when it first appears, where the kernel
  // allows it in tracing programs (6.1+): preallocated, each held its bound (on every CPU for the
  // per-CPU ones: 16 MiB apiece on 64 CPUs, charged to the agent's memory cgroup) from the start,
  // whatever the node's traffic.
  // One TC program for both hooks where the kernel lets it read which hook it runs at.
  const bool one = options.one_tc_program && kernel_has_func(vmlinux.get(), "bpf_cast_to_kern_ctx");
  bpf_program__set_autoload(dp->skel_->progs.vigil_tc, one);
  bpf_program__set_autoload(dp->skel_->progs.vigil_tc_ingress, !one);
  bpf_program__set_autoload(dp->skel_->progs.vigil_tc_egress, !one);
  // The pod-side program finds its counters through the device's namespace: the kernel's own
  // sk_buff, as vigil_tc reads its hook. Every kernel with TCX, where it is attached, has that.
  bpf_program__set_autoload(dp->skel_->progs.vigil_tc_pod, one);
  // Kernels before TCX (and the tests that force clsact filters): the pod-side program as a
  // filter, which learns its pod from the filter's classid and needs no kfunc.
  const bool kernel_tcx = kernel_has_enum_value(vmlinux.get(), "bpf_attach_type", "BPF_TCX_INGRESS");
  const bool clsact = !options.tcx || !kernel_tcx;
  bpf_program__set_autoload(dp->skel_->progs.vigil_tc_podcls, clsact);
  dp->tc_in_ = one ? dp->skel_->progs.vigil_tc : dp->skel_->progs.vigil_tc_ingress;
  dp->tc_out_ = one ? dp->skel_->progs.vigil_tc : dp->skel_->progs.vigil_tc_egress;
  dp->tc_pod_ = one ? dp->skel_->progs.vigil_tc_pod : nullptr;
  dp->tc_podcls_ = clsact ? dp->skel_->progs.vigil_tc_podcls : nullptr;
  // Known before the first attach, so that the first pod can be counted on its own end too.
  dp->tcx_unsupported_ = clsact;
  if (!kernel_tcx)
    spdlog::info("this kernel has no TCX (Linux 6.6+): attaching to pod interfaces with clsact and cls_bpf");
  dp->slot_guess_mask_ = slot_guess_mask(options.max_pods);
  if (auto e = write_tc_immediates(dp->tc_in_, options.max_pods); !e.empty()) return make_error(e);
  if (dp->tc_out_ != dp->tc_in_)
    if (auto e = write_tc_immediates(dp->tc_out_, options.max_pods); !e.empty()) return make_error(e);
  for (bpf_program* pod_side : {dp->tc_pod_, dp->tc_podcls_})
    if (pod_side)
      if (auto e = write_tc_immediates(pod_side, options.max_pods); !e.empty()) return make_error(e);
  if (kernel_at_least(6, 1))
    for (bpf_map* map : {dp->skel_->maps.vigil_drops, dp->skel_->maps.vigil_dns_counts, dp->skel_->maps.vigil_dns_pending})
      if (int err = bpf_map__set_map_flags(map, bpf_map__map_flags(map) | BPF_F_NO_PREALLOC))
        return make_error(std::string("set flags of map ") + bpf_map__name(map) + ": " + err_text(err));
  if (int err = vigil_counters__load(dp->skel_))
    return make_error("load eBPF object vigil_counters (needs root or CAP_BPF+CAP_PERFMON): " + err_text(err));
  for (int hook = 0; hook < 2; ++hook)
    if (auto info = prog_info(bpf_program__fd(hook == 0 ? dp->tc_in_ : dp->tc_out_))) dp->tc_ids_[hook] = info->id;
  dp->traffic_ = std::make_unique<CpuArray<vigil_traffic_value>>();
  if (auto e = dp->traffic_->map(bpf_map__fd(dp->skel_->maps.vigil_traffic), dp->max_pods_, possible_cpus()); !e.empty())
    return make_error("map vigil_traffic: " + e);
  dp->remote_values_ = std::make_unique<CpuArray<vigil_remote_value>>();
  if (auto e = dp->remote_values_->map(bpf_map__fd(dp->skel_->maps.vigil_remote_values), dp->remote_keys_,
                                       possible_cpus());
      !e.empty())
    return make_error("map vigil_remote_values: " + e);
  if (auto r = dp->fill_remote_free(); !r) return r.error();
  // The API server's sock_ops program is attached by watch_api_server, only when addresses are
  // listed (a sock_ops program is never attached by the skeleton).
  if (int err = vigil_counters__attach(dp->skel_))
    return make_error("attach the tp_btf programs (kfree_skb, tcp_retransmit_skb, tcp_retransmit_synack, inet_sock_set_state): " + err_text(err));
  return dp;
}

Datapath::~Datapath() {
  for (const auto& [ifindex, name] : std::map<uint32_t, std::string>(attached_)) detach_tc(ifindex);
  for (bpf_link* link : api_links_) bpf_link__destroy(link);
  if (skel_) vigil_counters__destroy(skel_);
}

Result<void> Datapath::fill_remote_free() {
  for (__u32 i = 0; i < remote_keys_; ++i) {
    if (bpf_map_update_elem(bpf_map__fd(skel_->maps.vigil_remote_free), nullptr, &i, BPF_ANY))
      return make_error("fill map vigil_remote_free: " + err_text(errno));
  }
  return {};
}

Result<void> Datapath::write_slot(const vigil_slot& in) {
  vigil_slot entry = in;
  if (++generation_ == 0) ++generation_;  // 0 marks an empty remote_cache entry
  entry.generation = generation_;
  __u32 index = entry.ifindex & (VIGIL_SLOT_TABLE - 1);
  vigil_slot there{};
  if (bpf_map__lookup_elem(skel_->maps.vigil_slots, &index, sizeof(index), &there, sizeof(there), 0))
    return make_error("read map vigil_slots: " + err_text(errno));
  // The interface's entry written again (its programs linked again, its remote context set):
  // its peers stay in vigil_remote, and so does the count of those it took, or it could name
  // max_peers more. A released slot has no entry, so a new owner starts from 0. (A peer the
  // kernel takes between the read and the write is not counted: the write follows at once.)
  vigil_slot spilled{};
  if (there.ifindex == entry.ifindex)
    entry.remote_used = there.remote_used;
  else if (bpf_map__lookup_elem(skel_->maps.vigil_slots_spill, &entry.ifindex, sizeof(entry.ifindex), &spilled,
                                sizeof(spilled), 0) == 0)
    entry.remote_used = spilled.remote_used;
  if (there.ifindex == 0 || there.ifindex == entry.ifindex) {
    if (bpf_map__update_elem(skel_->maps.vigil_slots, &index, sizeof(index), &entry, sizeof(entry), BPF_ANY))
      return make_error("update map vigil_slots: " + err_text(errno));
    // Spilled before, while another interface held the place: the copy there would outlive it
    // (slot_of() finds the array's first), old pod id and all, and take a spill entry for good.
    if (spilled.ifindex == entry.ifindex)
      bpf_map__delete_elem(skel_->maps.vigil_slots_spill, &entry.ifindex, sizeof(entry.ifindex), 0);
    return {};
  }
  if (bpf_map__update_elem(skel_->maps.vigil_slots_spill, &entry.ifindex, sizeof(entry.ifindex), &entry, sizeof(entry), BPF_ANY))
    return make_error("update map vigil_slots_spill: " + err_text(errno));
  return {};
}

Result<void> Datapath::claim_slot(uint32_t ifindex, uint32_t pod_id) {
  if (pod_id) pod_of_[ifindex] = pod_id;
  if (slot_of_.count(ifindex)) return write_slot(slot_entry_of(ifindex));
  if (slot_taken_.empty()) slot_taken_.assign(max_pods_, false);
  // The slot the TC programs guess from the ifindex when free (traffic_of_ifindex() in
  // bpf/counters.bpf.c: its counters then load without waiting for the slot entry), else the
  // first free one.
  auto free = slot_taken_.begin() + (ifindex & slot_guess_mask_);
  if (*free) free = std::find(slot_taken_.begin(), slot_taken_.end(), false);
  if (free == slot_taken_.end())
    return make_error("no traffic slot left: max_pods (" + std::to_string(max_pods_) +
                      ") pod interfaces are attached; raise max_pods in the config");
  const uint32_t slot = static_cast<uint32_t>(free - slot_taken_.begin());
  // A slot starts from zero: the previous interface's counts were read for the last time.
  traffic_->zero(slot);
  slot_of_[ifindex] = slot;
  if (auto r = write_slot(slot_entry_of(ifindex)); !r) {
    slot_of_.erase(ifindex);
    return r;
  }
  *free = true;
  return {};
}

vigil_slot Datapath::slot_entry_of(uint32_t ifindex) const {
  auto remote = remote_max_of_.find(ifindex);
  auto capture = capture_of_.find(ifindex);
  vigil_slot s = slot_entry(ifindex, slot_of_.at(ifindex), remote != remote_max_of_.end() ? remote->second : 0);
  s.capture_snaplen = capture != capture_of_.end() ? capture->second : 0;
  auto pod = pod_of_.find(ifindex);
  s.pod_id = pod != pod_of_.end() ? pod->second : 0;
  return s;
}

void Datapath::release_slot(uint32_t ifindex) {
  remote_max_of_.erase(ifindex);
  capture_of_.erase(ifindex);
  capture_activity_->set(capture_of_.size());
  pod_of_.erase(ifindex);
  auto it = slot_of_.find(ifindex);
  if (it == slot_of_.end()) return;
  __u32 index = ifindex & (VIGIL_SLOT_TABLE - 1);
  vigil_slot there{};
  if (bpf_map__lookup_elem(skel_->maps.vigil_slots, &index, sizeof(index), &there, sizeof(there), 0) == 0 &&
      there.ifindex == ifindex) {
    vigil_slot empty{};
    bpf_map__update_elem(skel_->maps.vigil_slots, &index, sizeof(index), &empty, sizeof(empty), BPF_ANY);
  }
  bpf_map__delete_elem(skel_->maps.vigil_slots_spill, &ifindex, sizeof(ifindex), 0);
  slot_taken_[it->second] = false;
  slot_of_.erase(it);
}

namespace {

// TCX (Linux 6.6+): BPF links on a device's ingress and egress, run straight from the packet
// path, without the clsact qdisc and cls_bpf's classifier walk around every program run. The
// attach types are spelled here because Debian 12's headers predate them.
constexpr int kTcxIngress = 46;  // BPF_TCX_INGRESS
constexpr int kTcxEgress = 47;   // BPF_TCX_EGRESS
// BPF_F_BEFORE with no relative program: the front of the device's TCX chain. A TCX program
// that returns a verdict (TC_ACT_OK, a redirect: what a CNI's programs do) ends the chain, so a
// program appended behind one never sees the packets it passed.
constexpr __u32 kTcxFront = 1U << 3;

// Vigil's clsact filters (kernels before TCX): this handle, at pref 1, the first pref there is.
constexpr uint32_t kClsactHandle = 0x7669;
constexpr uint16_t kClsactPref = 1;

// Removes Vigil's filter (any agent's) from a clsact hook of `ifindex` in the calling thread's
// namespace, if one is there.
void remove_clsact_filter(uint32_t ifindex, bpf_tc_attach_point point) {
  ExpectedFailure quiet;  // most devices have no clsact qdisc, and the kernel says so
  DECLARE_LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = static_cast<int>(ifindex), .attach_point = point);
  DECLARE_LIBBPF_OPTS(bpf_tc_opts, opts, .handle = kClsactHandle, .priority = kClsactPref);
  bpf_tc_detach(&hook, &opts);  // none there, or the interface already gone with its namespace
}

void remove_clsact_filters(uint32_t ifindex) {
  for (auto point : {BPF_TC_INGRESS, BPF_TC_EGRESS}) remove_clsact_filter(ifindex, point);
}

// Attaches `prog` as Vigil's filter on a clsact hook of `ifindex` (replacing Vigil's filter
// there, if any); 0 or a negative errno.
int attach_clsact_filter(uint32_t ifindex, bpf_tc_attach_point point, bpf_program* prog) {
  DECLARE_LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = static_cast<int>(ifindex), .attach_point = point);
  DECLARE_LIBBPF_OPTS(bpf_tc_opts, opts, .prog_fd = bpf_program__fd(prog), .handle = kClsactHandle,
                      .priority = kClsactPref);
  opts.flags = BPF_TC_F_REPLACE;
  return bpf_tc_attach(&hook, &opts);
}

// A filter on a clsact hook.
struct ClsactFilter {
  uint32_t handle = 0;
  uint16_t pref = 0;
  std::string kind;  // its classifier ("bpf", "u32", ...)
  std::string name;  // its program's (cls_bpf), or ""
};

// A string attribute's value, without the NUL it was sent with.
std::string attr_string(const rtattr* a) {
  const auto* data = static_cast<const char*>(RTA_DATA(a));
  return std::string(data, strnlen(data, RTA_PAYLOAD(a)));
}

// The filters on the clsact hook of `ifindex` (ingress or egress), in the order they run: tc's
// dump lists them so (by pref, and within one pref as its classifier runs them).
Result<std::vector<ClsactFilter>> clsact_filters(uint32_t ifindex, bool ingress) {
  tcmsg t{};
  t.tcm_family = AF_UNSPEC;
  t.tcm_ifindex = static_cast<int>(ifindex);
  t.tcm_parent = TC_H_MAKE(TC_H_CLSACT, ingress ? TC_H_MIN_INGRESS : TC_H_MIN_EGRESS);
  std::vector<ClsactFilter> filters;
  auto r = netlink_dump(NETLINK_ROUTE, RTM_GETTFILTER, t, "rtnetlink", [&](const nlmsghdr* nh) {
    if (nh->nlmsg_type != RTM_NEWTFILTER || nh->nlmsg_len < NLMSG_LENGTH(sizeof(tcmsg))) return;
    const auto* m = static_cast<const tcmsg*>(NLMSG_DATA(nh));
    if (m->tcm_handle == 0) return;  // a pref's classifier itself, before its filters
    ClsactFilter f{m->tcm_handle, static_cast<uint16_t>(TC_H_MAJ(m->tcm_info) >> 16), "", ""};
    int len = static_cast<int>(nh->nlmsg_len - NLMSG_LENGTH(sizeof(tcmsg)));
    for (auto* a = reinterpret_cast<const rtattr*>(reinterpret_cast<const char*>(m) + NLMSG_ALIGN(sizeof(tcmsg)));
         RTA_OK(a, len); a = RTA_NEXT(a, len)) {
      if (a->rta_type == TCA_KIND) f.kind = attr_string(a);
      if (a->rta_type != TCA_OPTIONS) continue;
      int inner = static_cast<int>(RTA_PAYLOAD(a));
      for (auto* b = static_cast<const rtattr*>(RTA_DATA(a)); RTA_OK(b, inner); b = RTA_NEXT(b, inner))
        if (b->rta_type == TCA_BPF_NAME && RTA_PAYLOAD(b) > 0) f.name = attr_string(b);
    }
    filters.push_back(std::move(f));
  });
  if (!r) return r.error();
  return filters;
}

// Attaches `prog` as Vigil's filter on clsact ingress of `ifindex` (in the calling thread's
// namespace), with `classid`, which cls_bpf puts in the skb (tc_classid) before the program runs.
// libbpf's bpf_tc_attach sets no classid: the request is made here, as tc(8) makes it.
Result<void> attach_classid_filter(uint32_t ifindex, bpf_program* prog, uint32_t classid) {
  tcmsg t{};
  t.tcm_family = AF_UNSPEC;
  t.tcm_ifindex = static_cast<int>(ifindex);
  t.tcm_handle = kClsactHandle;
  t.tcm_parent = TC_H_MAKE(TC_H_CLSACT, TC_H_MIN_INGRESS);
  t.tcm_info = TC_H_MAKE(static_cast<uint32_t>(kClsactPref) << 16, htons(ETH_P_ALL));
  NetlinkMessage m(RTM_NEWTFILTER, NLM_F_CREATE | NLM_F_REPLACE, &t, sizeof(t));
  m.put_string(TCA_KIND, "bpf");
  const size_t options = m.begin_nested(TCA_OPTIONS);
  const int fd = bpf_program__fd(prog);
  auto info = prog_info(fd);
  m.put_u32(TCA_BPF_FD, static_cast<uint32_t>(fd));
  // What tc and libbpf name a filter: the program's name and id.
  m.put_string(TCA_BPF_NAME, std::string(bpf_program__name(prog)) + ":[" + std::to_string(info ? info->id : 0) + "]");
  m.put_u32(TCA_BPF_FLAGS, TCA_BPF_FLAG_ACT_DIRECT);
  m.put_u32(TCA_BPF_CLASSID, classid);
  m.end_nested(options);
  return netlink_request(NETLINK_ROUTE, m, "rtnetlink");
}

// The ifindexes of the calling thread's namespace whose devices have a qdisc of `kind` in their
// ingress slot (parent ffff:fff1: "clsact", or a plain "ingress"), sorted.
Result<std::vector<uint32_t>> ingress_qdisc_devices(const std::string& kind) {
  tcmsg t{};
  t.tcm_family = AF_UNSPEC;
  std::vector<uint32_t> out;
  auto r = netlink_dump(NETLINK_ROUTE, RTM_GETQDISC, t, "rtnetlink", [&](const nlmsghdr* nh) {
    if (nh->nlmsg_type != RTM_NEWQDISC || nh->nlmsg_len < NLMSG_LENGTH(sizeof(tcmsg))) return;
    const auto* m = static_cast<const tcmsg*>(NLMSG_DATA(nh));
    if (m->tcm_parent != TC_H_INGRESS) return;
    int len = static_cast<int>(nh->nlmsg_len - NLMSG_LENGTH(sizeof(tcmsg)));
    for (auto* a = reinterpret_cast<const rtattr*>(reinterpret_cast<const char*>(m) + NLMSG_ALIGN(sizeof(tcmsg)));
         RTA_OK(a, len); a = RTA_NEXT(a, len))
      if (a->rta_type == TCA_KIND && attr_string(a) == kind) out.push_back(static_cast<uint32_t>(m->tcm_ifindex));
  });
  if (!r) return r.error();
  std::sort(out.begin(), out.end());
  return out;
}

// The first of `filters` that is not Vigil's (nor another Vigil's), described for the log; ""
// when there is none.
std::string other_filter(const std::vector<ClsactFilter>& filters) {
  for (const ClsactFilter& f : filters) {
    if ((f.handle == kClsactHandle && f.pref == kClsactPref) || f.name.starts_with("vigil_tc")) continue;
    // "cil_from_container:[42]" as tc names it: the program's name is enough here.
    if (!f.name.empty()) return f.name.substr(0, f.name.find(':'));
    return (f.kind.empty() ? std::string("a") : f.kind) + " filter (pref " + std::to_string(f.pref) + ")";
  }
  return "";
}

// The same on either clsact hook of `ifindex`.
std::string other_clsact_filter(uint32_t ifindex) {
  for (bool ingress : {true, false}) {
    auto filters = clsact_filters(ifindex, ingress);
    if (!filters) continue;
    if (std::string other = other_filter(*filters); !other.empty()) return other;
  }
  return "";
}

}  // namespace

int Datapath::link_pod_side(uint32_t ifindex, const PodSide& side, std::string& error) {
  const vigil_pod_side_key key{side.netns_inode, side.ifindex};
  // The entry first, so that the link's first packet finds its counters: at its place in the
  // array when free (or its own already), else in the hash.
  const __u32 index = VIGIL_POD_SIDE_INDEX(key.netns_inode, key.ifindex);
  vigil_pod_side_entry there{};
  if (bpf_map__lookup_elem(skel_->maps.vigil_pod_sides, &index, sizeof(index), &there, sizeof(there), 0)) {
    error = "read map vigil_pod_sides: " + err_text(errno);
    return -1;
  }
  const vigil_pod_side_entry entry{key, ifindex, 0};
  const bool in_array = there.key.netns_inode == 0 ||
                        (there.key.netns_inode == key.netns_inode && there.key.ifindex == key.ifindex);
  if (in_array ? bpf_map__update_elem(skel_->maps.vigil_pod_sides, &index, sizeof(index), &entry, sizeof(entry), BPF_ANY)
               : bpf_map__update_elem(skel_->maps.vigil_pod_side, &key, sizeof(key), &ifindex, sizeof(ifindex), BPF_ANY)) {
    error = std::string("update map ") + (in_array ? "vigil_pod_sides: " : "vigil_pod_side: ") + err_text(errno);
    return -1;
  }
  // Spilled before, while another key held the place: the array's entry is found first, and the
  // hash's would outlive it.
  if (in_array) bpf_map__delete_elem(skel_->maps.vigil_pod_side, &key, sizeof(key), 0);
  const int prog = bpf_program__fd(tc_pod_);
  // A TCX link goes on a device of the calling thread's namespace, and stays there.
  auto link = run_in_netns(side.netns_path, [&]() -> Result<int> {
    char name[IF_NAMESIZE] = {};
    if (!if_indextoname(side.ifindex, name) || side.ifname != name)
      return make_error(side.ifname + " (ifindex " + std::to_string(side.ifindex) + ") is gone from " + side.netns_path);
    DECLARE_LIBBPF_OPTS(bpf_link_create_opts, front, .flags = kTcxFront);
    const int fd = bpf_link_create(prog, static_cast<int>(side.ifindex), static_cast<bpf_attach_type>(kTcxIngress), &front);
    if (fd < 0) return make_error("attach tcx ingress on " + side.ifname + " in " + side.netns_path + ": " + err_text(errno));
    // The filter of an agent that was killed before it could take it off (kernels before TCX,
    // metrics.tcx: false) would run on, into that agent's maps.
    remove_clsact_filter(side.ifindex, BPF_TC_INGRESS);
    return fd;
  });
  if (!link) {
    forget_pod_side(side.netns_inode, side.ifindex, ifindex);
    error = link.error().message;
    return -1;
  }
  return *link;
}

void Datapath::forget_pod_side(uint32_t netns_inode, uint32_t pod_ifindex, uint32_t host_ifindex) {
  // Only while the entry is still this pod's: the kernel reuses a gone namespace's inode, and a
  // pod's eth0 has the same ifindex as every other's, so a newer pod may hold the same key
  // already (the agent can hear of it before it hears that the old one went).
  const vigil_pod_side_key key{netns_inode, pod_ifindex};
  const __u32 index = VIGIL_POD_SIDE_INDEX(key.netns_inode, key.ifindex);
  vigil_pod_side_entry there{};
  if (bpf_map__lookup_elem(skel_->maps.vigil_pod_sides, &index, sizeof(index), &there, sizeof(there), 0) == 0 &&
      there.key.netns_inode == key.netns_inode && there.key.ifindex == key.ifindex) {
    if (there.host_ifindex != host_ifindex) return;
    const vigil_pod_side_entry free{};
    bpf_map__update_elem(skel_->maps.vigil_pod_sides, &index, sizeof(index), &free, sizeof(free), BPF_ANY);
    return;
  }
  __u32 spilled = 0;
  if (bpf_map__lookup_elem(skel_->maps.vigil_pod_side, &key, sizeof(key), &spilled, sizeof(spilled), 0) == 0 &&
      spilled == host_ifindex)
    bpf_map__delete_elem(skel_->maps.vigil_pod_side, &key, sizeof(key), 0);
}

// The classid says a place of vigil_pod_sides in 16 bits (skb->tc_classid), plus one.
static_assert(VIGIL_SLOT_TABLE < 0xffff, "a pod-side place must fit a filter's classid");

bool Datapath::filter_pod_side(uint32_t ifindex, const PodSide& side, std::string& error) {
  // A free place, looked for from after the last one given: a place freed is given again only
  // after all others, so a filter that could not be removed (its namespace out of reach) is long
  // gone before another pod's entry takes its place (and the program checks the entry's ifindex).
  const vigil_pod_side_entry entry{{side.netns_inode, side.ifindex}, ifindex, 0};
  uint32_t index = VIGIL_SLOT_TABLE;
  for (uint32_t n = 0; n < VIGIL_SLOT_TABLE && index == VIGIL_SLOT_TABLE; ++n) {
    const __u32 at = (pod_side_cursor_ + n) % VIGIL_SLOT_TABLE;
    vigil_pod_side_entry there{};
    if (bpf_map__lookup_elem(skel_->maps.vigil_pod_sides, &at, sizeof(at), &there, sizeof(there), 0) == 0 &&
        there.key.netns_inode == 0)
      index = at;
  }
  if (index == VIGIL_SLOT_TABLE) {
    error = "map vigil_pod_sides is full";
    return false;
  }
  pod_side_cursor_ = (index + 1) % VIGIL_SLOT_TABLE;
  // The entry first, so that the filter's first packet finds its counters.
  if (bpf_map__update_elem(skel_->maps.vigil_pod_sides, &index, sizeof(index), &entry, sizeof(entry), BPF_ANY)) {
    error = "update map vigil_pod_sides: " + err_text(errno);
    return false;
  }
  auto filtered = run_in_netns(side.netns_path, [&]() -> Result<int> {
    char name[IF_NAMESIZE] = {};
    if (!if_indextoname(side.ifindex, name) || side.ifname != name)
      return make_error(side.ifname + " (ifindex " + std::to_string(side.ifindex) + ") is gone from " + side.netns_path);
    DECLARE_LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = static_cast<int>(side.ifindex), .attach_point = BPF_TC_INGRESS);
    int err = 0;
    {
      ExpectedFailure quiet;  // the qdisc there already (EEXIST): the kernel says so
      err = bpf_tc_hook_create(&hook);
    }
    if (err && err != -EEXIST)
      return make_error("create clsact qdisc on " + side.ifname + " in " + side.netns_path + ": " + err_text(err));
    if (auto r = attach_classid_filter(side.ifindex, tc_podcls_, index + 1); !r)
      return make_error("attach tc ingress on " + side.ifname + " in " + side.netns_path + ": " + r.error().message);
    return 0;
  });
  if (!filtered) {
    const vigil_pod_side_entry free{};
    bpf_map__update_elem(skel_->maps.vigil_pod_sides, &index, sizeof(index), &free, sizeof(free), BPF_ANY);
    error = filtered.error().message;
    return false;
  }
  clsact_pods_[ifindex] = ClsactPodSide{side, index};
  return true;
}

void Datapath::unfilter_pod_side(uint32_t ifindex) {
  auto it = clsact_pods_.find(ifindex);
  if (it == clsact_pods_.end()) return;
  const PodSide& side = it->second.side;
  // Gone with the pod's namespace, usually; else taken off its end.
  (void)run_in_netns(side.netns_path, [&]() -> Result<int> {
    ExpectedFailure quiet;
    char name[IF_NAMESIZE] = {};
    if (!if_indextoname(side.ifindex, name) || side.ifname != name) return 0;
    DECLARE_LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = static_cast<int>(side.ifindex), .attach_point = BPF_TC_INGRESS);
    DECLARE_LIBBPF_OPTS(bpf_tc_opts, opts, .handle = kClsactHandle, .priority = kClsactPref);
    bpf_tc_detach(&hook, &opts);
    return 0;
  });
  const __u32 index = it->second.index;
  const vigil_pod_side_entry free{};
  bpf_map__update_elem(skel_->maps.vigil_pod_sides, &index, sizeof(index), &free, sizeof(free), BPF_ANY);
  clsact_pods_.erase(it);
}

void Datapath::clear_pod_side(const PodSide& side) {
  for (const auto& [ifindex, ours] : clsact_pods_)
    if (ours.side.netns_inode == side.netns_inode && ours.side.ifindex == side.ifindex) return;
  (void)run_in_netns(side.netns_path, [&]() -> Result<int> {
    char name[IF_NAMESIZE] = {};
    if (if_indextoname(side.ifindex, name) && side.ifname == name) remove_clsact_filter(side.ifindex, BPF_TC_INGRESS);
    return 0;
  });
}

void Datapath::renew_pod_side_path(uint32_t ifindex, const std::string& netns_path) {
  if (auto it = clsact_pods_.find(ifindex); it != clsact_pods_.end()) it->second.side.netns_path = netns_path;
}

std::string Datapath::other_tc_program(uint32_t ifindex) const {
  // clsact filters, where the device has a clsact qdisc (one dump for all devices a second).
  const auto now = std::chrono::steady_clock::now();
  if (now - clsact_devices_at_ > std::chrono::seconds(1)) {
    auto devices = ingress_qdisc_devices("clsact");
    clsact_devices_ = devices ? std::move(*devices) : std::vector<uint32_t>{};
    clsact_devices_at_ = now;
  }
  // Read by keep_clsact_first in its last check (every 2 s, in the tick of auto's): not read again.
  if (auto seen = clsact_others_.find(ifindex);
      seen != clsact_others_.end() && now - seen->second.first < std::chrono::seconds(2)) {
    if (!seen->second.second.empty()) return seen->second.second;
  } else if (std::binary_search(clsact_devices_.begin(), clsact_devices_.end(), ifindex)) {
    if (std::string other = other_clsact_filter(ifindex); !other.empty()) return other;
  }
  for (int type : {kTcxIngress, kTcxEgress}) {
    __u32 ids[64] = {}, count = 64, flags = 0;
    if (bpf_prog_query(static_cast<int>(ifindex), static_cast<bpf_attach_type>(type), 0, &flags, ids, &count) &&
        errno != ENOSPC)
      continue;
    for (__u32 i = 0; i < std::min<__u32>(count, 64); ++i) {
      if (ids[i] == tc_ids_[0] || ids[i] == tc_ids_[1]) continue;  // ours: no name to read (3 system calls)
      const std::string name = program_name(ids[i]);
      if (!name.starts_with("vigil_tc")) return name.empty() ? "id " + std::to_string(ids[i]) : name;
    }
  }
  return "";
}

bool Datapath::ingress_qdisc_only(uint32_t ifindex) const {
  if (!tcx_unsupported_ && kernel_at_least(6, 6)) return false;
  // One dump for all devices a second: asked for each pod at attach and every 2 s.
  const auto now = std::chrono::steady_clock::now();
  if (now - ingress_devices_at_ > std::chrono::seconds(1)) {
    auto devices = ingress_qdisc_devices("ingress");
    ingress_devices_ = devices ? std::move(*devices) : std::vector<uint32_t>{};
    ingress_devices_at_ = now;
  }
  return std::binary_search(ingress_devices_.begin(), ingress_devices_.end(), ifindex);
}

Result<void> Datapath::attach_tc(uint32_t ifindex, const std::string& ifname, uint32_t pod_id, const PodSide* pod_side) {
  if (auto r = claim_slot(ifindex, pod_id); !r) return r;
  // Attached before (the device may have been replaced since): start over on this device.
  if (attached_.count(ifindex)) detach_tc(ifindex);
  if (!tcx_unsupported_) {
    // First on both hooks, so that no other program on the interface ends the chain before
    // them: they see every packet the pod sends and every packet sent to it, before anything
    // else there decides about it (a drop then shows as a drop, with its reason).
    DECLARE_LIBBPF_OPTS(bpf_link_create_opts, front, .flags = kTcxFront);
    const int in = bpf_link_create(bpf_program__fd(tc_in_), static_cast<int>(ifindex),
                                   static_cast<bpf_attach_type>(kTcxIngress), &front);
    const int in_err = in < 0 ? errno : 0;
    std::string pod_error = pod_side && !tc_pod_ ? "the pod-side program is not loaded (DatapathOptions::one_tc_program off)" : "";
    const int pod = in >= 0 && pod_side && tc_pod_ ? link_pod_side(ifindex, *pod_side, pod_error) : -1;
    const int out = in < 0 || pod >= 0 ? -1
                                        : bpf_link_create(bpf_program__fd(tc_out_), static_cast<int>(ifindex),
                                                          static_cast<bpf_attach_type>(kTcxEgress), &front);
    const int out_err = out < 0 ? errno : 0;
    if (in >= 0 && (out >= 0 || pod >= 0)) {
      // A filter an earlier agent (or an older Vigil) left on the device would count twice.
      remove_clsact_filters(ifindex);
      if (!pod_error.empty())
        spdlog::warn("interface {}: counting what the pod receives on its own end ({}) failed: {}; counted at {}'s "
                     "egress instead, where packets a CNI puts straight into the pod's namespace do not pass",
                     ifname, pod_side->ifname, pod_error, ifname);
      tcx_links_[ifindex] = pod >= 0 ? TcxLinks{in, out, pod, pod_side->netns_inode, pod_side->ifindex} : TcxLinks{in, out};
      attached_[ifindex] = ifname;
      return {};
    }
    if (in >= 0) close(in);
    const int err = in_err ? in_err : out_err;
    // A kernel without TCX refuses the attach type; anything else is a real failure.
    if (err != EINVAL && err != EOPNOTSUPP) return make_error("attach tcx on " + ifname + ": " + std::strerror(err));
    tcx_unsupported_ = true;
    spdlog::info("this kernel has no TCX (Linux 6.6+): attaching to pod interfaces with clsact and cls_bpf");
  }
  DECLARE_LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = static_cast<int>(ifindex),
                      .attach_point = static_cast<bpf_tc_attach_point>(BPF_TC_INGRESS | BPF_TC_EGRESS));
  int err = 0;
  {
    ExpectedFailure quiet;  // the qdisc there already (EEXIST): the kernel says so; other errors are returned
    err = bpf_tc_hook_create(&hook);
  }
  if (err && err != -EEXIST) return make_error("create clsact qdisc on " + ifname + ": " + err_text(err));
  // A plain ingress qdisc there instead (the CNI bandwidth plugin's, for a pod's egress limit)
  // takes the clsact qdisc's place: a filter for its egress hook would go on its one hook, the
  // ingress, and count what the pod sends twice and what it receives never. What the pod
  // receives is then counted on its own end, or not attached at all.
  bool ingress_only = false;
  if (err == -EEXIST) {
    auto plain = ingress_qdisc_devices("ingress");
    ingress_only = plain && std::binary_search(plain->begin(), plain->end(), ifindex);
  }
  if (ingress_only && !pod_side)
    return make_error(ifname + " has an ingress qdisc, not clsact, where what the pod receives cannot be counted; it can "
                      "be on the pod's own end (metrics.ingress_hook)");
  if (int e = attach_clsact_filter(ifindex, BPF_TC_INGRESS, tc_in_)) {
    remove_clsact_filters(ifindex);
    return make_error("attach tc ingress on " + ifname + ": " + err_text(e));
  }
  // What the pod receives: on its own end where asked (the host-side egress filter then left
  // off), else, or when that fails, at the host side's egress.
  if (pod_side) {
    std::string pod_error = tc_podcls_ ? "" : "the pod-side filter program is not loaded (this kernel has TCX, which refused)";
    if (tc_podcls_ && filter_pod_side(ifindex, *pod_side, pod_error)) {
      // An egress filter an agent killed before it could take it off left here would run on.
      // (An ingress qdisc has one filter list for both: that would take the ingress filter.)
      if (!ingress_only) remove_clsact_filter(ifindex, BPF_TC_EGRESS);
      attached_[ifindex] = ifname;
      return {};
    }
    if (ingress_only) {
      remove_clsact_filters(ifindex);
      return make_error("counting what the pod receives on its own end (" + pod_side->ifname + "), as " + ifname +
                        " has an ingress qdisc, not clsact: " + pod_error);
    }
    spdlog::warn("interface {}: counting what the pod receives on its own end ({}) failed: {}; counted at {}'s "
                 "egress instead, where packets a CNI puts straight into the pod's namespace do not pass",
                 ifname, pod_side->ifname, pod_error, ifname);
  }
  if (int e = attach_clsact_filter(ifindex, BPF_TC_EGRESS, tc_out_)) {
    remove_clsact_filters(ifindex);
    return make_error("attach tc egress on " + ifname + ": " + err_text(e));
  }
  attached_[ifindex] = ifname;
  return {};
}

void Datapath::detach_tc(uint32_t ifindex) {
  if (auto it = tcx_links_.find(ifindex); it != tcx_links_.end()) {
    // Closing a TCX link detaches its program (the device may already be gone, with the pod's
    // namespace and its end).
    for (int fd : {it->second.in, it->second.out, it->second.pod})
      if (fd >= 0) close(fd);
    if (it->second.pod >= 0) forget_pod_side(it->second.pod_netns_inode, it->second.pod_ifindex, ifindex);
    tcx_links_.erase(it);
  } else {
    unfilter_pod_side(ifindex);
    remove_clsact_filters(ifindex);
    clsact_others_.erase(ifindex);
  }
  attached_.erase(ifindex);
}

void Datapath::keep_tc_first(std::chrono::steady_clock::duration every) {
  const auto now = std::chrono::steady_clock::now();
  if (attached_.empty() || now < next_order_check_) return;
  next_order_check_ = now + every;
  if (tcx_unsupported_) keep_clsact_first();
  for (auto& [ifindex, links] : tcx_links_) {
    for (int hook = 0; hook < 2; ++hook) {
      const bpf_program* ours = hook == 0 ? tc_in_ : tc_out_;
      const int type = hook == 0 ? kTcxIngress : kTcxEgress;
      int& link = hook == 0 ? links.in : links.out;
      if (link == kLinkLost) {  // both tries of an earlier check failed: try again
        DECLARE_LIBBPF_OPTS(bpf_link_create_opts, front, .flags = kTcxFront);
        const int fd = bpf_link_create(bpf_program__fd(ours), static_cast<int>(ifindex), static_cast<bpf_attach_type>(type), &front);
        if (fd >= 0) {
          link = fd;
          ++tc_relinked_[hook];
          spdlog::warn("interface {}: Vigil's program is on TCX {} again", attached_[ifindex], hook == 0 ? "ingress" : "egress");
        }
        continue;
      }
      if (link < 0) continue;  // the egress hook, left off where the pod's own end counts
      __u32 ids[64] = {}, count = 64, flags = 0;
      if (bpf_prog_query(static_cast<int>(ifindex), static_cast<bpf_attach_type>(type), 0, &flags, ids, &count) &&
          errno != ENOSPC)
        continue;  // the interface is going away: refresh() notices
      if (count == 0 || ids[0] == tc_ids_[hook]) continue;
      const std::string first = program_name(ids[0]);
      if (first.starts_with("vigil_tc")) continue;  // another Vigil's (an agent being replaced): it passes packets on
      // A program is on a hook once at most: the old link goes first, then the new one is made.
      close(link);
      DECLARE_LIBBPF_OPTS(bpf_link_create_opts, front, .flags = kTcxFront);
      link = bpf_link_create(bpf_program__fd(ours), static_cast<int>(ifindex), static_cast<bpf_attach_type>(type), &front);
      const char* hook_name = hook == 0 ? "ingress" : "egress";
      const std::string& ifname = attached_[ifindex];
      if (link < 0) {
        const int err = errno;
        // Back where it was rather than nowhere.
        link = bpf_link_create(bpf_program__fd(ours), static_cast<int>(ifindex), static_cast<bpf_attach_type>(type), nullptr);
        if (link < 0) link = kLinkLost;
        spdlog::error("interface {}: program {} (id {}) runs before Vigil's at TCX {} and may hide packets from it; "
                      "moving Vigil's to the front failed: {}{}", ifname, first, ids[0], hook_name, err_text(err),
                      link < 0 ? "; Vigil's program is off that hook until the next check tries again" : "");
        continue;
      }
      ++tc_relinked_[hook];
      spdlog::warn("interface {}: program {} (id {}) was attached before Vigil's at TCX {}, where its verdict would "
                   "hide packets from Vigil; Vigil's is at the front again", ifname, first, ids[0], hook_name);
    }
  }
}

void Datapath::keep_clsact_first() {
  const auto now = std::chrono::steady_clock::now();
  clsact_others_.clear();
  for (const auto& [ifindex, ifname] : attached_) {
    if (tcx_links_.count(ifindex)) continue;
    // No egress filter of Vigil's where the pod's own end counts what it receives.
    const int hooks = clsact_pods_.count(ifindex) ? 1 : 2;
    std::string other;
    bool both_read = hooks == 2;
    for (int hook = 0; hook < hooks; ++hook) {
      auto filters = clsact_filters(ifindex, hook == 0);
      if (!filters) both_read = false;
      if (filters && other.empty()) other = other_filter(*filters);
      // None (the interface is going away: refresh() notices), or Vigil's first.
      if (!filters || filters->empty() ||
          (filters->front().handle == kClsactHandle && filters->front().pref == kClsactPref))
        continue;
      const ClsactFilter& f = filters->front();
      const std::string who = (f.name.empty() ? "a filter" : "filter " + f.name) + " (pref " + std::to_string(f.pref) +
                              ", handle " + fmt::format("{:#x}", f.handle) + ")";
      const char* hook_name = hook == 0 ? "ingress" : "egress";
      const auto point = hook == 0 ? BPF_TC_INGRESS : BPF_TC_EGRESS;
      {
        ExpectedFailure quiet;  // gone with the device in between
        DECLARE_LIBBPF_OPTS(bpf_tc_hook, at, .ifindex = static_cast<int>(ifindex), .attach_point = point);
        DECLARE_LIBBPF_OPTS(bpf_tc_opts, ours, .handle = kClsactHandle, .priority = kClsactPref);
        bpf_tc_detach(&at, &ours);
      }
      // Added again, it is the last added of pref 1: the first to run.
      if (int e = attach_clsact_filter(ifindex, point, hook == 0 ? tc_in_ : tc_out_)) {
        spdlog::error("interface {}: {} runs before Vigil's at clsact {} and may hide packets from it; adding Vigil's "
                      "filter again failed: {}; tried again at the next check", ifname, who, hook_name, err_text(e));
        continue;
      }
      ++tc_relinked_[hook];
      spdlog::warn("interface {}: {} ran before Vigil's at clsact {} (added after it at the same pref), where its "
                   "verdict would hide packets from Vigil; Vigil's runs first again", ifname, who, hook_name);
    }
    // What other_tc_program (ingress_hook: auto) asks next, where both hooks were read.
    if (both_read) clsact_others_[ifindex] = {now, std::move(other)};
  }
}

Result<void> Datapath::set_pod(uint32_t pod_id, uint32_t netns_inode, const std::vector<std::string>& ips) {
  if (netns_inode) {
    if (bpf_map__update_elem(skel_->maps.vigil_pod_netns, &netns_inode, sizeof(netns_inode), &pod_id, sizeof(pod_id), BPF_ANY))
      return make_error("update map vigil_pod_netns: " + err_text(errno));
  }
  for (const auto& ip : ips) {
    vigil_ip_key key{};
    if (!ip_to_key(ip, key.addr)) continue;
    if (bpf_map__update_elem(skel_->maps.vigil_pod_ip, &key, sizeof(key), &pod_id, sizeof(pod_id), BPF_ANY))
      return make_error("update map vigil_pod_ip for " + ip + ": " + err_text(errno));
  }
  return {};
}

void Datapath::forget_pod(uint32_t pod_id, uint32_t netns_inode, const std::vector<std::string>& ips) {
  // Only what is still this pod's: a pod that came meanwhile may have its namespace's inode
  // (the kernel reuses them) or one of its addresses (Kubernetes does) already, and keeps them.
  auto forget = [&](bpf_map* map, const void* key, size_t size) {
    __u32 owner = 0;
    if (bpf_map__lookup_elem(map, key, size, &owner, sizeof(owner), 0) == 0 && owner == pod_id)
      bpf_map__delete_elem(map, key, size, 0);
  };
  if (netns_inode) forget(skel_->maps.vigil_pod_netns, &netns_inode, sizeof(netns_inode));
  for (const auto& ip : ips) {
    vigil_ip_key key{};
    if (ip_to_key(ip, key.addr)) forget(skel_->maps.vigil_pod_ip, &key, sizeof(key));
  }
}

std::optional<uint32_t> Datapath::pod_of_netns(uint32_t netns_inode) const {
  __u32 pod = 0;
  if (bpf_map__lookup_elem(skel_->maps.vigil_pod_netns, &netns_inode, sizeof(netns_inode), &pod, sizeof(pod), 0)) return {};
  return pod;
}

std::optional<uint32_t> Datapath::pod_of_ip(const std::string& ip) const {
  vigil_ip_key key{};
  __u32 pod = 0;
  if (!ip_to_key(ip, key.addr) || bpf_map__lookup_elem(skel_->maps.vigil_pod_ip, &key, sizeof(key), &pod, sizeof(pod), 0))
    return {};
  return pod;
}

Result<void> Datapath::set_remote_context(uint32_t ifindex, uint32_t pod_id, uint32_t max_peers) {
  auto it = slot_of_.find(ifindex);
  if (it == slot_of_.end()) return make_error("remote context: interface " + std::to_string(ifindex) + " has no slot");
  if (max_peers) remote_max_of_[ifindex] = max_peers;
  else remote_max_of_.erase(ifindex);
  if (auto r = write_slot(slot_entry_of(ifindex)); !r) return r;
  if (max_peers == 0) {
    bpf_map__delete_elem(skel_->maps.vigil_remote_pod, &pod_id, sizeof(pod_id), 0);
    return {};
  }
  if (bpf_map__update_elem(skel_->maps.vigil_remote_pod, &pod_id, sizeof(pod_id), &ifindex, sizeof(ifindex), BPF_ANY))
    return make_error("update map vigil_remote_pod: " + err_text(errno));
  // The pod's "other" entries exist from the start: when the node runs out of peer entries
  // (remote_context.max_keys), the programs count new peers there instead of losing them.
  const int keys_fd = bpf_map__fd(skel_->maps.vigil_remote), free_fd = bpf_map__fd(skel_->maps.vigil_remote_free);
  for (__u8 dir = 0; dir < VIGIL_DIR_MAX; ++dir) {
    vigil_remote_key other{};
    other.ifindex = ifindex;
    other.direction = dir;
    __u32 index = 0;
    if (bpf_map_lookup_elem(keys_fd, &other, &index) == 0) continue;
    if (bpf_map_lookup_and_delete_elem(free_fd, nullptr, &index) != 0)
      return make_error("remote context: all remote_context.max_keys (" + std::to_string(remote_keys_) +
                        ") peer entries are in use; raise it");
    if (bpf_map_update_elem(keys_fd, &other, &index, BPF_NOEXIST) != 0) {
      const int e = errno;
      bpf_map_update_elem(free_fd, nullptr, &index, BPF_ANY);  // given back
      if (e != EEXIST) return make_error("update map vigil_remote: " + err_text(e));
    }
  }
  return {};
}

Result<void> Datapath::set_capture(uint32_t ifindex, uint32_t snaplen) {
  if (!slot_of_.count(ifindex))
    return make_error("capture: interface " + std::to_string(ifindex) + " has no slot (not attached)");
  if (snaplen > VIGIL_CAPTURE_MAX_SNAPLEN)
    return make_error("capture on interface " + std::to_string(ifindex) + ": snaplen " + std::to_string(snaplen) +
                      " out of range (1 to " + std::to_string(VIGIL_CAPTURE_MAX_SNAPLEN) + ", 0 = off)");
  // Only the snaplen changes: the entry is read where the kernel has it and written back with
  // the same generation and the kernel's remote_used (a peer the kernel reserves between the
  // read and the write is not lost from the count for long: the write is immediate).
  __u32 index = ifindex & (VIGIL_SLOT_TABLE - 1);
  vigil_slot entry{};
  bool in_table = bpf_map__lookup_elem(skel_->maps.vigil_slots, &index, sizeof(index), &entry, sizeof(entry), 0) == 0 &&
                  entry.ifindex == ifindex;
  if (!in_table &&
      bpf_map__lookup_elem(skel_->maps.vigil_slots_spill, &ifindex, sizeof(ifindex), &entry, sizeof(entry), 0) != 0)
    return make_error("capture: slot entry of interface " + std::to_string(ifindex) + " not found: " + err_text(errno));
  entry.capture_snaplen = snaplen;
  int err = in_table ? bpf_map__update_elem(skel_->maps.vigil_slots, &index, sizeof(index), &entry, sizeof(entry), BPF_EXIST)
                     : bpf_map__update_elem(skel_->maps.vigil_slots_spill, &ifindex, sizeof(ifindex), &entry, sizeof(entry), BPF_EXIST);
  if (err) return make_error("capture: update slot of interface " + std::to_string(ifindex) + ": " + err_text(errno));
  if (snaplen) capture_of_[ifindex] = snaplen;
  else capture_of_.erase(ifindex);
  capture_activity_->set(capture_of_.size());
  return {};
}

uint32_t Datapath::capture_snaplen(uint32_t ifindex) const {
  auto it = capture_of_.find(ifindex);
  return it != capture_of_.end() ? it->second : 0;
}

int Datapath::capture_ring_fd() const { return skel_ ? bpf_map__fd(skel_->maps.vigil_capture_rb) : -1; }
int Datapath::capture_lost_fd() const { return skel_ ? bpf_map__fd(skel_->maps.vigil_capture_lost) : -1; }
int Datapath::errors_fd() const { return skel_ ? bpf_map__fd(skel_->maps.vigil_errors) : -1; }

void Datapath::forget_counters(uint32_t ifindex, uint32_t pod_id) {
  bpf_map__delete_elem(skel_->maps.vigil_remote_pod, &pod_id, sizeof(pod_id), 0);
  release_slot(ifindex);
  // The slot is released (the TC programs no longer count for it, and its next owner gets a
  // new generation, so no CPU's remote_cache still leads to these indices): each peer's
  // key goes, its counters are zeroed and its index is given back.
  std::vector<std::pair<vigil_remote_key, __u32>> remote_doomed;
  for_each_entry<vigil_remote_key, __u32>(bpf_map__fd(skel_->maps.vigil_remote), remote_keys_,
                                          [&](const vigil_remote_key& key, __u32 index) {
                                            if (key.ifindex == ifindex) remote_doomed.emplace_back(key, index);
                                          });
  for (const auto& [key, index] : remote_doomed) {
    if (bpf_map__delete_elem(skel_->maps.vigil_remote, &key, sizeof(key), 0) != 0) continue;
    if (index >= remote_keys_) continue;
    remote_values_->zero(index);
    bpf_map_update_elem(bpf_map__fd(skel_->maps.vigil_remote_free), nullptr, &index, BPF_ANY);
  }
  bpf_map__delete_elem(skel_->maps.vigil_tcp, &pod_id, sizeof(pod_id), 0);
  std::vector<vigil_drop_key> doomed;
  for_each_percpu<vigil_drop_key, vigil_drop_value>(
      bpf_map__fd(skel_->maps.vigil_drops), VIGIL_MAX_DROP_KEYS,
      [&](const vigil_drop_key& key, const std::vector<vigil_drop_value>&) {
        if (key.pod_id == pod_id) doomed.push_back(key);
      });
  for (const auto& key : doomed) bpf_map__delete_elem(skel_->maps.vigil_drops, &key, sizeof(key), 0);
  // DNS counts are the interface's: a pod attached to it again (its veth renamed, say) counts
  // from zero, as it does in every other map, and its series go on from there.
  std::vector<vigil_dns_key> dns_doomed;
  for_each_percpu<vigil_dns_key, __u64>(bpf_map__fd(skel_->maps.vigil_dns_counts),
                                        bpf_map__max_entries(skel_->maps.vigil_dns_counts),
                                        [&](const vigil_dns_key& key, const std::vector<__u64>&) {
                                          if (key.ifindex == ifindex) dns_doomed.push_back(key);
                                        });
  for (const auto& key : dns_doomed) bpf_map__delete_elem(skel_->maps.vigil_dns_counts, &key, sizeof(key), 0);
  bpf_map__delete_elem(skel_->maps.vigil_dns_latency, &ifindex, sizeof(ifindex), 0);
}

Result<void> Datapath::watch_api_server(const std::vector<ApiServerAddress>& servers, const std::string& cgroup_path,
                                        uint64_t no_response_ns) {
  if (servers.size() > VIGIL_API_MAX_SERVERS)
    return make_error("apiserver.addresses: at most " + std::to_string(VIGIL_API_MAX_SERVERS) + " addresses");
  for (const auto& a : servers) {
    vigil_api_server_key key{};
    if (!ip_to_key(a.ip, key.addr)) return make_error("apiserver.addresses: not an IP address: " + a.ip);
    key.port = a.port;
    __u64 limit = no_response_ns;
    if (bpf_map__update_elem(skel_->maps.vigil_api_servers, &key, sizeof(key), &limit, sizeof(limit), BPF_ANY))
      return make_error("update map vigil_api_servers: " + err_text(errno));
  }
  if (!api_links_.empty()) return {};
  int fd = open(cgroup_path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return make_error("open cgroup v2 directory " + cgroup_path + ": " + err_text(errno));
  bpf_link* link = bpf_program__attach_cgroup(skel_->progs.vigil_api_sockops, fd);
  const int e = errno;
  close(fd);
  if (!link) return make_error("attach sock_ops vigil_api_sockops to cgroup " + cgroup_path + ": " + err_text(e));
  api_links_.push_back(link);
  return {};
}

Datapath::MapRef Datapath::map(const char* name) const {
  bpf_map* m = bpf_object__find_map_by_name(skel_->obj, name);
  if (!m) return {};
  return MapRef{bpf_map__fd(m), bpf_map__max_entries(m)};
}

bool Datapath::read_traffic(uint32_t slot, std::vector<vigil_traffic_value>& per_cpu) const {
  return traffic_ && traffic_->read(slot, per_cpu);
}

bool Datapath::read_remote(uint32_t index, std::vector<vigil_remote_value>& per_cpu) const {
  return remote_values_ && remote_values_->read(index, per_cpu);
}

std::vector<Datapath::ProgramStats> Datapath::program_stats() const {
  std::vector<ProgramStats> out;
  bpf_program* prog = nullptr;
  bpf_object__for_each_program(prog, skel_->obj) {
    auto info = prog_info(bpf_program__fd(prog));
    if (!info) continue;
    out.push_back(ProgramStats{bpf_program__name(prog), info->run_cnt, info->run_time_ns, info->recursion_misses});
  }
  return out;
}

}  // namespace vigil
