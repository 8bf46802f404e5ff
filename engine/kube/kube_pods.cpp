#include "engine/kube/kube_pods.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <random>
#include <set>

#include "engine/netns.h"

namespace vigil::kube {
namespace {

using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

constexpr const char* kObserveAnnotation = "vigil.dev/observe";
constexpr const char* kPacketLevelAnnotation = "vigil.dev/packet-level";

// Field readers that say which field is wrong. A missing optional field is fine.
Result<const json*> field(const json& obj, const char* name, const std::string& path, json::value_t type,
                          bool required = false) {
  auto it = obj.find(name);
  if (it == obj.end() || it->is_null()) {
    if (required) return make_error(path + name + ": missing");
    return static_cast<const json*>(nullptr);
  }
  if (it->type() != type) {
    const char* want = type == json::value_t::string ? "a string"
                       : type == json::value_t::object ? "an object"
                       : type == json::value_t::array ? "an array"
                       : type == json::value_t::boolean ? "true or false" : "another type";
    return make_error(path + name + ": expected " + want);
  }
  return &*it;
}

Result<std::string> string_field(const json& obj, const char* name, const std::string& path, bool required = false) {
  auto f = field(obj, name, path, json::value_t::string, required);
  if (!f) return f.error();
  return *f ? (*f)->get<std::string>() : std::string();
}

Result<void> string_map(const json& obj, const char* name, const std::string& path, std::map<std::string, std::string>& out) {
  auto f = field(obj, name, path, json::value_t::object);
  if (!f) return f.error();
  if (!*f) return {};
  for (auto it = (*f)->begin(); it != (*f)->end(); ++it) {
    if (!it.value().is_string()) return make_error(path + name + "." + it.key() + ": expected a string");
    out[it.key()] = it.value().get<std::string>();
  }
  return {};
}

struct Meta {
  std::string name, namespace_, uid, resource_version;
  std::map<std::string, std::string> labels, annotations;
  bool deleting = false;
  std::vector<OwnerRef> owners;
};

Result<Meta> parse_meta(const json& j, bool namespaced) {
  if (!j.is_object()) return make_error("expected an object");
  auto md = field(j, "metadata", "", json::value_t::object, true);
  if (!md) return md.error();
  const json& m = **md;
  Meta out;
  const std::string p = "metadata.";
  auto name = string_field(m, "name", p, true);
  if (!name) return name.error();
  if (name->empty()) return make_error("metadata.name: empty");
  out.name = *name;
  if (namespaced) {
    auto ns = string_field(m, "namespace", p, true);
    if (!ns) return ns.error();
    if (ns->empty()) return make_error("metadata.namespace: empty");
    out.namespace_ = *ns;
  }
  for (auto [key, dest] : {std::pair{"uid", &out.uid}, std::pair{"resourceVersion", &out.resource_version}}) {
    auto s = string_field(m, key, p);
    if (!s) return s.error();
    *dest = *s;
  }
  if (auto r = string_map(m, "labels", p, out.labels); !r) return r.error();
  if (auto r = string_map(m, "annotations", p, out.annotations); !r) return r.error();
  auto del = string_field(m, "deletionTimestamp", p);
  if (!del) return del.error();
  out.deleting = !del->empty();
  auto owners = field(m, "ownerReferences", p, json::value_t::array);
  if (!owners) return owners.error();
  if (*owners) {
    for (size_t i = 0; i < (*owners)->size(); ++i) {
      const json& o = (**owners)[i];
      const std::string op = p + "ownerReferences[" + std::to_string(i) + "].";
      if (!o.is_object()) return make_error(op.substr(0, op.size() - 1) + ": expected an object");
      OwnerRef ref;
      auto kind = string_field(o, "kind", op, true);
      if (!kind) return kind.error();
      auto oname = string_field(o, "name", op, true);
      if (!oname) return oname.error();
      auto uid = string_field(o, "uid", op);
      if (!uid) return uid.error();
      auto ctl = field(o, "controller", op, json::value_t::boolean);
      if (!ctl) return ctl.error();
      ref.kind = *kind;
      ref.name = *oname;
      ref.uid = *uid;
      ref.controller = *ctl && (*ctl)->get<bool>();
      out.owners.push_back(std::move(ref));
    }
  }
  return out;
}

bool in(const std::vector<std::string>& list, const std::string& s) {
  return std::find(list.begin(), list.end(), s) != list.end();
}

std::string pods_query(const KubeOptions& o) { return "fieldSelector=" + url_encode("spec.nodeName=" + o.node); }

}  // namespace

Result<PodObject> parse_pod(const json& j) {
  auto meta = parse_meta(j, true);
  if (!meta) return meta.error();
  PodObject pod;
  pod.namespace_ = meta->namespace_;
  pod.name = meta->name;
  pod.uid = meta->uid;
  pod.resource_version = meta->resource_version;
  pod.labels = std::move(meta->labels);
  pod.annotations = std::move(meta->annotations);
  pod.owners = std::move(meta->owners);
  pod.terminating = meta->deleting;
  auto spec = field(j, "spec", "", json::value_t::object);
  if (!spec) return spec.error();
  if (*spec) {
    auto node = string_field(**spec, "nodeName", "spec.");
    if (!node) return node.error();
    pod.node = *node;
    auto hn = field(**spec, "hostNetwork", "spec.", json::value_t::boolean);
    if (!hn) return hn.error();
    pod.host_network = *hn && (*hn)->get<bool>();
  }
  auto status = field(j, "status", "", json::value_t::object);
  if (!status) return status.error();
  if (*status) {
    const json& s = **status;
    auto phase = string_field(s, "phase", "status.");
    if (!phase) return phase.error();
    pod.phase = *phase;
    auto ips = field(s, "podIPs", "status.", json::value_t::array);
    if (!ips) return ips.error();
    if (*ips) {
      for (size_t i = 0; i < (*ips)->size(); ++i) {
        const json& e = (**ips)[i];
        const std::string ep = "status.podIPs[" + std::to_string(i) + "]";
        if (!e.is_object()) return make_error(ep + ": expected an object");
        auto ip = string_field(e, "ip", ep + ".", true);
        if (!ip) return ip.error();
        pod.ips.push_back(*ip);
      }
    }
    auto ip = string_field(s, "podIP", "status.");
    if (!ip) return ip.error();
    if (!ip->empty() && !in(pod.ips, *ip)) pod.ips.insert(pod.ips.begin(), *ip);
    for (const auto& a : pod.ips) {
      uint8_t key[16];
      if (!ip_to_key(a, key)) return make_error("status.podIPs: '" + a + "' is not an IP address");
    }
  }
  return pod;
}

Result<NamespaceObject> parse_namespace(const json& j) {
  auto meta = parse_meta(j, false);
  if (!meta) return meta.error();
  NamespaceObject ns;
  ns.name = meta->name;
  ns.resource_version = meta->resource_version;
  ns.labels = std::move(meta->labels);
  ns.annotations = std::move(meta->annotations);
  return ns;
}

Result<EndpointSliceObject> parse_endpoint_slice(const json& j) {
  auto meta = parse_meta(j, true);
  if (!meta) return meta.error();
  EndpointSliceObject out;
  out.namespace_ = meta->namespace_;
  out.name = meta->name;
  if (auto it = meta->labels.find("kubernetes.io/service-name"); it != meta->labels.end()) out.service = it->second;
  auto eps = field(j, "endpoints", "", json::value_t::array);
  if (!eps) return eps.error();
  if (!*eps) return out;  // a slice with no endpoints has a null or absent list
  for (size_t i = 0; i < (*eps)->size(); ++i) {
    const json& e = (**eps)[i];
    const std::string ep = "endpoints[" + std::to_string(i) + "]";
    if (!e.is_object()) return make_error(ep + ": expected an object");
    auto addrs = field(e, "addresses", ep + ".", json::value_t::array, true);
    if (!addrs) return addrs.error();
    std::string pod;
    auto ref = field(e, "targetRef", ep + ".", json::value_t::object);
    if (!ref) return ref.error();
    if (*ref) {
      auto kind = string_field(**ref, "kind", ep + ".targetRef.");
      if (!kind) return kind.error();
      auto name = string_field(**ref, "name", ep + ".targetRef.");
      if (!name) return name.error();
      if (*kind == "Pod") pod = *name;
    }
    for (size_t k = 0; k < (*addrs)->size(); ++k) {
      const json& a = (**addrs)[k];
      const std::string ap = ep + ".addresses[" + std::to_string(k) + "]";
      uint8_t key[16];
      if (!a.is_string()) return make_error(ap + ": expected a string");
      // FQDN slices (addressType FQDN) hold names, not addresses: nothing to map.
      if (!ip_to_key(a.get<std::string>(), key)) continue;
      out.endpoints.emplace_back(a.get<std::string>(), pod);
    }
  }
  return out;
}

Result<ServiceObject> parse_service(const json& j) {
  auto meta = parse_meta(j, true);
  if (!meta) return meta.error();
  ServiceObject out;
  out.namespace_ = meta->namespace_;
  out.name = meta->name;
  auto spec = field(j, "spec", "", json::value_t::object);
  if (!spec) return spec.error();
  if (!*spec) return out;
  auto ips = field(**spec, "clusterIPs", "spec.", json::value_t::array);
  if (!ips) return ips.error();
  if (*ips) {
    for (size_t i = 0; i < (*ips)->size(); ++i) {
      const json& a = (**ips)[i];
      if (!a.is_string()) return make_error("spec.clusterIPs[" + std::to_string(i) + "]: expected a string");
      out.cluster_ips.push_back(a.get<std::string>());
    }
  }
  auto ip = string_field(**spec, "clusterIP", "spec.");
  if (!ip) return ip.error();
  if (!ip->empty() && !in(out.cluster_ips, *ip)) out.cluster_ips.insert(out.cluster_ips.begin(), *ip);
  std::erase_if(out.cluster_ips, [](const std::string& a) {
    uint8_t key[16];
    return !ip_to_key(a, key);  // "None" (headless) and anything else that is not an address
  });
  return out;
}

Selection select_pods(const std::map<std::string, PodObject>& pods,
                      const std::map<std::string, NamespaceObject>& namespaces, const KubeOptions& o) {
  Selection out;
  for (const auto& [key, pod] : pods) {
    if (!o.node.empty() && pod.node != o.node) continue;  // not ours (rescheduled elsewhere)
    if (pod.host_network) {
      ++out.host_network;  // shares the node's network namespace: nothing of its own to watch
      continue;
    }
    if (pod.phase != "Running" && pod.phase != "Pending") {
      ++out.not_running;
      continue;
    }
    if (pod.ips.empty()) {
      ++out.no_ip;
      continue;
    }
    const NamespaceObject* ns = nullptr;
    if (auto it = namespaces.find(pod.namespace_); it != namespaces.end()) ns = &it->second;
    bool scoped = (o.include_namespaces.empty() || in(o.include_namespaces, pod.namespace_)) &&
                  !in(o.exclude_namespaces, pod.namespace_);
    std::string observe;
    if (auto a = pod.annotations.find(kObserveAnnotation); a != pod.annotations.end()) observe = a->second;
    else if (ns)
      if (auto na = ns->annotations.find(kObserveAnnotation); na != ns->annotations.end()) observe = na->second;
    if (o.observe == "annotated") scoped = scoped && observe == "true";
    else scoped = scoped && observe != "false";
    if (!scoped) {
      ++out.out_of_scope;
      continue;
    }
    KubePod k;
    k.spec.namespace_ = pod.namespace_;
    k.spec.name = pod.name;
    k.spec.ip = pod.ips.front();
    for (const auto& l : o.label_allowlist)
      if (auto it = pod.labels.find(l); it != pod.labels.end()) k.spec.labels[l] = it->second;
    // The pod's own say on its packets' programs, else its namespace's; anything but "true" or
    // "false" says nothing (metrics.packet_level decides).
    for (const auto* annotations : {&pod.annotations, ns ? &ns->annotations : nullptr}) {
      if (!annotations) continue;
      auto a = annotations->find(kPacketLevelAnnotation);
      if (a == annotations->end() || (a->second != "true" && a->second != "false")) continue;
      k.spec.packet_level = a->second == "true";
      break;
    }
    k.uid = pod.uid;
    k.node = pod.node;
    k.phase = pod.phase;
    k.ips = pod.ips;
    k.workload_kind = pod.workload_kind;
    k.workload_name = pod.workload_name;
    if (pod.workload_kind != "Pod") {  // a bare pod has no workload beyond itself
      k.spec.workload_kind = pod.workload_kind;
      k.spec.workload_name = pod.workload_name;
    }
    if (ns) k.namespace_labels = ns->labels;
    out.pods.push_back(std::move(k));
  }
  return out;  // std::map order: namespace/name
}

double KubeStatus::sync_age_seconds() const {
  if (!synced()) return -1;
  return std::chrono::duration<double>(Clock::now() - last_sync_steady).count();
}

// --- the source ---------------------------------------------------------------------------

Result<std::unique_ptr<KubePods>> KubePods::create(KubeOptions options) {
  if (options.node.empty()) return make_error("kubernetes: the node name is empty");
  auto conn = resolve_connection(options);
  if (!conn) return make_error("kubernetes: " + conn.error().message);
  return std::make_unique<KubePods>(std::move(options), std::move(*conn));
}

KubePods::KubePods(KubeOptions options, Connection connection) : options_(std::move(options)) {
  pods_client_ = std::make_unique<ApiClient>(connection, options_.request_timeout_seconds);
  ns_client_ = std::make_unique<ApiClient>(connection, options_.request_timeout_seconds);
  owner_client_ = std::make_unique<ApiClient>(connection, options_.request_timeout_seconds);
  slices_client_ = std::make_unique<ApiClient>(connection, options_.request_timeout_seconds);
  services_client_ = std::make_unique<ApiClient>(connection, options_.request_timeout_seconds);
}

KubePods::~KubePods() { stop(); }

void KubePods::start() {
  if (pods_thread_.joinable()) return;
  spdlog::info("kubernetes: following the pods of node {} from {}:{} ({})", options_.node,
               pods_client_->connection().host, pods_client_->connection().port, pods_client_->connection().origin);
  pods_thread_ = std::thread([this] { run_pods(); });
  ns_thread_ = std::thread([this] { run_namespaces(); });
  if (options_.watch_peers) {
    slices_thread_ = std::thread([this] { run_endpoint_slices(); });
    services_thread_ = std::thread([this] { run_services(); });
  }
}

void KubePods::stop() {
  {
    std::lock_guard lock(sleep_mu_);
    stopping_ = true;
  }
  sleep_cv_.notify_all();
  pods_client_->interrupt();
  ns_client_->interrupt();
  owner_client_->interrupt();
  slices_client_->interrupt();
  services_client_->interrupt();
  if (pods_thread_.joinable()) pods_thread_.join();
  if (ns_thread_.joinable()) ns_thread_.join();
  if (slices_thread_.joinable()) slices_thread_.join();
  if (services_thread_.joinable()) services_thread_.join();
  std::lock_guard lock(mu_);
  snap_.status.state = "stopped";
}

KubeSnapshot KubePods::snapshot() const {
  std::lock_guard lock(mu_);
  rebuild_peers_if_dirty();
  KubeSnapshot s = snap_;
  s.peers = peers_;
  s.status.peers_dropped = peers_dropped_;
  s.status.peer_rebuilds = peer_rebuilds_;
  s.status.token_reloads = pods_client_->tokens().reloads();
  return s;
}

std::shared_ptr<const PeerDirectory> KubePods::peers() const {
  std::lock_guard lock(mu_);
  rebuild_peers_if_dirty();
  return peers_;
}

uint64_t KubePods::generation() const {
  std::lock_guard lock(mu_);
  return snap_.generation;
}

bool KubePods::sleep_for(double seconds) {
  std::unique_lock lock(sleep_mu_);
  sleep_cv_.wait_for(lock, std::chrono::duration<double>(seconds), [this] { return stopping_.load(); });
  return !stopping_;
}

double KubePods::backoff_delay(uint64_t failures) {
  static thread_local std::mt19937 rng(std::random_device{}());
  const double exp = std::min<double>(static_cast<double>(failures > 0 ? failures - 1 : 0), 30);
  const double base = std::min(options_.backoff_max_seconds, options_.backoff_initial_seconds * std::pow(2.0, exp));
  return base * std::uniform_real_distribution<double>(0.5, 1.0)(rng);
}

void KubePods::count_error(const std::string& kind, const std::string& message, bool pods_stream) {
  spdlog::warn("kubernetes: {}", message);
  std::lock_guard lock(mu_);
  ++snap_.status.errors[kind];
  snap_.status.last_error = message;
  if (pods_stream) ++snap_.status.consecutive_errors;
}

void KubePods::publish() {
  Selection sel = select_pods(pods_, namespaces_, options_);
  std::vector<PodSpec> specs;
  specs.reserve(sel.pods.size());
  for (const auto& p : sel.pods) specs.push_back(p.spec);
  if (specs != snap_.pods) ++snap_.generation;
  snap_.pods = std::move(specs);
  snap_.details = std::move(sel.pods);
  snap_.status.skipped_host_network = sel.host_network;
  snap_.status.skipped_not_running = sel.not_running;
  snap_.status.skipped_no_ip = sel.no_ip;
  snap_.status.skipped_out_of_scope = sel.out_of_scope;
}

// One list-then-watch loop over a collection. The hooks turn objects into state.
struct KubePods::Reflector {
  KubePods& self;
  ApiClient& client;
  std::string what;       // "pods" or "namespaces", for messages
  std::string path;       // /api/v1/pods
  std::string selector;   // extra query ("fieldSelector=...") or ""
  bool pods_stream;       // its health is the source's health
  // Replaces the whole collection with a list's items (bad items already skipped).
  std::function<void(std::vector<json>&& items)> replace;
  // Applies one ADDED/MODIFIED/DELETED object; an error means the object was malformed.
  std::function<Result<void>(const std::string& type, const json& object)> apply;

