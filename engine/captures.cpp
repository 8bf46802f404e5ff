#include "engine/captures.h"

#include <dirent.h>
#include <sys/stat.h>

#include <algorithm>
#include <filesystem>

#include <spdlog/spdlog.h>

#include "engine/bundle.h"
#include "engine/capture_source.h"

namespace vigil {
namespace {

// The file of the network namespace with inode `inode`: a named one, else a process's.
std::string netns_path_of(uint32_t inode) {
  if (inode == 0) return "";
  auto matches = [inode](const std::string& p) {
    struct stat st {};
    return stat(p.c_str(), &st) == 0 && st.st_ino == inode;
  };
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator("/run/netns", ec))
    if (matches(e.path().string())) return e.path().string();
  DIR* proc = opendir("/proc");
  if (!proc) return "";
  std::string found;
  while (dirent* d = readdir(proc)) {
    if (d->d_name[0] < '0' || d->d_name[0] > '9') continue;
    std::string p = std::string("/proc/") + d->d_name + "/ns/net";
    if (matches(p)) {
      found = p;
      break;
    }
  }
  closedir(proc);
  return found;
}

ApiResponse json_answer(int status, const nlohmann::json& body) { return {status, "application/json", body.dump(), "", ""}; }
ApiResponse error_answer(int status, const std::string& message) { return json_answer(status, {{"error", message}}); }

// A duration given as "10s" or a number of seconds.
Result<double> duration_field(const nlohmann::json& v, const std::string& field) {
  if (v.is_number()) {
    double d = v.get<double>();
    if (d < 0) return make_error(field + ": must not be negative");
    return d;
  }
  if (!v.is_string()) return make_error(field + ": expected a duration such as \"10s\" or a number of seconds");
  auto d = parse_duration(v.get<std::string>());
  if (!d) return make_error(field + ": " + d.error().message);
  return *d;
}

Result<uint64_t> count_field(const nlohmann::json& v, const std::string& field, bool size) {
  if (v.is_number_unsigned()) return v.get<uint64_t>();
  if (size && v.is_string()) {
    auto n = parse_size(v.get<std::string>());
    if (!n) return make_error(field + ": " + n.error().message);
    return *n;
  }
  return make_error(field + (size ? ": expected a size such as \"64MiB\" or a number of bytes" : ": expected a positive integer"));
}

int status_for(actions::CaptureRefusal r) {
  switch (r) {
    case actions::CaptureRefusal::BadRequest: return 400;
    case actions::CaptureRefusal::UnknownPod: return 404;
    case actions::CaptureRefusal::Concurrency:
    case actions::CaptureRefusal::RuleBudget: return 429;
    case actions::CaptureRefusal::Quota:
    case actions::CaptureRefusal::Storage: return 507;
  }
  return 500;
}

}  // namespace

Result<std::unique_ptr<Captures>> Captures::create(const Config& config, Datapath& datapath,
                                                   actions::CaptureCompleted on_completed) {
  std::unique_ptr<Captures> c(new Captures(config, datapath));
  auto limits = config.captures.limits;
  if (limits.dir.empty()) limits.dir = config.state_dir + "/captures";
  c->config_.limits = limits;
  Captures* self = c.get();
  auto bundle = [self](const actions::CapturePod& pod, const std::string& dir) {
    actions::CapturePod p = pod;
    if (p.netns_path.empty()) {
      uint32_t inode = 0;
      {
        std::lock_guard lock(self->mu_);
        auto it = self->pods_.find(pod.namespace_ + "/" + pod.name);
        if (it != self->pods_.end()) inode = it->second.netns_inode;
      }
      p.netns_path = netns_path_of(inode);
    }
    return collect_bundle(p, dir);
  };
  c->manager_ = std::make_unique<actions::CaptureManager>(limits, std::move(on_completed), bundle);
  auto source = CaptureSource::start(datapath, *c->manager_);
  if (!source) return context("captures", source.error());
  c->source_ = std::move(*source);
  spdlog::info("captures: in {} (quota {} MiB, at most {} at once); lookback for {} pods", limits.dir,
               limits.disk_quota_bytes >> 20, limits.max_concurrent, config.captures.lookback_pods);
  return c;
}

Captures::Captures(const Config& config, Datapath& datapath) : config_(config.captures), datapath_(datapath) {}

Captures::~Captures() {
  source_.reset();   // no more packets
  manager_.reset();  // finishes running captures
}

