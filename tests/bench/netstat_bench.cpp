// The netstat family's read (engine/netns_stats.h): what a read costs per pod, and how it grows
// with the sockets of a namespace (a sock_diag dump is a message per socket). Each "pod" here is
// the bench's own namespace joined through /proc/self/ns/net, so the setns and the files are
// the same work a pod's namespace takes (docs/benchmarks.md, "Netstat"). The agent reads every
// metrics.netstat.interval (10 s by default), so per second it costs these figures / 10.
// VIGIL_BENCH_NETNS=/run/netns/NAME reads that namespace instead (BM_ReadPods), e.g. one made
// with net.ipv4.tcp_child_ehash_entries set, which has a TCP hash table of its own.
// BM_ConntrackByPod: the ctnetlink dump that counts the node's conntrack entries by pod.
#include <arpa/inet.h>
#include <fcntl.h>
#include <sched.h>
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
                                                vigil::NetnsTarget{.path = path, .inode = 0, .tcp_states = state.range(1) != 0});
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

// The node's conntrack entries counted by 50 pod addresses (metrics.netstat.conntrack_by_pod):
// one ctnetlink dump of a table of `entries` UDP flows, in a namespace of the bench's own
// (created on the benchmark's thread, its netfilter tracking its own output; gone at the end).
void BM_ConntrackByPod(benchmark::State& state) {
  const int self = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
  if (self < 0 || unshare(CLONE_NEWNET) != 0) {
    if (self >= 0) close(self);
    state.SkipWithError("cannot make a network namespace (root?)");
    return;
  }
  struct Back {  // this thread returns to its namespace whatever happens
    int fd;
    ~Back() {
      setns(fd, CLONE_NEWNET);
      close(fd);
    }
  } back{self};
  // Children inherit the calling thread's namespace.
  if (std::system("ip link set lo up && nft 'add table inet bench; add chain inet bench out { type filter hook output "
                  "priority 0; }; add rule inet bench out ct state new counter'") != 0) {
    state.SkipWithError("cannot turn conntrack on (nft)");
    return;
  }
  sockaddr_in to{};
  to.sin_family = AF_INET;
  to.sin_port = htons(9);
  const int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  for (int64_t i = 0; i < state.range(0) && fd >= 0; ++i) {  // a flow to each of 127.1.0.1, 127.1.0.2, ...
    to.sin_addr.s_addr = htonl(0x7f010000u + static_cast<uint32_t>(i) + 1);
    sendto(fd, "x", 1, 0, reinterpret_cast<sockaddr*>(&to), sizeof(to));
  }
  if (fd >= 0) close(fd);
  std::vector<vigil::Address16> pods;
  for (int i = 0; i < 49; ++i) pods.push_back(*vigil::parse_address16("10.244.0." + std::to_string(i + 2)));
  pods.push_back(*vigil::parse_address16("127.1.0.1"));  // one flow's
  uint64_t total = 0;
  for (auto _ : state) {
    auto counts = vigil::count_conntrack_by_address(pods, total);
    if (!counts) {
      state.SkipWithError(counts.error().message.c_str());
      break;
    }
    benchmark::DoNotOptimize(counts);
  }
  state.counters["entries"] = static_cast<double>(total);
}
BENCHMARK(BM_ConntrackByPod)->Arg(1000)->Arg(10000)->Arg(100000)->ArgName("entries")->UseRealTime()->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
