#include "engine/agent.h"

#include <prometheus/text_serializer.h>
#include <spdlog/spdlog.h>

#include <nlohmann/json.hpp>
#include <malloc.h>

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>

#include "engine/bpf_maps.h"
#include "engine/families/retina.h"
#include "engine/netns_stats.h"
#include "rules/runtime/field_names.h"
#include "vigil_abi.h"

#ifndef VIGIL_VERSION
#define VIGIL_VERSION "dev"
#endif

namespace vigil {
namespace {

// Matches the series of pod `ns`/`name` (its namespace and pod labels).
std::function<bool(const Labels&)> of_pod(const std::string& ns, const std::string& name) {
  return [&ns, &name](const Labels& l) {
    const auto* lns = find_label(l, "namespace");
    const auto* lname = find_label(l, "pod");
    return lns && lname && *lns == ns && *lname == name;
  };
}

double unix_now() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

// Where the cgroup v2 hierarchy is mounted: /sys/fs/cgroup on unified hosts,
// /sys/fs/cgroup/unified on hybrid ones.
std::optional<std::string> cgroup2_mount() {
  std::ifstream mounts("/proc/self/mounts");
  std::string device, dir, type, rest;
  while (mounts >> device >> dir >> type && std::getline(mounts, rest))
    if (type == "cgroup2") return dir;
  return std::nullopt;
}

template <typename Stamp>
std::vector<Stamp> stat_files(const std::vector<std::string>& paths) {
  std::vector<Stamp> out;
  out.reserve(paths.size());
  for (const auto& p : paths) {
    struct stat st {};
    if (stat(p.c_str(), &st) == 0) out.push_back({st.st_ino, st.st_size, st.st_mtim.tv_sec, st.st_mtim.tv_nsec});
    else out.push_back({});
  }
  return out;
}

}  // namespace

void AgentSink::notify(const std::string& channel, const Anomaly& anomaly) {
  dispatcher_.notify(channel, anomaly);
  if (anomaly.captures.empty() || !anomaly.event.empty()) return;
  std::vector<std::pair<std::string, nlohmann::json>> ready;
  {
    std::lock_guard lock(mu_);
    for (const auto& id : anomaly.captures) {
      if (auto done = finished_.find(id); done != finished_.end()) {
        ready.emplace_back(id, std::move(done->second));
        finished_.erase(done);
        continue;
      }
      auto [it, inserted] = waiting_.try_emplace(id);
      it->second.anomaly = anomaly;
      it->second.channels.insert(channel);
      if (inserted) waiting_order_.push_back(id);
    }
    while (waiting_order_.size() > kMaxRemembered) {
      waiting_.erase(waiting_order_.front());
      waiting_order_.pop_front();
    }
  }
  for (const auto& [id, manifest] : ready) send_follow_up(anomaly, {channel}, manifest);
}

void AgentSink::capture_completed(const nlohmann::json& manifest) {
  const std::string id = manifest.value("id", "");
  if (manifest.value("trigger", "") != "rule" || id.empty()) return;  // a person's capture has no channels
  Episode episode;
  {
    std::lock_guard lock(mu_);
    auto it = waiting_.find(id);
    if (it == waiting_.end()) {
      // Ended before the rule's notify named it (an `after` of 0): sent when it does.
      if (finished_.emplace(id, manifest).second) finished_order_.push_back(id);
      while (finished_order_.size() > kMaxRemembered) {
        finished_.erase(finished_order_.front());
        finished_order_.pop_front();
      }
      return;
    }
    episode = std::move(it->second);
    waiting_.erase(it);
  }
  send_follow_up(std::move(episode.anomaly), episode.channels, manifest);
}

void AgentSink::send_follow_up(Anomaly a, const std::set<std::string>& channels, const nlohmann::json& m) {
  a.event = kEventCaptureCompleted;
  a.capture_done = actions::capture_done_from_manifest(m);
  if (std::find(a.captures.begin(), a.captures.end(), a.capture_done.id) == a.captures.end())
    a.captures.push_back(a.capture_done.id);
  for (const auto& channel : channels) dispatcher_.notify(channel, a);
}

Agent::Agent(Config config) : config_(std::move(config)), registry_(std::make_shared<prometheus::Registry>()) {}

Agent::~Agent() {
  http_.reset();
  sink_.set_captures(nullptr);
  captures_.reset();  // finishes running captures while the programs still run
  dispatcher_.stop();
  if (kube_) kube_->stop();
  pods_.reset();  // detaches from every interface before the programs go away
  datapath_.reset();
}

// Declares every series the agent exports in `s`: the families', the captures' when enabled,
// the Kubernetes source's when it is the pod source, and the agent's own. `vigil rules check`
// uses the same list to find rules that watch a series that never exists.
void describe_agent_series(SeriesStore& s, const std::vector<std::unique_ptr<Family>>& families, bool captures, bool kube) {
  if (captures) Captures::describe(s);
  for (const auto& f : families) f->describe(s);
  s.describe("vigil_rule_errors_total", "Rule failures, by rule and kind (runtime, budget, notify; notification_budget: firings past max_notifications_per_hour, not notified; first_seen_overflow: values a full first_seen set could not remember; capture: captures the rule asked for and was refused).", SeriesKind::Counter);
  s.describe("vigil_rule_quarantined", "1 when a rule has been disabled after repeated errors.", SeriesKind::Gauge);
  s.describe("vigil_rule_lua_memory_bytes",
             "Memory the rule files' Lua states hold (custom detectors' per-group state included).", SeriesKind::Gauge);
  s.describe("vigil_anomalies_total", "Anomalies that started firing, by rule.", SeriesKind::Counter);
  s.describe("vigil_rule_groups",
             "Groups (pods, or series) a rule judges, by state: normal, pending (anomalous, waiting out the rule's `pending` or `cooldown`) and firing.",
             SeriesKind::Gauge);
  s.describe("vigil_notifications_sent_total", "Notifications delivered, by channel.", SeriesKind::Counter);
  s.describe("vigil_notifications_failed_total", "Failed delivery attempts, by channel.", SeriesKind::Counter);
  s.describe("vigil_notifications_retried_total", "Delivery retries, by channel.", SeriesKind::Counter);
  s.describe("vigil_notifications_dropped_total", "Notifications given up on, by channel.", SeriesKind::Counter);
  s.describe("vigil_notification_queue_depth", "Notifications waiting for delivery, by channel.", SeriesKind::Gauge);
  s.describe("vigil_notifications_suppressed_total", "Notifications held back by flood control, by channel.", SeriesKind::Counter);
  s.describe("vigil_notifications_tls_errors_total", "Attempts refused because the receiver's certificate did not verify, by channel.", SeriesKind::Counter);
  s.describe("vigil_notification_delivery_seconds", "Time from notify() to the receiver's 2xx, by channel.", SeriesKind::Histogram);
  s.describe("vigil_pods", "Pods the agent watches, by state (attached, pending).", SeriesKind::Gauge);
  s.describe("vigil_pods_with_programs",
             "Attached pods whose interface carries the packet-level TC programs now (metrics.packet_level, or a capture).",
             SeriesKind::Gauge);
  s.describe("vigil_build_info", "Build information; always 1.", SeriesKind::Gauge);
  if (kube) {
    s.describe("vigil_kube_sync_age_seconds", "Seconds since the view of this node's pods was last confirmed by the API server (list, event or bookmark); -1 before the first.", SeriesKind::Gauge);
    s.describe("vigil_kube_errors_total", "Errors talking to the Kubernetes API server, by kind (connect, auth, http, decode, stream, gone, watch, owner, token).", SeriesKind::Counter);
    s.describe("vigil_kube_consecutive_errors", "Failed API server requests since the last success; the last known pods stay in use meanwhile.", SeriesKind::Gauge);
    s.describe("vigil_kube_pods", "Pods of this node the API server reports, by state (watched; skipped as host_network, not_running, no_ip, out_of_scope).", SeriesKind::Gauge);
  }
}

std::vector<std::string> unknown_metric_warnings(const std::vector<rules::RuleStatus>& rules) {
  // Every series of every configuration: the API server family and captures and Kubernetes on.
  SeriesStore all;
  Config config;
  config.apiserver.addresses = {ApiServerConfig::Address{"127.0.0.1", 443}};
  describe_agent_series(all, make_families(config), true, true);
  const std::vector<std::string> names = all.sample_names();
  const std::set<std::string> known(names.begin(), names.end());
  const std::vector<std::string_view> views(names.begin(), names.end());
  std::vector<std::string> out;
  for (const auto& r : rules) {
    for (const auto& metric : r.metrics) {
      if (known.count(metric)) continue;
      std::string w = (r.location.empty() ? r.file : r.location) + ": rule '" + r.rule + "': metric '" + metric +
                      "' is not a series the agent exports, so the rule never sees a value";
      if (auto guess = rules::closest_name(metric, views); !guess.empty()) w += " (did you mean '" + guess + "'?)";
      out.push_back(std::move(w));
    }
  }
  return out;
}

// Statistics the config names but this kernel does not have would never show: an error at start,
// naming the line and the closest name. The defaults are only skipped where missing (a kernel
// without MPTCP has no MPTcpExt).
Result<void> check_netstat_statistics(const Config& config) {
  const auto& netstat = config.metrics.netstat;
  if (!netstat.enabled || netstat.statistic_lines.empty()) return {};
  auto known = known_statistics();
  if (!known) return context("metrics.netstat.statistics: cannot read this node's statistics", known.error());
  const std::set<std::string> have(known->begin(), known->end());
  const std::vector<std::string_view> views(known->begin(), known->end());
  std::string errors;
  for (size_t i = 0; i < netstat.statistics.size(); ++i) {
    if (have.count(netstat.statistics[i])) continue;
    if (!errors.empty()) errors += "\n";
    errors += (config.path.empty() ? std::string("config") : config.path) + ":" +
              std::to_string(i < netstat.statistic_lines.size() ? netstat.statistic_lines[i] : 0) +
              ": metrics.netstat.statistics[" + std::to_string(i) + "]: '" + netstat.statistics[i] +
              "' is not a statistic of this kernel (nstat -az lists them)";
    if (auto guess = rules::closest_name(netstat.statistics[i], views); !guess.empty())
      errors += "; did you mean '" + guess + "'?";
  }
  if (!errors.empty()) return make_error(errors);
  return {};
}

rules::EngineOptions rule_engine_options(const Config& config) {
  rules::EngineOptions opts;
  opts.node = config.node;
  opts.tick_seconds = config.tick_seconds;
  opts.memory_limit_bytes = config.rule_limits.memory_bytes;
  opts.instruction_limit = config.rule_limits.instructions;
  opts.quarantine_after_errors = config.rule_limits.quarantine_after;
  opts.channels.emplace();
  for (const auto& n : config.notifiers) opts.channels->insert(n.name);
  opts.check_capture_filter = [](const std::string& filter) { return actions::check_capture_filter(filter, 65535); };
  return opts;
}

Result<std::unique_ptr<Agent>> Agent::create(const Config& config) {
  // glibc gives each thread that allocates its own malloc arena and keeps it: every HTTP worker
  // that serializes /metrics once holds a copy's worth of memory for good (docs/benchmarks.md,
  // (c): 109 MiB with the default, 43 MiB with two arenas). Two suffice for this agent.
  mallopt(M_ARENA_MAX, 2);
  std::unique_ptr<Agent> a(new Agent(config));

  for (auto n : config.notifiers) {
    n.outbox_dir = config.state_dir + "/outbox/" + n.name;  // queued notifications survive a restart
    auto notifier = actions::make_notifier(n);
    if (!notifier) return notifier.error();
    if (auto added = a->dispatcher_.add(std::move(*notifier)); !added) return added.error();
  }

  if (auto r = check_netstat_statistics(config); !r) return r.error();

  rules::EngineOptions opts = rule_engine_options(config);  // channels: the dispatcher's notifiers
  auto engine = rules::RuleEngine::load(config.rules, opts, &a->sink_);
  if (!engine) return engine.error();
  a->rules_ = std::move(*engine);
  for (const auto& w : unknown_metric_warnings(a->rules_->status())) spdlog::warn("{}", w);
  a->rule_options_ = opts;
  a->rules_seen_ = a->rules_applied_ = stat_files<FileStamp>(config.rules);
  a->rule_files_seen_ = a->rule_files_applied_ = config.rules;
  a->prepare_state_dir();

  DatapathOptions dp_options;
  // Without captures the ring buffer is the smallest the kernel takes: one page.
  dp_options.capture_ring_bytes = config.captures.enabled ? config.captures.ring_buffer_bytes : 4096;
  dp_options.max_pods = config.max_pods;
  // No pod can opt in: one entry, the least the kernel takes.
  dp_options.remote_keys = config.remote_context.enabled() ? config.remote_context.max_keys : 1;
  dp_options.dns_max_pending = config.metrics.dns_max_pending;
  dp_options.dns_timeout_ns = static_cast<uint64_t>(config.metrics.dns_timeout_seconds * 1e9);
  dp_options.count_tracing_runs = config.metrics.tracepoint_audit;
  dp_options.tcx = config.metrics.tcx;
  auto dp = Datapath::open_and_load(dp_options);
  if (!dp) return dp.error();
  a->datapath_ = std::move(*dp);
  const RemoteContextConfig remote = config.remote_context;
  const MetricsConfig::PacketLevel packet_level = config.metrics.packet_level;
  a->pods_ = std::make_unique<PodManager>(
      *a->datapath_,
      [remote](const PodSpec& pod) -> uint32_t {
        return pod_selected(remote.namespaces, remote.pod_labels, pod.namespace_, pod.labels) ? remote.max_peers : 0;
      },
      [packet_level](const PodSpec& pod) { return wants_packet_level(packet_level, pod); });
  a->pods_->set_ingress_hook(config.metrics.ingress_hook);
  spdlog::info("eBPF programs loaded; kernel has {} drop reasons", a->datapath_->drop_reasons().size());
  if (!config.metrics.tcx) spdlog::info("metrics.tcx is false: the TC programs go on the pods' interfaces as clsact filters");
  if (config.metrics.tracepoint_audit) {
    // After the programs attached (open_and_load): see engine/tracepoint_audit.h.
    const int runs_fd = a->datapath_->map("vigil_tp_runs").fd;
    auto audit = TracepointAudit::start(
        "/sys/kernel/tracing",
        {{"vigil_kfree_skb", "skb/kfree_skb", VIGIL_TP_KFREE_SKB},
         {"vigil_tcp_retransmit", "tcp/tcp_retransmit_skb", VIGIL_TP_TCP_RETRANSMIT},
         {"vigil_sock_state", "sock/inet_sock_set_state", VIGIL_TP_SOCK_STATE},
         {"vigil_tcp_retransmit_synack", "tcp/tcp_retransmit_synack", VIGIL_TP_TCP_RETRANSMIT_SYNACK}},
        [runs_fd](uint32_t index) { return percpu_sum(runs_fd, index).value_or(0); });
    if (!audit) return audit.error();
    a->tracepoint_audit_ = std::move(*audit);
    spdlog::info("auditing tracepoint delivery: kfree_skb, tcp_retransmit_skb, inet_sock_set_state, tcp_retransmit_synack");
  }
  if (!config.apiserver.addresses.empty()) {
    std::string cgroup = config.apiserver.cgroup;
    if (cgroup.empty()) {
      auto root = cgroup2_mount();
      if (!root) return make_error("apiserver: no cgroup v2 hierarchy is mounted (mount -t cgroup2 none /sys/fs/cgroup/unified, or set apiserver.cgroup)");
      cgroup = *root;
    }
    std::vector<Datapath::ApiServerAddress> servers;
    for (const auto& a : config.apiserver.addresses) servers.push_back({a.ip, a.port});
    if (auto r = a->datapath_->watch_api_server(servers, cgroup,
                                                static_cast<uint64_t>(config.apiserver.no_response_seconds * 1e9));
        !r)
      return r.error();
    spdlog::info("timing connections to the API server ({} addresses) for the sockets of cgroup {}", servers.size(), cgroup);
  }

  if (config.captures.enabled) {
    AgentSink* sink = &a->sink_;
    auto captures = Captures::create(config, *a->datapath_, [sink](const nlohmann::json& m) {
      spdlog::info("capture {} {}: {} packets, {} lost{}", m.value("id", ""), m.value("status", ""),
                   m.value("packets", 0ull), m.value("packets_lost", 0ull),
                   m.value("complete", false) ? "" : " (incomplete)");
      sink->capture_completed(m);
    });
    if (!captures) return captures.error();
    a->captures_ = std::move(*captures);
    a->sink_.set_captures(a->captures_.get());
  }

  auto& s = a->store_;
  a->families_ = make_families(config);
  describe_agent_series(s, a->families_, a->captures_ != nullptr, config.pods.source == "kubernetes");
  s.set("vigil_build_info", make_labels({{"version", VIGIL_VERSION}}), 1);

  a->tick_histogram_ = &prometheus::BuildHistogram()
                            .Name("vigil_tick_duration_seconds")
                            .Help("Time one tick takes: reading the maps, updating series, running the rules.")
                            .Register(*a->registry_)
                            .Add({}, prometheus::Histogram::BucketBoundaries{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1});

  if (config.pods.source == "kubernetes") {
    kube::KubeOptions kopts = config.pods.kubernetes;
    // Remote context names peers of other nodes by the cluster's EndpointSlices and Services.
    kopts.watch_peers = !config.remote_context.namespaces.empty() || !config.remote_context.pod_labels.empty();
    auto kube = kube::KubePods::create(std::move(kopts));
    if (!kube) return kube.error();
    a->kube_ = std::move(*kube);
    a->kube_->start();
  }
  a->load_pods_if_changed();

  HttpHandlers h;
  Agent* self = a.get();
  h.metrics = [self] { return self->render_metrics(); };
  h.health = [self] {
    std::lock_guard lock(self->published_mu_);
    auto age = std::chrono::steady_clock::now() - self->last_tick_;
    bool ok = self->last_tick_ != std::chrono::steady_clock::time_point{} &&
              age < std::chrono::duration<double>(5 * self->config_.tick_seconds + 2);
    nlohmann::json j = {{"status", ok ? "ok" : "stalled"},
                        {"last_tick_age_seconds", std::chrono::duration<double>(age).count()}};
    return std::make_pair(ok, j.dump());
  };
  h.pods = [self] {
    std::lock_guard lock(self->published_mu_);
    return self->pods_json_;
  };
  h.rules = [self] {
    std::lock_guard lock(self->published_mu_);
    return self->rules_json_;
  };
  h.anomalies = [self] {
    std::lock_guard lock(self->published_mu_);
    return self->anomalies_json_;
  };
  h.captures = [self](const ApiRequest& r) {
    if (self->captures_) return self->captures_->api(r);
    return ApiResponse{503, "application/json", R"j({"error":"captures are disabled (captures.enabled: false)"})j", "", ""};
  };
  h.api_token = config.api.token;
  auto http = HttpServer::start(config.listen, std::move(h));
  if (!http) return http.error();
  a->http_ = std::move(*http);
  return a;
}

std::string Agent::listen_address() const {
  std::string host = http_->host();
  if (host.find(':') != std::string::npos) host = "[" + host + "]";
  return host + ":" + std::to_string(http_->port());
}

void Agent::run() {
  using clock = std::chrono::steady_clock;
  const auto period = std::chrono::duration_cast<clock::duration>(std::chrono::duration<double>(config_.tick_seconds));
  auto next = clock::now();
  next_state_save_ = clock::now() + kStateSaveInterval;
  while (!stopping_) {
    tick();
    if (clock::now() >= next_state_save_) {
      save_rule_state();
      next_state_save_ = clock::now() + kStateSaveInterval;
    }
    next += period;
    if (next < clock::now()) next = clock::now();  // a slow tick does not cause a burst of ticks
    std::unique_lock lock(wake_mu_);
    wake_.wait_until(lock, next, [this] { return stopping_.load(); });
  }
  save_rule_state();  // a clean stop keeps everything learned since the last periodic save
}

// Never fatal: without a usable state_dir the agent runs, and learns again after a restart.
void Agent::prepare_state_dir() {
  namespace fs = std::filesystem;
  const std::string& dir = config_.state_dir;
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) {
    spdlog::error("state_dir {}: cannot create it ({}); learned baselines will not survive a restart", dir, ec.message());
    return;
  }
  if (access(dir.c_str(), W_OK | X_OK) != 0) {
    spdlog::error("state_dir {}: not writable ({}); learned baselines will not survive a restart", dir,
                  std::strerror(errno));
    return;
  }
  state_file_ = (fs::path(dir) / "baselines.bin").string();
  rules_->restore_state(state_file_);  // logs what it restored, skipped or refused
}

