// Lookback capture on the real kernel: the TC programs copy the first snaplen bytes of every
// packet of a marked pod into the capture ring buffer, and CaptureSource hands them over with
// the right interface, direction, lengths and wall-clock timestamps; nothing of other pods, and
// nothing once capture is off. With a tiny ring and no reader, every packet is either delivered
// or reported lost, exactly. The links are made quiet first (IPv6 off on both sides, static
// neighbour entries, and a lab bridge without multicast snooping, which would send IGMP/MLD
// reports to every pod for a second after it comes up), so every packet on them is one the test sent.
#include <gtest/gtest.h>
#include <linux/types.h>
#include <net/if.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <time.h>

#include <bpf/bpf.h>

#include <mutex>
#include <set>
#include <thread>

#include "engine/bpf_maps.h"
#include "engine/capture_source.h"
#include "engine/datapath.h"
#include "engine/netns.h"
#include "support.h"
#include "vigil_abi.h"

namespace vigil::test {
namespace {

using namespace std::chrono_literals;

uint64_t unix_ns() {
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}

struct Record {
  uint32_t ifindex;
  uint64_t ts_ns;
  uint8_t direction;
  uint32_t wire_len;
  std::vector<uint8_t> data;
};

struct Lost {
  uint32_t ifindex;
  uint64_t ts_ns;
  uint64_t count;
};

class RecordingSink : public PacketSink {
 public:
  void on_packet(uint32_t ifindex, uint64_t ts_ns, uint8_t direction, uint32_t wire_len,
                 std::span<const uint8_t> data) override {
    std::lock_guard<std::mutex> l(mu_);
    records_.push_back(Record{ifindex, ts_ns, direction, wire_len, std::vector<uint8_t>(data.begin(), data.end())});
  }
  void on_lost(uint32_t ifindex, uint64_t ts_ns, uint64_t count) override {
    std::lock_guard<std::mutex> l(mu_);
    lost_.push_back(Lost{ifindex, ts_ns, count});
  }
  std::vector<Record> records() const {
    std::lock_guard<std::mutex> l(mu_);
    return records_;
  }
  std::vector<Lost> lost() const {
    std::lock_guard<std::mutex> l(mu_);
    return lost_;
  }

