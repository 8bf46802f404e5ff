#include "engine/capture_cli.h"

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <httplib.h>

#include <nlohmann/json.hpp>

#include "actions/http_error.h"
#include "engine/agent_client.h"
#include "engine/config.h"

namespace vigil {
namespace {

constexpr const char* kCaptureUsage = R"(usage:
  vigil capture start [--pod NAMESPACE/NAME]... [--namespace NS] [--label KEY=VALUE]...
                      [--before DURATION] [--after DURATION] [--filter EXPR] [--snaplen N]
                      [--max-packets N] [--max-bytes SIZE] [--reason TEXT]
                      [--wait] [--output FILE] [common options]
      Starts a capture of the pods named (or selected by namespace and labels) on the agent.
      With --wait it waits for the capture to end; with --output it then saves the pcapng.
  vigil capture list [common options]
  vigil capture show ID [common options]          the capture's manifest (JSON)
  vigil capture get ID --output FILE [common options]   saves the pcapng
  vigil capture delete ID [common options]
common options:
  --agent HOST:PORT   the agent's listen address (default 127.0.0.1:9965)
  --token-file FILE   bearer token for the captures API (or the VIGIL_API_TOKEN variable)
)";

int usage(const std::string& msg) {
  std::fprintf(stderr, "vigil capture: %s\n%s", msg.c_str(), kCaptureUsage);
  return 2;
}

struct Options {
  std::string agent = "127.0.0.1:9965";
  std::string token;
  std::vector<std::string> positional;
  std::vector<std::string> pods, labels;
  std::string ns, before, after, filter, snaplen, max_packets, max_bytes, reason, output;
  bool wait = false;
};

std::optional<Options> parse(int argc, char** argv, std::string& error) {
  Options o;
  std::string token_file;
  for (int i = 3; i < argc; ++i) {
    std::string a = argv[i];
    std::string value;
    auto eq = a.find('=');
    const bool inline_value = a.rfind("--", 0) == 0 && eq != std::string::npos;
    if (inline_value) {
      value = a.substr(eq + 1);
      a = a.substr(0, eq);
    }
    auto take = [&](std::string& out) {
      if (inline_value) {
        out = value;
        return true;
      }
      if (i + 1 >= argc) {
        error = a + " needs a value";
        return false;
      }
      out = argv[++i];
      return true;
    };
    std::string v;
    if (a == "--wait") {
      o.wait = true;
    } else if (a == "--pod" || a == "--label") {
      if (!take(v)) return std::nullopt;
      (a == "--pod" ? o.pods : o.labels).push_back(v);
    } else if (a == "--agent") {
      if (!take(o.agent)) return std::nullopt;
    } else if (a == "--token-file") {
      if (!take(token_file)) return std::nullopt;
    } else if (a == "--namespace") {
      if (!take(o.ns)) return std::nullopt;
    } else if (a == "--before") {
      if (!take(o.before)) return std::nullopt;
    } else if (a == "--after") {
      if (!take(o.after)) return std::nullopt;
    } else if (a == "--filter") {
      if (!take(o.filter)) return std::nullopt;
    } else if (a == "--snaplen") {
      if (!take(o.snaplen)) return std::nullopt;
    } else if (a == "--max-packets") {
      if (!take(o.max_packets)) return std::nullopt;
    } else if (a == "--max-bytes") {
      if (!take(o.max_bytes)) return std::nullopt;
    } else if (a == "--reason") {
      if (!take(o.reason)) return std::nullopt;
    } else if (a == "--output" || a == "-o") {
      if (!take(o.output)) return std::nullopt;
    } else if (a.rfind("--", 0) == 0) {
      error = "unknown option " + a;
      return std::nullopt;
    } else {
      o.positional.push_back(a);
    }
  }
  if (!token_file.empty()) {
    std::ifstream in(token_file);
    if (!in) {
      error = "--token-file " + token_file + ": cannot be read";
      return std::nullopt;
    }
    std::getline(in, o.token);
    while (!o.token.empty() && (o.token.back() == '\r' || o.token.back() == ' ')) o.token.pop_back();
  } else if (const char* env = std::getenv("VIGIL_API_TOKEN")) {
    o.token = env;
  }
  return o;
}

std::optional<httplib::Client> client_for(const Options& o, std::string& error) {
  auto c = agent_client(o.agent, error);
  if (!c) return std::nullopt;
  c->set_connection_timeout(std::chrono::seconds(3));
  c->set_read_timeout(std::chrono::seconds(30));
  if (!o.token.empty()) c->set_bearer_token_auth(o.token);
  return c;
}

// The agent's message for a failed call, or the transport error.
std::string failure(const httplib::Result& r, const Options& o) {
  if (!r) return "agent " + o.agent + ": " + actions::describe_http_error(r.error()) + agent_hint(r.error());
  std::string msg;
  try {
    msg = nlohmann::json::parse(r->body).value("error", "");
  } catch (...) {
  }
  if (msg.empty()) msg = r->body;
  return "agent " + o.agent + ": HTTP " + std::to_string(r->status) + (msg.empty() ? "" : ": " + msg);
}

int download(httplib::Client& c, const Options& o, const std::string& id) {
  std::ofstream out(o.output, std::ios::binary | std::ios::trunc);
  if (!out) {
    std::fprintf(stderr, "vigil capture: --output %s: cannot be written\n", o.output.c_str());
    return 1;
  }
  auto r = c.Get("/api/v1/captures/" + id + "/pcap", [&](const char* data, size_t n) {
    out.write(data, static_cast<std::streamsize>(n));
    return static_cast<bool>(out);
  });
  out.close();
  if (!r || r->status != 200) {
    std::remove(o.output.c_str());
    std::fprintf(stderr, "vigil capture: %s\n", failure(r, o).c_str());
    return 1;
  }
  std::printf("saved %s\n", o.output.c_str());
  return 0;
}

int start(httplib::Client& c, const Options& o) {
  nlohmann::json body = nlohmann::json::object();
  if (!o.pods.empty()) body["pods"] = o.pods;
  if (!o.ns.empty()) body["namespace"] = o.ns;
  if (!o.labels.empty()) {
    nlohmann::json labels = nlohmann::json::object();
    for (const auto& l : o.labels) {
      auto eq = l.find('=');
      if (eq == std::string::npos || eq == 0) return usage("--label '" + l + "': expected KEY=VALUE");
      labels[l.substr(0, eq)] = l.substr(eq + 1);
    }
    body["labels"] = labels;
  }
  if (o.pods.empty() && o.ns.empty() && o.labels.empty())
    return usage("start needs --pod, --namespace or --label to say which pods");
  for (const auto& [key, value] : {std::pair{"before", o.before}, {"after", o.after}, {"filter", o.filter},
                                   {"max_bytes", o.max_bytes}, {"reason", o.reason}})
    if (!value.empty()) body[key] = value;
  for (const auto& [key, value] : {std::pair{"snaplen", o.snaplen}, {"max_packets", o.max_packets}}) {
    if (value.empty()) continue;
    char* end = nullptr;
    const long long n = std::strtoll(value.c_str(), &end, 10);
    if (*end || n <= 0) return usage(std::string("--") + (std::string(key) == "snaplen" ? "snaplen" : "max-packets") +
                                     " '" + value + "': expected a positive integer");
    body[key] = n;
  }
  auto r = c.Post("/api/v1/captures", body.dump(), "application/json");
  if (!r || r->status != 201) {
    std::fprintf(stderr, "vigil capture: %s\n", failure(r, o).c_str());
    return 1;
  }
  nlohmann::json manifest = nlohmann::json::parse(r->body, nullptr, false);
  const std::string id = manifest.is_object() ? manifest.value("id", "") : "";
  std::printf("capture %s started\n", id.c_str());
  if (!o.wait) return 0;
  // Bounded: the capture's own window plus a margin.
  double window = 0;
  if (manifest.is_object()) window = manifest.value("after_seconds", 0.0) + 30;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(window);
  std::string status = "running";
  while (status == "running" && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(250));
    auto m = c.Get("/api/v1/captures/" + id);
    if (!m || m->status != 200) {
      std::fprintf(stderr, "vigil capture: %s\n", failure(m, o).c_str());
      return 1;
    }
    manifest = nlohmann::json::parse(m->body, nullptr, false);
    status = manifest.is_object() ? manifest.value("status", "") : "";
  }
  if (status == "running") {
    std::fprintf(stderr, "vigil capture: %s is still running after %.0f s\n", id.c_str(), window);
    return 1;
  }
  std::printf("capture %s %s: %llu packets, %llu lost%s\n", id.c_str(), status.c_str(),
              static_cast<unsigned long long>(manifest.value("packets", 0ull)),
              static_cast<unsigned long long>(manifest.value("packets_lost", 0ull)),
              manifest.value("complete", false) ? "" : " (incomplete: see the manifest)");
  if (!o.output.empty()) return download(c, o, id);
  return status == "failed" ? 1 : 0;
}

