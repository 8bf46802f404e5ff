// The kernel's own network statistics, per pod (each pod's network namespace) and for the node
// (the agent's namespace): the SNMP counters `nstat` shows (metrics.netstat.statistics), the
// sockets by TCP state that `ss` lists (metrics.netstat.sockets: the node's by default), the
// UDP sockets, the interfaces' error and drop counters, the conntrack table and (the node's) the
// neighbour tables. Read every metrics.netstat.interval, not every tick (docs/benchmarks.md, "Netstat").
#include <spdlog/spdlog.h>

#include <chrono>
#include <map>
#include <set>
#include <unordered_set>

#include "engine/families/family.h"
#include "engine/netns.h"
#include "engine/netns_stats.h"

namespace vigil {
namespace {

class NetstatFamily : public Family {
 public:
  explicit NetstatFamily(const NetstatConfig& config)
      : interval_(std::chrono::duration_cast<std::chrono::steady_clock::duration>(
            std::chrono::duration<double>(config.interval_seconds))),
        wanted_(config.statistics.begin(), config.statistics.end()),
        node_sockets_(config.sockets != "none"),
        pod_sockets_(config.sockets == "all"),
        conntrack_by_pod_above_(config.conntrack_by_pod_above) {}

  const char* name() const override { return "netstat"; }

  void describe(SeriesStore& s) const override {
    s.describe("vigil_netstat_total",
               "The kernel's SNMP counters of a pod's network namespace, as nstat shows them (metrics.netstat.statistics; "
               "a series appears once its value is not zero).",
               SeriesKind::Counter);
    s.describe("vigil_node_netstat_total", "The same SNMP counters for the node's own network namespace.",
               SeriesKind::Counter);
    s.describe("vigil_tcp_sockets", "TCP sockets (IPv4 and IPv6) in a pod's network namespace, by state.",
               SeriesKind::Gauge);
    s.describe("vigil_node_tcp_sockets", "TCP sockets (IPv4 and IPv6) in the node's network namespace, by state.",
               SeriesKind::Gauge);
    s.describe("vigil_udp_sockets", "UDP sockets (IPv4 and IPv6) in a pod's network namespace.", SeriesKind::Gauge);
    s.describe("vigil_node_udp_sockets", "UDP sockets (IPv4 and IPv6) in the node's network namespace.", SeriesKind::Gauge);
    s.describe("vigil_tcp_sockets_in_use",
               "TCP sockets (IPv4 and IPv6) of a pod's network namespace in any state but TIME_WAIT, listeners included, "
               "as /proc/net/sockstat counts them (no socket dump: always on).",
               SeriesKind::Gauge);
    s.describe("vigil_node_tcp_sockets_in_use", "The same for the node's own network namespace.", SeriesKind::Gauge);
    s.describe("vigil_tcp_sockets_time_wait",
               "TCP sockets (IPv4 and IPv6) of a pod's network namespace in TIME_WAIT, and closed in FIN_WAIT2 (kept the same "
               "way), as /proc/net/sockstat counts them.",
               SeriesKind::Gauge);
    s.describe("vigil_node_tcp_sockets_time_wait", "The same for the node's own network namespace.", SeriesKind::Gauge);
    s.describe("vigil_interface_stats_total",
               "Error and drop counters of the interfaces in a pod's network namespace, as `ip -s -s link` shows them "
               "(a series appears once its value is not zero).",
               SeriesKind::Counter);
    s.describe("vigil_node_interface_stats_total",
               "Error and drop counters of the node's interfaces (loopback left out), as `ip -s -s link` shows them.",
               SeriesKind::Counter);
    s.describe("vigil_node_interface_packets_total",
               "Packets received (ingress) and sent (egress) by the node's interfaces as the kernel counts them, host "
               "traffic included; loopback and veths (each pod's, counted per pod) left out.",
               SeriesKind::Counter);
    s.describe("vigil_node_interface_bytes_total",
               "Bytes received (ingress) and sent (egress) by the node's interfaces as the kernel counts them, host "
               "traffic included; loopback and veths (each pod's, counted per pod) left out.",
               SeriesKind::Counter);
    s.describe("vigil_conntrack_entries",
               "Connections in the conntrack table of a pod's own network namespace (a series appears once the pod's "
               "netfilter rules use conntrack, a service mesh's redirect say; the node's table is apart).",
               SeriesKind::Gauge);
    s.describe("vigil_node_conntrack_entries",
               "Connections in the conntrack table of the node's network namespace (kube-proxy's NAT), as "
               "nf_conntrack_count shows it.",
               SeriesKind::Gauge);
    s.describe("vigil_node_conntrack_entries_limit",
               "nf_conntrack_max: how many connections a network namespace's conntrack table may hold before new ones "
               "are dropped.",
               SeriesKind::Gauge);
    s.describe("vigil_conntrack_stats_total",
               "Conntrack events of a pod's own network namespace, as `conntrack -S` names them (drop, early_drop, "
               "insert_failed, invalid, ...; a series appears once its value is not zero).",
               SeriesKind::Counter);
    s.describe("vigil_node_conntrack_stats_total",
               "Conntrack events of the node's network namespace, as `conntrack -S` names them: drop and early_drop "
               "(the table was full), insert_failed (a clash of two packets of a new connection: the lost DNS "
               "query of many 5 s lookups), invalid, ... (a series appears once its value is not zero).",
               SeriesKind::Counter);
    s.describe("vigil_node_conntrack_pod_entries",
               "Entries of the node's conntrack table to or from a pod (its connections, and those to it through a "
               "Service), counted while the table holds at least metrics.netstat.conntrack_by_pod of "
               "nf_conntrack_max (half by default): who fills it.",
               SeriesKind::Gauge);
    s.describe("vigil_node_neighbor_entries",
               "Entries in the node's neighbour table (ARP for ipv4, NDISC for ipv6; one table for all network "
               "namespaces), permanent ones included.",
               SeriesKind::Gauge);
    s.describe("vigil_node_neighbor_entries_limit",
               "gc_thresh3: the entries (permanent ones aside) a neighbour table may hold; past it, new neighbours "
               "fail (\"neighbour table overflow\") and packets to them are dropped.",
               SeriesKind::Gauge);
    s.describe("vigil_node_neighbor_stats_total",
               "Neighbour table events of the node, by family and statistic as /proc/net/stat/arp_cache names them: "
               "table_fulls, forced_gc_runs, res_failed (resolutions that got no answer), unresolved_discards, ... "
               "(a series appears once its value is not zero).",
               SeriesKind::Counter);
    s.describe(kSeriesReadTimestamp,
               "When the agent last read the kernel figures behind a metric it reads on its own schedule "
               "(metrics.netstat.interval; the node's conntrack entries by pod at most every 30 s), in seconds since "
               "the Unix epoch: their values hold between reads.",
               SeriesKind::Gauge);
    s.describe("vigil_netstat_read_errors_total",
               "Reads of a pod's (or the node's) network statistics that failed; the pod's last values stay.",
               SeriesKind::Counter);
  }

