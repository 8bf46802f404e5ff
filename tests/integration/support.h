// Shared helpers for integration tests: privileges, lab pods, child processes, a webhook
// receiver and /metrics parsing. Everything created here is removed by destructors, also when
// a test fails.
#pragma once

#include <gtest/gtest.h>
#include <sys/types.h>

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

namespace httplib {
class Server;
}

namespace vigil::test {

// Skips the test when it cannot run unprivileged; under VIGIL_REQUIRE_PRIVILEGED=1 (CI) it
// fails instead, so a privileged test never silently skips in CI.
#define VIGIL_REQUIRE_ROOT()                                                                          \
  do {                                                                                                \
    if (auto why = ::vigil::test::privileged_unavailable()) {                                        \
      if (::vigil::test::privileged_required()) FAIL() << "privileged test cannot run: " << *why;      \
      GTEST_SKIP() << *why;                                                                           \
    }                                                                                                 \
  } while (0)

std::optional<std::string> privileged_unavailable();
bool privileged_required();

struct CommandResult {
  int status = -1;
  std::string output;  // stdout and stderr
};
CommandResult run(const std::string& command);  // through /bin/sh
std::string source_path(const std::string& rel);
std::string binary_path(const std::string& rel);

// A child process started by the test; killed (by pid) when destroyed.
class Process {
 public:
  Process(std::vector<std::string> argv, const std::string& log_file);
  ~Process();
  pid_t pid() const { return pid_; }
  bool running();
  int terminate(std::chrono::milliseconds grace = std::chrono::milliseconds(3000));  // exit status
  std::string log() const;

 private:
  pid_t pid_ = -1;
  std::string log_file_;
  std::optional<int> status_;
};

// Lab pods (tests/lab/vigil-lab) under a prefix unique to this test process.
class Lab {
 public:
  explicit Lab(int pods);
  ~Lab();
  std::string cmd(const std::string& args) const;  // runs vigil-lab with the prefix; asserts success
  std::string pods_file() const;
  std::string ip(int pod) const;
  std::string veth(int pod) const;
  const std::string& prefix() const { return prefix_; }

 private:
  std::string prefix_;
};

// A real HTTP server on 127.0.0.1 that records the JSON bodies POSTed to it.
class WebhookReceiver {
 public:
  // Listens on `port` (a free_port() the test chose before, say), or any free port when 0.
  explicit WebhookReceiver(int port = 0);
  ~WebhookReceiver();
  std::string url() const;
  std::vector<nlohmann::json> bodies() const;
  std::vector<std::string> idempotency_keys() const;  // the Idempotency-Key of each, in order
  // Waits (bounded) until `pred` holds for the received bodies.
  bool wait_for(const std::function<bool(const std::vector<nlohmann::json>&)>& pred, std::chrono::seconds timeout) const;

