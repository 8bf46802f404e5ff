// The agent's HTTP listener: /metrics, /healthz and the JSON API, on one cpp-httplib server
// running on its own thread. Handlers read only state the tick thread has published.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "rules/core/result.h"

namespace httplib {
class Server;
}

namespace vigil {

// A call to /api/v1/captures[/<id>[/pcap]] (the server has checked the bearer token).
struct ApiRequest {
  std::string method;  // GET, POST, DELETE
  std::string id;      // "" for the collection
  std::string sub;     // "" or "pcap"
  std::string body;
};
struct ApiResponse {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
  std::string file;      // when set, the body is this file, streamed
  std::string filename;  // Content-Disposition attachment name for `file`
};

// True for 127.0.0.0/8, ::1 and "localhost": a listener only this host can reach.
bool loopback_host(const std::string& host);

struct HttpHandlers {
  std::function<std::string()> metrics;             // Prometheus text format
  std::function<std::pair<bool, std::string>()> health;  // healthy?, JSON body
  std::function<std::string()> pods;                // JSON
  std::function<std::string()> rules;               // JSON
  std::function<std::string()> anomalies;           // JSON: what fires now
  std::function<ApiResponse(const ApiRequest&)> captures;  // unset: 404
  // Captures hold payload data: with a token every captures call needs "Authorization: Bearer
  // <token>"; without one they are served only on a loopback-only listener.
  std::string api_token;
};

class HttpServer {
 public:
  // `listen` is host:port; port 0 picks a free port (see port()).
  static Result<std::unique_ptr<HttpServer>> start(const std::string& listen, HttpHandlers handlers);
  ~HttpServer();
  int port() const { return port_; }
  const std::string& host() const { return host_; }

 private:
  HttpServer() = default;
  std::unique_ptr<httplib::Server> server_;
  std::thread thread_;
  std::string host_;
  int port_ = 0;
};

}  // namespace vigil
