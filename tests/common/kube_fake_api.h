// A fake Kubernetes API server for tests: HTTPS on 127.0.0.1 with a CA and certificate made
// with the openssl CLI (Pki), token auth, lists filtered by spec.nodeName and paged, watches
// that stream the steps a test pushes (events, a connection dropped mid-event, an end), 410
// Gone on demand, and GETs of the ReplicaSet and Job of tests/data/kube/. Shared by the unit
// tests of the pod source and the agent's integration test. Every wait is bounded.
#pragma once

#include <stdlib.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <httplib.h>
#include <nlohmann/json.hpp>

namespace vigil::kube::fake {

using json = nlohmann::json;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
namespace fs = std::filesystem;

inline const std::string kData = std::string(VIGIL_SOURCE_DIR) + "/tests/data/kube/";

inline std::string slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}
inline json load(const std::string& name) { return json::parse(slurp(kData + name)); }
inline std::vector<std::string> lines(const std::string& name) {
  std::vector<std::string> out;
  std::istringstream in(slurp(kData + name));
  for (std::string l; std::getline(in, l);)
    if (!l.empty()) out.push_back(l);
  return out;
}

template <typename F>
bool eventually(F f, std::chrono::milliseconds limit = 10s) {
  const auto deadline = Clock::now() + limit;
  while (Clock::now() < deadline) {
    if (f()) return true;
    std::this_thread::sleep_for(5ms);
  }
  return f();
}

inline std::string temp_dir() {
  char tmpl[] = "/tmp/vigil-kube-test-XXXXXX";
  const char* d = mkdtemp(tmpl);
  return d ? d : "";
}

// A CA, a server certificate for 127.0.0.1 signed by it, and an unrelated CA.
class Pki {
 public:
  Pki() : dir_(temp_dir()) {
    const std::string d = dir_, q = " >>" + dir_ + "/openssl.log 2>&1";
    const std::string ec = " -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
    ok_ = run("openssl req -x509" + ec + " -keyout " + d + "/ca.key -out " + d + "/ca.pem -days 2 -subj /CN=kube-test-ca" + q) &&
          run("openssl req -x509" + ec + " -keyout " + d + "/other.key -out " + d + "/other.pem -days 2 -subj /CN=other-ca" + q) &&
          run("openssl req" + ec + " -keyout " + d + "/server.key -out " + d +
              "/server.csr -subj /CN=kube-apiserver -addext subjectAltName=IP:127.0.0.1" + q) &&
          run("openssl x509 -req -in " + d + "/server.csr -CA " + d + "/ca.pem -CAkey " + d + "/ca.key -CAcreateserial -out " + d +
              "/server.pem -days 2 -copy_extensions copy" + q);
  }
  ~Pki() { fs::remove_all(dir_); }
  bool ok() const { return ok_; }
  std::string log() const { return slurp(dir_ + "/openssl.log"); }
  std::string path(const std::string& f) const { return dir_ + "/" + f; }

 private:
  static bool run(const std::string& cmd) { return std::system(cmd.c_str()) == 0; }
  std::string dir_;
  bool ok_ = false;
};

// What a watch stream does next.
struct Step {
  enum Kind { Line, DropMidLine, End } kind = Line;
  std::string text;
};

struct Request {
  std::string path;
  httplib::Params params;
  std::string authorization;
  bool watch() const { return params.count("watch"); }
  std::string param(const std::string& k) const {
    auto it = params.find(k);
    return it == params.end() ? "" : it->second;
  }
};

// A fake API server: lists from its current objects (filtered by spec.nodeName, paged by
// limit/continue), watches from the steps the test pushes, GETs of ReplicaSets and Jobs.
class FakeApiServer {
 public:
  FakeApiServer(const Pki& pki, int port = 0) : pki_(pki) { start(port); }
  ~FakeApiServer() { shutdown(); }

  int port() const { return port_; }
  std::string url() const { return "https://127.0.0.1:" + std::to_string(port_); }

