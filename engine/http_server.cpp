#include "engine/http_server.h"

#include <httplib.h>

namespace vigil {

Result<std::unique_ptr<HttpServer>> HttpServer::start(const std::string& listen, HttpHandlers h) {
  auto colon = listen.rfind(':');
  if (colon == std::string::npos) return make_error("listen '" + listen + "': expected host:port");
  std::unique_ptr<HttpServer> s(new HttpServer());
  s->host_ = listen.substr(0, colon);
  if (s->host_.size() > 1 && s->host_.front() == '[') s->host_ = s->host_.substr(1, s->host_.size() - 2);
  int port = 0;
  try {
    port = std::stoi(listen.substr(colon + 1));
  } catch (...) {
    return make_error("listen '" + listen + "': bad port");
  }
  s->server_ = std::make_unique<httplib::Server>();
  auto& srv = *s->server_;
  srv.Get("/metrics", [m = h.metrics](const httplib::Request&, httplib::Response& res) {
    res.set_content(m(), "text/plain; version=0.0.4; charset=utf-8");
  });
  srv.Get("/healthz", [f = h.health](const httplib::Request&, httplib::Response& res) {
    auto [ok, body] = f();
    res.status = ok ? 200 : 503;
    res.set_content(body, "application/json");
  });
  srv.Get("/api/v1/pods", [f = h.pods](const httplib::Request&, httplib::Response& res) {
    res.set_content(f(), "application/json");
  });
  srv.Get("/api/v1/rules", [f = h.rules](const httplib::Request&, httplib::Response& res) {
    res.set_content(f(), "application/json");
  });
  if (port == 0) {
    s->port_ = srv.bind_to_any_port(s->host_);
    if (s->port_ < 0) return make_error("listen on " + listen + ": bind failed");
  } else {
    if (!srv.bind_to_port(s->host_, port)) return make_error("listen on " + listen + ": bind failed (port in use?)");
    s->port_ = port;
  }
  s->thread_ = std::thread([&srv] { srv.listen_after_bind(); });
  return s;
}

HttpServer::~HttpServer() {
  if (server_) server_->stop();
  if (thread_.joinable()) thread_.join();
}

}  // namespace vigil
