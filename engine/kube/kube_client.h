// How the agent reaches the Kubernetes API server: where it is, which CA to trust, which
// credentials to present (in-cluster service account or a kubeconfig's current context), and a
// small HTTPS client for GET requests and streamed (watch) responses.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>

#include "engine/kube/kube_options.h"
#include "rules/core/result.h"

namespace httplib {
class SSLClient;
}

namespace vigil::kube {

struct Connection {
  std::string host;  // without brackets
  int port = 443;
  std::string origin;  // "in-cluster" or "<kubeconfig> (context <name>)", for messages
  // Trust: a PEM file or PEM text; neither means the system store.
  std::string ca_file, ca_pem;
  bool insecure = false;  // no certificate verification (only when explicitly allowed)
  // Credentials: a bearer token (fixed, or a file re-read when it changes) and/or a client
  // certificate (files or PEM text).
  std::string token, token_file;
  std::string client_cert_file, client_key_file, client_cert_pem, client_key_pem;
};

// Splits "https://host:port" (port defaults to 443; IPv6 in brackets). Only https.
Result<void> parse_server_url(const std::string& url, std::string& host, int& port);

// Reads a kubeconfig's current context. Relative file paths resolve against the kubeconfig's
// directory. insecure-skip-tls-verify is an error unless allow_insecure; exec and
// auth-provider plugins are not supported (an error says so).
Result<Connection> parse_kubeconfig(const std::string& text, const std::string& path, bool allow_insecure);

// The connection `options` describe: the kubeconfig if set, else the in-cluster service
// account; then api_server, ca_file and token_file override. Files named must exist.
Result<Connection> resolve_connection(const KubeOptions& options);

// The bearer token: a fixed string, or a file read again whenever its inode, size or mtime
// changes (projected service-account tokens are rotated by swapping a symlink). Thread-safe.
class TokenSource {
 public:
  TokenSource(std::string fixed, std::string file) : fixed_(std::move(fixed)), file_(std::move(file)) {}
  // The current token ("" when none is configured), or why the file cannot be read.
  Result<std::string> get();
  uint64_t reloads() const { return reloads_; }

 private:
  std::mutex mu_;
  std::string fixed_, file_, cached_;
  struct Stamp {
    uint64_t ino = 0, size = 0;
    int64_t sec = -1, nsec = 0;
    bool operator==(const Stamp&) const = default;
  } stamp_;
  std::atomic<uint64_t> reloads_{0};
};

class ApiClient {
 public:
  ApiClient(Connection connection, double request_timeout_seconds);
  ~ApiClient();

  struct Response {
    int status = 0;      // 0: no HTTP response (see error)
    std::string body;    // the body (at most 64 MiB; larger is an error)
    std::string error;   // transport problem (connect, TLS, timeout, token), never the token
  };
  Response get(const std::string& target);

  // GETs `target` and hands each complete line of a 200 response to on_line (without the
  // newline); a false return ends the stream. A non-200 response's body is returned instead.
  // `clean_end` is true when the server ended the response (not a drop, a timeout or a stop).
  struct StreamResult {
    int status = 0;
    std::string body;   // non-200 only
    std::string error;
    bool clean_end = false;
    bool partial_line = false;  // the stream ended in the middle of a line (dropped)
  };
  // on_status, if set, hears the status as soon as the response headers arrive.
  StreamResult stream(const std::string& target, double read_timeout_seconds,
                      const std::function<bool(std::string_view line)>& on_line,
                      const std::function<void(int status)>& on_status = {});

  // From another thread: aborts the request in progress and refuses new ones.
  void interrupt();
  const Connection& connection() const { return conn_; }
  TokenSource& tokens() { return tokens_; }

 private:
  std::unique_ptr<httplib::SSLClient> make_client(double read_timeout, std::string& error);

  Connection conn_;
  double timeout_;
  TokenSource tokens_;
  std::mutex mu_;
  httplib::SSLClient* active_ = nullptr;  // the client of the request in progress
  std::atomic<bool> stopped_{false};
  std::string ca_temp_;  // the kubeconfig's inline CA, written to a private file
};

// Percent-encodes a query parameter value.
std::string url_encode(std::string_view s);

}  // namespace vigil::kube
