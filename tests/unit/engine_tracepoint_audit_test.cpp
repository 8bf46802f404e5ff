// TracepointAudit's arithmetic and file handling over a tracefs laid out in a temp dir. The
// kernel's skipped runs cannot be caused on purpose, so this is where a skipped run is shown to
// be counted; tests/integration/tracepoint_audit_test.cpp runs the same code on the real tracefs
// (hits counted, no skipped run the kernel did not skip, instances removed).
#include "engine/tracepoint_audit.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

namespace vigil {
namespace {

namespace fs = std::filesystem;

class TracepointAuditUnit : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = fs::temp_directory_path() / ("vigil-audit-unit-" + std::to_string(getpid()));
    fs::remove_all(root_);
    fs::create_directories(root_ / "instances");
    fs::create_directories(root_ / "events/skb/kfree_skb");
    write(root_ / "events/skb/kfree_skb/enable", "0");
  }
  void TearDown() override { fs::remove_all(root_); }
  static void write(const fs::path& p, const std::string& text) { std::ofstream(p) << text; }
  static std::string read(const fs::path& p) {
    std::ifstream f(p);
    std::string s;
    std::getline(f, s);
    return s;
  }
  fs::path instance() const { return root_ / "instances" / ("vigil-audit-" + std::to_string(getpid()) + "-vigil_kfree_skb"); }
  void stats(int cpu, uint64_t entries, uint64_t overrun) {
    const fs::path dir = instance() / "per_cpu" / ("cpu" + std::to_string(cpu));
    fs::create_directories(dir);
    write(dir / "stats", "entries: " + std::to_string(entries) + "\noverrun: " + std::to_string(overrun) +
                             "\ncommit overrun: 0\nbytes: 0\noldest event ts: 1.000000\nnow ts: 2.000000\n"
                             "dropped events: 0\nread events: 0\n");
  }
  // What the kernel does on mkdir of an instance, done by the runs reader, which start() calls
  // after the mkdir and before it enables the event: the test sees the order too.
  Result<std::unique_ptr<TracepointAudit>> start() {
    return TracepointAudit::start(root_.string(), {{"vigil_kfree_skb", "skb/kfree_skb", 0}}, [this](uint32_t index) {
      EXPECT_EQ(index, 0u);
      const fs::path enable = instance() / "events/skb/kfree_skb/enable";
      if (!fs::exists(enable)) {
        fs::create_directories(enable.parent_path());
        write(enable, "0");
      }
      if (!baseline_read_) {
        baseline_read_ = true;
        EXPECT_EQ(read(enable), "0") << "the runs' baseline must be read before the event is enabled";
      }
      return runs_;
    });
  }

  fs::path root_;
  uint64_t runs_ = 1000;
  bool baseline_read_ = false;
};

TEST_F(TracepointAuditUnit, SkippedRunsAreHitsBeyondTheRunsSinceTheBaselineAndNeverGoDown) {
  auto audit = start();
  ASSERT_TRUE(audit.ok()) << audit.error().message;
  EXPECT_EQ(read(instance() / "events/skb/kfree_skb/enable"), "1");
  EXPECT_EQ(read(instance() / "buffer_size_kb"), "4");
  // Every hit run: 18 hits on two CPUs (kept and overwritten), 18 runs.
  stats(0, 5, 10);
  stats(1, 3, 0);
  runs_ = 1018;
  auto r = (*audit)->read();
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r[0].program, "vigil_kfree_skb");
  EXPECT_EQ(r[0].event, "skb/kfree_skb");
  EXPECT_EQ(r[0].hits, 18u);
  EXPECT_EQ(r[0].runs, 18u);
  EXPECT_EQ(r[0].undelivered, 0u);
  // 12 more hits, 7 more runs: 5 hits the program did not run for.
  stats(0, 5, 22);
  runs_ = 1025;
  r = (*audit)->read();
  EXPECT_EQ(r[0].hits, 30u);
  EXPECT_EQ(r[0].undelivered, 5u);
  // Runs read after hits may be ahead of them (hits in flight): the figure never goes down.
  stats(0, 5, 23);
  runs_ = 1031;
  EXPECT_EQ((*audit)->read()[0].undelivered, 5u);
  // 9 more hits, 1 more run: 8 skipped in all.
  stats(1, 12, 0);
  runs_ = 1032;
  EXPECT_EQ((*audit)->read()[0].undelivered, 8u);
}

TEST_F(TracepointAuditUnit, ErrorsNameWhatIsMissing) {
  auto no_tracefs = TracepointAudit::start((root_ / "nothing").string(), {{"vigil_kfree_skb", "skb/kfree_skb", 0}},
                                           [](uint32_t) { return uint64_t{0}; });
  ASSERT_FALSE(no_tracefs.ok());
  EXPECT_EQ(no_tracefs.error().message, "metrics.tracepoint_audit: tracefs is not mounted at " + (root_ / "nothing").string() +
                                            " (mount -t tracefs tracefs " + (root_ / "nothing").string() + ")");
  auto no_event = TracepointAudit::start(root_.string(), {{"vigil_x", "skb/no_such_event", 0}},
                                         [](uint32_t) { return uint64_t{0}; });
  ASSERT_FALSE(no_event.ok());
  EXPECT_EQ(no_event.error().message, "metrics.tracepoint_audit: this kernel has no tracepoint skb/no_such_event (" +
                                          root_.string() + "/events/skb/no_such_event/enable: No such file or directory)");
}

TEST_F(TracepointAuditUnit, RemovesOnlyInstancesOfAgentsThatAreGone) {
  const pid_t child = fork();
  if (child == 0) _exit(0);
  ASSERT_GT(child, 0);
  ASSERT_EQ(waitpid(child, nullptr, 0), child);  // reaped: its pid runs nothing now
  const fs::path dead = root_ / "instances" / ("vigil-audit-" + std::to_string(child) + "-vigil_kfree_skb");
  const fs::path alive = root_ / "instances" / ("vigil-audit-" + std::to_string(getpid()) + "-vigil_kfree_skb");
  const fs::path other = root_ / "instances" / "someone-else";
  const fs::path odd = root_ / "instances" / "vigil-audit-notapid";
  for (const auto& d : {dead, alive, other, odd}) fs::create_directory(d);
  EXPECT_EQ(TracepointAudit::remove_stale(root_.string()), 1);
  EXPECT_FALSE(fs::exists(dead));
  EXPECT_TRUE(fs::exists(alive));
  EXPECT_TRUE(fs::exists(other));
  EXPECT_TRUE(fs::exists(odd));
}

TEST(TracefsCpuWritten, SumsEntriesAndOverrunOrSaysItCannot) {
  EXPECT_EQ(tracefs_cpu_written("entries: 7\noverrun: 35\ncommit overrun: 2\nbytes: 120\n"), 42u);
  EXPECT_EQ(tracefs_cpu_written("overrun: 0\nentries: 0\n"), 0u);
  EXPECT_EQ(tracefs_cpu_written("entries: 7\n"), std::nullopt);
  EXPECT_EQ(tracefs_cpu_written("entries: x\noverrun: 1\n"), std::nullopt);
  EXPECT_EQ(tracefs_cpu_written("entries: 7 pages\noverrun: 1\n"), std::nullopt);
  EXPECT_EQ(tracefs_cpu_written(""), std::nullopt);
}

}  // namespace
}  // namespace vigil