  void read(const FamilyContext& ctx) override {
    const auto now = std::chrono::steady_clock::now();
    if (now < next_read_ && !path_renewed(ctx)) return;
    next_read_ = now + interval_;
    gone_paths_.clear();

    std::vector<NetnsTarget> targets{NetnsTarget{.path = "", .inode = 0, .tcp_states = node_sockets_}};  // the node first
    std::vector<const WatchedPod*> pods{nullptr};
    // The node's conntrack entries by pod address: address i is pod owner[i]'s.
    std::vector<const WatchedPod*> owner;
    targets[0].conntrack_by_address_above = conntrack_by_pod_above_;
    for (const auto& [key, pod] : ctx.pods.pods()) {
      if (!pod.attached || pod.iface.netns_path.empty()) continue;
      // The pod manager keeps the path naming the namespace (keep_netns_path).
      targets.push_back({.path = pod.iface.netns_path, .inode = pod.iface.netns_inode, .tcp_states = pod_sockets_});
      pods.push_back(&pod);
      if (conntrack_by_pod_above_ > 1 || now < next_conntrack_count_) continue;
      for (const auto& ip : pod.iface.ips)
        if (auto a = parse_address16(ip)) {
          targets[0].conntrack_addresses.push_back(*a);
          owner.push_back(&pod);
        }
    }
    const double read_time = std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
    auto samples = read_netns_samples(targets);
    // Rules take these counters' rates between reads and hold them in between (Sample::read_time).
    for (const char* name : {"vigil_netstat_total", "vigil_node_netstat_total", "vigil_interface_stats_total",
                             "vigil_node_interface_stats_total", "vigil_node_interface_packets_total",
                             "vigil_node_interface_bytes_total", "vigil_conntrack_stats_total",
                             "vigil_node_conntrack_stats_total", "vigil_node_neighbor_stats_total"})
    {
      ctx.store.set_read_time(name, read_time);
      ctx.store.set(kSeriesReadTimestamp, {{"metric", name}}, read_time);
    }

    std::map<uint32_t, State> kept;
    for (size_t i = 0; i < samples.size(); ++i) {
      const WatchedPod* pod = pods[i];
      const uint32_t id = pod ? pod->id : 0;
      State& state = kept[id];
      if (auto it = states_.find(id); it != states_.end()) state = std::move(it->second);
      const std::string who = pod ? "pod " + pod->spec.key() : "the node";
      if (!samples[i] && netns_gone(targets[i])) {
        // Deleted since the tick resolved the pod (the pod manager lets it go on its next look),
        // or found through a process that exited since then: read again as soon as the pod
        // manager renews its path, not an interval later.
        spdlog::debug("netstat: {} is gone: {}", who, samples[i].error().message);
        if (pod) gone_paths_[pod->id] = targets[i].path;
        continue;
      }
      if (!samples[i]) {
        ++read_errors_;
        if (state.last_error != samples[i].error().message)
          spdlog::warn("netstat: cannot read the network statistics of {}: {}", who, samples[i].error().message);
        state.last_error = samples[i].error().message;
        continue;
      }
      if (!state.last_error.empty()) spdlog::info("netstat: reading the network statistics of {} again", who);
      state.last_error.clear();
      if (!samples[i]->tcp_states_error.empty()) {
        // The counters stand; only the sockets by state are missing (a kernel without sock_diag).
        ++read_errors_;
        if (state.last_sockets_error != samples[i]->tcp_states_error)
          spdlog::warn("netstat: cannot count the TCP sockets of {}: {}", who, samples[i]->tcp_states_error);
      }
      state.last_sockets_error = samples[i]->tcp_states_error;
      emit(ctx.store, pod, *samples[i], state);
      if (!pod) emit_conntrack_by_pod(ctx.store, *samples[i], owner, state, read_time);
    }
    states_ = std::move(kept);
    ctx.store.set("vigil_netstat_read_errors_total", {}, static_cast<double>(read_errors_));
  }