  std::string rv;

  void synced() {
    std::lock_guard lock(self.mu_);
    auto& st = self.snap_.status;
    if (pods_stream) {
      st.last_sync = std::chrono::system_clock::now();
      st.last_sync_steady = Clock::now();
      st.consecutive_errors = 0;
      st.resource_version = rv;
    } else if (what == "namespaces") {
      st.namespaces_synced = true;
    } else {
      if (what == "endpointslices") self.slices_synced_ = true;
      else self.services_synced_ = true;
      st.peers_synced = self.slices_synced_ && self.services_synced_;
    }
  }
  void state(const char* s) {
    if (!pods_stream) return;
    std::lock_guard lock(self.mu_);
    self.snap_.status.state = s;
  }
  std::string query(const std::string& more) const {
    return path + "?" + (selector.empty() ? "" : selector + "&") + more;
  }
  // Error kind of a non-200 status.
  static std::string status_kind(int status) { return status == 401 || status == 403 ? "auth" : "http"; }
  static std::string status_message(int status, const std::string& body) {
    std::string msg = "HTTP " + std::to_string(status);
    json j = json::parse(body, nullptr, false);
    if (j.is_object() && j.contains("message") && j["message"].is_string()) msg += ": " + j["message"].get<std::string>();
    return msg;
  }