 private:
  mutable std::mutex mu_;
  std::vector<Record> records_;
  std::vector<Lost> lost_;
};

// A UDP/IPv4 datagram to port 9000 from `src` (dotted quad), as the test sends them.
bool is_test_udp(const Record& r, const std::string& src) {
  const auto& d = r.data;
  if (d.size() < 14 + 20 + 4 || d[12] != 0x08 || d[13] != 0x00 || d[14] != 0x45 || d[14 + 9] != 17) return false;
  char addr[32];
  std::snprintf(addr, sizeof(addr), "%u.%u.%u.%u", d[26], d[27], d[28], d[29]);
  return src == addr && ((d[36] << 8) | d[37]) == 9000;
}

// IPv6 off on the pods' and the host's side, static neighbours between every pair of pods,
// and static bridge entries, so that the bridge never floods a frame for a pod it has not heard
// from yet to the other pods.
void quiet_lab(const Lab& lab, int pods) {
  auto mac = [&](int pod) {
    auto r = run("ip netns exec " + lab.prefix() + "-pod-" + std::to_string(pod) + " cat /sys/class/net/eth0/address");
    EXPECT_EQ(r.status, 0) << r.output;
    return r.output.substr(0, r.output.find('\n'));
  };
  std::vector<std::string> macs;
  for (int i = 1; i <= pods; ++i) macs.push_back(mac(i));
  ASSERT_EQ(run("sysctl -qw net.ipv6.conf." + lab.prefix() + "-br0.disable_ipv6=1").status, 0);
  for (int i = 1; i <= pods; ++i) {
    const std::string ns = lab.prefix() + "-pod-" + std::to_string(i);
    ASSERT_EQ(run("sysctl -qw net.ipv6.conf." + lab.veth(i) + ".disable_ipv6=1").status, 0);
    auto fdb = run("bridge fdb replace " + macs[i - 1] + " dev " + lab.veth(i) + " master static");
    ASSERT_EQ(fdb.status, 0) << fdb.output;
    ASSERT_EQ(run("ip netns exec " + ns + " sysctl -qw net.ipv6.conf.all.disable_ipv6=1").status, 0);
    for (int j = 1; j <= pods; ++j) {
      if (j == i) continue;
      auto r = run("ip netns exec " + ns + " ip neigh replace " + lab.ip(j) + " lladdr " + macs[j - 1] +
                   " dev eth0 nud permanent");
      ASSERT_EQ(r.status, 0) << r.output;
    }
  }
}

uint32_t ifindex_of(const std::string& name) {
  const uint32_t i = if_nametoindex(name.c_str());
  EXPECT_NE(i, 0u) << name;
  return i;
}

// Every packet the TC programs counted for the pod behind `ifindex`, both directions.
uint64_t traffic_packets(const Datapath& dp, uint32_t ifindex) {
  const __u32 slot = dp.traffic_slots().at(ifindex);
  std::vector<vigil_traffic_value> v;
  EXPECT_TRUE(dp.read_traffic(slot, v));
  EXPECT_EQ(v.size(), static_cast<size_t>(possible_cpus()));
  uint64_t n = 0;
  for (const auto& c : v) n += c.packets[0] + c.packets[1];
  return n;
}

uint64_t ring_full_errors(const Datapath& dp) {
  std::vector<__u64> v(possible_cpus());
  __u32 site = VIGIL_ERR_CAPTURE_RING_FULL;
  EXPECT_EQ(bpf_map_lookup_elem(dp.map("vigil_errors").fd, &site, v.data()), 0);
  uint64_t n = 0;
  for (auto x : v) n += x;
  return n;
}

void send_udp(const Lab& lab, int from, int to, int count, int size, int cpu) {
  auto r = run("taskset -c " + std::to_string(cpu) + " ip netns exec " + lab.prefix() + "-pod-" + std::to_string(from) +
               " " + binary_path("tests/tools/vigil-lab-traffic") + " udp-send " + lab.ip(to) + " 9000 " +
               std::to_string(count) + " " + std::to_string(size));
  EXPECT_EQ(r.status, 0) << r.output;
}

// Pod 1 (host-side veth `a`) sends pod 2 (`b`) 30 datagrams, pod 2 sends pod 1 20, on a quiet
// link: each pod's counts per direction, exactly.
void exchange_30_and_20(const Datapath& dp, const Lab& lab, uint32_t a, uint32_t b) {
  send_udp(lab, 1, 2, 30, 100, 0);
  send_udp(lab, 2, 1, 20, 100, 1);
  auto packets = [&](uint32_t ifindex, int direction) {
    std::vector<vigil_traffic_value> v;
    EXPECT_TRUE(dp.read_traffic(dp.traffic_slots().at(ifindex), v));
    uint64_t n = 0;
    for (const auto& c : v) n += c.packets[direction];
    return n;
  };
  EXPECT_EQ(packets(a, VIGIL_DIR_EGRESS), 30u);
  EXPECT_EQ(packets(b, VIGIL_DIR_INGRESS), 30u);
  EXPECT_EQ(packets(b, VIGIL_DIR_EGRESS), 20u);
  EXPECT_EQ(packets(a, VIGIL_DIR_INGRESS), 20u);
}

std::unique_ptr<Process> udp_sink(const Lab& lab, int pod, const std::string& dir) {
  const std::string ns = lab.prefix() + "-pod-" + std::to_string(pod);
  auto p = std::make_unique<Process>(std::vector<std::string>{"/usr/bin/env", "ip", "netns", "exec", ns,
                                                              binary_path("tests/tools/vigil-lab-traffic"), "udp-sink",
                                                              "9000", "60"},
                                     dir + "/sink-" + std::to_string(pod) + ".log");
  for (int i = 0; i < 50 && run("ip netns exec " + ns + " ss -Hlun 'sport = :9000' | grep -q 9000").status != 0; ++i)
    std::this_thread::sleep_for(100ms);
  return p;
}

// Both ways of attaching count each direction exactly: the one program on both hooks (6.3+,
// reading the hook from the skb) and the ingress/egress pair older kernels get. Pod 1 sends pod 2
// 30 datagrams, pod 2 sends pod 1 20, on a quiet link; every count per pod and direction exact.
TEST(TcPrograms, OneProgramOrThePairCountEachDirectionExactly) {
  VIGIL_REQUIRE_ROOT();
  Lab lab(2);
  quiet_lab(lab, 2);
  ScopedTempDir dir;
  auto sink1 = udp_sink(lab, 1, dir.path());
  auto sink2 = udp_sink(lab, 2, dir.path());
  for (bool one : {true, false}) {
    SCOPED_TRACE(one ? "one program" : "the pair");
    auto loaded = Datapath::open_and_load(DatapathOptions{.one_tc_program = one});
    ASSERT_TRUE(loaded) << loaded.error().message;
    Datapath& dp = **loaded;
    const uint32_t a = ifindex_of(lab.veth(1)), b = ifindex_of(lab.veth(2));
    for (int pod : {1, 2}) {
      auto r = dp.attach_tc(ifindex_of(lab.veth(pod)), lab.veth(pod));
      ASSERT_TRUE(r) << r.error().message;
    }
    // The TC programs loaded: the one (and the pod-side one, for what pods receive on their own
    // ends, which needs the same kernel support), or the pair.
    std::set<std::string> names;
    for (const auto& p : dp.program_stats())
      if (p.name == "vigil_tc" || p.name.rfind("vigil_tc_", 0) == 0) names.insert(p.name);
    const std::set<std::string> want = one ? std::set<std::string>{"vigil_tc", "vigil_tc_pod"}
                                           : std::set<std::string>{"vigil_tc_egress", "vigil_tc_ingress"};
    EXPECT_EQ(names, want);
    exchange_30_and_20(dp, lab, a, b);
  }
}

// What a pod receives, counted on its own end (vigil_tc_pod, metrics.ingress_hook: pod), through
// the Datapath: two quiet lab pods with UDP sinks, and pod 2's own end (eth0 in its namespace).
class TcProgramsPodSide : public ::testing::Test {
 protected:
  void SetUp() override {
    VIGIL_REQUIRE_ROOT();
    utsname u{};
    int major = 0, minor = 0;
    ASSERT_EQ(uname(&u), 0);
    tcx_ = std::sscanf(u.release, "%d.%d", &major, &minor) == 2 && (major > 6 || (major == 6 && minor >= 6));
    lab_ = std::make_unique<Lab>(2);
    quiet_lab(*lab_, 2);
    sink1_ = udp_sink(*lab_, 1, dir_.path());
    sink2_ = udp_sink(*lab_, 2, dir_.path());
    const std::string ns2 = "/run/netns/" + lab_->prefix() + "-pod-2";
    struct stat st {};
    ASSERT_EQ(stat(ns2.c_str(), &st), 0);
    auto pod2 = find_pod_interface(ns2);
    ASSERT_TRUE(pod2) << pod2.error().message;
    side_ = Datapath::PodSide{ns2, static_cast<uint32_t>(st.st_ino), pod2->pod_ifindex, pod2->pod_ifname};
  }

