// The YAML config parser. It walks the document by hand so that every error can name the file,
// the line (yaml-cpp marks are 0-based; messages are 1-based) and the key path, and it checks
// notifiers with actions::find_config_problem so the factory and the parser agree.
#include "engine/config.h"
#include "engine/pods.h"

#include <arpa/inet.h>
#include <glob.h>
#include <limits.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <set>
#include <sstream>

#include <linux/types.h>
#include <yaml-cpp/yaml.h>

#include "engine/kube/kube_client.h"
#include "vigil_abi.h"  // VIGIL_MAX_PODS, VIGIL_MAX_REMOTE_KEYS: the bounds of max_pods and max_keys

namespace vigil {
namespace {

namespace fs = std::filesystem;

constexpr size_t kMaxReportedErrors = 20;
constexpr double kMaxTickSeconds = 3600;

const std::vector<std::string> kTopKeys = {"node", "listen", "tick", "state_dir", "max_pods", "pods", "rules", "rule_limits", "notifiers", "metrics", "remote_context", "apiserver", "captures", "api"};
const std::vector<std::string> kRuleLimitsKeys = {"memory", "instructions", "quarantine_after"};
const std::vector<std::string> kCapturesKeys = {"enabled", "dir", "disk_quota", "max_concurrent", "max_duration", "max_bytes", "max_packets", "max_per_rule_per_hour", "before", "after", "snaplen", "lookback"};
const std::vector<std::string> kLookbackKeys = {"pods", "pending", "duration", "per_pod", "total", "ring_buffer"};
const std::vector<std::string> kApiKeys = {"token_file", "token_env"};
const std::vector<std::string> kApiServerKeys = {"addresses", "no_response_after", "cgroup"};
const std::vector<std::string> kRemoteKeys = {"namespaces", "pod_labels", "max_peers", "max_keys"};
const std::vector<std::string> kMetricsKeys = {"series_grace", "retina_compat", "dns_timeout", "dns_max_pending", "netstat", "packet_level", "tracepoint_audit", "ingress_hook", "tcx"};
const std::vector<std::string> kPacketLevelKeys = {"pods", "namespaces", "pod_labels"};
const std::vector<std::string> kNetstatKeys = {"enabled", "interval", "sockets", "statistics", "conntrack_by_pod"};
const std::vector<std::string> kPodsKeys = {"source", "file", "kubernetes"};
const std::vector<std::string> kKubeKeys = {"kubeconfig", "api_server", "ca_file", "token_file", "allow_insecure",
                                            "namespaces", "observe", "label_allowlist", "watch_timeout", "resync",
                                            "request_timeout", "backoff_initial", "backoff_max", "owner_cache_size"};
const std::vector<std::string> kKubeNamespaceKeys = {"include", "exclude"};
std::string join(const std::vector<std::string>& items, const std::string& sep) {
  std::string out;
  for (const auto& s : items) out += (out.empty() ? "" : sep) + s;
  return out;
}

std::string host_name() {
  char buf[HOST_NAME_MAX + 1] = {};
  if (gethostname(buf, sizeof buf - 1) != 0 || buf[0] == '\0') return "localhost";
  return buf;
}

// Joins `p` to `base_dir` unless it is absolute (or base_dir is empty).
std::string resolve(const std::string& base_dir, const std::string& p) {
  if (p.empty() || p[0] == '/' || base_dir.empty()) return p;
  return (fs::path(base_dir) / p).lexically_normal().string();
}

// glob(3) would read metacharacters in the config directory's own name as patterns.
std::string escape_glob(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '*' || c == '?' || c == '[' || c == ']' || c == '\\') out += '\\';
    out += c;
  }
  return out;
}

bool has_glob_chars(const std::string& s) { return s.find_first_of("*?[") != std::string::npos; }

Result<std::vector<std::string>> expand_one(const std::string& pattern, const std::string& base_dir) {
  const std::string full = pattern.empty() || pattern[0] == '/' || base_dir.empty()
                               ? pattern
                               : escape_glob(fs::path(base_dir).lexically_normal().string()) + "/" + pattern;
  const std::string shown = "'" + pattern + "'" + (full == pattern ? "" : " (" + full + ")");
  glob_t g{};
  const int rc = glob(full.c_str(), GLOB_MARK, nullptr, &g);
  std::vector<std::string> out;
  if (rc == 0)
    for (size_t i = 0; i < g.gl_pathc; ++i) out.emplace_back(g.gl_pathv[i]);
  globfree(&g);
  if (rc == GLOB_NOMATCH)
    return make_error(has_glob_chars(pattern) ? shown + " matches no file" : shown + ": no such file");
  if (rc != 0) return make_error(shown + ": cannot be read");
  for (const auto& p : out)
    if (!p.empty() && p.back() == '/')
      return make_error("'" + p.substr(0, p.size() - 1) + "' is a directory; name its files, e.g. '" + pattern +
                        (pattern.back() == '/' ? "" : "/") + "*.lua'");
  return out;  // glob(3) sorts its matches
}

// --- the walker -------------------------------------------------------------------------

class Parser {
 public:
  Parser(std::string origin, std::string base_dir) : origin_(std::move(origin)), base_dir_(std::move(base_dir)) {}

  Result<Config> parse(const std::string& text) {
    YAML::Node root;
    try {
      root = YAML::Load(text);
    } catch (const YAML::Exception& e) {
      return make_error(location(e.mark) + "invalid YAML: " + e.msg);
    }
    Config config = default_config();
    config.path = origin_;
    try {
      parse_root(root, config);
      config.pods.kubernetes.node = config.node;
    } catch (const std::exception& e) {  // a yaml-cpp surprise must not escape to the caller
      error(YAML::Mark::null_mark(), "", std::string("internal error while reading the config: ") + e.what());
    }
    if (!errors_.empty()) return make_error(join(errors_, "\n"));
    return config;
  }

 private:
  std::string location(const YAML::Mark& mark) const {
    if (mark.is_null() || mark.line < 0) return origin_ + ": ";
    return origin_ + ":" + std::to_string(mark.line + 1) + ": ";
  }

  void error(const YAML::Mark& mark, const std::string& path, const std::string& message) {
    if (errors_.size() == kMaxReportedErrors) errors_.push_back(origin_ + ": (further errors not shown)");
    if (errors_.size() > kMaxReportedErrors) return;
    errors_.push_back(location(mark) + (path.empty() ? "" : path + ": ") + message);
  }

  static std::string child(const std::string& path, const std::string& key) {
    return path.empty() ? key : path + "." + key;
  }

  // A node and where to point at it. An empty value (`url:`) has no useful position of its
  // own (yaml-cpp marks the next token), so it borrows its key's.
  struct Value {
    YAML::Node node;
    YAML::Mark mark;
  };
  static Value value_of(const YAML::Node& node) { return {node, node.Mark()}; }
  static Value value_of(const YAML::Node& key, const YAML::Node& node) {
    return {node, node.IsNull() ? key.Mark() : node.Mark()};
  }

