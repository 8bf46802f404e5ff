// The agent reads its hash maps once a tick in batches (BPF_MAP_LOOKUP_BATCH, engine/bpf_maps.h):
// every entry once, keys and values (every CPU's for per-CPU maps) as the kernel holds them,
// within the caller's bound, on real kernel maps of each kind the agent has.
#include <bpf/bpf.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <map>
#include <set>
#include <vector>

#include "engine/bpf_maps.h"
#include "support.h"

namespace vigil::test {
namespace {

// A map the test creates and closes.
struct Map {
  int fd = -1;
  Map(bpf_map_type type, size_t key_size, size_t value_size, uint32_t max_entries) {
    fd = bpf_map_create(type, "vigil_test", key_size, value_size, max_entries, nullptr);
  }
  ~Map() {
    if (fd >= 0) close(fd);
  }
};

struct Key {
  __u32 pod;
  __u32 peer;
  __u16 port;
  __u8 proto;
  __u8 pad;
};  // 12 bytes: a key size that is not a multiple of 8, as several of the agent's are

struct Counts {
  __u64 packets;
  __u64 bytes;
};

TEST(BpfMaps, PlainAndLruHashesAreReadWholeInBatchesEachEntryOnce) {
  VIGIL_REQUIRE_ROOT();
  for (auto type : {BPF_MAP_TYPE_HASH, BPF_MAP_TYPE_LRU_HASH}) {
    SCOPED_TRACE(type == BPF_MAP_TYPE_HASH ? "hash" : "lru_hash");
    // More entries than one batch holds (1,024 at most), so that the walk goes on from batch to
    // batch.
    const uint32_t kEntries = 5000;
    Map m(type, sizeof(Key), sizeof(__u32), 8192);
    ASSERT_GE(m.fd, 0) << std::strerror(errno);
    for (__u32 i = 0; i < kEntries; ++i) {
      const Key k{i % 50, i, static_cast<__u16>(i & 0xffff), 6, 0};
      const __u32 v = i * 3 + 1;
      ASSERT_EQ(bpf_map_update_elem(m.fd, &k, &v, BPF_NOEXIST), 0) << i;
    }
    std::map<__u32, __u32> seen;  // peer -> value
    size_t visits = 0;
    const uint32_t walked = for_each_entry<Key, __u32>(m.fd, 8192, [&](const Key& k, __u32 v) {
      ++visits;
      EXPECT_EQ(k.pod, k.peer % 50);
      EXPECT_EQ(k.port, k.peer & 0xffff);
      EXPECT_EQ(k.proto, 6);
      seen[k.peer] = v;
    });
    EXPECT_EQ(visits, kEntries);
    EXPECT_EQ(walked, kEntries);  // what the walk returns: the occupancy it found (MapCensus)
    ASSERT_EQ(seen.size(), kEntries);
    for (const auto& [peer, v] : seen) EXPECT_EQ(v, peer * 3 + 1) << peer;
    EXPECT_EQ(count_entries<Key>(m.fd, 8192), kEntries);
    // The caller's bound holds: no more visits than it allows.
    visits = 0;
    EXPECT_EQ((for_each_entry<Key, __u32>(m.fd, 1500, [&](const Key&, __u32) { ++visits; })), 1500u);
    EXPECT_EQ(visits, 1500u);
    EXPECT_EQ(count_entries<Key>(m.fd, 1500), 1500u);
  }
}

TEST(BpfMaps, PerCpuHashesGiveEveryCpusValueOfEachEntry) {
  VIGIL_REQUIRE_ROOT();
  const int cpus = possible_cpus();
  for (auto type : {BPF_MAP_TYPE_PERCPU_HASH, BPF_MAP_TYPE_LRU_PERCPU_HASH}) {
    SCOPED_TRACE(type == BPF_MAP_TYPE_PERCPU_HASH ? "percpu_hash" : "lru_percpu_hash");
    const uint32_t kEntries = 3000;
    Map m(type, sizeof(Key), sizeof(Counts), 4096);
    ASSERT_GE(m.fd, 0) << std::strerror(errno);
    std::vector<Counts> per_cpu(cpus);
    for (__u32 i = 0; i < kEntries; ++i) {
      const Key k{i, i * 7, 53, 17, 0};
      for (int c = 0; c < cpus; ++c) per_cpu[c] = Counts{i * 10 + c, (i * 10 + c) * 100};
      ASSERT_EQ(bpf_map_update_elem(m.fd, &k, per_cpu.data(), BPF_NOEXIST), 0) << i;
    }
    std::set<__u32> seen;
    size_t visits = 0;
    const uint32_t walked = for_each_percpu<Key, Counts>(m.fd, 4096, [&](const Key& k, const std::vector<Counts>& values) {
      ++visits;
      seen.insert(k.pod);
      EXPECT_EQ(k.peer, k.pod * 7);
      ASSERT_EQ(values.size(), static_cast<size_t>(cpus));
      for (int c = 0; c < cpus; ++c) {
        EXPECT_EQ(values[c].packets, k.pod * 10 + c) << k.pod << " cpu " << c;
        EXPECT_EQ(values[c].bytes, (k.pod * 10 + c) * 100) << k.pod << " cpu " << c;
      }
    });
    EXPECT_EQ(visits, kEntries);
    EXPECT_EQ(walked, kEntries);
    EXPECT_EQ(seen.size(), kEntries);
    EXPECT_EQ(count_entries<Key>(m.fd, 4096), kEntries);
  }
}

// Entries deleted while the agent reads (answered DNS requests, a pod's peers) are not visited
// twice: the walk goes on from where the last batch ended, not from the deleted key (a key-by-key
// walk whose last key is gone starts over from the map's first entry).
TEST(BpfMaps, EntriesDeletedDuringTheWalkDoNotMakeItStartOver) {
  VIGIL_REQUIRE_ROOT();
  const uint32_t kEntries = 4000;
  Map m(BPF_MAP_TYPE_HASH, sizeof(__u64), sizeof(__u64), 8192);
  ASSERT_GE(m.fd, 0) << std::strerror(errno);
  for (__u64 i = 0; i < kEntries; ++i) ASSERT_EQ(bpf_map_update_elem(m.fd, &i, &i, BPF_NOEXIST), 0);
  std::map<__u64, int> visits;
  for_each_entry<__u64, __u64>(m.fd, 8192, [&](const __u64& k, const __u64& v) {
    EXPECT_EQ(k, v);
    ++visits[k];
    // Another reader (the kernel answering a request) takes some of the entries away, this one
    // among them, while those visited before stay.
    if (k % 10 == 0) bpf_map_delete_elem(m.fd, &k);
    const __u64 other = (k * 7919 + 1) % kEntries;
    if (other % 10 == 0) bpf_map_delete_elem(m.fd, &other);
  });
  size_t twice = 0;
  for (const auto& [k, n] : visits) twice += n > 1;
  EXPECT_EQ(twice, 0u);
  // Every entry that was never deleted was visited.
  for (__u64 k = 0; k < kEntries; ++k) {
    if (k % 10 != 0) {
      EXPECT_EQ(visits.count(k), 1u) << k;
    }
  }
}

TEST(BpfMaps, AnEmptyMapIsReadAsEmpty) {
  VIGIL_REQUIRE_ROOT();
  Map plain(BPF_MAP_TYPE_HASH, sizeof(__u32), sizeof(__u64), 64);
  Map per_cpu(BPF_MAP_TYPE_PERCPU_HASH, sizeof(__u32), sizeof(__u64), 64);
  ASSERT_GE(plain.fd, 0);
  ASSERT_GE(per_cpu.fd, 0);
  int visits = 0;
  EXPECT_EQ((for_each_entry<__u32, __u64>(plain.fd, 64, [&](const __u32&, const __u64&) { ++visits; })), 0u);
  EXPECT_EQ((for_each_percpu<__u32, __u64>(per_cpu.fd, 64, [&](const __u32&, const std::vector<__u64>&) { ++visits; })), 0u);
  EXPECT_EQ(visits, 0);
  EXPECT_EQ(count_entries<__u32>(plain.fd, 64), 0u);
  EXPECT_EQ(count_entries<__u32>(per_cpu.fd, 64), 0u);
}

}  // namespace
}  // namespace vigil::test