  // A datapath of its own; with `taken`, pod 2's own end's place in vigil_pod_sides held by
  // another namespace's key (an inode 8192 on: the same low bits), so that its entry goes to the
  // vigil_pod_side hash. Null (and a failure) when it cannot be made.
  std::unique_ptr<Datapath> datapath(bool taken) {
    auto loaded = Datapath::open_and_load();
    EXPECT_TRUE(loaded) << loaded.error().message;
    if (!loaded) return nullptr;
    if (taken) {
      const vigil_pod_side_entry other{{side_.netns_inode + VIGIL_SLOT_TABLE, side_.ifindex}, 12345, 0};
      const __u32 index = VIGIL_POD_SIDE_INDEX(side_.netns_inode, side_.ifindex);
      EXPECT_EQ(bpf_map_update_elem((*loaded)->map("vigil_pod_sides").fd, &index, &other, BPF_ANY), 0);
    }
    return std::move(*loaded);
  }

  ScopedTempDir dir_;
  std::unique_ptr<Lab> lab_;
  std::unique_ptr<Process> sink1_, sink2_;
  Datapath::PodSide side_;
  bool tcx_ = false;  // the kernel has TCX (6.6+)
};

// The program finds the host-side veth's counters through the pod's namespace inode and ifindex,
// at its place in the vigil_pod_sides array, or in the vigil_pod_side hash when another key holds
// that place. Both paths count exactly; detaching frees what attaching took.
TEST_F(TcProgramsPodSide, CountsThroughItsArrayPlaceOrTheSpillHash) {
  if (!tcx_) GTEST_SKIP() << "this kernel has no TCX (6.6+): the pod's own end counts through a clsact filter";
  const Lab& lab = *lab_;
  const vigil_pod_side_key key{side_.netns_inode, side_.ifindex};
  __u32 index = VIGIL_POD_SIDE_INDEX(key.netns_inode, key.ifindex);
  for (bool taken : {false, true}) {
    SCOPED_TRACE(taken ? "its place taken: the hash" : "its place in the array");
    auto made = datapath(taken);
    ASSERT_TRUE(made);
    Datapath& dp = *made;
    const int array = dp.map("vigil_pod_sides").fd, hash = dp.map("vigil_pod_side").fd;
    const uint32_t a = ifindex_of(lab.veth(1)), b = ifindex_of(lab.veth(2));
    ASSERT_TRUE(dp.attach_tc(a, lab.veth(1)));
    auto r = dp.attach_tc(b, lab.veth(2), 0, &side_);
    ASSERT_TRUE(r) << r.error().message;
    ASSERT_TRUE(dp.counts_on_pod_side(b));
    vigil_pod_side_entry there{};
    ASSERT_EQ(bpf_map_lookup_elem(array, &index, &there), 0);
    __u32 spilled = 0;
    const bool in_hash = bpf_map_lookup_elem(hash, &key, &spilled) == 0;
    if (taken) {
      EXPECT_EQ(there.host_ifindex, 12345u) << "the other key keeps its place";
      EXPECT_TRUE(in_hash);
      EXPECT_EQ(spilled, b);
    } else {
      EXPECT_EQ(there.key.netns_inode, key.netns_inode);
      EXPECT_EQ(there.key.ifindex, key.ifindex);
      EXPECT_EQ(there.host_ifindex, b);
      EXPECT_FALSE(in_hash);
    }
    exchange_30_and_20(dp, lab, a, b);  // pod 2's ingress counted on its eth0, once (no host-side egress hook)
    dp.detach_tc(b);
    EXPECT_FALSE(dp.counts_on_pod_side(b));
    ASSERT_EQ(bpf_map_lookup_elem(array, &index, &there), 0);
    EXPECT_EQ(there.host_ifindex, taken ? 12345u : 0u) << "freed, and only its own";
    EXPECT_NE(bpf_map_lookup_elem(hash, &key, &spilled), 0);
  }
}

// The kernel reuses a gone namespace's inode, and every pod's eth0 has the same ifindex, so a new
// pod's own end can have the key of a pod that went (the agent can hear of the new pod before it
// hears that the old one went). The old pod taken off then must leave the new pod's entry, in the
// array's place or in the hash. Here the old pod's host side is a veth of the test's own, and its
// own end pod 1's eth0, under the key of pod 2's (its inode said to be pod 2's namespace's).
TEST_F(TcProgramsPodSide, APodThatGoesLeavesItsKeyToTheNewerPodThatTookIt) {
  if (!tcx_) GTEST_SKIP() << "this kernel has no TCX (6.6+): the pod's own end counts through a clsact filter";
  const Lab& lab = *lab_;
  const std::string old_veth = lab.prefix() + "-gone";
  ASSERT_EQ(run("ip link add " + old_veth + " type veth peer name " + old_veth + "p").status, 0);
  struct DeleteLink {
    std::string name;
    ~DeleteLink() { run("ip link del " + name); }
  } delete_link{old_veth};
  const std::string ns1 = "/run/netns/" + lab.prefix() + "-pod-1";
  auto pod1 = find_pod_interface(ns1);
  ASSERT_TRUE(pod1) << pod1.error().message;
  ASSERT_EQ(pod1->pod_ifindex, side_.ifindex) << "every pod's eth0 has the same ifindex";
  const Datapath::PodSide old_side{ns1, side_.netns_inode, pod1->pod_ifindex, pod1->pod_ifname};
  const vigil_pod_side_key key{side_.netns_inode, side_.ifindex};
  __u32 index = VIGIL_POD_SIDE_INDEX(key.netns_inode, key.ifindex);
  for (bool taken : {false, true}) {
    SCOPED_TRACE(taken ? "its place taken: the hash" : "its place in the array");
    auto made = datapath(taken);
    ASSERT_TRUE(made);
    Datapath& dp = *made;
    const int array = dp.map("vigil_pod_sides").fd, hash = dp.map("vigil_pod_side").fd;
    const uint32_t gone = ifindex_of(old_veth), a = ifindex_of(lab.veth(1)), b = ifindex_of(lab.veth(2));
    auto r = dp.attach_tc(gone, old_veth, 0, &old_side);
    ASSERT_TRUE(r) << r.error().message;
    ASSERT_TRUE(dp.attach_tc(a, lab.veth(1)));
    ASSERT_TRUE(dp.counts_on_pod_side(gone));
    r = dp.attach_tc(b, lab.veth(2), 0, &side_);  // the newer pod, with the same key
    ASSERT_TRUE(r) << r.error().message;
    ASSERT_TRUE(dp.counts_on_pod_side(b));
    dp.detach_tc(gone);
    vigil_pod_side_entry there{};
    __u32 spilled = 0;
    ASSERT_EQ(bpf_map_lookup_elem(array, &index, &there), 0);
    if (taken) {
      EXPECT_EQ(there.host_ifindex, 12345u);
      EXPECT_EQ(bpf_map_lookup_elem(hash, &key, &spilled), 0) << "the newer pod's entry is gone";
      EXPECT_EQ(spilled, b);
    } else {
      EXPECT_EQ(there.host_ifindex, b) << "the newer pod's entry is gone";
    }
    exchange_30_and_20(dp, lab, a, b);  // pod 2's ingress still counted on its eth0
    dp.detach_tc(b);
    ASSERT_EQ(bpf_map_lookup_elem(array, &index, &there), 0);
    EXPECT_EQ(there.host_ifindex, taken ? 12345u : 0u) << "freed when its owner goes";
    EXPECT_NE(bpf_map_lookup_elem(hash, &key, &spilled), 0);
  }
}

// A pod's own end that cannot be linked (here: a name its namespace does not have, as when the pod
// went away in between) leaves what it receives counted at the host-side veth's egress, as
// before, exactly; nothing of the pod side is left behind.
TEST_F(TcProgramsPodSide, ThatCannotBeLinkedFallsBackToTheHostSide) {
  if (!tcx_) GTEST_SKIP() << "this kernel has no TCX (6.6+): the pod's own end counts through a clsact filter";
  const Lab& lab = *lab_;
  Datapath::PodSide side = side_;
  side.ifname = "gone0";
  auto loaded = Datapath::open_and_load();
  ASSERT_TRUE(loaded) << loaded.error().message;
  Datapath& dp = **loaded;
  const uint32_t a = ifindex_of(lab.veth(1)), b = ifindex_of(lab.veth(2));
  ASSERT_TRUE(dp.attach_tc(a, lab.veth(1)));
  auto r = dp.attach_tc(b, lab.veth(2), 0, &side);
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_FALSE(dp.counts_on_pod_side(b));
  EXPECT_EQ(tcx_programs(lab.veth(2)), (std::vector<std::string>{"vigil_tc", "vigil_tc"}));
  const __u32 index = VIGIL_POD_SIDE_INDEX(side.netns_inode, side.ifindex);
  vigil_pod_side_entry there{};
  ASSERT_EQ(bpf_map_lookup_elem(dp.map("vigil_pod_sides").fd, &index, &there), 0);
  EXPECT_EQ(there.key.netns_inode, 0u) << "the entry made before the link is gone again";
  exchange_30_and_20(dp, lab, a, b);
}

// Kernels before TCX (forced here: DatapathOptions::tcx off; also the only way on 5.x and 6.1):
// the pod's own end counts through a clsact filter, vigil_tc_podcls, whose classid is its pod's
// place in vigil_pod_sides plus one (the program cannot read the device's namespace there), with
// the one program (6.3+) or the pair (older) on the host side. Each direction exact, the host-side
// egress filter left off; the place given again only after every other; detaching takes the
// filter off the pod's end and frees its place.
TEST_F(TcProgramsPodSide, BeforeTcxCountsThroughAClsactFilterWhoseClassidNamesThePod) {
  const Lab& lab = *lab_;
  const std::string ns2 = lab.prefix() + "-pod-2";
  auto pod_end_filters = [&] { return run("ip netns exec " + ns2 + " tc filter show dev " + side_.ifname + " ingress").output; };
  // tc shows a filter's classid as its flowid, ":HEX" when its major is 0; -1 when none.
  auto classid = [](const std::string& filters) -> long {
    const size_t at = filters.find("flowid :");
    return at == std::string::npos ? -1 : std::stol(filters.substr(at + 8), nullptr, 16);
  };
  uint32_t last_index = 0;
  for (bool one : {true, false}) {
    SCOPED_TRACE(one ? "the one program on the host side" : "the pair on the host side");
    auto loaded = Datapath::open_and_load(DatapathOptions{.one_tc_program = one, .tcx = false});
    ASSERT_TRUE(loaded) << loaded.error().message;
    Datapath& dp = **loaded;
    ASSERT_TRUE(dp.can_count_on_pod_side());
    const uint32_t a = ifindex_of(lab.veth(1)), b = ifindex_of(lab.veth(2));
    for (int round = 0; round < 2; ++round) {
      ASSERT_TRUE(dp.attach_tc(a, lab.veth(1)));
      auto r = dp.attach_tc(b, lab.veth(2), 0, &side_);
      ASSERT_TRUE(r) << r.error().message;
      ASSERT_TRUE(dp.counts_on_pod_side(b));
      EXPECT_TRUE(tcx_programs(lab.veth(2)).empty()) << "clsact filters, not TCX links";
      EXPECT_EQ(run("tc filter show dev " + lab.veth(2) + " egress").output.find("vigil"), std::string::npos)
          << "no host-side egress filter: each packet counts once";
      const std::string filters = pod_end_filters();
      EXPECT_NE(filters.find("vigil_tc_podcls"), std::string::npos) << filters;
      const long id = classid(filters);
      ASSERT_GE(id, 1) << filters;
      const __u32 index = static_cast<__u32>(id - 1);
      vigil_pod_side_entry there{};
      ASSERT_EQ(bpf_map_lookup_elem(dp.map("vigil_pod_sides").fd, &index, &there), 0);
      EXPECT_EQ(there.host_ifindex, b);
      EXPECT_EQ(there.key.ifindex, side_.ifindex);
      EXPECT_EQ(there.key.netns_inode, side_.netns_inode);
      if (round == 1) {
        EXPECT_EQ(index, last_index + 1) << "a place freed is not given again at once";
      }
      last_index = index;
      exchange_30_and_20(dp, lab, a, b);
      dp.detach_tc(b);
      EXPECT_FALSE(dp.counts_on_pod_side(b));
      EXPECT_EQ(pod_end_filters().find("vigil"), std::string::npos) << pod_end_filters();
      ASSERT_EQ(bpf_map_lookup_elem(dp.map("vigil_pod_sides").fd, &index, &there), 0);
      EXPECT_EQ(there.key.netns_inode, 0u) << "its place is free";
      // Counted from 0 again in the next round.
      for (uint32_t ifindex : {a, b}) {
        dp.detach_tc(ifindex);
        dp.forget_counters(ifindex, 0);
      }
    }
  }
}

// The TC programs guess an interface's traffic slot from its ifindex (the low bits the agent gives
// it when free) and load its counters before the slot entry confirms it; an interface whose
// guessed slot another holds has its counters where its slot entry says. With max_pods 3 the
// guess is the ifindex's lowest bit: of three interfaces two share it, so at least one counts
// through its slot entry. Pod 1 sends pod 2 10 datagrams, pod 2 sends pod 3 20, pod 3 sends
// pod 1 30: every count per pod and direction exact, on both paths.
TEST(TcPrograms, GuessedAndNamedTrafficSlotsCountExactly) {
  VIGIL_REQUIRE_ROOT();
  Lab lab(3);
  quiet_lab(lab, 3);
  ScopedTempDir dir;
  std::vector<std::unique_ptr<Process>> sinks;
  for (int pod : {1, 2, 3}) sinks.push_back(udp_sink(lab, pod, dir.path()));
  auto loaded = Datapath::open_and_load(DatapathOptions{.max_pods = 3});
  ASSERT_TRUE(loaded) << loaded.error().message;
  Datapath& dp = **loaded;
  uint32_t ifindex[4] = {};
  for (int pod : {1, 2, 3}) {
    ifindex[pod] = ifindex_of(lab.veth(pod));
    auto r = dp.attach_tc(ifindex[pod], lab.veth(pod));
    ASSERT_TRUE(r) << r.error().message;
  }
  int guessed = 0, named = 0;
  for (int pod : {1, 2, 3}) (dp.traffic_slots().at(ifindex[pod]) == (ifindex[pod] & 1u) ? guessed : named) += 1;
  EXPECT_GE(guessed, 1);
  EXPECT_GE(named, 1) << "three interfaces, two guessable slots: one must hold another slot";
  send_udp(lab, 1, 2, 10, 100, 0);
  send_udp(lab, 2, 3, 20, 100, 1);
  send_udp(lab, 3, 1, 30, 100, 0);
  auto packets = [&](int pod, int direction) {
    std::vector<vigil_traffic_value> v;
    EXPECT_TRUE(dp.read_traffic(dp.traffic_slots().at(ifindex[pod]), v));
    uint64_t n = 0;
    for (const auto& c : v) n += c.packets[direction];
    return n;
  };
  EXPECT_EQ(packets(1, VIGIL_DIR_EGRESS), 10u);
  EXPECT_EQ(packets(2, VIGIL_DIR_INGRESS), 10u);
  EXPECT_EQ(packets(2, VIGIL_DIR_EGRESS), 20u);
  EXPECT_EQ(packets(3, VIGIL_DIR_INGRESS), 20u);
  EXPECT_EQ(packets(3, VIGIL_DIR_EGRESS), 30u);
  EXPECT_EQ(packets(1, VIGIL_DIR_INGRESS), 30u);
}

TEST(CaptureSource, OnlyMarkedPodExactRecordsUntilTurnedOff) {
  VIGIL_REQUIRE_ROOT();
  // Validation needs no lab: the ring size is checked before anything is loaded.
  auto bad = Datapath::open_and_load(DatapathOptions{.capture_ring_bytes = 5000});
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().message.find("power of two"), std::string::npos) << bad.error().message;