  // The entries of a checked map, in document order.
  struct Entry {
    std::string name;
    YAML::Node key;
    Value value;
  };
  struct Entries {
    std::vector<Entry> items;
    const Entry* find(const std::string& name) const {
      for (const auto& e : items)
        if (e.name == name) return &e;
      return nullptr;
    }
  };

  // Checks that `v` is a map whose keys are known and unique.
  std::optional<Entries> map_entries(const Value& v, const std::string& path, const std::vector<std::string>& known) {
    if (!v.node.IsMap()) {
      error(v.mark, path, "expected a map with keys " + join(known, ", "));
      return std::nullopt;
    }
    Entries out;
    for (auto it = v.node.begin(); it != v.node.end(); ++it) {
      const YAML::Node key = it->first;
      if (!key.IsScalar()) {
        error(key.Mark(), path, "keys must be plain names");
        continue;
      }
      const std::string name = key.Scalar();
      if (std::find(known.begin(), known.end(), name) == known.end()) {
        error(key.Mark(), path, "unknown key '" + name + "' (known: " + join(known, ", ") + ")");
        continue;
      }
      if (const Entry* first = out.find(name)) {
        error(key.Mark(), child(path, name),
              "duplicate key (first at line " + std::to_string(first->key.Mark().line + 1) + ")");
        continue;
      }
      out.items.push_back({name, key, value_of(key, it->second)});
    }
    return out;
  }

  std::optional<std::string> string_value(const Value& v, const std::string& path) {
    if (!v.node.IsScalar()) {
      error(v.mark, path, "expected a string");
      return std::nullopt;
    }
    return v.node.Scalar();
  }

  std::optional<std::string> nonempty_string(const Value& v, const std::string& path) {
    auto s = string_value(v, path);
    if (s && s->empty()) {
      error(v.mark, path, "must not be empty");
      return std::nullopt;
    }
    return s;
  }

  std::optional<double> duration_value(const Value& v, const std::string& path) {
    if (!v.node.IsScalar()) {
      error(v.mark, path, "expected a duration such as 500ms, 2s, 1m30s or a number of seconds");
      return std::nullopt;
    }
    auto d = parse_duration(v.node.Scalar());
    if (!d) {
      error(v.mark, path, d.error().message);
      return std::nullopt;
    }
    return *d;
  }

  std::optional<long long> integer_value(const Value& v, const std::string& path) {
    long long out = 0;
    if (v.node.IsScalar()) {
      const std::string& s = v.node.Scalar();
      auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
      if (ec == std::errc() && end == s.data() + s.size() && !s.empty()) return out;
    }
    error(v.mark, path, "expected an integer");
    return std::nullopt;
  }

  void parse_root(const YAML::Node& root, Config& config) {
    if (!root.IsDefined() || root.IsNull()) return;  // an empty file: all defaults
    auto entries = map_entries(value_of(root), "", kTopKeys);
    if (!entries) return;
    for (const auto& [name, key, value] : entries->items) {
      if (name == "node") {
        if (auto s = nonempty_string(value, name)) config.node = *s;
      } else if (name == "listen") {
        if (auto s = string_value(value, name)) {
          if (auto problem = check_listen(*s)) error(value.mark, name, *problem);
          else config.listen = *s;
        }
      } else if (name == "tick") {
        if (auto d = duration_value(value, name)) {
          if (!(*d > 0 && *d <= kMaxTickSeconds)) error(value.mark, name, "must be greater than 0 and at most 1h");
          else config.tick_seconds = *d;
        }
      } else if (name == "max_pods") {
        bounded_integer(value, name, 1, VIGIL_MAX_PODS, config.max_pods);
      } else if (name == "state_dir") {
        if (auto s = nonempty_string(value, name)) config.state_dir = resolve(base_dir_, *s);
      } else if (name == "pods") {
        parse_pods(value, config.pods);
      } else if (name == "rules") {
        parse_rules(value, config);
      } else if (name == "rule_limits") {
        parse_rule_limits(value, config.rule_limits);
      } else if (name == "notifiers") {
        parse_notifiers(value, config.notifiers);
      } else if (name == "metrics") {
        parse_metrics(value, config.metrics);
      } else if (name == "remote_context") {
        parse_remote(value, config.remote_context);
      } else if (name == "apiserver") {
        parse_apiserver(value, config.apiserver);
      } else if (name == "captures") {
        parse_captures(value, config.captures);
      } else if (name == "api") {
        parse_api(value, config.api);
      }
    }
  }

  std::optional<uint64_t> size_value(const Value& v, const std::string& path) {
    if (!v.node.IsScalar()) {
      error(v.mark, path, "expected a size such as 64MiB, 1GiB or a number of bytes");
      return std::nullopt;
    }
    auto n = parse_size(v.node.Scalar());
    if (!n) {
      error(v.mark, path, n.error().message);
      return std::nullopt;
    }
    return *n;
  }

  // A size or count within [lo, hi], with the range named in the error.
  template <typename T>
  void bounded(std::optional<T> got, T lo, T hi, const Value& v, const std::string& path, const std::string& range, T& out) {
    if (!got) return;
    if (*got < lo || *got > hi) error(v.mark, path, "must be from " + range);
    else out = *got;
  }

  // An integer from `lo` to `hi` into `out`, or an error naming the range.
  template <typename T>
  void bounded_integer(const Value& v, const std::string& path, long long lo, long long hi, T& out) {
    long long got = static_cast<long long>(out);
    bounded<long long>(integer_value(v, path), lo, hi, v, path, std::to_string(lo) + " to " + std::to_string(hi), got);
    out = static_cast<T>(got);
  }

  void parse_rule_limits(const Value& v, RuleLimitsConfig& r) {
    auto entries = map_entries(v, "rule_limits", kRuleLimitsKeys);
    if (!entries) return;
    for (const auto& [name, key, value] : entries->items) {
      const std::string path = "rule_limits." + name;
      if (name == "memory") {
        bounded<uint64_t>(size_value(value, path), 1ull << 20, 1ull << 30, value, path, "1MiB to 1GiB", r.memory_bytes);
      } else if (name == "instructions") {
        bounded_integer(value, path, 100'000, 10'000'000'000ll, r.instructions);
      } else if (name == "quarantine_after") {
        bounded_integer(value, path, 1, 1000, r.quarantine_after);
      }
    }
  }

