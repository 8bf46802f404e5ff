// Rule files (rules/runtime/): Lua that users write, loaded into the sandbox, its `rule {...}`
// tables read into rule specs, then evaluated. The input is one rule file. Loading never
// crashes or throws; a file it refuses gets an error that names the file; a file it loads runs
// three ticks over a few series and pods, and its learned state survives a snapshot and
// restore (nothing refused, nothing skipped). The file is a memfd, named /proc/self/fd/N, so
// nothing is left on disk whatever happens.
#include <sys/mman.h>
#include <unistd.h>

#include <spdlog/spdlog.h>

#include <string>

#include "rules/runtime/engine.h"
#include "tests/fuzz/fuzz_check.h"

namespace {

using namespace vigil;
using namespace vigil::rules;
using vigil::fuzz::check;

class CountingSink : public ActionSink {
 public:
  void notify(const std::string&, const Anomaly&) override { ++sent; }
  size_t sent = 0;
};

Sample counter(const std::string& metric, const std::string& pod, double value, Labels extra = {}) {
  Labels labels = make_labels({{"namespace", "default"}, {"pod", pod}});
  for (auto& l : extra) labels.push_back(std::move(l));
  sort_labels(labels);
  return Sample{metric, std::move(labels), value, SeriesKind::Counter};
}

TickInput tick(int i) {
  TickInput in;
  in.time = 1.7e9 + i;
  in.pods = {PodMeta{"default", "web-1", {{"app", "web"}}, "node-a"}, PodMeta{"default", "db-0", {}, "node-a"}};
  const double n = 1000.0 * (i + 1);
  for (const char* pod : {"web-1", "db-0"}) {
    in.samples.push_back(counter("vigil_pod_packets_total", pod, n, {{"direction", "egress"}}));
    in.samples.push_back(counter("vigil_pod_bytes_total", pod, n * 100, {{"direction", "ingress"}}));
    in.samples.push_back(counter("vigil_pod_drop_packets_total", pod, i * 3.0, {{"direction", "ingress"}, {"reason", "NETFILTER_DROP"}}));
    in.samples.push_back(counter("vigil_dns_responses_total", pod, i * 2.0, {{"rcode", "NXDOMAIN"}, {"qtype", "A"}}));
    in.samples.push_back(counter("vigil_tcp_retransmits_total", pod, i * 1.0));
  }
  return in;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  spdlog::set_level(spdlog::level::off);  // rule errors are the common case here, not news
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const int fd = memfd_create("vigil-fuzz-rule", 0);
  check(fd >= 0, "memfd_create failed");
  size_t off = 0;
  while (off < size) {
    const ssize_t w = write(fd, data + off, size - off);
    check(w > 0, "write to memfd failed");
    off += static_cast<size_t>(w);
  }
  const std::string path = "/proc/self/fd/" + std::to_string(fd);
  EngineOptions options;
  options.node = "node-a";
  options.channels = std::set<std::string>{"default", "oncall"};
  options.memory_limit_bytes = 4u << 20;
  options.instruction_limit = 200'000;
  CountingSink sink;
  auto engine = RuleEngine::load({path}, options, &sink);
  if (!engine) {
    vigil::fuzz::check_error(engine.error().message, path, "RuleEngine::load");
    close(fd);
    return 0;
  }
  for (int i = 0; i < 3; ++i) (*engine)->tick(tick(i));
  (void)(*engine)->status();
  (void)(*engine)->lookback_pods();
  const std::string snapshot = (*engine)->snapshot_state();
  const StateReport report = (*engine)->restore_snapshot(snapshot, "fuzz snapshot");
  check(report.error.empty(), "restore_snapshot refused the engine's own snapshot: " + report.error);
  check(report.skipped.empty(), "restore_snapshot skipped part of the engine's own snapshot: " + (report.skipped.empty() ? "" : report.skipped[0]));
  (*engine)->tick(tick(3));
  (*engine)->resolve_open(1.7e9 + 4);
  close(fd);
  return 0;
}