  void start(int port) {
    server_ = std::make_unique<httplib::SSLServer>(pki_.path("server.pem").c_str(), pki_.path("server.key").c_str());
    stopping_ = false;
    routes();
    if (port == 0) port_ = server_->bind_to_any_port("127.0.0.1");
    else port_ = server_->bind_to_port("127.0.0.1", port) ? port : -1;
    thread_ = std::thread([this] { server_->listen_after_bind(); });
    const auto deadline = Clock::now() + 2s;
    while (!server_->is_running() && Clock::now() < deadline) std::this_thread::sleep_for(1ms);
  }
  void shutdown() {
    {
      std::lock_guard lock(mu_);
      stopping_ = true;
    }
    cv_.notify_all();
    if (server_) server_->stop();
    if (thread_.joinable()) thread_.join();
    server_.reset();
  }

  // State the test controls.
  void set_token(const std::string& t) {
    std::lock_guard lock(mu_);
    token_ = t;
  }
  void set_list(const std::string& collection, json list) {
    std::lock_guard lock(mu_);
    lists_[collection] = std::move(list);
  }
  void push(const std::string& collection, Step step) {
    {
      std::lock_guard lock(mu_);
      steps_[collection].push_back(std::move(step));
    }
    cv_.notify_all();
  }
  void line(const std::string& collection, const std::string& text) { push(collection, {Step::Line, text}); }
  // GETs of ReplicaSets and Jobs answer with HTTP `code` (0: as usual).
  void fail_gets(int code) {
    std::lock_guard lock(mu_);
    fail_gets_ = code;
  }
  void gone_on_next_watch(const std::string& collection) {
    std::lock_guard lock(mu_);
    gone_next_[collection] = true;
  }
  std::vector<Request> requests(const std::string& path = "", int watch = -1) const {
    std::lock_guard lock(mu_);
    std::vector<Request> out;
    for (const auto& r : requests_)
      if ((path.empty() || r.path == path) && (watch < 0 || r.watch() == (watch == 1))) out.push_back(r);
    return out;
  }
  size_t steps_left(const std::string& collection) const {
    std::lock_guard lock(mu_);
    auto it = steps_.find(collection);
    return it == steps_.end() ? 0 : it->second.size();
  }
  size_t open_watches() const { return open_watches_; }

 private:
  static json status(int code, const std::string& reason, const std::string& message) {
    return {{"kind", "Status"}, {"apiVersion", "v1"}, {"metadata", json::object()}, {"status", "Failure"},
            {"message", message}, {"reason", reason}, {"code", code}};
  }

  bool authorized(const httplib::Request& req, httplib::Response& res) {
    std::lock_guard lock(mu_);
    requests_.push_back({req.path, req.params, req.get_header_value("Authorization")});
    if (req.get_header_value("Authorization") == "Bearer " + token_) return true;
    res.status = 401;
    res.set_content(status(401, "Unauthorized", "Unauthorized").dump(), "application/json");
    return false;
  }

  void routes() {
    for (const std::string collection : {"pods", "namespaces", "services"}) {
      server_->Get("/api/v1/" + collection, [this, collection](const httplib::Request& req, httplib::Response& res) {
        if (!authorized(req, res)) return;
        if (req.has_param("watch")) watch(collection, req, res);
        else list(collection, req, res);
      });
    }
    server_->Get("/apis/discovery.k8s.io/v1/endpointslices", [this](const httplib::Request& req, httplib::Response& res) {
      if (!authorized(req, res)) return;
      if (req.has_param("watch")) watch("endpointslices", req, res);
      else list("endpointslices", req, res);
    });
    server_->Get(R"(/apis/apps/v1/namespaces/([^/]+)/replicasets/([^/]+))", [this](const httplib::Request& req, httplib::Response& res) {
      if (!authorized(req, res)) return;
      get_object(load("replicaset-web.json"), req, res);
    });
    server_->Get(R"(/apis/batch/v1/namespaces/([^/]+)/jobs/([^/]+))", [this](const httplib::Request& req, httplib::Response& res) {
      if (!authorized(req, res)) return;
      get_object(load("job-report.json"), req, res);
    });
  }