 private:
  struct State {
    uint32_t states_shown = 0;  // TCP states with a series already (a gauge must fall back to 0)
    std::string last_error;
    std::string last_sockets_error;
    std::set<std::string> interfaces;  // the node's, at the last read
    bool read_before = false;  // a read of it has succeeded before
    bool conntrack_shown = false;  // its conntrack table has been in use: it has an entries series
    bool conntrack_by_pod_shown = false;  // the node's: entries by pod were counted at the last read
    std::string last_conntrack_error;
  };

  Labels labels(const WatchedPod* pod, std::initializer_list<std::pair<std::string, std::string>> extra) const {
    if (pod) return pod_labels(*pod, extra);
    return Labels(extra.begin(), extra.end());
  }

  void emit(SeriesStore& s, const WatchedPod* pod, const NetnsSample& sample, State& state) {
    // A pod read for the first time (attached while its namespace already had counts): what its
    // counters hold built up before, so rules get no rate from this read (SeriesStore::mark_first_read).
    const bool first = !state.read_before;
    state.read_before = true;
    // The namespace's counters count from its creation. A pod's series may outlive the
    // namespace it read (the pod made again under its name within series_grace, in a new
    // namespace, under a new pod id): they go on from their value, adding what the new
    // namespace counts, told apart by the namespace's cookie (a pod read again in the same
    // namespace goes on from where it was, not twice). A series made at the pod's first read
    // holds what built up before: no rate from it (SeriesStore::mark_first_read).
    auto set_counter = [&](const char* name, const Labels& labels, double value) {
      if (s.set_continued(name, labels, value, sample.netns_cookie) && first) s.mark_first_read(name, labels);
    };
    // Gauges that fall back to 0 (a state with no socket left) must do so for series a pod's
    // earlier life left too.
    if (first) {
      const char* tcp_gauge = pod ? "vigil_tcp_sockets" : "vigil_node_tcp_sockets";
      for (int st = 1; st < kTcpStates; ++st)
        if (s.value(tcp_gauge, labels(pod, {{"state", tcp_state_name(st)}}))) state.states_shown |= 1u << st;
      if (s.value(pod ? "vigil_conntrack_entries" : "vigil_node_conntrack_entries", labels(pod, {})))
        state.conntrack_shown = true;
    }
    const char* mib_name = pod ? "vigil_netstat_total" : "vigil_node_netstat_total";
    std::string key;
    for (const auto& c : sample.mibs) {
      if (c.value == 0) continue;  // counters only grow: a zero one has never had a series
      key.assign(c.group).append(1, ':').append(c.name);
      if (!wanted_.count(key)) continue;
      set_counter(mib_name, labels(pod, {{"group", c.group}, {"statistic", c.name}}), static_cast<double>(c.value));
    }
    const char* link_name = pod ? "vigil_interface_stats_total" : "vigil_node_interface_stats_total";
    for (const auto& c : sample.links)
      if (c.value != 0) set_counter(link_name, labels(pod, {{"interface", c.group}, {"statistic", c.name}}), static_cast<double>(c.value));
    for (const auto& c : sample.link_traffic) {
      if (pod) break;  // a pod's traffic is the datapath's forward counters
      const bool packets = c.name.ends_with("_packets");
      set_counter(packets ? "vigil_node_interface_packets_total" : "vigil_node_interface_bytes_total",
            labels(pod, {{"direction", c.name.starts_with("rx_") ? "ingress" : "egress"}, {"interface", c.group}}),
            static_cast<double>(c.value));
    }
    const char* tcp_name = pod ? "vigil_tcp_sockets" : "vigil_node_tcp_sockets";
    for (int st = 1; st < kTcpStates && sample.has_tcp_states; ++st) {
      const uint32_t bit = 1u << st;
      if (sample.tcp_states[st] == 0 && !(state.states_shown & bit)) continue;
      state.states_shown |= bit;
      s.set(tcp_name, labels(pod, {{"state", tcp_state_name(st)}}), static_cast<double>(sample.tcp_states[st]));
    }
    s.set(pod ? "vigil_udp_sockets" : "vigil_node_udp_sockets", labels(pod, {}), static_cast<double>(sample.udp_sockets));
    s.set(pod ? "vigil_tcp_sockets_in_use" : "vigil_node_tcp_sockets_in_use", labels(pod, {}),
          static_cast<double>(sample.tcp_in_use));
    s.set(pod ? "vigil_tcp_sockets_time_wait" : "vigil_node_tcp_sockets_time_wait", labels(pod, {}),
          static_cast<double>(sample.tcp_time_wait));
    if (sample.has_conntrack) emit_conntrack(s, pod, sample, state, set_counter);
    for (const auto& table : sample.neighbors) {
      s.set("vigil_node_neighbor_entries", {{"family", table.family}}, static_cast<double>(table.stats.entries));
      s.set("vigil_node_neighbor_entries_limit", {{"family", table.family}}, static_cast<double>(table.limit));
      for (const auto& c : table.stats.counters)
        if (c.value != 0)
          set_counter("vigil_node_neighbor_stats_total", {{"family", table.family}, {"statistic", c.name}},
                      static_cast<double>(c.value));
    }
    if (!pod) forget_node_interfaces_gone(s, sample, state);
  }