void Agent::save_rule_state() {
  if (state_file_.empty()) return;
  if (auto r = rules_->save_state(state_file_); !r) spdlog::error("rule state: {}", r.error().message);
}

// On SIGHUP, or once the rule files (the config's patterns expanded again: files come and go)
// have looked the same for one tick after a change (a file being written is not read
// half-way). A reload that fails keeps the running rules.
void Agent::reload_rules_if_changed() {
  const bool requested = rules_reload_requested_.exchange(false);
  std::vector<std::string> files = config_.rules;
  if (!config_.rule_patterns.empty()) {
    auto expanded = expand_rule_paths(config_.rule_patterns, config_.rules_base_dir);
    if (!expanded) {
      // Said once per distinct problem, not every tick.
      if (expanded.error().message != rule_files_error_) {
        rule_files_error_ = expanded.error().message;
        spdlog::error("rules reload: {}; the running rules are kept", rule_files_error_);
      }
      return;
    }
    rule_files_error_.clear();
    files = std::move(*expanded);
  }
  auto stamps = stat_files<FileStamp>(files);
  if (!requested) {
    if (files != rule_files_seen_ || stamps != rules_seen_) {
      rule_files_seen_ = files;
      rules_seen_ = stamps;
      return;
    }
    if (files == rule_files_applied_ && stamps == rules_applied_) return;
  }
  // A failed version is not retried until it changes.
  rule_files_seen_ = rule_files_applied_ = files;
  rules_seen_ = rules_applied_ = stamps;
  auto engine = rules::RuleEngine::load(files, rule_options_, &sink_);
  if (!engine) {
    spdlog::error("rules reload: {}; the running rules are kept", engine.error().message);
    return;
  }
  auto report = (*engine)->restore_snapshot(rules_->snapshot_state(), "rules reload");
  rules_->resolve_open(unix_now());
  rules_ = std::move(*engine);
  ++rules_epoch_;
  // The series of rules that are gone (removed, renamed) go with them: a quarantined or firing
  // rule's gauges would otherwise stay at their last values until the agent restarts.
  std::set<std::string> names;
  for (const auto& r : rules_->status()) names.insert(r.rule);
  for (const char* family : {"vigil_rule_errors_total", "vigil_rule_quarantined", "vigil_anomalies_total", "vigil_rule_groups"})
    store_.remove_if(family, [&](const Labels& l) {
      for (const auto& [k, v] : l)
        if (k == "rule") return !names.count(v);
      return false;
    });
  for (const auto& w : unknown_metric_warnings(rules_->status())) spdlog::warn("rules reload: {}", w);
  config_.rules = std::move(files);
  spdlog::info("rules reloaded from {} files; {} groups of {} rules keep their state", config_.rules.size(),
               report.groups, report.rules);
}