  Lab lab(3);
  quiet_lab(lab, 3);
  ScopedTempDir dir;
  auto sink2 = udp_sink(lab, 2, dir.path());
  auto sink3 = udp_sink(lab, 3, dir.path());

  auto loaded = Datapath::open_and_load();
  ASSERT_TRUE(loaded) << loaded.error().message;
  Datapath& dp = **loaded;
  const uint32_t a = ifindex_of(lab.veth(1)), b = ifindex_of(lab.veth(2)), c = ifindex_of(lab.veth(3));
  for (int pod : {1, 2, 3}) {
    auto r = dp.attach_tc(ifindex_of(lab.veth(pod)), lab.veth(pod));
    ASSERT_TRUE(r) << r.error().message;
  }
  // Errors name the interface or the range.
  auto unknown = dp.set_capture(999999, 96);
  ASSERT_FALSE(unknown);
  EXPECT_NE(unknown.error().message.find("999999"), std::string::npos) << unknown.error().message;
  auto too_long = dp.set_capture(a, VIGIL_CAPTURE_MAX_SNAPLEN + 1);
  ASSERT_FALSE(too_long);
  EXPECT_NE(too_long.error().message.find("snaplen"), std::string::npos) << too_long.error().message;

  const uint32_t kSnaplen = 96;
  ASSERT_TRUE(dp.set_capture(a, kSnaplen));
  EXPECT_EQ(dp.capture_snaplen(a), kSnaplen);
  EXPECT_EQ(dp.capture_snaplen(b), 0u);
  RecordingSink sink;
  auto source = CaptureSource::start(dp, sink);
  ASSERT_TRUE(source) << source.error().message;