  // Lists every page. Returns false (after counting the error) when the list failed.
  bool list() {
    std::vector<json> items;
    std::string cont, list_rv;
    size_t bad = 0;
    for (int page = 0; page < 100000; ++page) {
      std::string q = "limit=" + std::to_string(self.options_.page_size);
      if (!cont.empty()) q += "&continue=" + url_encode(cont);
      auto r = client.get(query(q));
      if (r.status == 0) {
        self.count_error("connect", "list " + what + ": " + r.error, pods_stream);
        return false;
      }
      if (r.status != 200) {
        self.count_error(r.status == 410 ? "gone" : status_kind(r.status), "list " + what + ": " + status_message(r.status, r.body),
                         pods_stream);
        return false;  // a 410 on `continue` (an expired token) starts over after the backoff
      }
      json j = json::parse(r.body, nullptr, false);
      const json* md = j.is_object() && j.contains("metadata") && j["metadata"].is_object() ? &j["metadata"] : nullptr;
      if (!md || !j.contains("items") || !(j["items"].is_array() || j["items"].is_null()) || !md->contains("resourceVersion") ||
          !(*md)["resourceVersion"].is_string()) {
        self.count_error("decode", "list " + what + ": the response is not a " + what + " list (kept the last view)", pods_stream);
        return false;
      }
      list_rv = (*md)["resourceVersion"].get<std::string>();
      if (j["items"].is_array())
        for (auto& item : j["items"]) items.push_back(std::move(item));
      cont = md->contains("continue") && (*md)["continue"].is_string() ? (*md)["continue"].get<std::string>() : "";
      if (cont.empty()) break;
    }
    (void)bad;
    replace(std::move(items));
    rv = list_rv;
    {
      std::lock_guard lock(self.mu_);
      if (pods_stream) ++self.snap_.status.lists;
    }
    return true;
  }