void Agent::stop() {
  stopping_ = true;
  wake_.notify_all();
}

void Agent::tick() {
  const auto start = std::chrono::steady_clock::now();
  // The maps first: a pod that goes in this tick (or is attached again) has its counts read up
  // to now before detach takes them out of the kernel; a pod that comes is read from the next.
  read_datapath();
  load_pods_if_changed();
  pods_->refresh();
  drop_packet_level_series();
  expire_series();

  reload_rules_if_changed();
  TickInput input;
  input.time = unix_now();
  // Only the series the rules watch: they would skip the rest, and copying every series' labels
  // was most of a snapshot's cost (docs/benchmarks.md, "Series store").
  input.samples = store_.snapshot(&rules_->metrics());
  input.pods = pods_->metadata(config_.node);
  rules_->tick(input);
  if (captures_) {
    std::set<std::string> lookback = rules_->lookback_pods();
    if (config_.captures.lookback_pending) lookback.merge(rules_->pending_pods());
    captures_->sync(*pods_, lookback);
  }

  export_self_metrics(std::chrono::steady_clock::now() - start);
  publish_state();
}

void Agent::load_pods_if_changed() {
  if (config_.pods.source == "kubernetes") {
    if (!kube_ || kube_->generation() == kube_generation_) return;
    auto snap = kube_->snapshot();
    kube_generation_ = snap.generation;
    if (!snap.status.synced()) return;  // never replace the pods with a view that was never listed
    workloads_.clear();
    for (const auto& d : snap.details) workloads_[d.spec.key()] = {d.workload_kind, d.workload_name};
    apply_pods(snap.pods);
    spdlog::info("kubernetes: {} pods on this node", snap.pods.size());
    return;
  }
  if (config_.pods.source == "netns") {
    auto specs = pods_from_named_netns();
    if (specs != netns_pods_) {
      netns_pods_ = specs;
      apply_pods(specs);
    }
    return;
  }
  if (config_.pods.source != "file") return;
  struct stat st {};
  if (stat(config_.pods.file.c_str(), &st) != 0) {
    if (!pods_file_missing_) spdlog::error("pods file {}: cannot be read; keeping the last known pods", config_.pods.file);
    pods_file_missing_ = true;
    return;
  }
  pods_file_missing_ = false;
  FileStamp stamp{st.st_ino, st.st_size, st.st_mtim.tv_sec, st.st_mtim.tv_nsec};
  // A file written in place (truncate, then write) can be read half-written: apply a change
  // only once the file has looked the same for one tick. The first load is applied at once.
  const bool first = !pods_applied_.has_value();
  if (stamp != pods_seen_) {
    pods_seen_ = stamp;
    if (!first) return;
  }
  if (!first && stamp == *pods_applied_ && !reload_requested_.exchange(false)) return;
  pods_applied_ = stamp;
  auto specs = load_pods_file(config_.pods.file);
  if (!specs) {
    spdlog::error("{}; keeping the last known pods", specs.error().message);
    return;
  }
  apply_pods(*specs);
  spdlog::info("pods file {}: {} pods", config_.pods.file, specs->size());
}