  // Pod 1 -> pod 2: long datagrams (cut at snaplen) and short ones (kept whole); pod 2 -> pod 3,
  // which nobody captures. Pod 1's sender runs on CPU 0 only, so its packets go through one CPU.
  const int kLong = 40, kShort = 25, kOther = 30;
  const uint32_t kLongWire = 14 + 20 + 8 + 200, kShortWire = 14 + 20 + 8 + 30;
  const uint64_t t0 = unix_ns();
  send_udp(lab, 1, 2, kLong, 200, 0);
  send_udp(lab, 1, 2, kShort, 30, 0);
  const uint64_t t1 = unix_ns();
  send_udp(lab, 2, 3, kOther, 100, 1);

  const std::string ip1 = lab.ip(1);
  auto ours = [&] {
    std::vector<Record> out;
    for (auto& r : sink.records())
      if (r.ifindex == a && is_test_udp(r, ip1)) out.push_back(std::move(r));
    return out;
  };
  for (int i = 0; i < 100 && ours().size() < static_cast<size_t>(kLong + kShort); ++i) std::this_thread::sleep_for(50ms);
  std::this_thread::sleep_for(200ms);  // anything extra would have come by now (the ring is drained every 10 ms)

  const auto records = ours();
  ASSERT_EQ(records.size(), static_cast<size_t>(kLong + kShort));
  uint64_t previous = 0;
  for (size_t i = 0; i < records.size(); ++i) {
    const Record& r = records[i];
    const bool is_long = i < static_cast<size_t>(kLong);
    EXPECT_EQ(r.direction, VIGIL_DIR_EGRESS) << i;
    EXPECT_EQ(r.wire_len, is_long ? kLongWire : kShortWire) << i;
    EXPECT_EQ(r.data.size(), std::min(kSnaplen, r.wire_len)) << i;
    // Unix time inside the sending window (2 ms for the clock offset's estimate), increasing.
    EXPECT_GE(r.ts_ns + 2000000, t0) << i;
    EXPECT_LE(r.ts_ns, t1 + 2000000) << i;
    EXPECT_GT(r.ts_ns, previous) << i;
    previous = r.ts_ns;
  }
  // The UDP payload starts where the headers end, and is what was sent ('u' bytes).
  EXPECT_EQ(records.back().data.size(), kShortWire);
  EXPECT_EQ(records.back().data.back(), 'u');
  // The quiet link carries nothing else of pod 1, and nothing at all of pods 2 and 3 is copied.
  for (const auto& r : sink.records()) {
    EXPECT_EQ(r.ifindex, a) << "a record of interface " << r.ifindex << " (pods 2 and 3: " << b << ", " << c << ")";
  }
  EXPECT_EQ(sink.records().size(), records.size());
  EXPECT_TRUE(sink.lost().empty());
  EXPECT_EQ((*source)->stats().records, records.size());
  EXPECT_EQ((*source)->stats().lost, 0u);

