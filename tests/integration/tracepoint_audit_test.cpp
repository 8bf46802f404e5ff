// metrics.tracepoint_audit on the real kernel: the agent's own tracefs instances count the hits
// of the tracepoints its tracing programs run on, and the audit never reports a hit the kernel
// did not run the program for unless the test's own witness (a tracefs instance of its own and
// the program's BPF-stats run count, support.h) saw the kernel skip that many. The kernel's
// skipped runs cannot be caused on purpose; tests/bench/tracepoint_delivery.sh looks for them
// under load and compares the audit with the kernel's own counters. The audit's arithmetic
// (a skipped run is counted, and never a hit the program ran for) is unit-tested over a tracefs
// laid out in a temp dir (tests/unit/engine_tracepoint_audit_test.cpp).
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <cstdio>
#include <filesystem>
#include <thread>

#include "support.h"

namespace vigil::test {
namespace {

using namespace std::chrono_literals;

const char kTracefs[] = "/sys/kernel/tracing";

bool instance_exists(int pid, const std::string& program) {
  struct stat st {};
  return stat((std::string(kTracefs) + "/instances/vigil-audit-" + std::to_string(pid) + "-" + program).c_str(), &st) == 0;
}

class TracepointAuditTest : public ::testing::Test {
 protected:
  void SetUp() override {
    VIGIL_REQUIRE_ROOT();
    lab_ = std::make_unique<Lab>(2);
    dir_ = make_temp_dir();
    port_ = free_port();
    const std::string config = write_temp_file(
        dir_, "vigil.yaml",
        "listen: 127.0.0.1:" + std::to_string(port_) + "\nstate_dir: state\ntick: 200ms\n"
        "pods: {source: file, file: " + lab_->pods_file() + "}\nrules: []\nnotifiers: []\n"
        "metrics: {tracepoint_audit: true}\n");
    agent_ = std::make_unique<Process>(std::vector<std::string>{binary_path("vigil"), "agent", "--config", config},
                                       dir_ + "/agent.log");
    ASSERT_TRUE(wait_for_attached(port_, 2)) << "agent did not attach:\n" << agent_->log();
  }
  void TearDown() override {
    if (agent_) {
      const int pid = agent_->pid();
      EXPECT_EQ(agent_->terminate(), 0) << agent_->log();
      // The agent removes its instances when it stops.
      for (const char* program : {"vigil_kfree_skb", "vigil_tcp_retransmit", "vigil_sock_state", "vigil_tcp_retransmit_synack"})
        EXPECT_FALSE(instance_exists(pid, program)) << program;
    }
    agent_.reset();
    lab_.reset();
    if (!dir_.empty()) run("rm -rf " + dir_);
  }
  std::string ns(int pod) const { return lab_->prefix() + "-pod-" + std::to_string(pod); }
  std::string metrics() { return http_get("127.0.0.1", port_, "/metrics"); }
  static double of(const std::string& text, const char* name, const char* program) {
    return metric_value(text, name, {{"program", program}}).value_or(-1);
  }
  // The audit's figures for `program` against `witness` over what the test did between `before`
  // and `after` (both read while the witness counted): every hit the audit counted, the witness
  // counted too, and the audit's undelivered hits grew by no more than the witness saw the kernel
  // skip (by none when it skipped none).
  void check(const std::string& before, const std::string& after, const char* program, const TracepointDelivery& witness,
             double at_least) {
    SCOPED_TRACE(program);
    const double hits = of(after, "vigil_tracepoint_hits_total", program) - of(before, "vigil_tracepoint_hits_total", program);
    const double undelivered = of(after, "vigil_tracepoint_undelivered_total", program) -
                               of(before, "vigil_tracepoint_undelivered_total", program);
    EXPECT_GE(hits, at_least) << "the hits the test caused";
    EXPECT_LE(hits, static_cast<double>(witness.hits())) << "the witness counted over a longer time";
    EXPECT_LE(undelivered, static_cast<double>(witness.undelivered())) << "an undelivered hit the kernel ran it for";
    EXPECT_GE(of(before, "vigil_tracepoint_undelivered_total", program), 0);
    std::printf("%s: audit %.0f hits, %.0f undelivered; witness %llu hits, %llu runs\n", program, hits, undelivered,
                static_cast<unsigned long long>(witness.hits()), static_cast<unsigned long long>(witness.runs()));
  }