void Agent::apply_pods(const std::vector<PodSpec>& specs) {
  // A pod whose labels or workload changed gets its series under the new label set from the
  // next read on: the old ones go now, or sums by pod would count it twice for the grace time.
  // So does a pod back within metrics.series_grace under other labels than it went with.
  std::vector<std::pair<std::string, std::string>> relabelled;
  auto other_labels = [](const PodSpec& a, const PodSpec& b) {
    return a.labels != b.labels || a.workload_kind != b.workload_kind || a.workload_name != b.workload_name;
  };
  for (const auto& spec : specs) {
    auto it = pods_->pods().find(spec.key());
    auto gone = expiring_series_.find({spec.namespace_, spec.name});
    if ((it != pods_->pods().end() && other_labels(it->second.spec, spec)) ||
        (it == pods_->pods().end() && gone != expiring_series_.end() && other_labels(gone->second.spec, spec)))
      relabelled.emplace_back(spec.namespace_, spec.name);
  }
  for (const auto& [ns, name] : relabelled) {
    store_.remove_if(of_pod(ns, name));
  }
  auto removed = pods_->reconcile(specs);
  // A gone pod's series stay for metrics.series_grace so that a last scrape sees their final
  // values; a pod that comes back before then keeps its series.
  const auto deadline = std::chrono::steady_clock::now() +
                        std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                            std::chrono::duration<double>(config_.metrics.series_grace_seconds));
  for (const auto& pod : removed) expiring_series_[{pod.spec.namespace_, pod.spec.name}] = {deadline, pod.spec};
  for (const auto& spec : specs) expiring_series_.erase({spec.namespace_, spec.name});
}

