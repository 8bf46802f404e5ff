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

struct HttpHandlers {
  std::function<std::string()> metrics;             // Prometheus text format
  std::function<std::pair<bool, std::string>()> health;  // healthy?, JSON body
  std::function<std::string()> pods;                // JSON
  std::function<std::string()> rules;               // JSON
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