  // The node's conntrack entries of each pod, while the table holds the share that turns the
  // count on; gone when it does not (rather than left at old values). A count walks the whole
  // table (about 2 us an entry): once every kConntrackCountEvery at most, the series holding
  // their values in between.
  void emit_conntrack_by_pod(SeriesStore& s, const NetnsSample& sample, const std::vector<const WatchedPod*>& owner,
                             State& state, double read_time) {
    if (!sample.conntrack_by_address_error.empty()) {
      ++read_errors_;
      if (state.last_conntrack_error != sample.conntrack_by_address_error)
        spdlog::warn("netstat: cannot count the node's conntrack entries by pod: {}", sample.conntrack_by_address_error);
    }
    state.last_conntrack_error = sample.conntrack_by_address_error;
    if (!sample.has_conntrack ||
        !conntrack_full_enough(sample.conntrack.entries, sample.conntrack_limit, conntrack_by_pod_above_)) {
      if (state.conntrack_by_pod_shown) {
        s.clear("vigil_node_conntrack_pod_entries");
        spdlog::info("netstat: the node's conntrack table holds {} entries: no longer counted by pod", sample.conntrack.entries);
      }
      state.conntrack_by_pod_shown = false;
      next_conntrack_count_ = {};
      return;
    }
    if (!sample.has_conntrack_by_address) return;  // not due: the last count holds
    next_conntrack_count_ = std::chrono::steady_clock::now() + kConntrackCountEvery;
    if (!state.conntrack_by_pod_shown)
      spdlog::info("netstat: the node's conntrack table holds {} entries: counting them by pod", sample.conntrack.entries);
    std::map<const WatchedPod*, uint64_t> per_pod;
    for (size_t i = 0; i < owner.size() && i < sample.conntrack_by_address.size(); ++i)
      per_pod[owner[i]] += sample.conntrack_by_address[i];
    s.clear("vigil_node_conntrack_pod_entries");  // pods gone since the last count go too
    for (const auto& [pod, n] : per_pod) s.set("vigil_node_conntrack_pod_entries", pod_labels(*pod, {}), static_cast<double>(n));
    // When this count was taken: the series hold it until the next (up to kConntrackCountEvery),
    // while the table may move.
    s.set(kSeriesReadTimestamp, {{"metric", "vigil_node_conntrack_pod_entries"}}, read_time);
    state.conntrack_by_pod_shown = true;
  }