void Agent::drop_packet_level_series() {
  for (const auto& [key, pod] : pods_->pods()) {
    if (!pod.attached) continue;
    std::pair<std::string, std::string> id{pod.spec.namespace_, pod.spec.name};
    if (pod.packet_level) {
      packet_level_pods_.insert(std::move(id));
      continue;
    }
    if (!packet_level_pods_.erase(id)) continue;
    spdlog::info("pod {}: no packet-level programs any more; its TCP flag, reset, malformed, DNS and remote-traffic series go",
                 key);
    for (const auto& name : packet_level_series()) store_.remove_if(name, of_pod(id.first, id.second));
  }
}

void Agent::expire_series() {
  const auto now = std::chrono::steady_clock::now();
  for (auto it = expiring_series_.begin(); it != expiring_series_.end();) {
    if (it->second.deadline > now) {
      ++it;
      continue;
    }
    const auto& [ns, name] = it->first;
    packet_level_pods_.erase(it->first);
    store_.remove_if(of_pod(ns, name));
    it = expiring_series_.erase(it);
  }
}

void Agent::read_datapath() {
  if (kube_) peers_ = kube_->peers();
  MapCensus census;
  FamilyContext ctx{*datapath_, *pods_, store_, peers_.get(), tracepoint_audit_.get(), &census};
  for (const auto& f : families_) f->read(ctx);
}

