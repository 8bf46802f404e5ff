// The netstat family's read (engine/netns_stats.h): what a read costs per pod, and how it grows
// with the sockets of a namespace (a sock_diag dump is a message per socket). Each "pod" here is
// the bench's own namespace joined through /proc/self/ns/net, so the setns and the files are
// the same work a pod's namespace takes (docs/benchmarks.md, "Netstat"). The agent reads every
// metrics.netstat.interval (10 s by default), so per second it costs these figures / 10.
// VIGIL_BENCH_NETNS=/run/netns/NAME reads that namespace instead (BM_ReadPods), e.g. one made
// with net.ipv4.tcp_child_ehash_entries set, which has a TCP hash table of its own.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <benchmark/benchmark.h>

#include <cstdlib>
#include <string>
#include <vector>

#include "engine/netns_stats.h"

namespace {

// `pods` namespaces read in one call, with TCP sockets by state (1) or without (0).
void BM_ReadPods(benchmark::State& state) {
  const char* other = std::getenv("VIGIL_BENCH_NETNS");
  const std::string path = other && *other ? other : "/proc/self/ns/net";
  const std::vector<vigil::NetnsTarget> targets(static_cast<size_t>(state.range(0)),
                                                vigil::NetnsTarget{path, 0, state.range(1) != 0});
  for (auto _ : state) {
    auto samples = vigil::read_netns_samples(targets);
    if (!samples.back()) state.SkipWithError(samples.back().error().message.c_str());
    benchmark::DoNotOptimize(samples);
  }
  state.counters["per_pod"] =
      benchmark::Counter(static_cast<double>(state.range(0)), benchmark::Counter::kIsIterationInvariantRate | benchmark::Counter::kInvert);
}
BENCHMARK(BM_ReadPods)->ArgsProduct({{1, 10, 50}, {0, 1}})->ArgNames({"pods", "tcp_states"})->UseRealTime()->Unit(benchmark::kMillisecond);

// One namespace holding `sockets` more TCP listeners on 127.0.0.1.
void BM_ReadSockets(benchmark::State& state) {
  rlimit lim{};
  getrlimit(RLIMIT_NOFILE, &lim);
  lim.rlim_cur = lim.rlim_max;
  setrlimit(RLIMIT_NOFILE, &lim);
  std::vector<int> fds;
  for (int64_t i = 0; i < state.range(0); ++i) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0 || listen(fd, 1) != 0) {
      if (fd >= 0) close(fd);
      state.SkipWithError("cannot open the listeners (file descriptor limit?)");
      break;
    }
    fds.push_back(fd);
  }
  const std::vector<vigil::NetnsTarget> targets{vigil::NetnsTarget{"/proc/self/ns/net"}};
  for (auto _ : state) {
    auto samples = vigil::read_netns_samples(targets);
    benchmark::DoNotOptimize(samples);
  }
  for (int fd : fds) close(fd);
}
BENCHMARK(BM_ReadSockets)->Arg(0)->Arg(1000)->Arg(10000)->ArgName("sockets")->UseRealTime()->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