int list(httplib::Client& c, const Options& o) {
  auto r = c.Get("/api/v1/captures");
  if (!r || r->status != 200) {
    std::fprintf(stderr, "vigil capture: %s\n", failure(r, o).c_str());
    return 1;
  }
  auto all = nlohmann::json::parse(r->body, nullptr, false);
  if (!all.is_array()) {
    std::fprintf(stderr, "vigil capture: agent %s: the answer is not a list\n", o.agent.c_str());
    return 1;
  }
  std::printf("%-26s %-10s %-8s %-10s %-8s %s\n", "ID", "STATUS", "TRIGGER", "PACKETS", "LOST", "PODS");
  for (const auto& m : all) {
    std::string pods;
    for (const auto& p : m.value("pods", nlohmann::json::array()))
      pods += (pods.empty() ? "" : ",") + p.value("namespace", "") + "/" + p.value("name", "");
    std::printf("%-26s %-10s %-8s %-10llu %-8llu %s\n", m.value("id", "").c_str(), m.value("status", "").c_str(),
                m.value("trigger", "").c_str(), static_cast<unsigned long long>(m.value("packets", 0ull)),
                static_cast<unsigned long long>(m.value("packets_lost", 0ull)), pods.c_str());
  }
  return 0;
}

}  // namespace