void Captures::sync(PodManager& pods, const std::set<std::string>& rule_pods) {
  // Running captures keep their pods' packets coming, at the largest snaplen they asked for.
  const std::map<uint32_t, uint32_t> capturing = manager_->capturing();
  std::map<uint32_t, uint32_t> want;
  std::set<std::string> want_keys;
  std::map<std::string, KnownPod> known;
  for (const auto& [key, pod] : pods.pods()) {
    if (!pod.attached) continue;
    KnownPod k;
    k.pod.ifindex = pod.iface.host_ifindex;
    k.pod.namespace_ = pod.spec.namespace_;
    k.pod.name = pod.spec.name;
    k.pod.interface = pod.iface.host_ifname;
    k.pod.ips = pod.iface.ips;
    k.pod.netns_path = pod.spec.netns;
    k.labels = pod.spec.labels;
    k.netns_inode = pod.iface.netns_inode;
    const bool lookback = config_.lookback_pods == "all" || (config_.lookback_pods == "rules" && rule_pods.count(key));
    auto running = capturing.find(pod.iface.host_ifindex);
    if (lookback || running != capturing.end()) {
      want[k.pod.ifindex] = std::max(config_.limits.default_snaplen, running == capturing.end() ? 0u : running->second);
      want_keys.insert(key);
    }
    known.emplace(key, std::move(k));
  }
  // A pod counted without the TC programs (metrics.packet_level) gets them while it is captured.
  pods.hold_programs(want_keys);
  for (const auto& [key, pod] : pods.pods())
    if (want_keys.count(key) && !pod.programs) want.erase(pod.iface.host_ifindex);
  for (auto it = enabled_.begin(); it != enabled_.end();) {
    if (want.count(it->first)) {
      ++it;
      continue;
    }
    (void)datapath_.set_capture(it->first, 0);  // a pod that is gone has no slot left: nothing to undo
    manager_->unwatch(it->first);
    it = enabled_.erase(it);
  }
  for (const auto& [ifindex, snaplen] : want) {
    // Set already, and still set in the datapath: a pod attached again on the same interface (its
    // labels changed, its programs put back) has a new slot entry, without its capture.
    auto it = enabled_.find(ifindex);
    if (it != enabled_.end() && it->second == snaplen && datapath_.capture_snaplen(ifindex) == snaplen) continue;
    if (auto r = datapath_.set_capture(ifindex, snaplen); !r) {
      spdlog::error("captures: {}", r.error().message);
      continue;
    }
    enabled_[ifindex] = snaplen;
  }
  for (const auto& [key, k] : known)
    if (want.count(k.pod.ifindex)) manager_->watch(k.pod);
  std::lock_guard lock(mu_);
  pods_ = std::move(known);
}

void Captures::refuse(const std::string& reason, const std::string& message) {
  spdlog::warn("capture refused ({}): {}", reason, message);
  std::lock_guard lock(mu_);
  ++refused_[reason];
}

Captures::Launch Captures::launch(const CaptureSpec& spec, const std::string& trigger) {
  Launch out;
  auto refused = [&](actions::CaptureRefusal reason, const std::string& message) {
    out.refusal = reason;
    out.error = message;
    refuse(to_string(reason), message);
    return out;
  };
  actions::CaptureRequest req;
  {
    std::lock_guard lock(mu_);
    for (const auto& name : spec.pods) {
      auto it = pods_.find(name);
      if (it == pods_.end()) {
        out.refusal = actions::CaptureRefusal::UnknownPod;
        out.error = "pod '" + name + "' is not watched by this agent (or not attached yet)";
        break;
      }
      req.pods.push_back(it->second.pod);
    }
  }
  if (out.refusal) return refused(*out.refusal, out.error);
  if (req.pods.empty()) return refused(actions::CaptureRefusal::BadRequest, "no pods to capture");
  req.before_seconds = spec.before_seconds;
  req.after_seconds = spec.after_seconds;
  req.filter = spec.filter;
  req.snaplen = spec.snaplen;
  req.max_packets = spec.max_packets;
  req.max_bytes = spec.max_bytes;
  req.trigger = trigger;
  req.rule = spec.rule;
  req.anomaly_id = spec.anomaly_id;
  req.reason = spec.reason;
  auto started = manager_->start(req);  // counts its own refusals
  if (!started.ok()) {
    spdlog::warn("capture refused ({}): {}", to_string(started.refused->reason), started.refused->message);
    out.refusal = started.refused->reason;
    out.error = started.refused->message;
    return out;
  }
  spdlog::info("capture {} started ({}{}{})", started.id, trigger, spec.rule.empty() ? "" : " by rule ", spec.rule);
  out.id = started.id;
  return out;
}

Result<std::string> Captures::start(const CaptureSpec& spec, const std::string& trigger) {
  auto l = launch(spec, trigger);
  if (l.refusal) return make_error(l.error);
  return l.id;
}

