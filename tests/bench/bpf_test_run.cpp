// vigil_bpf_test_run: nanoseconds per run of Vigil's TC programs on crafted packets, with
// BPF_PROG_TEST_RUN, against an empty TC program measured in the same process (docs/benchmarks.md (a)).
//
//   build-dns/tests/bench/vigil_bpf_test_run [ROUNDS] [REPEAT]     (root; defaults 7 and 1000000)
//
// It loads the agent's real skeleton (counters.skel.h; nothing is attached), moves itself into a
// network namespace of its own (unshare: nothing to clean up, it goes away with the process),
// gives that namespace's loopback interface (ifindex 1) a traffic slot as the agent does at
// attach, and runs vigil_tc_ingress / vigil_tc_egress, and vigil_tc_pod (what a pod receives, on
// its own end: found through this namespace and its loopback), REPEAT times per call on each packet:
// UDP 64 B payload, TCP ACK (66 B frame), a DNS A query, UDP over IPv6. Each is measured with
// remote context off and on (max_peers 64), and an empty program (r0 = TC_ACT_OK) is measured
// right before each. The kernel times test runs itself (no stats clock); preemption is not
// counted. Prints, per case, the median ns/run of ROUNDS calls, the empty program's, and the
// difference (the cost Vigil adds).
//
// Lookback capture (bpf/lib/capture.h): every case is also measured, in the same rounds, with
// capture on for the slot (snaplen 96: a record of 40 + min(96, frame) bytes appended to the
// ring per run); "capture" is the difference to the run with capture off. The ring is 256 MiB
// and drained after each call, and the number of records drained is checked against the runs
// (REPEAT is capped at 1,000,000 for these calls so one call fits in the ring). A last table
// measures the loss path: capture on with the ring full (the run counts a loss instead).
// SNAPLEN=N (1..1536) in the environment measures another snaplen.
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/bpf.h>
#include <linux/types.h>
#include <sched.h>
#include <sys/stat.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "counters.skel.h"
#include "engine/bpf_immediates.h"
#include "vigil_abi.h"