  void parse_captures(const Value& v, CapturesConfig& c) {
    auto entries = map_entries(v, "captures", kCapturesKeys);
    if (!entries) return;
    auto& l = c.limits;
    for (const auto& [name, key, value] : entries->items) {
      const std::string path = "captures." + name;
      auto count = [&](long long lo, long long hi) -> std::optional<long long> {
        auto n = integer_value(value, path);
        if (n && (*n < lo || *n > hi)) {
          error(value.mark, path, "must be from " + std::to_string(lo) + " to " + std::to_string(hi));
          return std::nullopt;
        }
        return n;
      };
      if (name == "enabled") {
        if (auto b = bool_value(value, path)) c.enabled = *b;
      } else if (name == "dir") {
        if (auto s = nonempty_string(value, path)) l.dir = resolve(base_dir_, *s);
      } else if (name == "disk_quota") {
        bounded<uint64_t>(size_value(value, path), 1ull << 20, 1ull << 50, value, path, "1MiB to 1PiB", l.disk_quota_bytes);
      } else if (name == "max_concurrent") {
        if (auto n = count(1, 64)) l.max_concurrent = static_cast<uint32_t>(*n);
      } else if (name == "max_duration") {
        bounded<double>(duration_value(value, path), 1, 3600, value, path, "1s to 1h", l.max_duration_seconds);
      } else if (name == "max_bytes") {
        bounded<uint64_t>(size_value(value, path), 64ull << 10, 1ull << 40, value, path, "64KiB to 1TiB", l.max_bytes_per_capture);
      } else if (name == "max_packets") {
        if (auto n = count(1, 1000000000)) l.max_packets_per_capture = static_cast<uint64_t>(*n);
      } else if (name == "max_per_rule_per_hour") {
        if (auto n = count(0, 100000)) l.max_per_rule_per_hour = static_cast<uint32_t>(*n);
      } else if (name == "before") {
        bounded<double>(duration_value(value, path), 0, 3600, value, path, "0s to 1h", l.default_before_seconds);
      } else if (name == "after") {
        bounded<double>(duration_value(value, path), 0, 3600, value, path, "0s to 1h", l.default_after_seconds);
      } else if (name == "snaplen") {
        if (auto n = count(64, 1536)) l.default_snaplen = static_cast<uint32_t>(*n);
      } else if (name == "lookback") {
        parse_lookback(value, c);
      }
    }
    if (l.default_before_seconds + l.default_after_seconds > l.max_duration_seconds)
      error(v.mark, "captures", "before + after (" + std::to_string(l.default_before_seconds + l.default_after_seconds) +
                                    " s) exceeds max_duration (" + std::to_string(l.max_duration_seconds) + " s)");
  }

  void parse_lookback(const Value& v, CapturesConfig& c) {
    auto entries = map_entries(v, "captures.lookback", kLookbackKeys);
    if (!entries) return;
    auto& l = c.limits;
    for (const auto& [name, key, value] : entries->items) {
      const std::string path = "captures.lookback." + name;
      if (name == "pods") {
        if (auto s = string_value(value, path)) {
          if (*s != "rules" && *s != "all" && *s != "none")
            error(value.mark, path, "unknown value '" + *s + "' (known: rules, all, none)");
          else c.lookback_pods = *s;
        }
      } else if (name == "pending") {
        if (auto b = bool_value(value, path)) c.lookback_pending = *b;
      } else if (name == "duration") {
        bounded<double>(duration_value(value, path), 1, 600, value, path, "1s to 10m", l.lookback_seconds);
      } else if (name == "per_pod") {
        bounded<uint64_t>(size_value(value, path), 64ull << 10, 1ull << 30, value, path, "64KiB to 1GiB", l.lookback_bytes_per_pod);
      } else if (name == "total") {
        bounded<uint64_t>(size_value(value, path), 64ull << 10, 16ull << 30, value, path, "64KiB to 16GiB", l.lookback_bytes_total);
      } else if (name == "ring_buffer") {
        auto n = size_value(value, path);
        if (!n) continue;
        if (*n < (64u << 10) || *n > (1u << 30) || (*n & (*n - 1)) != 0)
          error(value.mark, path, "must be a power of two from 64KiB to 1GiB (the kernel's ring buffer), e.g. 8MiB");
        else c.ring_buffer_bytes = static_cast<uint32_t>(*n);
      }
    }
  }

  void parse_api(const Value& v, ApiConfig& api) {
    auto entries = map_entries(v, "api", kApiKeys);
    if (!entries) return;
    for (const auto& [name, key, value] : entries->items) {
      const std::string path = "api." + name;
      auto s = nonempty_string(value, path);
      if (!s) continue;
      std::string token;
      if (name == "token_file") {
        api.token_file = resolve(base_dir_, *s);
        std::ifstream in(api.token_file, std::ios::binary);
        if (!in) {
          error(value.mark, path, "'" + api.token_file + "': " + std::strerror(errno));
          continue;
        }
        std::getline(in, token);
      } else {
        api.token_env = *s;
        const char* env = std::getenv(s->c_str());
        if (!env) {
          error(value.mark, path, "environment variable " + *s + " is not set");
          continue;
        }
        token = env;
      }
      while (!token.empty() && (token.back() == '\r' || token.back() == ' ' || token.back() == '\t')) token.pop_back();
      if (token.size() < 16) {
        error(value.mark, path, "the token must be at least 16 characters (it is " + std::to_string(token.size()) + ")");
        continue;
      }
      if (!api.token.empty()) {
        error(value.mark, path, "give either api.token_file or api.token_env, not both");
        continue;
      }
      api.token = token;
    }
  }

  std::optional<bool> bool_value(const Value& v, const std::string& path) {
    if (v.node.IsScalar()) {
      const std::string& s = v.node.Scalar();
      if (s == "true") return true;
      if (s == "false") return false;
    }
    error(v.mark, path, "expected true or false");
    return std::nullopt;
  }

  // A pod selector's `namespaces` (a list of names) or `pod_labels` (a map of label: value);
  // false when `name` is neither.
  bool parse_selector_key(const std::string& name, const std::string& path, const Value& value,
                          std::vector<std::string>& namespaces, std::map<std::string, std::string>& labels) {
    if (name == "namespaces") {
      if (!value.node.IsSequence()) {
        error(value.mark, path, "expected a list of namespace names");
        return true;
      }
      for (size_t i = 0; i < value.node.size(); ++i) {
        Value item = value_of(value.node[i]);
        if (auto s = nonempty_string(item, path + "[" + std::to_string(i) + "]")) namespaces.push_back(*s);
      }
      return true;
    }
    if (name == "pod_labels") {
      if (!value.node.IsMap()) {
        error(value.mark, path, "expected a map of label: value");
        return true;
      }
      for (const auto& kv : value.node) {
        Value lv = value_of(kv.first, kv.second);
        if (auto s = string_value(lv, path + "." + kv.first.Scalar())) labels[kv.first.Scalar()] = *s;
      }
      return true;
    }
    return false;
  }