Result<CaptureRequest> parse_capture_request(const std::string& body) {
  nlohmann::json j = nlohmann::json::parse(body, nullptr, false);
  if (j.is_discarded() || !j.is_object())
    return make_error("the request body must be a JSON object, e.g. {\"pods\": [\"default/web-1\"]}");
  static const std::set<std::string> known = {"pods", "namespace", "labels", "before", "after", "filter",
                                              "snaplen", "max_packets", "max_bytes", "reason"};
  for (const auto& [k, v] : j.items())
    if (!known.count(k))
      return make_error("unknown field '" + k + "' (known: pods, namespace, labels, before, after, filter, snaplen, max_packets, max_bytes, reason)");
  CaptureRequest req;
  CaptureSpec& spec = req.spec;
  if (j.contains("pods")) {
    if (!j["pods"].is_array()) return make_error("pods: expected a list of \"namespace/name\"");
    for (const auto& p : j["pods"]) {
      if (!p.is_string() || p.get<std::string>().find('/') == std::string::npos)
        return make_error("pods: expected \"namespace/name\" strings, got " + p.dump());
      spec.pods.push_back(p.get<std::string>());
    }
  }
  if (j.contains("namespace")) {
    if (!j["namespace"].is_string()) return make_error("namespace: expected a string");
    req.namespace_ = j["namespace"].get<std::string>();
  }
  if (j.contains("labels")) {
    if (!j["labels"].is_object()) return make_error("labels: expected an object of label: value");
    for (const auto& [k, v] : j["labels"].items()) {
      if (!v.is_string()) return make_error("labels." + k + ": expected a string");
      req.labels[k] = v.get<std::string>();
    }
  }
  if (spec.pods.empty() && req.namespace_.empty() && req.labels.empty())
    return make_error("say which pods: pods, namespace or labels");
  for (const char* f : {"before", "after"}) {
    if (!j.contains(f)) continue;
    auto d = duration_field(j[f], f);
    if (!d) return d.error();
    (std::string(f) == "before" ? spec.before_seconds : spec.after_seconds) = *d;
  }
  if (j.contains("filter")) {
    if (!j["filter"].is_string()) return make_error("filter: expected a pcap filter expression, e.g. \"tcp port 443\"");
    spec.filter = j["filter"].get<std::string>();
  }
  if (j.contains("reason")) {
    if (!j["reason"].is_string()) return make_error("reason: expected a string");
    spec.reason = j["reason"].get<std::string>();
  }
  for (const char* f : {"snaplen", "max_packets", "max_bytes"}) {
    if (!j.contains(f)) continue;
    auto n = count_field(j[f], f, std::string(f) == "max_bytes");
    if (!n) return n.error();
    if (std::string(f) == "snaplen") {
      if (*n == 0 || *n > UINT32_MAX) return make_error("snaplen: must be a positive number of bytes");
      spec.snaplen = static_cast<uint32_t>(*n);
    } else if (std::string(f) == "max_packets") {
      spec.max_packets = *n;
    } else {
      spec.max_bytes = *n;
    }
  }
  return req;
}

ApiResponse Captures::start_from_api(const std::string& body) {
  auto parsed = parse_capture_request(body);
  if (!parsed) {
    refuse(to_string(actions::CaptureRefusal::BadRequest), parsed.error().message);
    return error_answer(400, parsed.error().message);
  }
  CaptureSpec spec = std::move(parsed->spec);
  const std::string& ns = parsed->namespace_;
  const auto& labels = parsed->labels;
  if (!ns.empty() || !labels.empty()) {
    std::lock_guard lock(mu_);
    for (const auto& [key, k] : pods_) {
      if (!ns.empty() && k.pod.namespace_ != ns) continue;
      bool match = true;
      for (const auto& [lk, lv] : labels) {
        auto it = k.labels.find(lk);
        match = match && it != k.labels.end() && it->second == lv;
      }
      if (match && std::find(spec.pods.begin(), spec.pods.end(), key) == spec.pods.end()) spec.pods.push_back(key);
    }
    if (spec.pods.empty()) {
      const std::string msg = "no watched pod matches namespace '" + ns + "' and the labels given";
      refuse(to_string(actions::CaptureRefusal::UnknownPod), msg);
      return error_answer(404, msg);
    }
  }
  auto l = launch(spec, "manual");
  if (l.refusal) return json_answer(status_for(*l.refusal), {{"error", l.error}, {"reason", to_string(*l.refusal)}});
  auto m = manager_->manifest(l.id);
  return json_answer(201, m ? *m : nlohmann::json{{"id", l.id}});
}