  // A pod's table has series once it has been in use (most pods never track a connection in
  // their own namespace); the node's always.
  template <typename SetCounter>
  void emit_conntrack(SeriesStore& s, const WatchedPod* pod, const NetnsSample& sample, State& state,
                      const SetCounter& set_counter) {
    const auto& ct = sample.conntrack;
    bool used = ct.entries != 0;
    for (const auto& c : ct.counters) {
      if (c.value == 0) continue;
      used = true;
      set_counter(pod ? "vigil_conntrack_stats_total" : "vigil_node_conntrack_stats_total",
                  labels(pod, {{"statistic", c.name}}), static_cast<double>(c.value));
    }
    state.conntrack_shown = state.conntrack_shown || used || !pod;
    if (state.conntrack_shown)
      s.set(pod ? "vigil_conntrack_entries" : "vigil_node_conntrack_entries", labels(pod, {}),
            static_cast<double>(ct.entries));
    if (!pod && sample.conntrack_limit)
      s.set("vigil_node_conntrack_entries_limit", {}, static_cast<double>(sample.conntrack_limit));
  }

  // An interface of the node that is gone (a tunnel or bridge removed) takes its series along,
  // as a deleted pod's go. (A pod's interfaces go with the pod.)
  void forget_node_interfaces_gone(SeriesStore& s, const NetnsSample& sample, State& state) {
    std::set<std::string> now;
    for (const auto& c : sample.links) now.insert(c.group);
    bool gone = false;
    for (const auto& name : state.interfaces) gone = gone || !now.count(name);
    if (gone)
      s.remove_if([&](const Labels& l) {
        const std::string* i = find_label(l, "interface");
        return i && !find_label(l, "pod") && !now.count(*i);
      });
    state.interfaces = std::move(now);
  }

  std::chrono::steady_clock::duration interval_;
  std::unordered_set<std::string> wanted_;
  bool node_sockets_, pod_sockets_;
  double conntrack_by_pod_above_;  // NetnsTarget::conntrack_by_address_above for the node
  static constexpr std::chrono::seconds kConntrackCountEvery{30};
  std::chrono::steady_clock::time_point next_conntrack_count_{};
  std::chrono::steady_clock::time_point next_read_{};
  std::map<uint32_t, State> states_;  // by pod id; 0 is the node
  uint64_t read_errors_ = 0;
  // Pods (by id) whose namespace was gone at the last read, and the path it was read through.
  std::map<uint32_t, std::string> gone_paths_;

  // One of gone_paths_ has another path since (PodManager::keep_netns_path): it is read now.
  bool path_renewed(const FamilyContext& ctx) const {
    for (const auto& [id, path] : gone_paths_)
      if (const WatchedPod* p = ctx.pods.by_id(id); p && p->attached && p->iface.netns_path != path) return true;
    return false;
  }
};

}  // namespace

std::unique_ptr<Family> make_netstat_family(const NetstatConfig& config) { return std::make_unique<NetstatFamily>(config); }

}  // namespace vigil
