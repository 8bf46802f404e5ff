// The running kernel's verifier on every program of the agent's object: each must load with a
// fraction of the verifier's 1,000,000-instruction budget, so that a kernel whose verifier
// explores a little more (or a change of ours) does not stop the agent from loading, and so that
// the agent starts fast (verification was 1.3 s of CPU at every start when the DNS-over-TCP loop
// was explored step by step).
#include <gtest/gtest.h>

#include <bpf/libbpf.h>

#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <regex>
#include <string>
#include <vector>

#include "support.h"

namespace vigil::test {
namespace {

constexpr long kBudget = 200000;  // a fifth of the kernel's limit (BPF_COMPLEXITY_LIMIT_INSNS)

TEST(Verifier, EveryProgramLoadsWithAFifthOfTheBudgetAtMost) {
  VIGIL_REQUIRE_ROOT();
  const std::string path = binary_path("bpf/gen/counters.bpf.o");
  std::unique_ptr<bpf_object, void (*)(bpf_object*)> obj(bpf_object__open_file(path.c_str(), nullptr),
                                                          bpf_object__close);
  ASSERT_TRUE(obj) << "open " << path << ": " << std::strerror(errno);
  // Every program, the TC pair for older kernels too, each with its own log of statistics.
  std::map<std::string, std::vector<char>> logs;
  bpf_program* prog = nullptr;
  bpf_object__for_each_program(prog, obj.get()) {
    auto& log = logs[bpf_program__name(prog)];
    log.assign(1 << 16, '\0');
    bpf_program__set_autoload(prog, true);
    bpf_program__set_log_level(prog, 4);  // BPF_LOG_STATS
    bpf_program__set_log_buf(prog, log.data(), log.size());
  }
  ASSERT_GE(logs.size(), 7u);
  ASSERT_EQ(bpf_object__load(obj.get()), 0) << "load " << path;
  const std::regex processed(R"(processed (\d+) insns)"), took(R"(verification time (\d+) usec)");
  for (const auto& [name, log] : logs) {
    const std::string text(log.data());
    std::smatch m, t;
    ASSERT_TRUE(std::regex_search(text, m, processed)) << name << ": no statistics in the log:\n" << text;
    const long insns = std::stol(m[1]);
    const long usec = std::regex_search(text, t, took) ? std::stol(t[1]) : -1;
    std::printf("%-24s %7ld instructions processed, %6.1f ms\n", name.c_str(), insns, usec / 1000.0);
    EXPECT_LE(insns, kBudget) << name << ": the verifier explored " << insns << " instructions\n" << text;
  }
}

}  // namespace
}  // namespace vigil::test