  void run() {
    bool need_list = true;
    uint64_t failures = 0;
    auto listed_at = Clock::now();
    auto fail = [&]() {
      ++failures;
      state("backoff");
      return self.sleep_for(self.backoff_delay(failures));
    };
    while (!self.stopping_) {
      const double resync = self.options_.resync_seconds;
      if (resync > 0 && std::chrono::duration<double>(Clock::now() - listed_at).count() >= resync) need_list = true;
      if (need_list) {
        state("listing");
        if (!list()) {
          if (!fail()) break;
          continue;
        }
        need_list = false;
        failures = 0;
        listed_at = Clock::now();
        synced();
      }
      bool gone = false, watch_error = false, malformed = false;
      std::string watch_message;
      const double timeout = std::max(1.0, self.options_.watch_timeout_seconds);
      const std::string target = query("watch=true&resourceVersion=" + url_encode(rv) + "&allowWatchBookmarks=true&timeoutSeconds=" +
                                       std::to_string(static_cast<long>(timeout)));
      {
        std::lock_guard lock(self.mu_);
        if (pods_stream) ++self.snap_.status.watches;
      }
      auto res = client.stream(target, timeout + 30, [&](std::string_view line) {
        json ev = json::parse(line, nullptr, false);
        const char* problem = nullptr;
        if (ev.is_discarded()) problem = "not JSON";
        else if (!ev.is_object() || !ev.contains("type") || !ev["type"].is_string()) problem = "no type";
        else if (!ev.contains("object") || !ev["object"].is_object()) problem = "no object";
        if (problem) {
          self.count_error("decode", "watch " + what + ": skipped a malformed event (" + problem + ")", false);
          malformed = true;
          return true;
        }
        const std::string type = ev["type"].get<std::string>();
        const json& obj = ev["object"];
        if (type == "ERROR") {
          // A metav1.Status: 410 means our resourceVersion is too old.
          const int code = obj.contains("code") && obj["code"].is_number_integer() ? obj["code"].get<int>() : 0;
          if (code == 410) gone = true;
          else watch_error = true;
          watch_message = status_message(code, obj.dump());
          return false;
        }
        std::string obj_rv;
        if (obj.contains("metadata") && obj["metadata"].is_object() && obj["metadata"].contains("resourceVersion") &&
            obj["metadata"]["resourceVersion"].is_string())
          obj_rv = obj["metadata"]["resourceVersion"].get<std::string>();
        if (type == "BOOKMARK") {
          if (obj_rv.empty()) {
            self.count_error("decode", "watch " + what + ": a bookmark without resourceVersion", false);
            return true;
          }
          rv = obj_rv;
          if (pods_stream) {
            std::lock_guard lock(self.mu_);
            ++self.snap_.status.bookmarks;
          }
          synced();
          return true;
        }
        if (type != "ADDED" && type != "MODIFIED" && type != "DELETED") {
          self.count_error("decode", "watch " + what + ": skipped an event of unknown type '" + type + "'", false);
          malformed = true;
          return true;
        }
        if (auto r = apply(type, obj); !r) {
          self.count_error("decode", "watch " + what + ": skipped a malformed " + type + " object: " + r.error().message, false);
          malformed = true;
        }
        if (!obj_rv.empty()) rv = obj_rv;
        if (pods_stream) {
          std::lock_guard lock(self.mu_);
          ++self.snap_.status.events;
        }
        synced();
        return true;
      }, [&](int status) {
        if (status != 200) return;
        // The server took our resourceVersion: the view is current as of now.
        state("watching");
        synced();
      });
      if (self.stopping_) break;
      // A skipped event may have hidden a change: list again once this watch is over.
      if (malformed) need_list = true;
      if (gone || res.status == 410) {
        self.count_error("gone", "watch " + what + ": resourceVersion " + rv + " is too old (410 Gone); listing again", false);
        need_list = true;
        continue;
      }
      if (watch_error) {
        self.count_error("watch", "watch " + what + ": ERROR event: " + watch_message, pods_stream);
        need_list = true;
        if (!fail()) break;
        continue;
      }
      if (res.status != 0 && res.status != 200) {
        self.count_error(status_kind(res.status), "watch " + what + ": " + status_message(res.status, res.body), pods_stream);
        if (!fail()) break;
        continue;
      }
      if (!res.error.empty()) {
        const bool dropped = res.status == 200;
        self.count_error(dropped ? "stream" : "connect",
                         "watch " + what + (dropped ? ": the stream broke" : ": ") + (dropped ? std::string(res.partial_line ? " mid-event (" : " (") + res.error + ")" : res.error) +
                             "; resuming from resourceVersion " + rv,
                         pods_stream);
        if (!fail()) break;
        continue;
      }
      failures = 0;
      synced();  // the server ended the watch (timeoutSeconds): watch again from rv
    }
  }
};

void KubePods::run_pods() {
  Reflector r{*this, *pods_client_, "pods", "/api/v1/pods", pods_query(options_), true, {}, {}, ""};
  r.replace = [this](std::vector<json>&& items) {
    std::map<std::string, PodObject> fresh;
    for (const auto& item : items) {
      auto pod = parse_pod(item);
      if (!pod) {
        count_error("decode", "list pods: skipped a malformed pod: " + pod.error().message, false);
        continue;
      }
      resolve_workload(*pod);
      fresh[pod->key()] = std::move(*pod);
    }
    std::lock_guard lock(mu_);
    pods_ = std::move(fresh);
    publish();
  };
  r.apply = [this](const std::string& type, const json& obj) -> Result<void> {
    auto pod = parse_pod(obj);
    if (!pod) return pod.error();
    const bool gone = type == "DELETED" || (!options_.node.empty() && !pod->node.empty() && pod->node != options_.node);
    if (!gone) resolve_workload(*pod);
    std::lock_guard lock(mu_);
    if (gone) {
      auto it = pods_.find(pod->key());
      if (it != pods_.end() && (pod->uid.empty() || it->second.uid == pod->uid)) pods_.erase(it);
    } else {
      pods_[pod->key()] = std::move(*pod);
    }
    publish();
    return {};
  };
  r.run();
}

void KubePods::run_namespaces() {
  Reflector r{*this, *ns_client_, "namespaces", "/api/v1/namespaces", "", false, {}, {}, ""};
  r.replace = [this](std::vector<json>&& items) {
    std::map<std::string, NamespaceObject> fresh;
    for (const auto& item : items) {
      auto ns = parse_namespace(item);
      if (!ns) {
        count_error("decode", "list namespaces: skipped a malformed namespace: " + ns.error().message, false);
        continue;
      }
      fresh[ns->name] = std::move(*ns);
    }
    std::lock_guard lock(mu_);
    namespaces_ = std::move(fresh);
    publish();
  };
  r.apply = [this](const std::string& type, const json& obj) -> Result<void> {
    auto ns = parse_namespace(obj);
    if (!ns) return ns.error();
    std::lock_guard lock(mu_);
    if (type == "DELETED") namespaces_.erase(ns->name);
    else namespaces_[ns->name] = std::move(*ns);
    publish();
    return {};
  };
  r.run();
}

// --- remote peers -------------------------------------------------------------------------

// Rebuilds the address directory: endpoints name their pod and Service, cluster IPs their
// Service; an address in both keeps its pod. Bounded by max_peer_addresses.
void KubePods::rebuild_peers_if_dirty() const {
  if (!peers_dirty_) return;
  peers_dirty_ = false;
  ++peer_rebuilds_;
  auto dir = std::make_shared<PeerDirectory>();
  size_t dropped = 0;
  auto put = [&](const std::string& addr, PeerInfo info) {
    auto it = dir->find(addr);
    if (it != dir->end()) {
      if (it->second.pod.empty() && !info.pod.empty()) it->second = std::move(info);
      return;
    }
    if (dir->size() >= options_.max_peer_addresses) {
      ++dropped;
      return;
    }
    dir->emplace(addr, std::move(info));
  };
  for (const auto& [key, slice] : slices_)
    for (const auto& [addr, pod] : slice.endpoints) put(addr, PeerInfo{slice.namespace_, pod, slice.service});
  for (const auto& [key, svc] : services_)
    for (const auto& addr : svc.cluster_ips) put(addr, PeerInfo{svc.namespace_, "", svc.name});
  peers_ = std::move(dir);
  peers_dropped_ = dropped;
}

template <typename T, typename Parse>
void KubePods::mirror_peers(ApiClient& client, const char* resource, const char* path, const char* kind, Parse parse,
                            std::map<std::string, T>& store) {
  Reflector r{*this, client, resource, path, "", false, {}, {}, ""};
  r.replace = [&](std::vector<json>&& items) {
    std::map<std::string, T> fresh;
    for (const auto& item : items) {
      auto object = parse(item);
      if (!object) {
        count_error("decode",
                    std::string("list ") + resource + ": skipped a malformed " + kind + ": " + object.error().message,
                    false);
        continue;
      }
      fresh[object->namespace_ + "/" + object->name] = std::move(*object);
    }
    std::lock_guard lock(mu_);
    store = std::move(fresh);
    publish_peers();
  };
  r.apply = [&](const std::string& type, const json& obj) -> Result<void> {
    auto object = parse(obj);
    if (!object) return object.error();
    std::lock_guard lock(mu_);
    const std::string key = object->namespace_ + "/" + object->name;
    if (type == "DELETED") store.erase(key);
    else store[key] = std::move(*object);
    publish_peers();
    return {};
  };
  r.run();
}

void KubePods::run_endpoint_slices() {
  mirror_peers(*slices_client_, "endpointslices", "/apis/discovery.k8s.io/v1/endpointslices", "EndpointSlice",
               parse_endpoint_slice, slices_);
}

void KubePods::run_services() {
  mirror_peers(*services_client_, "services", "/api/v1/services", "Service", parse_service, services_);
}

// --- workloads ----------------------------------------------------------------------------

void KubePods::resolve_workload(PodObject& pod) {
  const OwnerRef* ctl = nullptr;
  for (const auto& o : pod.owners)
    if (o.controller) ctl = &o;
  if (!ctl) {
    pod.workload_kind = "Pod";
    pod.workload_name = pod.name;
    return;
  }
  auto [kind, name] = owner_of(pod.namespace_, ctl->kind, ctl->name);
  pod.workload_kind = kind;
  pod.workload_name = name;
}

std::pair<std::string, std::string> KubePods::owner_of(const std::string& ns, const std::string& kind, const std::string& name) {
  std::string collection;
  if (kind == "ReplicaSet") collection = "/apis/apps/v1/namespaces/" + ns + "/replicasets/";
  else if (kind == "Job") collection = "/apis/batch/v1/namespaces/" + ns + "/jobs/";
  else return {kind, name};  // StatefulSet, DaemonSet, ReplicationController, ...: the workload itself
  const std::string key = ns + "/" + kind + "/" + name;
  const auto now = Clock::now();
  auto cached = owner_cache_.find(key);
  if (cached != owner_cache_.end() &&
      std::chrono::duration<double>(now - cached->second.at).count() < options_.owner_ttl_seconds)
    return {cached->second.kind, cached->second.name};
  auto r = owner_client_->get(collection + url_encode(name));
  std::pair<std::string, std::string> out{kind, name};
  bool cache = false;
  if (r.status == 200) {
    json j = json::parse(r.body, nullptr, false);
    auto meta = parse_meta(j, true);
    if (!meta) {
      count_error("owner", kind + " " + ns + "/" + name + ": malformed object: " + meta.error().message, false);
    } else {
      cache = true;
      for (const auto& o : meta->owners)
        if (o.controller) out = {o.kind, o.name};  // Deployment or CronJob
    }
  } else if (r.status == 404) {
    cache = true;  // already gone: the pod's controller is the best name left
  } else if (!stopping_) {
    count_error("owner", "get " + kind + " " + ns + "/" + name + ": " + (r.status ? "HTTP " + std::to_string(r.status) : r.error),
                false);
  }
  // Not known now (the API server failed, or sent something malformed): what was known last, if
  // anything. The pod's workload is part of its series' labels; a name that flipped to the
  // ReplicaSet and back at each error would take the pod's series away and attach it again.
  if (!cache && cached != owner_cache_.end()) return {cached->second.kind, cached->second.name};
  if (cache && options_.owner_cache_size > 0) {
    if (owner_cache_.size() >= options_.owner_cache_size) {
      auto oldest = std::min_element(owner_cache_.begin(), owner_cache_.end(),
                                     [](const auto& a, const auto& b) { return a.second.at < b.second.at; });
      owner_cache_.erase(oldest);
    }
    owner_cache_[key] = {out.first, out.second, now};
  }
  return out;
}

}  // namespace vigil::kube
