// The namespaces and addresses the drop program attributes to pods (vigil_pod_netns,
// vigil_pod_ip), in the kernel's maps: a pod that goes takes out only what is still its own.
#include <bpf/bpf.h>
#include <gtest/gtest.h>
#include <net/if.h>

#include "engine/bpf_maps.h"
#include "engine/datapath.h"
#include "engine/pod_manager.h"
#include "engine/pods.h"
#include "support.h"
#include "vigil_abi.h"

namespace vigil::test {
namespace {

// Kubernetes gives a gone pod's address to the next pod, and the kernel reuses a gone
// namespace's inode number; the agent can hear of the new pod before it hears that the old one
// went. Taking the old one out then must leave the new one's entries.
TEST(DatapathPods, APodThatGoesLeavesWhatANewerPodTookOver) {
  VIGIL_REQUIRE_ROOT();
  auto loaded = Datapath::open_and_load();
  ASSERT_TRUE(loaded) << loaded.error().message;
  Datapath& dp = **loaded;
  const uint32_t inode = 4026539999u;
  ASSERT_TRUE(dp.set_pod(7, inode, {"10.77.0.5", "fd77::5"}));
  ASSERT_TRUE(dp.set_pod(8, inode, {"10.77.0.5"}));  // the newer pod: same inode, one same address
  EXPECT_EQ(dp.pod_of_netns(inode), 8u);
  EXPECT_EQ(dp.pod_of_ip("10.77.0.5"), 8u);
  EXPECT_EQ(dp.pod_of_ip("fd77::5"), 7u);
  dp.forget_pod(7, inode, {"10.77.0.5", "fd77::5"});
  EXPECT_EQ(dp.pod_of_netns(inode), 8u);
  EXPECT_EQ(dp.pod_of_ip("10.77.0.5"), 8u);
  EXPECT_EQ(dp.pod_of_ip("fd77::5"), std::nullopt);  // still pod 7's: it went with it
  dp.forget_pod(8, inode, {"10.77.0.5"});
  EXPECT_EQ(dp.pod_of_netns(inode), std::nullopt);
  EXPECT_EQ(dp.pod_of_ip("10.77.0.5"), std::nullopt);
}

// Two interfaces whose ifindexes share a place in vigil_slots (8,192 apart): the second one's
// entry goes to vigil_slots_spill. When the first goes and the second's entry is written again
// (remote context set, its programs linked again) it takes the place in the array; its
// spilled copy must go, or it stays for good, with its pod id, and once 4,096 have stayed no
// interface that needs the spill can be attached. (Maps only: no interface needs to exist.)
TEST(DatapathPods, AnEntryMovedFromTheSpillToItsPlaceLeavesNoCopyBehind) {
  VIGIL_REQUIRE_ROOT();
  auto loaded = Datapath::open_and_load();
  ASSERT_TRUE(loaded) << loaded.error().message;
  Datapath& dp = **loaded;
  const int spill = dp.map("vigil_slots_spill").fd;
  auto spilled = [&] {
    __u32 key = 0, next = 0, n = 0;
    for (const __u32* at = nullptr; bpf_map_get_next_key(spill, at, &next) == 0 && n < 100; at = &key) {
      key = next;
      ++n;
    }
    return n;
  };
  const uint32_t a = 1000, b = 1000 + VIGIL_SLOT_TABLE;
  ASSERT_TRUE(dp.track_interface(a, 1));
  ASSERT_TRUE(dp.track_interface(b, 2));
  EXPECT_EQ(spilled(), 1u) << "b's place is a's";
  dp.forget_counters(a, 1);
  ASSERT_TRUE(dp.set_remote_context(b, 2, 4));  // b's entry written again: at its place now
  EXPECT_EQ(spilled(), 0u) << "b's spilled copy stayed";
  dp.forget_counters(b, 2);
  EXPECT_EQ(spilled(), 0u) << "b's spilled copy outlived it";
}

// A packet on an interface with Vigil's programs and no traffic slot entry (a fault: the agent
// claims the slot before it links the programs and unlinks them before it releases it) is not
// counted for any pod, and says so in vigil_bpf_errors_total{site="traffic_map_full"}.
TEST(DatapathPods, APacketWithNoTrafficSlotIsCountedAsLost) {
  VIGIL_REQUIRE_ROOT();
  Lab lab(2);
  auto loaded = Datapath::open_and_load();
  ASSERT_TRUE(loaded) << loaded.error().message;
  Datapath& dp = **loaded;
  const std::string veth = lab.veth(1);
  const uint32_t ifindex = if_nametoindex(veth.c_str());
  auto attached = dp.attach_tc(ifindex, veth, 1);
  ASSERT_TRUE(attached) << attached.error().message;
  const int slots = dp.map("vigil_slots").fd;
  const __u32 index = ifindex & (VIGIL_SLOT_TABLE - 1);
  vigil_slot entry{};
  ASSERT_EQ(bpf_map_lookup_elem(slots, &index, &entry), 0);
  ASSERT_EQ(entry.ifindex, ifindex);
  const vigil_slot empty{};
  ASSERT_EQ(bpf_map_update_elem(slots, &index, &empty, BPF_ANY), 0);  // the fault
  auto lost = [&] { return percpu_sum(dp.errors_fd(), VIGIL_ERR_TRAFFIC_MAP_FULL).value_or(0); };
  const uint64_t before = lost();
  lab.cmd("udp 1 2 10");
  EXPECT_GE(lost() - before, 10u) << "pod 1's datagrams, uncounted, said nowhere";
  dp.detach_tc(ifindex);
}

// An attach that fails after the pod's traffic slot was claimed must give the slot back when
// the pod goes before a retry succeeds: else max_pods shrinks by one for every such pod, and a
// later pod is refused. Here: a plain ingress qdisc on its veth (no hook for what the pod
// receives), so that it is counted on the pod's own end, where another filter of a kind of its
// own holds the place the pod-side filter takes.
TEST(DatapathPods, APodWhoseAttachFailedGivesItsTrafficSlotBackWhenItGoes) {
  VIGIL_REQUIRE_ROOT();
  Lab lab(2);
  const std::string veth = lab.veth(1);
  ASSERT_EQ(run("tc qdisc add dev " + veth + " ingress").status, 0);
  const std::string in_pod1 = "ip netns exec " + lab.prefix() + "-pod-1 ";
  ASSERT_EQ(run(in_pod1 + "tc qdisc add dev eth0 clsact").status, 0);
  auto taken = run(in_pod1 + "tc filter add dev eth0 ingress pref 1 protocol ip u32 match u32 0 0 classid 1:1");
  ASSERT_EQ(taken.status, 0) << taken.output;
  auto loaded = Datapath::open_and_load(DatapathOptions{.max_pods = 1, .tcx = false});
  ASSERT_TRUE(loaded) << loaded.error().message;
  Datapath& dp = **loaded;
  auto specs = load_pods_file(lab.pods_file());
  ASSERT_TRUE(specs) << specs.error().message;
  ASSERT_EQ(specs->size(), 2u);
  {
    PodManager pods(dp);
    pods.reconcile({(*specs)[0]});
    ASSERT_EQ(pods.pods().size(), 1u);
    const WatchedPod& first = pods.pods().begin()->second;
    EXPECT_FALSE(first.attached);
    EXPECT_NE(first.last_error.find("has an ingress qdisc, not clsact"), std::string::npos) << first.last_error;
    pods.reconcile({});
    pods.reconcile({(*specs)[1]});
    ASSERT_EQ(pods.pods().size(), 1u);
    const WatchedPod& second = pods.pods().begin()->second;
    EXPECT_TRUE(second.attached) << second.last_error;
  }
  run("tc qdisc del dev " + veth + " ingress");
}

}  // namespace
}  // namespace vigil::test