ApiResponse Captures::api(const ApiRequest& r) {
  if (r.id.empty()) {
    if (r.method == "POST") return start_from_api(r.body);
    return json_answer(200, manager_->list());
  }
  if (r.method == "DELETE") {
    if (!manager_->manifest(r.id)) return error_answer(404, "no capture '" + r.id + "'");
    if (auto d = manager_->remove(r.id); !d) return error_answer(500, d.error().message);
    return json_answer(200, {{"id", r.id}, {"deleted", true}});
  }
  auto m = manager_->manifest(r.id);
  if (!m) return error_answer(404, "no capture '" + r.id + "'");
  if (r.sub.empty()) return json_answer(200, *m);
  auto path = manager_->pcap_path(r.id);
  if (!path) return error_answer(409, "capture '" + r.id + "' is still running; its pcapng is ready when it ends");
  ApiResponse out;
  out.content_type = "application/vnd.tcpdump.pcap";  // what Wireshark registers for pcap and pcapng
  out.file = *path;
  out.filename = r.id + ".pcapng";
  return out;
}

void Captures::describe(SeriesStore& s) {
  s.describe("vigil_captures_started_total", "Captures started.", SeriesKind::Counter);
  s.describe("vigil_captures_completed_total", "Captures that ended and finished writing (complete or not).", SeriesKind::Counter);
  s.describe("vigil_captures_failed_total", "Captures ended by an I/O error (full disk, ...).", SeriesKind::Counter);
  s.describe("vigil_captures_refused_total", "Capture requests refused, by reason (bad_request, unknown_pod, concurrency, quota, rule_budget, storage).", SeriesKind::Counter);
  s.describe("vigil_captures_running", "Captures running now.", SeriesKind::Gauge);
  s.describe("vigil_capture_packets_written_total", "Packets written to capture files.", SeriesKind::Counter);
  s.describe("vigil_capture_packets_lost_total", "Packets lost inside capture windows (the kernel's ring buffer was full).", SeriesKind::Counter);
  s.describe("vigil_capture_disk_bytes", "Bytes used by capture directories.", SeriesKind::Gauge);
  s.describe("vigil_lookback_pods", "Pods whose recent packets are kept for the `before` window of captures.", SeriesKind::Gauge);
  s.describe("vigil_lookback_bytes", "Memory held by the lookback rings.", SeriesKind::Gauge);
  s.describe("vigil_lookback_packets", "Packets held by the lookback rings.", SeriesKind::Gauge);
  s.describe("vigil_lookback_evicted_total", "Packets pushed out of a lookback ring by its time or size limit (not a loss).", SeriesKind::Counter);
  s.describe("vigil_capture_ring_records_total", "Packets the kernel copied into the capture ring buffer and the agent read.", SeriesKind::Counter);
  s.describe("vigil_capture_ring_lost_total", "Packets the kernel could not copy because the capture ring buffer was full.", SeriesKind::Counter);
}

void Captures::export_metrics(SeriesStore& s) {
  const auto st = manager_->stats();
  s.set("vigil_captures_started_total", {}, static_cast<double>(st.started));
  s.set("vigil_captures_completed_total", {}, static_cast<double>(st.completed));
  s.set("vigil_captures_failed_total", {}, static_cast<double>(st.failed));
  std::map<std::string, uint64_t> refused = st.refused;
  {
    std::lock_guard lock(mu_);
    for (const auto& [k, v] : refused_) refused[k] += v;
  }
  for (auto r : {actions::CaptureRefusal::BadRequest, actions::CaptureRefusal::UnknownPod, actions::CaptureRefusal::Concurrency,
                 actions::CaptureRefusal::Quota, actions::CaptureRefusal::RuleBudget, actions::CaptureRefusal::Storage})
    refused.emplace(to_string(r), 0);
  for (const auto& [reason, n] : refused)
    s.set("vigil_captures_refused_total", make_labels({{"reason", reason}}), static_cast<double>(n));
  s.set("vigil_captures_running", {}, static_cast<double>(st.running));
  s.set("vigil_capture_packets_written_total", {}, static_cast<double>(st.packets_written));
  s.set("vigil_capture_packets_lost_total", {}, static_cast<double>(st.packets_lost));
  s.set("vigil_capture_disk_bytes", {}, static_cast<double>(st.disk_bytes));
  s.set("vigil_lookback_pods", {}, static_cast<double>(st.lookback_pods));
  s.set("vigil_lookback_bytes", {}, static_cast<double>(st.lookback_bytes));
  s.set("vigil_lookback_packets", {}, static_cast<double>(st.lookback_packets));
  s.set("vigil_lookback_evicted_total", {}, static_cast<double>(st.lookback_evicted));
  const auto src = source_->stats();
  s.set("vigil_capture_ring_records_total", {}, static_cast<double>(src.records));
  s.set("vigil_capture_ring_lost_total", {}, static_cast<double>(src.lost));
}

}  // namespace vigil