void Agent::export_self_metrics(std::chrono::steady_clock::duration tick_time) {
  tick_histogram_->Observe(std::chrono::duration<double>(tick_time).count());
  for (const auto& r : rules_->status()) {
    for (const char* kind : {"runtime", "budget", "notify", "notification_budget", "first_seen_overflow", "capture"}) {
      auto it = r.errors.find(kind);
      store_.set_continued("vigil_rule_errors_total", make_labels({{"rule", r.rule}, {"kind", kind}}),
                           it == r.errors.end() ? 0.0 : static_cast<double>(it->second), rules_epoch_);
    }
    store_.set("vigil_rule_quarantined", make_labels({{"rule", r.rule}}), r.disabled ? 1 : 0);
    store_.set_continued("vigil_anomalies_total", make_labels({{"rule", r.rule}}), static_cast<double>(r.anomalies_fired),
                         rules_epoch_);
    const double pending = static_cast<double>(r.pending), firing = static_cast<double>(r.firing);
    store_.set("vigil_rule_groups", make_labels({{"rule", r.rule}, {"state", "pending"}}), pending);
    store_.set("vigil_rule_groups", make_labels({{"rule", r.rule}, {"state", "firing"}}), firing);
    store_.set("vigil_rule_groups", make_labels({{"rule", r.rule}, {"state", "normal"}}),
               std::max(0.0, static_cast<double>(r.groups) - pending - firing));
  }
  store_.set("vigil_rule_lua_memory_bytes", {}, static_cast<double>(rules_->lua_memory_bytes()));
  for (const auto& [channel, st] : dispatcher_.stats()) {
    Labels l = make_labels({{"channel", channel}});
    store_.set("vigil_notifications_sent_total", l, static_cast<double>(st.sent));
    store_.set("vigil_notifications_failed_total", l, static_cast<double>(st.failed));
    store_.set("vigil_notifications_retried_total", l, static_cast<double>(st.retried));
    store_.set("vigil_notifications_dropped_total", l, static_cast<double>(st.dropped));
    store_.set("vigil_notification_queue_depth", l, static_cast<double>(st.queue_depth));
    store_.set("vigil_notifications_suppressed_total", l, static_cast<double>(st.suppressed));
    store_.set("vigil_notifications_tls_errors_total", l, static_cast<double>(st.tls_errors));
    if (!st.latency_buckets.empty())
      store_.set_histogram("vigil_notification_delivery_seconds", l, actions::latency_bounds(), st.latency_buckets,
                           st.delivery_seconds_sum);
  }
  double attached = 0, pending = 0, programs = 0;
  for (const auto& [key, pod] : pods_->pods()) {
    (pod.attached ? attached : pending) += 1;
    programs += pod.attached && pod.programs ? 1 : 0;
  }
  store_.set("vigil_pods_with_programs", {}, programs);
  store_.set("vigil_pods", make_labels({{"state", "attached"}}), attached);
  store_.set("vigil_pods", make_labels({{"state", "pending"}}), pending);
  if (captures_) captures_->export_metrics(store_);
  if (kube_) {
    const auto snap = kube_->snapshot();
    const auto& st = snap.status;
    store_.set("vigil_kube_sync_age_seconds", {}, st.sync_age_seconds());
    for (const char* kind : {"connect", "auth", "http", "decode", "stream", "gone", "watch", "owner", "token"}) {
      auto it = st.errors.find(kind);
      store_.set("vigil_kube_errors_total", make_labels({{"kind", kind}}), it == st.errors.end() ? 0.0 : static_cast<double>(it->second));
    }
    store_.set("vigil_kube_consecutive_errors", {}, static_cast<double>(st.consecutive_errors));
    store_.set("vigil_kube_pods", make_labels({{"state", "watched"}}), static_cast<double>(snap.pods.size()));
    store_.set("vigil_kube_pods", make_labels({{"state", "host_network"}}), static_cast<double>(st.skipped_host_network));
    store_.set("vigil_kube_pods", make_labels({{"state", "not_running"}}), static_cast<double>(st.skipped_not_running));
    store_.set("vigil_kube_pods", make_labels({{"state", "no_ip"}}), static_cast<double>(st.skipped_no_ip));
    store_.set("vigil_kube_pods", make_labels({{"state", "out_of_scope"}}), static_cast<double>(st.skipped_out_of_scope));
  }
}