  void parse_remote(const Value& v, RemoteContextConfig& remote) {
    auto entries = map_entries(v, "remote_context", kRemoteKeys);
    if (!entries) return;
    for (const auto& [name, key, value] : entries->items) {
      const std::string path = "remote_context." + name;
      if (parse_selector_key(name, path, value, remote.namespaces, remote.pod_labels)) {
      } else if (name == "max_peers") {
        bounded_integer(value, path, 1, 10000, remote.max_peers);
      } else if (name == "max_keys") {
        bounded_integer(value, path, 1, VIGIL_MAX_REMOTE_KEYS, remote.max_keys);
      }
    }
  }

  void parse_packet_level(const Value& v, MetricsConfig::PacketLevel& pl) {
    auto entries = map_entries(v, "metrics.packet_level", kPacketLevelKeys);
    if (!entries) return;
    std::optional<Value> pods_value;
    for (const auto& [name, key, value] : entries->items) {
      const std::string path = "metrics.packet_level." + name;
      if (parse_selector_key(name, path, value, pl.namespaces, pl.pod_labels)) {
      } else if (name == "pods") {
        pods_value = value;
        if (auto m = string_value(value, path)) {
          if (*m != "all" && *m != "selected") error(value.mark, path, "expected all or selected, got '" + *m + "'");
          else pl.all = *m == "all";
        }
      }
    }
    // A selector under `pods: all` would choose nothing: say so rather than ignore it.
    if (pl.all && (!pl.namespaces.empty() || !pl.pod_labels.empty()))
      error(pods_value ? pods_value->mark : v.mark, "metrics.packet_level.pods",
            "namespaces and pod_labels choose pods only with pods: selected (every pod has the programs with all)");
  }

  void parse_apiserver(const Value& v, ApiServerConfig& api) {
    auto entries = map_entries(v, "apiserver", kApiServerKeys);
    if (!entries) return;
    for (const auto& [name, key, value] : entries->items) {
      const std::string path = "apiserver." + name;
      if (name == "addresses") {
        if (!value.node.IsSequence()) {
          error(value.mark, path, "expected a list of IP:PORT, e.g. [10.96.0.1:443, \"[fd00::1]:443\"]");
          continue;
        }
        for (size_t i = 0; i < value.node.size(); ++i) {
          Value item = value_of(value.node[i]);
          const std::string ipath = path + "[" + std::to_string(i) + "]";
          auto text = nonempty_string(item, ipath);
          if (!text) continue;
          if (auto a = parse_address(*text)) api.addresses.push_back(*a);
          else error(item.mark, ipath, "expected IP:PORT, e.g. 10.96.0.1:443 or [fd00::1]:443, got '" + *text + "'");
        }
        // The programs' table holds VIGIL_API_MAX_SERVERS; said here, with the line, not at load.
        if (value.node.size() > VIGIL_API_MAX_SERVERS)
          error(value.mark, path,
                "at most " + std::to_string(VIGIL_API_MAX_SERVERS) + " addresses, got " + std::to_string(value.node.size()));
      } else if (name == "no_response_after") {
        if (auto d = duration_value(value, path)) {
          if (*d < 0.1 || *d > 600) error(value.mark, path, "must be from 100ms to 10m");
          else api.no_response_seconds = *d;
        }
      } else if (name == "cgroup") {
        if (auto s = nonempty_string(value, path)) api.cgroup = resolve(base_dir_, *s);
      }
    }
  }