  std::unique_ptr<Lab> lab_;
  std::unique_ptr<Process> agent_;
  std::string dir_;
  int port_ = 0;
};

TEST_F(TracepointAuditTest, CountsTheHitsAndNoSkippedRunTheKernelDidNotSkip) {
  for (const char* program : {"vigil_kfree_skb", "vigil_tcp_retransmit", "vigil_sock_state", "vigil_tcp_retransmit_synack"})
    EXPECT_TRUE(instance_exists(agent_->pid(), program)) << program;
  TracepointDelivery drops("skb/kfree_skb", "vigil_kfree_skb");
  TracepointDelivery states("sock/inet_sock_set_state", "vigil_sock_state");
  ASSERT_TRUE(drops.ok()) << drops.error();
  ASSERT_TRUE(states.ok()) << states.error();
  const std::string before = metrics_after_ticks(port_, 2);
  // 300 datagrams to a closed port of pod 2 (NO_SOCKET drops) and 20 connects to a closed port
  // (each SYN_SENT, then CLOSE on the RST: 2 state changes, and the RST's drop).
  const int kDatagrams = 300, kConnects = 20;
  auto r = run("ip netns exec " + ns(1) + " python3 -c \"import socket\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n"
               "for i in range(" + std::to_string(kDatagrams) + "): s.sendto(b'x',('" + lab_->ip(2) + "',9))\"");
  ASSERT_EQ(r.status, 0) << r.output;
  r = run("ip netns exec " + ns(1) + " bash -c 'for i in $(seq 1 " + std::to_string(kConnects) + "); do (exec 3<>/dev/tcp/" +
          lab_->ip(2) + "/81) 2>/dev/null; done; true'");
  ASSERT_EQ(r.status, 0) << r.output;
  const std::string after = metrics_after_ticks(port_, 3);
  drops.stop();
  states.stop();
  check(before, after, "vigil_kfree_skb", drops, kDatagrams);
  check(before, after, "vigil_sock_state", states, 2 * kConnects);
  // The retransmit program's tracepoint was not hit by the test: its figures exist and are 0 or
  // more, whatever else the node does.
  EXPECT_GE(of(after, "vigil_tracepoint_hits_total", "vigil_tcp_retransmit"), 0) << after;
  EXPECT_GE(of(after, "vigil_tracepoint_undelivered_total", "vigil_tcp_retransmit"), 0);
}

// An agent killed with SIGKILL leaves its instances behind (nothing ran its destructor); the
// next agent removes them, and leaves instances of running processes and of other tools alone.
TEST(TracepointAuditStale, NextAgentRemovesADeadAgentsInstancesOnly) {
  VIGIL_REQUIRE_ROOT();
  const std::string base = std::string(kTracefs) + "/instances/";
  const std::string alive = base + "vigil-audit-" + std::to_string(getpid()) + "-vigil_kfree_skb";
  const std::string other = base + "vigil-test-other-" + std::to_string(getpid());
  std::vector<std::string> made;
  struct Cleanup {
    std::vector<std::string>& dirs;
    ~Cleanup() {
      for (const auto& d : dirs) rmdir(d.c_str());
    }
  } cleanup{made};
  for (const auto& d : {alive, other}) {
    ASSERT_EQ(mkdir(d.c_str(), 0700), 0) << d << ": " << std::strerror(errno);
    made.push_back(d);
  }
  Lab lab(1);
  ScopedTempDir dir;
  const int port = free_port();
  const std::string config = write_temp_file(
      dir.path(), "vigil.yaml",
      "listen: 127.0.0.1:" + std::to_string(port) + "\nstate_dir: state\ntick: 200ms\n"
      "pods: {source: file, file: " + lab.pods_file() + "}\nrules: []\nnotifiers: []\nmetrics: {tracepoint_audit: true}\n");
  pid_t first_pid = 0;
  {
    Process first({binary_path("vigil"), "agent", "--config", config}, dir.path() + "/first.log");
    ASSERT_TRUE(wait_for_attached(port, 1)) << first.log();
    first_pid = first.pid();
    ASSERT_EQ(kill(first_pid, SIGKILL), 0);
    first.terminate();  // reaps it
  }
  const std::string dead = base + "vigil-audit-" + std::to_string(first_pid) + "-vigil_kfree_skb";
  for (const char* program : {"vigil_kfree_skb", "vigil_tcp_retransmit", "vigil_sock_state", "vigil_tcp_retransmit_synack"})  // if the next agent does not
    made.push_back(base + "vigil-audit-" + std::to_string(first_pid) + "-" + program);
  struct stat st {};
  ASSERT_EQ(stat(dead.c_str(), &st), 0) << "the killed agent's instance is not there to be removed";
  Process agent({binary_path("vigil"), "agent", "--config", config}, dir.path() + "/agent.log");
  ASSERT_TRUE(wait_for_attached(port, 1)) << agent.log();
  EXPECT_NE(stat(dead.c_str(), &st), 0) << "the dead agent's instance stayed";
  for (const char* program : {"vigil_tcp_retransmit", "vigil_sock_state", "vigil_tcp_retransmit_synack"})
    EXPECT_FALSE(instance_exists(first_pid, program)) << program;
  EXPECT_EQ(stat(alive.c_str(), &st), 0) << "a running process's instance went";
  EXPECT_EQ(stat(other.c_str(), &st), 0) << "another tool's instance went";
  EXPECT_EQ(agent.terminate(), 0) << agent.log();
}

}  // namespace
}  // namespace vigil::test