void Agent::publish_state() {
  nlohmann::json pods = nlohmann::json::array();
  for (const auto& [key, pod] : pods_->pods()) {
    nlohmann::json p = {{"namespace", pod.spec.namespace_}, {"name", pod.spec.name},  {"labels", pod.spec.labels},
                        {"attached", pod.attached},         {"id", pod.id}};
    if (auto w = workloads_.find(key); w != workloads_.end())
      p["workload"] = {{"kind", w->second.first}, {"name", w->second.second}};
    if (pod.attached) {
      p["interface"] = pod.iface.host_ifname;
      p["ifindex"] = pod.iface.host_ifindex;
      p["ips"] = pod.iface.ips;
      p["packet_level"] = pod.packet_level;  // chosen for the programs (metrics.packet_level, its annotation)
      p["programs"] = pod.programs;          // the TC programs are on its interface now
      // Where what it receives is counted (metrics.ingress_hook): its own end, or the host's; by
      // the programs, or from the interface's statistics.
      p["ingress_hook"] = (pod.programs ? pod.ingress_on_pod_side : pod.stats_on_pod_side) ? "pod" : "host";
    } else {
      p["error"] = pod.last_error;
    }
    pods.push_back(std::move(p));
  }
  nlohmann::json rules = nlohmann::json::array();
  for (const auto& r : rules_->status())
    rules.push_back({{"rule", r.rule}, {"file", r.file}, {"location", r.location}, {"metrics", r.metrics},
                     {"disabled", r.disabled}, {"last_error", r.last_error},
                     {"errors", r.errors}, {"anomalies_fired", r.anomalies_fired}, {"suppressed", r.suppressed},
                     {"groups", r.groups}, {"pending", r.pending}, {"firing", r.firing}});
  // What fires now, each as its webhook body (docs/webhook.md), with the latest value.
  nlohmann::ordered_json anomalies = nlohmann::ordered_json::array();
  for (const auto& a : rules_->open_anomalies()) anomalies.push_back(actions::encode_webhook_payload(a));
  RetinaPods retina_pods;
  for (const auto& [key, pod] : pods_->pods())
    retina_pods[{pod.spec.namespace_, pod.spec.name}].ip = pod.iface.ips.empty() ? "unknown" : pod.iface.ips.front();
  std::lock_guard lock(published_mu_);
  // A pod that went keeps its address in its series' local context while they stay (series_grace):
  // its Retina series go on under the same labels to their last counts, then go with the others.
  for (const auto& [key, info] : retina_pods_)
    if (expiring_series_.count(key)) retina_pods.emplace(key, info);
  retina_pods_ = std::move(retina_pods);
  pods_json_ = pods.dump();
  rules_json_ = rules.dump();
  anomalies_json_ = anomalies.dump();
  last_tick_ = std::chrono::steady_clock::now();
}

std::string Agent::render_metrics() const {
  auto families = registry_->Collect();
  auto ours = store_.Collect();
  if (config_.metrics.retina_compat) {
    std::lock_guard lock(published_mu_);
    auto retina = retina_view_.render(ours, retina_pods_);
    families.insert(families.end(), std::make_move_iterator(retina.begin()), std::make_move_iterator(retina.end()));
  }
  families.insert(families.end(), std::make_move_iterator(ours.begin()), std::make_move_iterator(ours.end()));
  std::ostringstream out;
  prometheus::TextSerializer().Serialize(out, families);
  return out.str();
}

}  // namespace vigil