 private:
  std::unique_ptr<httplib::Server> server_;
  std::thread thread_;
  int port_ = 0;
  mutable std::mutex mu_;
  std::vector<nlohmann::json> bodies_;
  std::vector<std::string> keys_;
};

int free_port();
std::string http_get(const std::string& host, int port, const std::string& path, int* status = nullptr);

// Finds the value of `name{labels...}` in Prometheus text; labels given must all match.
std::optional<double> metric_value(const std::string& text, const std::string& name,
                                   const std::map<std::string, std::string>& labels);
double metric_sum(const std::string& text, const std::string& name, const std::map<std::string, std::string>& labels);

// The agent's /metrics once `ticks` more ticks have finished (counted by
// vigil_tick_duration_seconds_count): two guarantee a full read of the maps after the call,
// however slow a loaded machine makes the ticks. Waits at most 20 s, then returns what it has.
std::string metrics_after_ticks(int port, int ticks = 2);

// How many pods the agent listening on 127.0.0.1:`port` has attached (its /api/v1/pods); 0
// while it does not answer.
// Makes the link between lab pods 1 and 2 quiet, so that every packet on it is one a test sent:
// static neighbour entries both ways and no IPv6 in either pod, on their host-side veths or on
// the lab's bridge (whose listener reports and solicitations would reach the pods). Failures
// are recorded as test failures; false if any.
bool quiet_pod_pair(const Lab& lab);
std::set<std::string> attached_pods(int port);  // names of the pods the agent on `port` has attached
// Names of the programs the kernel has on `dev` through TCX, ingress then egress (what is on
// its packets' path, whatever an agent says); empty when none or no such device.
std::vector<std::string> tcx_programs(const std::string& dev);
int attached_pod_count(int port);
// Waits (bounded by `timeout`) until that agent has attached `count` pods.
bool wait_for_attached(int port, int count, std::chrono::milliseconds timeout = std::chrono::seconds(10));
// Polls `pred` every 100 ms until it holds or `timeout` passes; then whether it holds.
bool wait_until(const std::function<bool()>& pred, std::chrono::milliseconds timeout);

// How often the kernel hit a tracepoint and how often it ran a BPF program attached to it, over
// the object's life (until stop()). The hits come from a tracefs instance of the test's own with
// only that event enabled, the runs from the program's run count (BPF stats are on while the
// object lives). On this machine's kernel the two can differ without any recursion miss: now and
// then a softirq batch of tracepoint hits reaches the tracefs probe but no BPF program on the
// tracepoint (any program, also one of a second agent or a plain 15-line probe). A count from a
// tracing program may fall short by undelivered() at most, which is 0 when the kernel ran the
// program for every hit. Hits and runs are read in the order that can only under-state it.
class TracepointDelivery {
 public:
  // `event` as tracefs names it ("sock/inet_sock_set_state"), `program` as bpf_prog_info names
  // it (the first 15 characters; the newest such program is taken).
  TracepointDelivery(const std::string& event, const std::string& program);
  ~TracepointDelivery();
  TracepointDelivery(const TracepointDelivery&) = delete;
  TracepointDelivery& operator=(const TracepointDelivery&) = delete;
  bool ok() const { return error_.empty(); }
  const std::string& error() const { return error_; }
  void stop();
  uint64_t hits() const { return hits_; }
  uint64_t runs() const { return runs_; }
  uint64_t undelivered() const { return hits_ > runs_ ? hits_ - runs_ : 0; }

 private:
  uint64_t run_count() const;
  std::string instance_, event_, error_;
  int stats_fd_ = -1, prog_fd_ = -1;
  uint64_t runs_at_start_ = 0, hits_ = 0, runs_ = 0;
  bool stopped_ = false;
};
// A count from a tracing program against what the test made happen: never more, and less only
// by the hits `witness` saw the kernel not run the program for (a shortfall is reported on stderr).
void expect_exact_or_undelivered(double counted, double want, const TracepointDelivery& witness, const std::string& what);

// A rule file of the shipped pack (`rules/pack/<file>`) with each `from` replaced once by its
// `to`: what users run, with a test's shorter windows or its own channel. Empty when the file
// cannot be read or a `from` is not in it (the pack changed under the test).
std::string shipped_rule(const std::string& file, const std::vector<std::pair<std::string, std::string>>& replacements);

// Compiles tests/integration/bpf/NAME.bpf.c (a stand-in for another tool's program) into DIR;
// the object's path, or "" with clang's output in `error`.
std::string compile_other_tool(const std::string& name, const std::string& dir, std::string& error);

uint64_t read_u64(const std::string& path);
std::string write_temp_file(const std::string& dir, const std::string& name, const std::string& content);
std::string make_temp_dir();

// A temp dir removed with everything in it when the test ends, also when it fails.
class ScopedTempDir {
 public:
  ScopedTempDir() : path_(make_temp_dir()) {}
  ~ScopedTempDir();
  ScopedTempDir(const ScopedTempDir&) = delete;
  ScopedTempDir& operator=(const ScopedTempDir&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

}  // namespace vigil::test