  static std::optional<ApiServerConfig::Address> parse_address(const std::string& s) {
    const size_t colon = s.rfind(':');
    if (colon == std::string::npos || colon + 1 == s.size()) return std::nullopt;
    std::string host = s.substr(0, colon);
    const bool bracketed = host.size() >= 2 && host.front() == '[' && host.back() == ']';
    if (bracketed) host = host.substr(1, host.size() - 2);
    unsigned char buf[16];
    const bool v4 = inet_pton(AF_INET, host.c_str(), buf) == 1;
    const bool v6 = !v4 && inet_pton(AF_INET6, host.c_str(), buf) == 1;
    if (!(v4 && !bracketed) && !(v6 && bracketed)) return std::nullopt;
    int port = 0;
    const std::string port_text = s.substr(colon + 1);
    auto [end, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
    if (ec != std::errc() || end != port_text.data() + port_text.size() || port < 1 || port > 65535) return std::nullopt;
    return ApiServerConfig::Address{host, static_cast<uint16_t>(port)};
  }

  void parse_metrics(const Value& v, MetricsConfig& metrics) {
    auto entries = map_entries(v, "metrics", kMetricsKeys);
    if (!entries) return;
    for (const auto& [name, key, value] : entries->items) {
      const std::string path = "metrics." + name;
      if (name == "series_grace") {
        if (auto d = duration_value(value, path)) {
          if (*d < 0 || *d > 86400) error(value.mark, path, "must be from 0 to 24h");
          else metrics.series_grace_seconds = *d;
        }
      } else if (name == "retina_compat") {
        if (auto b = bool_value(value, path)) metrics.retina_compat = *b;
      } else if (name == "dns_timeout") {
        if (auto d = duration_value(value, path)) {
          if (*d < 0.1 || *d > 60) error(value.mark, path, "must be from 100ms to 1m");
          else metrics.dns_timeout_seconds = *d;
        }
      } else if (name == "dns_max_pending") {
        bounded_integer(value, path, 16, VIGIL_DNS_MAX_PENDING_LIMIT, metrics.dns_max_pending);
      } else if (name == "netstat") {
        parse_netstat(value, metrics.netstat);
      } else if (name == "packet_level") {
        parse_packet_level(value, metrics.packet_level);
      } else if (name == "tracepoint_audit") {
        if (auto b = bool_value(value, path)) metrics.tracepoint_audit = *b;
      } else if (name == "ingress_hook") {
        if (auto s = string_value(value, path)) {
          if (*s != "auto" && *s != "host" && *s != "pod")
            error(value.mark, path, "unknown value '" + *s + "' (known: auto, host, pod)");
          else metrics.ingress_hook = *s;
        }
      } else if (name == "tcx") {
        if (auto b = bool_value(value, path)) metrics.tcx = *b;
      }
    }
  }

  void parse_netstat(const Value& v, NetstatConfig& netstat) {
    auto entries = map_entries(v, "metrics.netstat", kNetstatKeys);
    if (!entries) return;
    for (const auto& [name, key, value] : entries->items) {
      const std::string path = "metrics.netstat." + name;
      if (name == "enabled") {
        if (auto b = bool_value(value, path)) netstat.enabled = *b;
      } else if (name == "interval") {
        if (auto d = duration_value(value, path)) {
          if (*d <= 0 || *d > 3600) error(value.mark, path, "must be more than 0 and at most 1h");
          else netstat.interval_seconds = *d;
        }
      } else if (name == "sockets") {
        if (auto m = string_value(value, path)) {
          if (*m != "node" && *m != "all" && *m != "none") error(value.mark, path, "expected node, all or none");
          else netstat.sockets = *m;
        }
      } else if (name == "conntrack_by_pod") {
        if (auto m = string_value(value, path)) {
          double share = -1;
          if (*m == "always") share = 0;
          else if (*m == "never") share = 2;
          else if (m->size() > 1 && m->back() == '%') {
            try {
              size_t used = 0;
              const double pct = std::stod(m->substr(0, m->size() - 1), &used);
              if (used == m->size() - 1 && pct >= 0 && pct <= 100) share = pct / 100;
            } catch (const std::exception&) {
            }
          }
          if (share < 0)
            error(value.mark, path, "expected a share of nf_conntrack_max such as 50%, or always or never; got '" + *m + "'");
          else netstat.conntrack_by_pod_above = share;
        }
      } else if (name == "statistics") {
        if (!value.node.IsSequence()) {
          error(value.mark, path, "expected a list of Group:Name, e.g. [TcpExt:ListenDrops, Udp:NoPorts]");
          continue;
        }
        netstat.statistics.clear();
        netstat.statistic_lines.clear();
        for (size_t i = 0; i < value.node.size(); ++i) {
          Value item = value_of(value.node[i]);
          const std::string ipath = path + "[" + std::to_string(i) + "]";
          auto s = nonempty_string(item, ipath);
          if (!s) continue;
          const size_t colon = s->find(':');
          if (colon == std::string::npos || colon == 0 || colon + 1 == s->size() || s->find_first_of(" \t", 0) != std::string::npos) {
            error(item.mark, ipath, "'" + *s + "' is not Group:Name (e.g. TcpExt:ListenDrops, Udp:NoPorts, Udp6:InErrors)");
            continue;
          }
          if (is_mib_setting(*s)) {
            error(item.mark, ipath, "'" + *s + "' is a setting or a gauge, not a counter");
            continue;
          }
          if (std::find(netstat.statistics.begin(), netstat.statistics.end(), *s) != netstat.statistics.end()) {
            error(item.mark, ipath, "'" + *s + "' is listed twice");
            continue;
          }
          netstat.statistics.push_back(*s);
          netstat.statistic_lines.push_back(item.mark.line + 1);
        }
      }
    }
  }

  static std::optional<std::string> check_listen(const std::string& s) {
    const size_t colon = s.rfind(':');
    if (colon == std::string::npos) return "expected host:port, e.g. 127.0.0.1:9965";
    const std::string host = s.substr(0, colon);
    const std::string port_text = s.substr(colon + 1);
    if (host.empty()) return "missing host in '" + s + "' (use 0.0.0.0:PORT to listen on every address)";
    if (host.find(':') != std::string::npos && (host.front() != '[' || host.back() != ']'))
      return "IPv6 addresses need brackets, e.g. [::1]:9965";
    int port = 0;
    auto [end, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
    if (port_text.empty() || ec != std::errc() || end != port_text.data() + port_text.size() || port < 1 ||
        port > 65535)
      return "port '" + port_text + "' is not a number from 1 to 65535";
    return std::nullopt;
  }

  void parse_pods(const Value& v, PodsSourceConfig& pods) {
    auto entries = map_entries(v, "pods", kPodsKeys);
    if (!entries) return;
    std::optional<std::string> source;
    if (const Entry* e = entries->find("source")) {
      source = string_value(e->value, "pods.source");
      if (!source) return;
      if (*source != "file" && *source != "netns" && *source != "kubernetes" && *source != "none") {
        error(e->value.mark, "pods.source", "unknown source '" + *source + "' (known: file, netns, kubernetes, none)");
        return;
      }
    }
    const Entry* file_entry = entries->find("file");
    if (!source) source = file_entry ? "file" : "netns";  // `file:` alone implies source: file
    pods.source = *source;
    if (const Entry* k = entries->find("kubernetes")) {
      if (pods.source != "kubernetes") error(k->key.Mark(), "pods.kubernetes", "only used with source: kubernetes");
      else parse_kubernetes(k->value, pods.kubernetes);
    }
    if (!file_entry) {
      if (pods.source == "file") error(v.mark, "pods", "missing key 'file' (required with source: file)");
      return;
    }
    const Value& fv = file_entry->value;
    auto file = nonempty_string(fv, "pods.file");
    if (!file) return;
    pods.file = resolve(base_dir_, *file);
    if (pods.source != "file") return;  // kept, but not needed to exist
    struct stat st {};
    if (stat(pods.file.c_str(), &st) != 0)
      error(fv.mark, "pods.file", "'" + pods.file + "': " + std::strerror(errno));
    else if (S_ISDIR(st.st_mode))
      error(fv.mark, "pods.file", "'" + pods.file + "' is a directory, not a pods file");
  }

  // Why `path` cannot be used as a file ("'/x': No such file or directory"), or nothing.
  static std::optional<std::string> file_problem(const std::string& path) {
    struct stat st {};
    if (stat(path.c_str(), &st) != 0) return "'" + path + "': " + std::strerror(errno);
    if (S_ISDIR(st.st_mode)) return "'" + path + "' is a directory";
    return std::nullopt;
  }

  // DNS-1123 label (namespace names).
  static bool valid_namespace(const std::string& s) {
    if (s.empty() || s.size() > 63) return false;
    for (char c : s)
      if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-')) return false;
    return s.front() != '-' && s.back() != '-';
  }

  // A label key: [prefix/]name, name 1-63 of [A-Za-z0-9._-] starting and ending alphanumeric.
  static bool valid_label_key(const std::string& key) {
    const size_t slash = key.find('/');
    const std::string prefix = slash == std::string::npos ? "" : key.substr(0, slash);
    const std::string name = slash == std::string::npos ? key : key.substr(slash + 1);
    auto alnum = [](char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'); };
    if (name.empty() || name.size() > 63 || !alnum(name.front()) || !alnum(name.back())) return false;
    for (char c : name)
      if (!alnum(c) && c != '-' && c != '_' && c != '.') return false;
    if (slash == std::string::npos) return true;
    if (prefix.empty() || prefix.size() > 253 || !alnum(prefix.front()) || !alnum(prefix.back())) return false;
    for (char c : prefix)
      if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.')) return false;
    return true;
  }

  void parse_kubernetes(const Value& v, kube::KubeOptions& k) {
    auto entries = map_entries(v, "pods.kubernetes", kKubeKeys);
    if (!entries) return;
    bool backoff_max_set = false;
    for (const auto& [name, key, value] : entries->items) {
      const std::string path = "pods.kubernetes." + name;
      auto existing_file = [&](std::string& out) {
        auto s = nonempty_string(value, path);
        if (!s) return;
        const std::string f = resolve(base_dir_, *s);
        if (auto problem = file_problem(f)) error(value.mark, path, *problem);
        else out = f;
      };
      auto string_list = [&](const Value& lv, const std::string& lpath, std::vector<std::string>& out,
                             bool (*valid)(const std::string&), const char* what) {
        if (!lv.node.IsSequence()) {
          error(lv.mark, lpath, std::string("expected a list of ") + what);
          return;
        }
        out.clear();
        for (size_t i = 0; i < lv.node.size(); ++i) {
          const Value item = value_of(lv.node[i]);
          const std::string ipath = lpath + "[" + std::to_string(i) + "]";
          auto s = string_value(item, ipath);
          if (!s) continue;
          if (!valid(*s)) error(item.mark, ipath, "'" + *s + "' is not a valid " + std::string(what).substr(0, std::string(what).size() - 1));
          else if (std::find(out.begin(), out.end(), *s) == out.end()) out.push_back(*s);
        }
      };
      if (name == "kubeconfig" || name == "ca_file" || name == "token_file") {
        existing_file(name == "kubeconfig" ? k.kubeconfig : name == "ca_file" ? k.ca_file : k.token_file);
      } else if (name == "api_server") {
        if (auto s = nonempty_string(value, path)) {
          std::string host;
          int port = 0;
          if (auto r = kube::parse_server_url(*s, host, port); !r) error(value.mark, path, r.error().message);
          else k.api_server = *s;
        }
      } else if (name == "allow_insecure") {
        if (auto b = bool_value(value, path)) k.allow_insecure = *b;
      } else if (name == "namespaces") {
        auto ns = map_entries(value, path, kKubeNamespaceKeys);
        if (!ns) continue;
        for (const auto& e : ns->items)
          string_list(e.value, path + "." + e.name, e.name == "include" ? k.include_namespaces : k.exclude_namespaces,
                      &valid_namespace, "namespace names");
      } else if (name == "observe") {
        if (auto s = string_value(value, path)) {
          if (*s != "all" && *s != "annotated") error(value.mark, path, "unknown value '" + *s + "' (known: all, annotated)");
          else k.observe = *s;
        }
      } else if (name == "label_allowlist") {
        string_list(value, path, k.label_allowlist, &valid_label_key, "label keys");
        if (auto clash = series_label_clash(k.label_allowlist)) error(value.mark, path, *clash);
      } else if (name == "watch_timeout") {
        bounded<double>(duration_value(value, path), 1, 3600, value, path, "1s to 1h", k.watch_timeout_seconds);
      } else if (name == "resync") {
        auto d = duration_value(value, path);
        if (d && *d != 0 && (*d < 10 || *d > 86400)) error(value.mark, path, "must be 0 (off) or from 10s to 24h");
        else if (d) k.resync_seconds = *d;
      } else if (name == "request_timeout") {
        bounded<double>(duration_value(value, path), 0.1, 300, value, path, "100ms to 5m", k.request_timeout_seconds);
      } else if (name == "backoff_initial") {
        bounded<double>(duration_value(value, path), 0.01, 60, value, path, "10ms to 1m", k.backoff_initial_seconds);
      } else if (name == "backoff_max") {
        backoff_max_set = true;
        bounded<double>(duration_value(value, path), 0.01, 3600, value, path, "10ms to 1h", k.backoff_max_seconds);
      } else if (name == "owner_cache_size") {
        bounded_integer(value, path, 0, 1000000, k.owner_cache_size);
      }
    }
    if (!backoff_max_set) k.backoff_max_seconds = std::max(k.backoff_max_seconds, k.backoff_initial_seconds);
    else if (k.backoff_max_seconds < k.backoff_initial_seconds)
      error(entries->find("backoff_max")->value.mark, "pods.kubernetes.backoff_max", "must be at least backoff_initial");
    // A kubeconfig is read now so that a broken one fails at load, with its own message.
    if (!k.kubeconfig.empty()) {
      std::ifstream in(k.kubeconfig);
      std::stringstream text;
      text << in.rdbuf();
      if (auto c = kube::parse_kubeconfig(text.str(), k.kubeconfig, k.allow_insecure); !c)
        error(entries->find("kubeconfig")->value.mark, "pods.kubernetes.kubeconfig", c.error().message);
    }
  }

  // Expands the patterns into config.rules and keeps them as written (rule_patterns), for the
  // agent to expand again as files come and go.
  void parse_rules(const Value& v, Config& config) {
    if (!v.node.IsSequence()) {
      error(v.mark, "rules", "expected a list of rule files or glob patterns");
      return;
    }
    auto& rules = config.rules;
    rules.clear();
    config.rule_patterns.clear();
    config.rules_base_dir = base_dir_;
    std::set<std::string> seen;
    for (size_t i = 0; i < v.node.size(); ++i) {
      const std::string path = "rules[" + std::to_string(i) + "]";
      const Value item = value_of(v.node[i]);
      auto pattern = nonempty_string(item, path);
      if (!pattern) continue;
      config.rule_patterns.push_back(*pattern);
      auto files = expand_one(*pattern, base_dir_);
      if (!files) {
        error(item.mark, path, files.error().message);
        continue;
      }
      for (auto& f : *files)
        if (seen.insert(f).second) rules.push_back(std::move(f));
    }
  }

  void parse_notifiers(const Value& v, std::vector<actions::NotifierConfig>& notifiers) {
    if (!v.node.IsSequence()) {
      error(v.mark, "notifiers", "expected a list of notifiers");
      return;
    }
    notifiers.clear();
    std::map<std::string, int> first_line;  // name -> line of its first definition
    for (size_t i = 0; i < v.node.size(); ++i) {
      const std::string path = "notifiers[" + std::to_string(i) + "]";
      YAML::Mark name_mark;
      auto n = parse_notifier(value_of(v.node[i]), path, name_mark);
      if (!n) continue;
      if (auto [it, inserted] = first_line.emplace(n->name, name_mark.line + 1); !inserted) {
        error(name_mark, path + ".name",
              "duplicate notifier '" + n->name + "' (first at line " + std::to_string(it->second) + ")");
        continue;
      }
      notifiers.push_back(std::move(*n));
    }
  }

  std::optional<actions::NotifierConfig> parse_notifier(const Value& item, const std::string& path,
                                                        YAML::Mark& name_mark) {
    std::vector<std::string> known;
    for (const auto& [key, types] : actions::notifier_config_keys()) known.push_back(key);
    auto entries = map_entries(item, path, known);
    if (!entries) return std::nullopt;
    const size_t errors_before = errors_.size();
    if (!entries->find("name")) error(item.mark, path, "missing key 'name'");
    if (!entries->find("type"))
      error(item.mark, path, "missing key 'type' (webhook, slack, pagerduty, alertmanager or log)");

    actions::NotifierConfig n;
    std::map<std::string, YAML::Mark> marks;  // field as find_config_problem names it -> where
    bool backoff_max_set = false;
    const auto text = [&](const Value& v, const std::string& p, std::string& out) {
      if (auto s = string_value(v, p)) out = *s;
    };
    const auto file = [&](const Value& v, const std::string& p, std::string& out) {
      if (auto s = nonempty_string(v, p)) out = resolve(base_dir_, *s);
    };
    const auto seconds = [&](const Value& v, const std::string& p, double& out) {
      if (auto d = duration_value(v, p)) out = *d;
    };
    const auto integer = [&](const Value& v, const std::string& p, int& out) {
      if (auto i = integer_value(v, p)) out = static_cast<int>(std::clamp<long long>(*i, INT_MIN, INT_MAX));
    };
    for (const auto& [name, key, v] : entries->items) {
      const std::string p = child(path, name);
      marks[name] = v.mark;
      if (name == "name") {
        name_mark = v.mark;
        text(v, p, n.name);
      } else if (name == "type") text(v, p, n.type);
      else if (name == "url") text(v, p, n.url);
      else if (name == "url_file") file(v, p, n.url_file);
      else if (name == "url_env") text(v, p, n.url_env);
      else if (name == "urls") parse_urls(v, p, n.urls, marks);
      else if (name == "headers") parse_headers(v, p, n.headers, marks);
      else if (name == "ca_file") file(v, p, n.ca_file);
      else if (name == "secret") text(v, p, n.secret);
      else if (name == "secret_file") file(v, p, n.secret_file);
      else if (name == "secret_env") text(v, p, n.secret_env);
      else if (name == "signature_header") text(v, p, n.signature_header);
      else if (name == "template") text(v, p, n.body_template);
      else if (name == "routing_key") text(v, p, n.routing_key);
      else if (name == "routing_key_file") file(v, p, n.routing_key_file);
      else if (name == "routing_key_env") text(v, p, n.routing_key_env);
      else if (name == "agent_url") text(v, p, n.agent_url);
      else if (name == "resend_interval") seconds(v, p, n.resend_interval_seconds);
      else if (name == "timeout") seconds(v, p, n.timeout_seconds);
      else if (name == "backoff_initial") seconds(v, p, n.backoff_initial_seconds);
      else if (name == "backoff_max") {
        backoff_max_set = true;
        seconds(v, p, n.backoff_max_seconds);
      } else if (name == "max_attempts") integer(v, p, n.max_attempts);
      else if (name == "queue_limit") {
        if (auto i = integer_value(v, p)) n.queue_limit = static_cast<size_t>(std::max<long long>(*i, 0));
      } else if (name == "group_wait") seconds(v, p, n.group_wait_seconds);
      else if (name == "suppress_repeats") seconds(v, p, n.suppress_repeats_seconds);
      else if (name == "rate_limit") integer(v, p, n.rate_limit);
      else if (name == "rate_limit_period") seconds(v, p, n.rate_limit_period_seconds);
    }
    if (errors_.size() != errors_before) return std::nullopt;

    for (const auto& [name, key, v] : entries->items) {
      const std::string types = actions::types_taking(name, n.type);
      if (!types.empty())
        error(key.Mark(), child(path, name),
              std::string("only used by type") + (types.find(',') == std::string::npos ? " " : "s ") + types);
    }
    if (errors_.size() != errors_before) return std::nullopt;
    // An unset backoff_max follows a larger backoff_initial rather than rejecting it.
    if (!backoff_max_set) n.backoff_max_seconds = std::max(n.backoff_max_seconds, n.backoff_initial_seconds);

    const auto report = [&](const actions::NotifierConfigProblem& problem) {
      std::string field = problem.field;
      auto it = marks.find(field);
      if (it == marks.end()) it = marks.find(field.substr(0, field.find('[')));
      error(it != marks.end() ? it->second : item.mark, child(path, field), problem.message);
    };
    if (auto problem = actions::find_config_problem(n)) {
      report(*problem);
      return std::nullopt;
    }
    // Secret files and variables must exist now; they are read again when the notifier starts.
    actions::NotifierConfig with_secrets = n;
    if (auto problem = actions::load_secrets(with_secrets)) {
      report(*problem);
      return std::nullopt;
    }
    if (auto problem = actions::find_config_problem(with_secrets)) {
      report(*problem);
      return std::nullopt;
    }
    return n;
  }

  void parse_urls(const Value& v, const std::string& path, std::vector<std::string>& urls,
                  std::map<std::string, YAML::Mark>& marks) {
    if (!v.node.IsSequence() || v.node.size() == 0) {
      error(v.mark, path, "expected a list of URLs");
      return;
    }
    for (size_t i = 0; i < v.node.size(); ++i) {
      const std::string p = path + "[" + std::to_string(i) + "]";
      Value item = value_of(v.node[i]);
      marks["urls[" + std::to_string(i) + "]"] = item.mark;
      if (auto s = string_value(item, p)) urls.push_back(*s);
    }
  }

  void parse_headers(const Value& v, const std::string& path, std::map<std::string, std::string>& headers,
                     std::map<std::string, YAML::Mark>& marks) {
    if (!v.node.IsMap()) {
      error(v.mark, path, "expected a map of header names to values");
      return;
    }
    for (auto it = v.node.begin(); it != v.node.end(); ++it) {
      if (!it->first.IsScalar()) {
        error(it->first.Mark(), path, "header names must be strings");
        continue;
      }
      const std::string name = it->first.Scalar();
      const std::string p = path + "." + name;
      // Only the name is ever shown in errors: the value may be a secret.
      auto value = string_value(value_of(it->first, it->second), p);
      if (!value) continue;
      if (!headers.emplace(name, *value).second) {
        error(it->first.Mark(), p, "duplicate header");
        continue;
      }
      marks["headers." + name] = it->first.Mark();
    }
  }

  const std::string origin_;
  const std::string base_dir_;
  std::vector<std::string> errors_;
};

}  // namespace

Result<double> parse_duration(const std::string& text) {
  const std::string hint = " (expected e.g. 500ms, 2s, 1m30s, 1h or a number of seconds)";
  if (text.empty()) return make_error("empty duration" + hint);
  const char* p = text.data();
  const char* end = p + text.size();
  double total = 0;
  bool any_unit = false;
  while (p < end) {
    if (!(*p >= '0' && *p <= '9') && *p != '.') return make_error("invalid duration '" + text + "'" + hint);
    double value = 0;
    auto [num_end, ec] = std::from_chars(p, end, value, std::chars_format::fixed);
    if (ec != std::errc()) return make_error("invalid duration '" + text + "'" + hint);
    p = num_end;
    if (p == end) {
      if (any_unit) return make_error("invalid duration '" + text + "': missing unit after the last number" + hint);
      total = value;  // a plain number of seconds
      break;
    }
    double scale = 0;
    if (end - p >= 2 && p[0] == 'm' && p[1] == 's') {
      scale = 0.001;
      p += 2;
    } else if (*p == 's') {
      scale = 1;
      ++p;
    } else if (*p == 'm') {
      scale = 60;
      ++p;
    } else if (*p == 'h') {
      scale = 3600;
      ++p;
    } else {
      return make_error("invalid duration '" + text + "': unknown unit" + hint);
    }
    any_unit = true;
    total += value * scale;
  }
  if (!std::isfinite(total)) return make_error("invalid duration '" + text + "': too large");
  return total;
}

Result<uint64_t> parse_size(const std::string& text) {
  const std::string hint = " (expected e.g. 64MiB, 1GiB, 512KiB or a number of bytes)";
  size_t digits = 0;
  while (digits < text.size() && text[digits] >= '0' && text[digits] <= '9') ++digits;
  if (digits == 0) return make_error("invalid size '" + text + "'" + hint);
  uint64_t n = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + digits, n);
  if (ec != std::errc()) return make_error("invalid size '" + text + "': too large");
  const std::string unit = text.substr(digits);
  static const std::map<std::string, uint64_t> units = {
      {"", 1},        {"B", 1},           {"KiB", 1ull << 10}, {"MiB", 1ull << 20}, {"GiB", 1ull << 30},
      {"TiB", 1ull << 40}, {"KB", 1000}, {"MB", 1000000},     {"GB", 1000000000}, {"TB", 1000000000000}};
  auto it = units.find(unit);
  if (it == units.end()) return make_error("invalid size '" + text + "': unknown unit '" + unit + "'" + hint);
  if (n > UINT64_MAX / it->second) return make_error("invalid size '" + text + "': too large");
  return n * it->second;
}

Result<std::vector<std::string>> expand_rule_paths(const std::vector<std::string>& patterns,
                                                   const std::string& base_dir) {
  std::vector<std::string> out;
  std::set<std::string> seen;
  for (const auto& pattern : patterns) {
    auto files = expand_one(pattern, base_dir);
    if (!files) return context("rules", files.error());
    for (auto& f : *files)
      if (seen.insert(f).second) out.push_back(std::move(f));
  }
  return out;
}

std::vector<std::string> shipped_rule_pack() {
  std::vector<fs::path> candidates;
  std::error_code ec;
  const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  if (!ec) candidates.push_back(exe.parent_path() / ".." / "share" / "vigil" / "rules");
  // This file is compiled from <source tree>/engine/config.cpp: a build run from a checkout
  // (`make run`) finds the pack there.
  candidates.push_back(fs::path(__FILE__).parent_path().parent_path() / "rules" / "pack");
  for (const auto& dir : candidates) {
    if (!fs::is_directory(dir, ec)) continue;
    auto files = expand_one("*.lua", dir.lexically_normal().string());
    return files ? *files : std::vector<std::string>{};
  }
  return {};
}

const std::vector<std::string>& default_netstat_statistics() {
  static const std::vector<std::string> kDefaults = {
      // IPv4 and IPv6: packets the stack threw away or could not route.
      "Ip:InHdrErrors", "Ip:InAddrErrors", "Ip:InDiscards", "Ip:OutDiscards", "Ip:OutNoRoutes", "Ip:ReasmFails",
      "Ip:FragFails", "IpExt:InNoRoutes", "IpExt:InTruncatedPkts", "IpExt:InCsumErrors",
      "Ip6:InHdrErrors", "Ip6:InAddrErrors", "Ip6:InDiscards", "Ip6:OutDiscards", "Ip6:InNoRoutes", "Ip6:OutNoRoutes",
      "Icmp:InErrors", "Icmp:OutErrors", "Icmp6:InErrors", "Icmp6:OutErrors",
      // TCP: opens, failures, resets, retransmits, checksum errors.
      "Tcp:ActiveOpens", "Tcp:PassiveOpens", "Tcp:AttemptFails", "Tcp:EstabResets", "Tcp:RetransSegs", "Tcp:InErrs",
      "Tcp:OutRsts", "Tcp:InCsumErrors",
      // TCP's own drops and aborts (Retina's curated keys among them).
      "TcpExt:ListenOverflows", "TcpExt:ListenDrops", "TcpExt:TCPBacklogDrop", "TcpExt:TCPRcvQDrop",
      "TcpExt:TCPZeroWindowDrop", "TcpExt:TCPReqQFullDrop", "TcpExt:TCPMinTTLDrop", "TcpExt:TCPDeferAcceptDrop",
      "TcpExt:PFMemallocDrop", "TcpExt:LockDroppedIcmps", "TcpExt:TCPOFODrop", "TcpExt:TCPTimeouts",
      "TcpExt:TCPSynRetrans", "TcpExt:TCPLostRetransmit", "TcpExt:TCPFastRetrans", "TcpExt:TCPRetransFail",
      "TcpExt:TCPAbortOnData", "TcpExt:TCPAbortOnClose", "TcpExt:TCPAbortOnMemory", "TcpExt:TCPAbortOnTimeout",
      "TcpExt:TCPAbortOnLinger", "TcpExt:TCPAbortFailed", "TcpExt:TCPMemoryPressures", "TcpExt:SyncookiesSent",
      "TcpExt:SyncookiesFailed",
      "MPTcpExt:DataCsumErr", "MPTcpExt:AddAddrDrop", "MPTcpExt:RmAddrDrop",
      // UDP over IPv4 and IPv6: datagrams to closed ports, full buffers, bad checksums.
      "Udp:NoPorts", "Udp:InErrors", "Udp:RcvbufErrors", "Udp:SndbufErrors", "Udp:InCsumErrors",
      "Udp6:NoPorts", "Udp6:InErrors", "Udp6:RcvbufErrors", "Udp6:SndbufErrors", "Udp6:InCsumErrors",
  };
  return kDefaults;
}

bool is_mib_setting(const std::string& statistic) {
  static const std::set<std::string> kSettings = {"Ip:Forwarding", "Ip:DefaultTTL", "Tcp:RtoAlgorithm", "Tcp:RtoMin",
                                                  "Tcp:RtoMax", "Tcp:MaxConn", "Tcp:CurrEstab"};
  return kSettings.count(statistic) > 0;
}

Config default_config() {
  Config c;
  c.node = host_name();
  c.rules = shipped_rule_pack();
  actions::NotifierConfig log;
  log.name = "default";
  log.type = "log";
  c.notifiers.push_back(log);
  return c;
}

Result<Config> parse_config(const std::string& text, const std::string& origin, const std::string& base_dir) {
  try {
    return Parser(origin, base_dir).parse(text);
  } catch (const std::exception& e) {
    return make_error(origin + ": cannot parse: " + e.what());
  }
}

Result<Config> load_config(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return make_error(path + ": cannot read: " + std::strerror(errno));
  std::stringstream text;
  text << in.rdbuf();
  if (in.bad()) return make_error(path + ": cannot read: " + std::strerror(errno));
  std::error_code ec;
  const fs::path abs = fs::absolute(path, ec);
  const std::string base_dir = ec ? std::string() : abs.parent_path().lexically_normal().string();
  return parse_config(text.str(), path, base_dir);
}

}  // namespace vigil