  // Off: nothing more, though pod 1 keeps sending (and is still counted).
  const uint64_t counted = traffic_packets(dp, a);
  ASSERT_TRUE(dp.set_capture(a, 0));
  EXPECT_EQ(dp.capture_snaplen(a), 0u);
  send_udp(lab, 1, 2, 20, 200, 0);
  std::this_thread::sleep_for(300ms);
  EXPECT_EQ(traffic_packets(dp, a), counted + 20);
  EXPECT_EQ(sink.records().size(), records.size());
  EXPECT_EQ(ring_full_errors(dp), 0u);

  // With no pod marked the source waits instead of polling the ring 100 times a second...
  const uint64_t polls_idle = (*source)->stats().polls;
  std::this_thread::sleep_for(700ms);
  EXPECT_LE((*source)->stats().polls, polls_idle + 1) << "the source kept polling with no pod marked";
  // ... and marking a pod wakes it at once: the next datagrams are delivered well within the
  // idle wait (1 s).
  ASSERT_TRUE(dp.set_capture(a, kSnaplen));
  const auto marked = std::chrono::steady_clock::now();
  send_udp(lab, 1, 2, 5, 200, 0);
  for (int i = 0; i < 100 && ours().size() < records.size() + 5; ++i) std::this_thread::sleep_for(10ms);
  EXPECT_EQ(ours().size(), records.size() + 5);
  EXPECT_LT(std::chrono::steady_clock::now() - marked, 800ms);
  std::this_thread::sleep_for(300ms);
  EXPECT_GE((*source)->stats().polls, polls_idle + 10) << "no polling while a pod is marked";