namespace {

using Bytes = std::vector<uint8_t>;

void put16(Bytes& b, uint16_t v) {
  b.push_back(static_cast<uint8_t>(v >> 8));
  b.push_back(static_cast<uint8_t>(v));
}

Bytes ether(uint16_t proto) {
  Bytes b = {0x02, 0, 0, 0, 0, 2, 0x02, 0, 0, 0, 0, 1};
  put16(b, proto);
  return b;
}

Bytes ipv4(uint8_t proto, size_t l4_len, uint8_t dst_last) {
  Bytes b = {0x45, 0};
  put16(b, static_cast<uint16_t>(20 + l4_len));
  put16(b, 1);
  put16(b, 0x4000);  // DF
  b.push_back(64);
  b.push_back(proto);
  put16(b, 0);
  for (uint8_t v : {10, 77, 0, 1}) b.push_back(v);
  for (uint8_t v : {uint8_t{10}, uint8_t{77}, uint8_t{0}, dst_last}) b.push_back(v);
  return b;
}

Bytes ipv6(uint8_t next, size_t l4_len) {
  Bytes b = {0x60, 0, 0, 0};
  put16(b, static_cast<uint16_t>(l4_len));
  b.push_back(next);
  b.push_back(64);
  Bytes src = {0xfd, 0x77, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
  Bytes dst = {0xfd, 0x77, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2};
  b.insert(b.end(), src.begin(), src.end());
  b.insert(b.end(), dst.begin(), dst.end());
  return b;
}

Bytes udp(uint16_t sport, uint16_t dport, const Bytes& payload) {
  Bytes b;
  put16(b, sport);
  put16(b, dport);
  put16(b, static_cast<uint16_t>(8 + payload.size()));
  put16(b, 0);
  b.insert(b.end(), payload.begin(), payload.end());
  return b;
}

Bytes tcp_ack() {
  Bytes b;
  put16(b, 40000);
  put16(b, 8080);
  for (int i = 0; i < 8; ++i) b.push_back(static_cast<uint8_t>(i));  // seq, ack
  b.push_back(0x80);                                                 // doff 8 (32 bytes)
  b.push_back(0x10);                                                 // ACK
  put16(b, 502);
  put16(b, 0);
  put16(b, 0);
  Bytes opts = {1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2};  // NOP NOP timestamps
  b.insert(b.end(), opts.begin(), opts.end());
  return b;
}

Bytes dns_query() {
  Bytes b;
  for (uint16_t v : {0x1234, 0x0100, 1, 0, 0, 0}) put16(b, static_cast<uint16_t>(v));
  for (const char* label : {"kubernetes", "default", "svc", "cluster", "local"}) {
    b.push_back(static_cast<uint8_t>(std::strlen(label)));
    b.insert(b.end(), label, label + std::strlen(label));
  }
  b.push_back(0);
  put16(b, 1);  // A
  put16(b, 1);  // IN
  return b;
}

Bytes cat(Bytes a, const Bytes& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

struct Packet {
  std::string name;
  Bytes frame;
};

std::vector<Packet> packets() {
  const Bytes payload64(64, 0x61);
  Bytes u = udp(40000, 9000, payload64);
  Bytes t = tcp_ack();
  Bytes d = udp(40053, 53, dns_query());
  Bytes u6 = udp(40000, 9000, payload64);
  return {
      {"udp64", cat(cat(ether(0x0800), ipv4(17, u.size(), 2)), u)},
      {"tcp_ack", cat(cat(ether(0x0800), ipv4(6, t.size(), 2)), t)},
      {"dns_query", cat(cat(ether(0x0800), ipv4(17, d.size(), 2)), d)},
      {"udp64_ipv6", cat(cat(ether(0x86DD), ipv6(17, u6.size())), u6)},
  };
}

// ns per run of one BPF_PROG_TEST_RUN call of `repeat` runs.
double run_ns(int prog_fd, const Bytes& frame, uint32_t repeat) {
  __sk_buff ctx{};
  ctx.ifindex = 1;
  std::vector<uint8_t> out(frame.size() + 256);
  LIBBPF_OPTS(bpf_test_run_opts, opts, .data_in = frame.data(), .data_out = out.data(),
              .data_size_in = static_cast<__u32>(frame.size()), .data_size_out = static_cast<__u32>(out.size()),
              .ctx_in = &ctx, .ctx_size_in = sizeof(ctx), .repeat = static_cast<int>(repeat));
  if (int err = bpf_prog_test_run_opts(prog_fd, &opts)) {
    std::fprintf(stderr, "bpf_prog_test_run_opts: %s\n", std::strerror(-err));
    std::exit(1);
  }
  // Vigil's programs return TC_ACT_UNSPEC (-1: the next program decides), the empty one TC_ACT_OK.
  if (opts.retval != 0 && opts.retval != static_cast<__u32>(-1)) {
    std::fprintf(stderr, "program returned %u, expected TC_ACT_OK or TC_ACT_UNSPEC\n", opts.retval);
    std::exit(1);
  }
  return static_cast<double>(opts.duration);
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

int load_empty() {
  const bpf_insn insns[] = {
      {BPF_ALU64 | BPF_MOV | BPF_K, BPF_REG_0, 0, 0, 0},  // r0 = TC_ACT_OK
      {BPF_JMP | BPF_EXIT, 0, 0, 0, 0},
  };
  int fd = bpf_prog_load(BPF_PROG_TYPE_SCHED_CLS, "vigil_empty", "GPL", insns, 2, nullptr);
  if (fd < 0) {
    std::fprintf(stderr, "load the empty program: %s\n", std::strerror(errno));
    std::exit(1);
  }
  return fd;
}

// Gives ifindex 1 (this namespace's loopback) the traffic slot the agent would (the one the TC
// programs guess from the ifindex), remote context and capture as asked.
void set_slot(vigil_counters* skel, uint32_t remote_max, uint32_t generation, uint32_t snaplen = 0) {
  vigil_slot s{};
  s.ifindex = 1;
  s.slot = 1 & vigil::slot_guess_mask(VIGIL_MAX_PODS);
  s.remote_max = remote_max;
  s.generation = generation;
  s.capture_snaplen = snaplen;
  __u32 index = 1 & (VIGIL_SLOT_TABLE - 1);
  if (bpf_map__update_elem(skel->maps.vigil_slots, &index, sizeof(index), &s, sizeof(s), BPF_ANY)) {
    std::fprintf(stderr, "update vigil_slots: %s\n", std::strerror(errno));
    std::exit(1);
  }
}

}  // namespace

int main(int argc, char** argv) {
  const int rounds = argc > 1 ? std::atoi(argv[1]) : 7;
  const long repeat = argc > 2 ? std::atol(argv[2]) : 1000000;
  if (rounds < 1 || rounds > 101 || repeat < 1000 || repeat > 100000000) {
    std::fprintf(stderr, "usage: %s [ROUNDS 1..101] [REPEAT 1000..100000000]\n", argv[0]);
    return 2;
  }
  if (unshare(CLONE_NEWNET) != 0) {
    std::fprintf(stderr, "unshare(CLONE_NEWNET): %s (run as root)\n", std::strerror(errno));
    return 1;
  }
  libbpf_set_print([](libbpf_print_level level, const char* fmt, va_list ap) {
    return level == LIBBPF_WARN ? std::vfprintf(stderr, fmt, ap) : 0;
  });
  const char* snaplen_env = std::getenv("SNAPLEN");
  const uint32_t snaplen = snaplen_env ? static_cast<uint32_t>(std::atoi(snaplen_env)) : 96;
  if (snaplen < 1 || snaplen > VIGIL_CAPTURE_MAX_SNAPLEN) {
    std::fprintf(stderr, "SNAPLEN must be 1..%d\n", VIGIL_CAPTURE_MAX_SNAPLEN);
    return 2;
  }
  constexpr uint32_t kRingBytes = 256u << 20;
  vigil_counters* skel = vigil_counters__open();
  if (!skel) {
    std::fprintf(stderr, "open the vigil_counters skeleton: %s\n", std::strerror(errno));
    return 1;
  }
  // The per-CPU block size the agent writes into the TC programs (engine/bpf_immediates.h): here
  // the read-only data's default, VIGIL_MAX_PODS.
  for (bpf_program* prog :
       {skel->progs.vigil_tc, skel->progs.vigil_tc_ingress, skel->progs.vigil_tc_egress, skel->progs.vigil_tc_pod})
    if (auto e = vigil::write_tc_immediates(prog, VIGIL_MAX_PODS); !e.empty()) {
      std::fprintf(stderr, "%s\n", e.c_str());
      return 1;
    }
  // The per-CPU counter arrays hold a block per possible CPU, as the agent sizes them: a run on
  // any CPU but the first would otherwise find its counters out of range and count nothing.
  const uint32_t cpus = static_cast<uint32_t>(libbpf_num_possible_cpus());
  if (bpf_map__set_max_entries(skel->maps.vigil_traffic, VIGIL_MAX_PODS * cpus) != 0 ||
      bpf_map__set_max_entries(skel->maps.vigil_remote_values, VIGIL_MAX_REMOTE_KEYS * cpus) != 0 ||
      bpf_map__set_max_entries(skel->maps.vigil_capture_rb, kRingBytes) != 0 || vigil_counters__load(skel) != 0) {
    std::fprintf(stderr, "load the vigil_counters skeleton: %s\n", std::strerror(errno));
    return 1;
  }
  uint64_t drained = 0;
  ring_buffer* ring = ring_buffer__new(
      bpf_map__fd(skel->maps.vigil_capture_rb),
      [](void* ctx, void*, size_t) {
        ++*static_cast<uint64_t*>(ctx);
        return 0;
      },
      &drained, nullptr);
  if (!ring) {
    std::fprintf(stderr, "open the capture ring buffer: %s\n", std::strerror(errno));
    return 1;
  }
  const uint32_t capture_repeat = static_cast<uint32_t>(std::min<long>(repeat, 1000000));
  // One call of capture_repeat runs with capture on; every record must come out of the ring.
  auto run_captured = [&](int fd, const Bytes& frame) {
    drained = 0;
    double ns = run_ns(fd, frame, capture_repeat);
    ring_buffer__consume(ring);
    if (drained != capture_repeat) {
      std::fprintf(stderr, "capture: %llu records drained after %u runs\n", static_cast<unsigned long long>(drained),
                   capture_repeat);
      std::exit(1);
    }
    return ns;
  };
  // Free remote-context indices, as Datapath::open_and_load gives them.
  for (__u32 i = 0; i < VIGIL_MAX_REMOTE_KEYS; ++i) {
    if (bpf_map_update_elem(bpf_map__fd(skel->maps.vigil_remote_free), nullptr, &i, BPF_ANY)) {
      std::fprintf(stderr, "fill vigil_remote_free: %s\n", std::strerror(errno));
      return 1;
    }
  }
  // vigil_tc_pod (what a pod receives, on its own end) finds its counters through the device's
  // namespace and ifindex: here this process's namespace and its loopback, which also stands in
  // for the host-side veth whose slot holds the counters.
  struct stat netns {};
  if (stat("/proc/self/ns/net", &netns) != 0) {
    std::fprintf(stderr, "stat /proc/self/ns/net: %s\n", std::strerror(errno));
    return 1;
  }
  // At its place in the array, as the agent puts a key whose place is free (Datapath::link_pod_side).
  const vigil_pod_side_entry pod_side{{static_cast<__u32>(netns.st_ino), 1}, 1, 0};
  __u32 pod_side_index = VIGIL_POD_SIDE_INDEX(pod_side.key.netns_inode, pod_side.key.ifindex);
  if (bpf_map_update_elem(bpf_map__fd(skel->maps.vigil_pod_sides), &pod_side_index, &pod_side, BPF_ANY)) {
    std::fprintf(stderr, "update vigil_pod_sides: %s\n", std::strerror(errno));
    return 1;
  }
  const int empty = load_empty();
  struct Prog {
    const char* name;
    int fd;
  };
  const Prog progs[] = {{"vigil_tc_ingress", bpf_program__fd(skel->progs.vigil_tc_ingress)},
                        {"vigil_tc_egress", bpf_program__fd(skel->progs.vigil_tc_egress)},
                        {"vigil_tc_pod", bpf_program__fd(skel->progs.vigil_tc_pod)}};
  for (const Prog& prog : progs) {
    bpf_prog_info info{};
    __u32 len = sizeof(info);
    if (bpf_obj_get_info_by_fd(prog.fd, &info, &len) == 0)
      std::printf("%s: %u bytes of JIT code, %u bytes of BPF\n", prog.name, info.jited_prog_len, info.xlated_prog_len);
  }
  // Write the whole ring once before measuring: on a virtual machine the first touch of a page
  // can cost a fault in the hypervisor (500+ ns per record here), which is not the steady state.
  {
    const Packet warm = packets()[0];
    set_slot(skel, 0, 1, snaplen);
    const uint32_t record = (8 + sizeof(vigil_capture_hdr) + std::min<uint32_t>(snaplen, warm.frame.size()) + 7) / 8 * 8;
    for (uint64_t written = 0; written < kRingBytes / record + capture_repeat; written += capture_repeat)
      run_captured(bpf_program__fd(skel->progs.vigil_tc_ingress), warm.frame);
    set_slot(skel, 0, 1, 0);
  }
  std::printf("capture: snaplen %u, %u runs per call with capture on\n", snaplen, capture_repeat);
  std::printf("%-16s %-11s %-8s %9s %9s %9s %11s %9s\n", "program", "packet", "remote", "empty", "vigil", "added",
              "vigil+cap", "capture");
  uint32_t generation = 1;
  for (uint32_t remote_max : {0u, 64u}) {
    for (const Packet& p : packets()) {
      for (const Prog& prog : progs) {
        std::vector<double> e, v, d, c, dc;
        set_slot(skel, remote_max, ++generation);
        run_ns(prog.fd, p.frame, 1000);  // warm up: first peer, first DNS key
        for (int r = 0; r < rounds; ++r) {
          e.push_back(run_ns(empty, p.frame, static_cast<uint32_t>(repeat)));
          v.push_back(run_ns(prog.fd, p.frame, static_cast<uint32_t>(repeat)));
          d.push_back(v.back() - e.back());
          set_slot(skel, remote_max, generation, snaplen);  // same generation: the peer cache stays warm
          c.push_back(run_captured(prog.fd, p.frame));
          set_slot(skel, remote_max, generation, 0);
          dc.push_back(c.back() - v.back());
        }
        std::printf("%-16s %-11s %-8s %9.1f %9.1f %9.1f %11.1f %9.1f\n", prog.name, p.name.c_str(),
                    remote_max ? "on" : "off", median(e), median(v), median(d), median(c), median(dc));
      }
    }
  }
  // The loss path: the ring full, each run counts a loss (vigil_capture_lost, vigil_errors).
  std::printf("ring full (every captured run is a loss):\n%-16s %-11s %9s %11s %9s\n", "program", "packet", "vigil",
              "vigil+cap", "capture");
  const Packet udp = packets()[0];
  set_slot(skel, 0, ++generation, snaplen);
  const uint32_t record = (8 + sizeof(vigil_capture_hdr) + std::min<uint32_t>(snaplen, udp.frame.size()) + 7) / 8 * 8;
  for (uint32_t filled = 0; filled <= kRingBytes / record; filled += 1000000) run_ns(progs[0].fd, udp.frame, 1000000);
  for (const Prog& prog : progs) {
    std::vector<double> v, c, dc;
    for (int r = 0; r < rounds; ++r) {
      set_slot(skel, 0, generation, 0);
      v.push_back(run_ns(prog.fd, udp.frame, static_cast<uint32_t>(repeat)));
      set_slot(skel, 0, generation, snaplen);
      c.push_back(run_ns(prog.fd, udp.frame, static_cast<uint32_t>(repeat)));
      dc.push_back(c.back() - v.back());
    }
    std::printf("%-16s %-11s %9.1f %11.1f %9.1f\n", prog.name, udp.name.c_str(), median(v), median(c), median(dc));
  }
  std::vector<__u64> errors(libbpf_num_possible_cpus());
  __u32 site = VIGIL_ERR_CAPTURE_RING_FULL;
  uint64_t full = 0;
  if (bpf_map_lookup_elem(bpf_map__fd(skel->maps.vigil_errors), &site, errors.data()) == 0)
    for (auto n : errors) full += n;
  std::printf("vigil_errors{capture_ring_full}: %llu\n", static_cast<unsigned long long>(full));
  if (full == 0) {
    std::fprintf(stderr, "the ring never filled: the loss path was not measured\n");
    return 1;
  }
  ring_buffer__free(ring);
  vigil_counters__destroy(skel);
  return 0;
}