int capture_command(int argc, char** argv) {
  if (argc < 3) return usage("missing subcommand");
  const std::string sub = argv[2];
  std::string error;
  auto o = parse(argc, argv, error);
  if (!o) return usage(error);
  auto c = client_for(*o, error);
  if (!c) return usage(error);
  if (sub == "start") {
    if (!o->positional.empty()) return usage("start takes no positional arguments");
    return start(*c, *o);
  }
  if (sub == "list") return list(*c, *o);
  if (sub != "show" && sub != "get" && sub != "delete") return usage("unknown subcommand '" + sub + "'");
  if (o->positional.size() != 1) return usage(sub + " needs one capture ID");
  const std::string id = o->positional[0];
  if (sub == "get") {
    if (o->output.empty()) return usage("get needs --output FILE");
    return download(*c, *o, id);
  }
  auto r = sub == "show" ? c->Get("/api/v1/captures/" + id) : c->Delete("/api/v1/captures/" + id);
  if (!r || r->status / 100 != 2) {
    std::fprintf(stderr, "vigil capture: %s\n", failure(r, *o).c_str());
    return 1;
  }
  if (sub == "show") std::printf("%s\n", nlohmann::json::parse(r->body, nullptr, false).dump(2).c_str());
  else std::printf("capture %s deleted\n", id.c_str());
  return 0;
}

}  // namespace vigil