  // A source stopped and another started on the same datapath: the second waits as idly (the
  // first one's stop does not leave it spinning) and still wakes for a mark.
  ASSERT_TRUE(dp.set_capture(a, 0));
  const auto stopping = std::chrono::steady_clock::now();
  source->reset();
  EXPECT_LT(std::chrono::steady_clock::now() - stopping, 500ms) << "the source took a whole idle wait to stop";
  RecordingSink sink_again;
  auto again = CaptureSource::start(dp, sink_again);
  ASSERT_TRUE(again) << again.error().message;
  std::this_thread::sleep_for(500ms);
  EXPECT_LE((*again)->stats().idle_waits, 3u) << "the second source spins instead of waiting";
  ASSERT_TRUE(dp.set_capture(a, kSnaplen));
  send_udp(lab, 1, 2, 3, 200, 0);
  auto delivered = [&] {
    size_t n = 0;
    for (auto& r : sink_again.records()) n += r.ifindex == a && is_test_udp(r, ip1);
    return n;
  };
  for (int i = 0; i < 100 && delivered() < 3; ++i) std::this_thread::sleep_for(10ms);
  EXPECT_EQ(delivered(), 3u);
  ASSERT_TRUE(dp.set_capture(a, 0));
}

std::string hex_prefix(const std::vector<uint8_t>& d, size_t n) {
  std::string out;
  char b[4];
  for (size_t i = 0; i < d.size() && i < n; ++i) {
    std::snprintf(b, sizeof(b), "%02x", d[i]);
    out += b;
  }
  return out;
}

TEST(CaptureSource, TinyRingEveryPacketDeliveredOrCountedLost) {
  VIGIL_REQUIRE_ROOT();
  Lab lab(2);
  quiet_lab(lab, 2);
  ScopedTempDir dir;
  auto sink2 = udp_sink(lab, 2, dir.path());

  // 16 KiB hold about 110 records of 144 bytes (the kernel's 8, our 40, 96 of the packet).
  auto loaded = Datapath::open_and_load(DatapathOptions{.capture_ring_bytes = 16384});
  ASSERT_TRUE(loaded) << loaded.error().message;
  Datapath& dp = **loaded;
  const uint32_t a = ifindex_of(lab.veth(1));
  ASSERT_TRUE(dp.attach_tc(a, lab.veth(1)));
  ASSERT_TRUE(dp.attach_tc(ifindex_of(lab.veth(2)), lab.veth(2)));

  // No reader yet: the ring fills and the rest are lost. The window is bounded by the traffic
  // counters, which see exactly the packets the capture sees.
  const uint64_t before = traffic_packets(dp, a);
  ASSERT_TRUE(dp.set_capture(a, 96));
  const int kSent = 3000;
  send_udp(lab, 1, 2, kSent, 100, 0);
  ASSERT_TRUE(dp.set_capture(a, 0));
  const uint64_t seen = traffic_packets(dp, a) - before;
  EXPECT_EQ(seen, static_cast<uint64_t>(kSent)) << "the link was not quiet (records of other packets are printed below)";

  RecordingSink sink;
  auto source = CaptureSource::start(dp, sink);
  ASSERT_TRUE(source) << source.error().message;
  for (int i = 0; i < 100; ++i) {
    auto s = (*source)->stats();
    if (s.records + s.lost >= seen) break;
    std::this_thread::sleep_for(50ms);
  }
  std::this_thread::sleep_for(300ms);  // nothing more may come: three loss checks later
  const auto stats = (*source)->stats();
  EXPECT_EQ(stats.records + stats.lost, seen) << stats.records << " delivered, " << stats.lost << " lost";
  EXPECT_GT(stats.lost, 0u);
  EXPECT_GT(stats.records, 50u);
  EXPECT_LT(stats.records, 200u);  // what 16 KiB hold
  EXPECT_EQ(stats.bad_records, 0u);
  // The kernel's error counter says the same, and the sink got every loss, for pod 1.
  EXPECT_EQ(ring_full_errors(dp), stats.lost);
  uint64_t reported = 0;
  for (const auto& l : sink.lost()) {
    EXPECT_EQ(l.ifindex, a);
    reported += l.count;
  }
  EXPECT_EQ(reported, stats.lost);
  const auto records = sink.records();
  EXPECT_EQ(records.size(), stats.records);
  const std::string ip1 = lab.ip(1);
  for (const auto& r : records) {
    EXPECT_EQ(r.ifindex, a);
    EXPECT_TRUE(is_test_udp(r, ip1)) << "a packet on the quiet link that the test did not send: " << hex_prefix(r.data, 64);
    EXPECT_EQ(r.wire_len, 14u + 20 + 8 + 100);
    EXPECT_EQ(r.data.size(), 96u);
  }

  // Again with the reader running: losses now fall between records too (reported from the
  // records' counts or from the counters, whichever comes first); the sum stays exact.
  const uint64_t before2 = traffic_packets(dp, a);
  ASSERT_TRUE(dp.set_capture(a, 96));
  send_udp(lab, 1, 2, kSent, 100, 0);
  send_udp(lab, 1, 2, kSent, 100, 1);
  ASSERT_TRUE(dp.set_capture(a, 0));
  const uint64_t seen2 = traffic_packets(dp, a) - before2;
  EXPECT_EQ(seen2, 2u * kSent) << "the link was not quiet";
  for (int i = 0; i < 100; ++i) {
    auto s = (*source)->stats();
    if (s.records + s.lost >= seen + seen2) break;
    std::this_thread::sleep_for(50ms);
  }
  std::this_thread::sleep_for(300ms);
  const auto stats2 = (*source)->stats();
  EXPECT_EQ(stats2.records + stats2.lost, seen + seen2) << stats2.records << " delivered, " << stats2.lost << " lost";
  EXPECT_EQ(ring_full_errors(dp), stats2.lost);
  EXPECT_GT(stats2.records, stats.records);
  reported = 0;
  for (const auto& l : sink.lost()) reported += l.count;
  EXPECT_EQ(reported, stats2.lost);
  EXPECT_EQ(sink.records().size(), stats2.records);
  std::printf("tiny ring: first flood %llu delivered, %llu lost; second (reader running) %llu delivered, %llu lost, %llu loss scans\n",
              static_cast<unsigned long long>(stats.records), static_cast<unsigned long long>(stats.lost),
              static_cast<unsigned long long>(stats2.records - stats.records),
              static_cast<unsigned long long>(stats2.lost - stats.lost), static_cast<unsigned long long>(stats2.loss_scans));
}

}  // namespace
}  // namespace vigil::test
