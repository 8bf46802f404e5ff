#include "engine/http_server.h"

#include <httplib.h>

#include <nlohmann/json.hpp>

#include <cstdio>
#include <memory>

namespace vigil {

bool loopback_host(const std::string& host) {
  return host == "localhost" || host == "::1" || host.rfind("127.", 0) == 0;
}

namespace {

void json_error(httplib::Response& res, int status, const std::string& message) {
  res.status = status;
  res.set_content(nlohmann::json{{"error", message}}.dump(), "application/json");
}

// Compares without an early exit, so the time taken does not tell how much of a guess was right.
bool same_secret(const char* a, const std::string& b) {
  unsigned char diff = 0;
  for (size_t i = 0; i < b.size(); ++i) diff |= static_cast<unsigned char>(a[i] ^ b[i]);
  return diff == 0;
}

// Checks the captures API's access rule; false (and the answer set) when the call is refused.
bool allowed(const httplib::Request& req, httplib::Response& res, const std::string& token, const std::string& host) {
  if (token.empty()) {
    if (loopback_host(host)) return true;
    json_error(res, 403,
               "captures hold payload data: on a listener that is not loopback-only the captures API needs a "
               "bearer token (set api.token_file or api.token_env)");
    return false;
  }
  const std::string auth = req.get_header_value("Authorization");
  const std::string prefix = "Bearer ";
  const bool ok = auth.size() == prefix.size() + token.size() && auth.compare(0, prefix.size(), prefix) == 0 &&
                  same_secret(auth.data() + prefix.size(), token);
  if (ok) return true;
  res.set_header("WWW-Authenticate", "Bearer realm=\"vigil\"");
  json_error(res, 401, auth.empty() ? "missing Authorization: Bearer <token>" : "invalid bearer token");
  return false;
}

void answer(const ApiResponse& r, httplib::Response& res) {
  res.status = r.status;
  if (r.file.empty()) {
    res.set_content(r.body, r.content_type);
    return;
  }
  std::shared_ptr<FILE> f(std::fopen(r.file.c_str(), "rb"), [](FILE* p) {
    if (p) std::fclose(p);
  });
  if (!f) {
    json_error(res, 404, "capture file is gone");
    return;
  }
  std::fseek(f.get(), 0, SEEK_END);
  const long size = std::ftell(f.get());
  std::fseek(f.get(), 0, SEEK_SET);
  if (!r.filename.empty()) res.set_header("Content-Disposition", "attachment; filename=\"" + r.filename + "\"");
  res.set_content_provider(static_cast<size_t>(size < 0 ? 0 : size), r.content_type,
                           [f](size_t offset, size_t length, httplib::DataSink& sink) {
                             char buf[65536];
                             std::fseek(f.get(), static_cast<long>(offset), SEEK_SET);
                             size_t n = std::fread(buf, 1, std::min(length, sizeof buf), f.get());
                             if (n == 0) return false;
                             sink.write(buf, n);
                             return true;
                           });
}

}  // namespace

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
  srv.Get("/api/v1/anomalies", [f = h.anomalies](const httplib::Request&, httplib::Response& res) {
    res.set_content(f ? f() : "[]", "application/json");
  });
  if (h.captures) {
    auto route = [f = h.captures, token = h.api_token, host = s->host_](const std::string& method) {
      return [f, token, host, method](const httplib::Request& req, httplib::Response& res) {
        if (!allowed(req, res, token, host)) return;
        ApiRequest call{method, "", "", req.body};
        if (req.matches.size() > 1) call.id = req.matches[1];
        if (req.matches.size() > 2) call.sub = req.matches[2];
        answer(f(call), res);
      };
    };
    srv.Get("/api/v1/captures", route("GET"));
    srv.Post("/api/v1/captures", route("POST"));
    srv.Get(R"(/api/v1/captures/([A-Za-z0-9_.-]+))", route("GET"));
    srv.Delete(R"(/api/v1/captures/([A-Za-z0-9_.-]+))", route("DELETE"));
    srv.Get(R"(/api/v1/captures/([A-Za-z0-9_.-]+)/(pcap))", route("GET"));
  }
  // An error without a body of its own (an unknown path, a method a path does not take) says
  // what was asked and what there is, in JSON like every other answer of the API.
  srv.set_error_handler(httplib::Server::HandlerWithResponse([](const httplib::Request& req, httplib::Response& res) {
    if (!res.body.empty()) return httplib::Server::HandlerResponse::Unhandled;
    nlohmann::json j = {{"error", res.status == 404 ? "no " + req.method + " " + req.path + " here" : "HTTP " + std::to_string(res.status)}};
    if (res.status == 404)
      j["endpoints"] = {"GET /metrics", "GET /healthz", "GET /api/v1/pods", "GET /api/v1/rules", "GET /api/v1/anomalies",
                        "GET|POST /api/v1/captures", "GET|DELETE /api/v1/captures/ID", "GET /api/v1/captures/ID/pcap"};
    res.set_content(j.dump(), "application/json");
    return httplib::Server::HandlerResponse::Handled;
  }));
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