  void get_object(const json& obj, const httplib::Request& req, httplib::Response& res) {
    int fail = 0;
    {
      std::lock_guard lock(mu_);
      fail = fail_gets_;
    }
    if (fail) {
      res.status = fail;
      res.set_content(status(fail, "InternalError", "failed on purpose").dump(), "application/json");
      return;
    }
    if (obj["metadata"]["namespace"] == req.matches[1].str() && obj["metadata"]["name"] == req.matches[2].str()) {
      res.set_content(obj.dump(), "application/json");
      return;
    }
    res.status = 404;
    res.set_content(status(404, "NotFound", "not found").dump(), "application/json");
  }

  void list(const std::string& collection, const httplib::Request& req, httplib::Response& res) {
    json all;
    {
      std::lock_guard lock(mu_);
      all = lists_[collection];
    }
    std::string node;
    const std::string sel = req.get_param_value("fieldSelector");
    if (sel.rfind("spec.nodeName=", 0) == 0) node = sel.substr(14);
    json items = json::array();
    for (const auto& item : all["items"])
      if (node.empty() || (item.contains("spec") && item["spec"].value("nodeName", "") == node)) items.push_back(item);
    size_t limit = req.has_param("limit") ? std::stoul(req.get_param_value("limit")) : items.size();
    size_t from = req.has_param("continue") ? std::stoul(req.get_param_value("continue").substr(5)) : 0;
    json page = all;
    page["items"] = json::array();
    for (size_t i = from; i < items.size() && i < from + limit; ++i) page["items"].push_back(items[i]);
    if (from + limit < items.size()) page["metadata"]["continue"] = "page:" + std::to_string(from + limit);
    res.set_content(page.dump(), "application/json");
  }

  void watch(const std::string& collection, const httplib::Request&, httplib::Response& res) {
    {
      std::lock_guard lock(mu_);
      if (gone_next_[collection]) {
        gone_next_[collection] = false;
        res.status = 410;
        res.set_content(status(410, "Expired", "too old resource version").dump(), "application/json");
        return;
      }
    }
    ++open_watches_;
    auto deadline = std::make_shared<Clock::time_point>(Clock::now() + 20s);
    uint64_t id = 0;
    {
      std::lock_guard lock(mu_);
      id = ++current_watch_[collection];  // only the newest watch of a collection takes steps
    }
    res.set_chunked_content_provider("application/json", [this, collection, deadline, id](size_t, httplib::DataSink& sink) {
      std::unique_lock lock(mu_);
      auto& q = steps_[collection];
      cv_.wait_for(lock, 20ms, [&] { return stopping_ || !q.empty(); });
      if (stopping_ || current_watch_[collection] != id) {  // the client gave this one up
        --open_watches_;
        return false;
      }
      if (q.empty()) {
        if (Clock::now() < *deadline) return true;
        --open_watches_;
        sink.done();  // like timeoutSeconds
        return true;
      }
      Step s = q.front();
      q.pop_front();
      lock.unlock();
      if (s.kind == Step::End) {
        --open_watches_;
        sink.done();
        return true;
      }
      if (s.kind == Step::DropMidLine) {
        sink.write(s.text.data(), s.text.size() / 2);  // half an event, then the connection goes
        --open_watches_;
        return false;
      }
      const std::string l = s.text + "\n";
      sink.write(l.data(), l.size());
      return true;
    });
  }

  const Pki& pki_;
  std::unique_ptr<httplib::SSLServer> server_;
  std::thread thread_;
  int port_ = -1;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;
  std::string token_ = "token-1";
  std::map<std::string, json> lists_;
  std::map<std::string, std::deque<Step>> steps_;
  std::map<std::string, bool> gone_next_;
  int fail_gets_ = 0;
  std::map<std::string, uint64_t> current_watch_;
  std::vector<Request> requests_;
  std::atomic<int> open_watches_{0};
};

}  // namespace vigil::kube::fake
