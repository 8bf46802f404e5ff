#include "engine/kube/kube_client.h"
#include "engine/kube/line_splitter.h"

#include <openssl/x509.h>
#include <openssl/pem.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <optional>
#include <fstream>
#include <sstream>

#include <httplib.h>
#include <yaml-cpp/yaml.h>

namespace vigil::kube {
namespace {

namespace fs = std::filesystem;

constexpr size_t kMaxBody = 64u << 20;
constexpr size_t kMaxLine = 64u << 20;  // a list response may be one line
constexpr size_t kMaxErrorBody = 64u << 10;

Result<std::string> read_file(const std::string& path, const std::string& what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return make_error(what + " '" + path + "': " + std::strerror(errno));
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r' || s.back() == ' ' || s.back() == '\t')) s.pop_back();
  size_t i = 0;
  while (i < s.size() && (s[i] == ' ' || s[i] == '\t')) ++i;
  return s.substr(i);
}

std::optional<std::string> base64_decode(const std::string& in) {
  static const std::string chars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  uint32_t acc = 0;
  int bits = 0;
  for (char c : in) {
    if (c == '=' || c == '\n' || c == '\r' || c == ' ') continue;
    auto p = chars.find(c);
    if (p == std::string::npos) return std::nullopt;
    acc = (acc << 6) | static_cast<uint32_t>(p);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<char>((acc >> bits) & 0xff));
    }
  }
  return out;
}

std::string resolve(const std::string& base_dir, const std::string& p) {
  if (p.empty() || p[0] == '/' || base_dir.empty()) return p;
  return (fs::path(base_dir) / p).lexically_normal().string();
}

Result<void> must_exist(const std::string& path, const std::string& what) {
  struct stat st {};
  if (stat(path.c_str(), &st) != 0) return make_error(what + " '" + path + "': " + std::strerror(errno));
  if (S_ISDIR(st.st_mode)) return make_error(what + " '" + path + "' is a directory");
  return {};
}

// The map entry of `list` (a kubeconfig's clusters, users or contexts) named `name`.
YAML::Node named(const YAML::Node& list, const std::string& name, const std::string& field) {
  if (!list || !list.IsSequence()) return YAML::Node();
  for (const auto& item : list)
    if (item.IsMap() && item["name"] && item["name"].IsScalar() && item["name"].Scalar() == name) return item[field];
  return YAML::Node();
}

std::string scalar(const YAML::Node& map, const std::string& key) {
  if (!map || !map.IsMap()) return "";
  const YAML::Node v = map[key];
  return v && v.IsScalar() ? v.Scalar() : "";
}

}  // namespace

std::string url_encode(std::string_view s) {
  static const char* hex = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out.push_back(static_cast<char>(c));
    } else {
      out.push_back('%');
      out.push_back(hex[c >> 4]);
      out.push_back(hex[c & 15]);
    }
  }
  return out;
}

