// Each hash map is walked once a tick: the families that read a map note how many entries it
// held (MapCensus), and the health family's occupancy gauges (vigil_bpf_map_entries), read last,
// take those counts instead of walking the map a second time. A walk visits every bucket, and the
// largest map (vigil_dns_pending, 131,072 buckets) takes about half a millisecond even when empty.
// On the agent's real maps, loaded into the kernel.
#include <bpf/bpf.h>
#include <gtest/gtest.h>

#include <time.h>

#include <cstring>

#include "engine/bpf_maps.h"
#include "engine/datapath.h"
#include "engine/families/family.h"
#include "engine/pod_manager.h"
#include "engine/series_store.h"
#include "rules/core/series.h"
#include "support.h"
#include "vigil_abi.h"

namespace vigil::test {
namespace {

uint64_t monotonic_now_ns() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}

double entries(const SeriesStore& store, const char* map) {
  return store.value("vigil_bpf_map_entries", make_labels({{"map", map}})).value_or(-1);
}

TEST(MapCensus, HealthCountsWhatTheFamiliesWalkedWithoutWalkingAgain) {
  VIGIL_REQUIRE_ROOT();
  auto loaded = Datapath::open_and_load();
  ASSERT_TRUE(loaded) << loaded.error().message;
  Datapath& dp = **loaded;
  PodManager pods(dp);
  SeriesStore store;
  const double timeout_s = 5;
  auto dns = make_dns_family(timeout_s);
  auto health = make_health_family();
  dns->describe(store);
  health->describe(store);

  // DNS requests waiting for their answers: 30 recent, 10 waiting for more than twice the
  // timeout, which the DNS family's scan takes out (and counts as timeouts).
  auto pending = dp.map("vigil_dns_pending");
  ASSERT_GE(pending.fd, 0);
  const uint64_t now = monotonic_now_ns();
  ASSERT_GT(now, 3 * static_cast<uint64_t>(timeout_s * 1e9));
  for (__u32 i = 0; i < 40; ++i) {
    vigil_dns_pending_key key{};
    key.ifindex = 1000 + i;
    key.id = static_cast<__u16>(i);
    key.request_dir = VIGIL_DIR_EGRESS;
    const __u64 seen = i < 30 ? now : now - 3 * static_cast<uint64_t>(timeout_s * 1e9);
    ASSERT_EQ(bpf_map_update_elem(pending.fd, &key, &seen, BPF_NOEXIST), 0) << std::strerror(errno);
  }

  MapCensus census;
  FamilyContext ctx{dp, pods, store, nullptr, nullptr, &census};
  dns->read(ctx);
  // The DNS family's walk, less the entries it took out.
  EXPECT_EQ(census.entries("vigil_dns_pending").value_or(0), 30u);
  EXPECT_EQ(census.entries("vigil_dns_counts").value_or(99), 0u);
  EXPECT_EQ(census.entries("vigil_dns_latency").value_or(99), 0u);
  EXPECT_EQ(count_entries<vigil_dns_pending_key>(pending.fd, pending.max_entries), 30u);

  // Health takes the census's count where a family walked the map: a count planted for a map no
  // family walked here, which holds nothing, is what health reports, so it did not walk it.
  census.walked("vigil_drops", 7);
  health->read(ctx);
  EXPECT_EQ(entries(store, "vigil_dns_pending"), 30);
  EXPECT_EQ(entries(store, "vigil_drops"), 7);
  // Maps no family walked are walked by health itself.
  EXPECT_EQ(entries(store, "vigil_pod_ip"), 0);
  EXPECT_EQ(census.entries("vigil_pod_ip"), std::nullopt);

  // Without a census (each family on its own), health walks every map.
  FamilyContext alone{dp, pods, store, nullptr, nullptr, nullptr};
  health->read(alone);
  EXPECT_EQ(entries(store, "vigil_dns_pending"), 30);
  EXPECT_EQ(entries(store, "vigil_drops"), 0);
}

}  // namespace
}  // namespace vigil::test