Result<void> parse_server_url(const std::string& url, std::string& host, int& port) {
  const std::string prefix = "https://";
  if (url.rfind(prefix, 0) != 0) return make_error("server '" + url + "': only https:// API servers are supported");
  std::string rest = url.substr(prefix.size());
  while (!rest.empty() && rest.back() == '/') rest.pop_back();
  if (rest.find('/') != std::string::npos) return make_error("server '" + url + "': a path prefix is not supported");
  std::string port_text;
  bool has_port = false;
  if (!rest.empty() && rest[0] == '[') {
    auto close = rest.find(']');
    if (close == std::string::npos) return make_error("server '" + url + "': unterminated [IPv6 address]");
    host = rest.substr(1, close - 1);
    if (close + 1 < rest.size()) {
      if (rest[close + 1] != ':') return make_error("server '" + url + "': expected :port after ]");
      port_text = rest.substr(close + 2);
      has_port = true;
    }
  } else {
    auto colon = rest.rfind(':');
    host = rest.substr(0, colon);
    if (colon != std::string::npos) {
      port_text = rest.substr(colon + 1);
      has_port = true;
    }
  }
  port = 443;
  if (has_port) {
    auto [end, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
    if (port_text.empty() || ec != std::errc() || end != port_text.data() + port_text.size() || port < 1 || port > 65535)
      return make_error("server '" + url + "': port is not a number from 1 to 65535");
  }
  if (host.empty()) return make_error("server '" + url + "': no host");
  return {};
}

Result<Connection> parse_kubeconfig(const std::string& text, const std::string& path, bool allow_insecure) {
  YAML::Node root;
  try {
    root = YAML::Load(text);
  } catch (const YAML::Exception& e) {
    return make_error("kubeconfig " + path + ":" + std::to_string(e.mark.line + 1) + ": invalid YAML: " + e.msg);
  }
  const std::string what = "kubeconfig " + path;
  try {
    if (!root.IsMap()) return make_error(what + ": expected a map (apiVersion, clusters, users, contexts, current-context)");
    const std::string context_name = scalar(root, "current-context");
    if (context_name.empty()) return make_error(what + ": no current-context");
    const YAML::Node context = named(root["contexts"], context_name, "context");
    if (!context || !context.IsMap()) return make_error(what + ": context '" + context_name + "' not found");
    const std::string cluster_name = scalar(context, "cluster");
    const std::string user_name = scalar(context, "user");
    const YAML::Node cluster = named(root["clusters"], cluster_name, "cluster");
    if (!cluster || !cluster.IsMap())
      return make_error(what + ": cluster '" + cluster_name + "' of context '" + context_name + "' not found");
    const std::string base = fs::path(path).parent_path().string();

    Connection c;
    c.origin = path + " (context " + context_name + ")";
    if (auto r = parse_server_url(scalar(cluster, "server"), c.host, c.port); !r)
      return make_error(what + ": cluster '" + cluster_name + "': " + r.error().message);
    if (scalar(cluster, "insecure-skip-tls-verify") == "true") {
      if (!allow_insecure)
        return make_error(what + ": cluster '" + cluster_name +
                          "' sets insecure-skip-tls-verify; refused (set pods.kubernetes.allow_insecure: true to accept)");
      c.insecure = true;
    }
    if (auto ca = scalar(cluster, "certificate-authority-data"); !ca.empty()) {
      auto pem = base64_decode(ca);
      if (!pem) return make_error(what + ": cluster '" + cluster_name + "': certificate-authority-data is not base64");
      c.ca_pem = *pem;
    } else if (auto file = scalar(cluster, "certificate-authority"); !file.empty()) {
      c.ca_file = resolve(base, file);
    }
    if (!user_name.empty()) {
      const YAML::Node user = named(root["users"], user_name, "user");
      if (!user || !user.IsMap()) return make_error(what + ": user '" + user_name + "' not found");
      if (user["exec"] || user["auth-provider"])
        return make_error(what + ": user '" + user_name +
                          "': exec and auth-provider credential plugins are not supported; use a token or a client certificate");
      c.token = scalar(user, "token");
      if (auto f = scalar(user, "tokenFile"); !f.empty()) c.token_file = resolve(base, f);
      auto data = [&](const std::string& key, std::string& out) -> Result<void> {
        auto v = scalar(user, key);
        if (v.empty()) return {};
        auto pem = base64_decode(v);
        if (!pem) return make_error(what + ": user '" + user_name + "': " + key + " is not base64");
        out = *pem;
        return {};
      };
      if (auto r = data("client-certificate-data", c.client_cert_pem); !r) return r.error();
      if (auto r = data("client-key-data", c.client_key_pem); !r) return r.error();
      if (auto f = scalar(user, "client-certificate"); !f.empty()) c.client_cert_file = resolve(base, f);
      if (auto f = scalar(user, "client-key"); !f.empty()) c.client_key_file = resolve(base, f);
      const bool cert = !c.client_cert_pem.empty() || !c.client_cert_file.empty();
      const bool key = !c.client_key_pem.empty() || !c.client_key_file.empty();
      if (cert != key) return make_error(what + ": user '" + user_name + "': a client certificate needs its key and vice versa");
    }
    return c;
  } catch (const YAML::Exception& e) {
    return make_error(what + ": " + e.what());
  }
}

Result<Connection> resolve_connection(const KubeOptions& o) {
  Connection c;
  if (!o.kubeconfig.empty()) {
    auto text = read_file(o.kubeconfig, "kubeconfig");
    if (!text) return text.error();
    auto parsed = parse_kubeconfig(*text, o.kubeconfig, o.allow_insecure);
    if (!parsed) return parsed.error();
    c = std::move(*parsed);
  } else {
    c.origin = "in-cluster";
    c.ca_file = o.service_account_dir + "/ca.crt";
    c.token_file = o.service_account_dir + "/token";
    if (o.api_server.empty()) {
      const char* host = std::getenv("KUBERNETES_SERVICE_HOST");
      const char* port = std::getenv("KUBERNETES_SERVICE_PORT");
      if (!host || !*host || !port || !*port)
        return make_error("in-cluster: KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT are not set "
                          "(not running in a pod? set pods.kubernetes.kubeconfig or api_server)");
      std::string h = host;
      if (h.find(':') != std::string::npos) h = "[" + h + "]";
      if (auto r = parse_server_url("https://" + h + ":" + port, c.host, c.port); !r)
        return make_error("in-cluster: " + r.error().message);
    }
  }
  if (!o.api_server.empty())
    if (auto r = parse_server_url(o.api_server, c.host, c.port); !r) return make_error("api_server: " + r.error().message);
  if (!o.ca_file.empty()) {
    c.ca_file = o.ca_file;
    c.ca_pem.clear();
  }
  if (!o.token_file.empty()) {
    c.token_file = o.token_file;
    c.token.clear();
  }
  if (!c.ca_file.empty())
    if (auto r = must_exist(c.ca_file, "CA file"); !r) return r.error();
  if (!c.token_file.empty())
    if (auto r = must_exist(c.token_file, "token file"); !r) return r.error();
  if (!c.client_cert_file.empty())
    if (auto r = must_exist(c.client_cert_file, "client certificate"); !r) return r.error();
  if (!c.client_key_file.empty())
    if (auto r = must_exist(c.client_key_file, "client key"); !r) return r.error();
  return c;
}

Result<std::string> TokenSource::get() {
  std::lock_guard lock(mu_);
  if (file_.empty()) return fixed_;
  struct stat st {};
  if (stat(file_.c_str(), &st) != 0) {
    // Keep using the last token: a rotation swaps a symlink and the next read finds the new one.
    if (!cached_.empty()) return cached_;
    return make_error("token file '" + file_ + "': " + std::strerror(errno));
  }
  Stamp now{static_cast<uint64_t>(st.st_ino), static_cast<uint64_t>(st.st_size), st.st_mtim.tv_sec, st.st_mtim.tv_nsec};
  if (now == stamp_) return cached_;
  auto text = read_file(file_, "token file");
  if (!text) {
    if (!cached_.empty()) return cached_;
    return text.error();
  }
  std::string token = trim(*text);
  if (token.empty()) {
    if (!cached_.empty()) return cached_;  // caught mid-write: try again next time
    return make_error("token file '" + file_ + "' is empty");
  }
  stamp_ = now;
  if (!cached_.empty() && token != cached_) ++reloads_;
  cached_ = std::move(token);
  return cached_;
}

ApiClient::ApiClient(Connection connection, double request_timeout_seconds)
    : conn_(std::move(connection)), timeout_(request_timeout_seconds), tokens_(conn_.token, conn_.token_file) {
  if (!conn_.ca_pem.empty()) {
    // httplib verifies against a file; the kubeconfig's inline CA goes to a private one.
    char tmpl[] = "/tmp/vigil-kube-ca-XXXXXX";
    int fd = mkstemp(tmpl);
    if (fd >= 0) {
      ssize_t off = 0;
      while (off < static_cast<ssize_t>(conn_.ca_pem.size())) {
        ssize_t n = write(fd, conn_.ca_pem.data() + off, conn_.ca_pem.size() - off);
        if (n <= 0) break;
        off += n;
      }
      close(fd);
      conn_.ca_file = tmpl;
      ca_temp_ = tmpl;
    }
  }
}

ApiClient::~ApiClient() {
  interrupt();
  if (!ca_temp_.empty()) unlink(ca_temp_.c_str());
}

void ApiClient::interrupt() {
  stopped_ = true;
  std::lock_guard lock(mu_);
  if (active_) active_->stop();
}

std::unique_ptr<httplib::SSLClient> ApiClient::make_client(double read_timeout, std::string& error) {
  std::unique_ptr<httplib::SSLClient> cli;
  if (!conn_.client_cert_pem.empty()) {
    BIO* cb = BIO_new_mem_buf(conn_.client_cert_pem.data(), static_cast<int>(conn_.client_cert_pem.size()));
    BIO* kb = BIO_new_mem_buf(conn_.client_key_pem.data(), static_cast<int>(conn_.client_key_pem.size()));
    X509* cert = cb ? PEM_read_bio_X509(cb, nullptr, nullptr, nullptr) : nullptr;
    EVP_PKEY* key = kb ? PEM_read_bio_PrivateKey(kb, nullptr, nullptr, nullptr) : nullptr;
    if (cert && key) cli = std::make_unique<httplib::SSLClient>(conn_.host, conn_.port, cert, key);
    if (cert) X509_free(cert);
    if (key) EVP_PKEY_free(key);
    if (cb) BIO_free(cb);
    if (kb) BIO_free(kb);
    if (!cli) {
      error = "client-certificate-data/client-key-data: not a PEM certificate and key";
      return nullptr;
    }
  } else if (!conn_.client_cert_file.empty()) {
    cli = std::make_unique<httplib::SSLClient>(conn_.host, conn_.port, conn_.client_cert_file, conn_.client_key_file);
  } else {
    cli = std::make_unique<httplib::SSLClient>(conn_.host, conn_.port);
  }
  if (!cli->is_valid()) {
    error = "cannot set up TLS (client certificate and key do not match?)";
    return nullptr;
  }
  auto split = [](double s, time_t& sec, time_t& usec) {
    sec = static_cast<time_t>(s);
    usec = static_cast<time_t>((s - static_cast<double>(sec)) * 1e6);
  };
  time_t sec = 0, usec = 0;
  split(timeout_, sec, usec);
  cli->set_connection_timeout(sec, usec);
  cli->set_write_timeout(sec, usec);
  split(read_timeout, sec, usec);
  cli->set_read_timeout(sec, usec);
  cli->set_keep_alive(false);
  cli->set_follow_location(false);
  cli->set_decompress(true);
  cli->enable_server_certificate_verification(!conn_.insecure);
  if (!conn_.ca_file.empty()) cli->set_ca_cert_path(conn_.ca_file.c_str());
  return cli;
}

namespace {

std::string describe(const httplib::Result& res, httplib::SSLClient& cli) {
  std::string out = httplib::to_string(res.error());
  if (res.error() == httplib::Error::SSLServerVerification) {
    const long v = cli.get_openssl_verify_result();
    out += ": " + std::string(v != X509_V_OK ? X509_verify_cert_error_string(v) : "host name does not match");
  }
  return out;
}

}  // namespace

ApiClient::StreamResult ApiClient::stream(const std::string& target, double read_timeout_seconds,
                                          const std::function<bool(std::string_view line)>& on_line,
                                          const std::function<void(int status)>& on_status) {
  StreamResult out;
  if (stopped_) {
    out.error = "stopped";
    return out;
  }
  auto token = tokens_.get();
  if (!token) {
    out.error = token.error().message;
    return out;
  }
  auto cli = make_client(read_timeout_seconds, out.error);
  if (!cli) return out;
  httplib::Headers headers = {{"Accept", "application/json"}, {"User-Agent", "vigil/" VIGIL_VERSION}};
  if (!token->empty()) headers.emplace("Authorization", "Bearer " + *token);
  {
    std::lock_guard lock(mu_);
    if (stopped_) {
      out.error = "stopped";
      return out;
    }
    active_ = cli.get();
  }
  LineSplitter lines(kMaxLine);
  bool caller_stopped = false;
  bool too_long = false;
  auto res = cli->Get(
      target, headers,
      [&](const httplib::Response& r) {
        out.status = r.status;
        if (on_status) on_status(r.status);
        return !stopped_.load();
      },
      [&](const char* data, size_t n) {
        if (stopped_) return false;
        if (out.status != 200) {
          if (out.body.size() < kMaxErrorBody) out.body.append(data, std::min(n, kMaxErrorBody - out.body.size()));
          return true;
        }
        switch (lines.feed(std::string_view(data, n), on_line)) {
          case LineSplitter::Fed::more: return true;
          case LineSplitter::Fed::stopped: caller_stopped = true; return false;
          case LineSplitter::Fed::too_long: too_long = true; return false;
        }
        return false;
      });
  {
    std::lock_guard lock(mu_);
    active_ = nullptr;
  }
  if (caller_stopped) {
    out.clean_end = true;
    return out;
  }
  if (too_long) {
    out.error = "a line longer than 64 MiB";
    out.partial_line = true;
    return out;
  }
  if (!res) {
    out.error = stopped_ ? std::string("stopped") : describe(res, *cli);
    out.partial_line = !lines.rest().empty();
    return out;
  }
  out.status = res->status;
  if (out.status == 200 && !lines.rest().empty()) {
    // The server ended the response without a final newline: the rest is still one line.
    if (lines.feed("\n", on_line) == LineSplitter::Fed::stopped) return (out.clean_end = true, out);
  }
  out.clean_end = true;
  return out;
}

ApiClient::Response ApiClient::get(const std::string& target) {
  Response out;
  std::string body;
  bool too_big = false;
  // A plain GET is a stream whose lines are put back together; the 64 MiB cap bounds it.
  auto r = stream(target, timeout_, [&](std::string_view line) {
    if (body.size() + line.size() + 1 > kMaxBody) {
      too_big = true;
      return false;
    }
    body.append(line);
    body.push_back('\n');
    return true;
  });
  out.status = r.status;
  out.error = too_big ? "response larger than 64 MiB" : r.error;
  out.body = r.status == 200 ? std::move(body) : std::move(r.body);
  if (too_big) out.status = 0;
  if (!r.error.empty() && !too_big) out.status = 0;
  return out;
}

}  // namespace vigil::kube
