// Reading eBPF maps from user space: per-CPU values summed into one, entries visited in one
// pass. Families (engine/families/) use these instead of each writing its own map loop.
#pragma once

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

namespace vigil {

inline int possible_cpus() {
  static const int n = [] {
    int c = libbpf_num_possible_cpus();
    return c > 0 ? c : 1;
  }();
  return n;
}

namespace detail {

// Visits the entries of a hash map (plain, per-CPU or LRU) with BPF_MAP_LOOKUP_BATCH: one system
// call for a batch of entries instead of two for each (a key, then its value); on this kind of
// guest every system call also flushes the TLB. each(key, value): `key_size` and `stride` bytes
// (a per-CPU map's value: every possible CPU's, each rounded up to 8 bytes). The kernel walks
// the map bucket by bucket, so an entry is visited once even when others come and go meanwhile.
// Bounded by `max_entries`. Returns false, having visited nothing, where the kernel cannot
// look up this map in batches (before 5.6): the caller then walks it key by key.
template <typename F>
bool visit_batches(int fd, size_t key_size, size_t stride, uint32_t max_entries, F&& each) {
  if (max_entries == 0) return true;
  // About 64 KiB of buffers a batch. A batch ends at a bucket's end: a bucket with more entries
  // than the batch holds (ENOSPC) gets a larger one.
  uint32_t chunk = static_cast<uint32_t>(std::clamp<size_t>((64 << 10) / (key_size + stride), 16, 1024));
  chunk = std::min(chunk, std::max<uint32_t>(max_entries, 16));
  std::vector<char> keys(chunk * key_size), values(chunk * stride);
  __u64 in = 0, out = 0;  // where the next batch starts (a hash map's bucket index)
  bool first = true;
  uint32_t seen = 0;
  DECLARE_LIBBPF_OPTS(bpf_map_batch_opts, opts);
  while (seen < max_entries) {
    __u32 count = chunk;
    const int err = bpf_map_lookup_batch(fd, first ? nullptr : &in, &out, keys.data(), values.data(), &count, &opts);
    const int e = err ? errno : 0;
    if (err && e == ENOSPC && chunk < (1U << 20)) {
      chunk *= 2;
      keys.resize(chunk * key_size);
      values.resize(chunk * stride);
      continue;
    }
    // ENOENT: the last batch (maybe empty). Any other error on the first call: no batches here.
    if (err && e != ENOENT) return !first;
    for (__u32 i = 0; i < count && seen < max_entries; ++i, ++seen)
      each(keys.data() + i * key_size, values.data() + i * stride);
    if (err) break;
    in = out;
    first = false;
  }
  return true;
}

inline size_t percpu_stride(size_t value_size) { return (value_size + 7) / 8 * 8; }

}  // namespace detail

// Calls fn(key, per_cpu_values) for every entry of a per-CPU hash map, bounded by `max_entries`
// (in batches; key by key where the kernel has no batches, skipping an entry deleted meanwhile).
// Returns the number of entries visited: the map's occupancy as the walk found it.
template <typename K, typename V, typename F>
uint32_t for_each_percpu(int fd, uint32_t max_entries, F&& fn) {
  const int cpus = possible_cpus();
  const size_t per_cpu = detail::percpu_stride(sizeof(V));
  std::vector<V> values(cpus);
  K key{};
  uint32_t visited = 0;
  if (detail::visit_batches(fd, sizeof(K), per_cpu * cpus, max_entries, [&](const char* k, const char* v) {
        std::memcpy(&key, k, sizeof(K));
        for (int c = 0; c < cpus; ++c) std::memcpy(&values[c], v + c * per_cpu, sizeof(V));
        ++visited;
        fn(static_cast<const K&>(key), static_cast<const std::vector<V>&>(values));
      }))
    return visited;
  static_assert(sizeof(V) % 8 == 0, "a per-CPU value the kernel copies without padding");
  K next{};
  const K* prev = nullptr;
  for (uint32_t i = 0; i < max_entries && bpf_map_get_next_key(fd, prev, &next) == 0; ++i) {
    key = next;
    prev = &key;
    if (bpf_map_lookup_elem(fd, &key, values.data()) != 0) continue;
    ++visited;
    fn(static_cast<const K&>(key), static_cast<const std::vector<V>&>(values));
  }
  return visited;
}

// Calls fn(key, value) for every entry of a plain (not per-CPU) hash map; the same way, and
// returns the number of entries visited.
template <typename K, typename V, typename F>
uint32_t for_each_entry(int fd, uint32_t max_entries, F&& fn) {
  K key{};
  V value{};
  uint32_t visited = 0;
  if (detail::visit_batches(fd, sizeof(K), sizeof(V), max_entries, [&](const char* k, const char* v) {
        std::memcpy(&key, k, sizeof(K));
        std::memcpy(&value, v, sizeof(V));
        ++visited;
        fn(static_cast<const K&>(key), static_cast<const V&>(value));
      }))
    return visited;
  K next{};
  const K* prev = nullptr;
  for (uint32_t i = 0; i < max_entries && bpf_map_get_next_key(fd, prev, &next) == 0; ++i) {
    key = next;
    prev = &key;
    if (bpf_map_lookup_elem(fd, &key, &value) != 0) continue;
    ++visited;
    fn(static_cast<const K&>(key), static_cast<const V&>(value));
  }
  return visited;
}

// Entry `index` of a per-CPU array of __u64 counters, summed over the CPUs; nullopt when it
// cannot be read.
inline std::optional<uint64_t> percpu_sum(int fd, uint32_t index) {
  std::vector<__u64> values(possible_cpus());
  if (bpf_map_lookup_elem(fd, &index, values.data()) != 0) return std::nullopt;
  uint64_t sum = 0;
  for (auto v : values) sum += v;
  return sum;
}

// Number of entries in a hash map (for occupancy), bounded by max_entries: in batches (the
// map's sizes from the kernel), else key by key.
template <typename K>
uint32_t count_entries(int fd, uint32_t max_entries) {
  bpf_map_info info{};
  __u32 len = sizeof(info);
  if (bpf_obj_get_info_by_fd(fd, &info, &len) == 0 && info.key_size == sizeof(K)) {
    const bool per_cpu = info.type == BPF_MAP_TYPE_PERCPU_HASH || info.type == BPF_MAP_TYPE_LRU_PERCPU_HASH;
    const size_t stride = per_cpu ? detail::percpu_stride(info.value_size) * possible_cpus() : info.value_size;
    uint32_t n = 0;
    if (detail::visit_batches(fd, sizeof(K), stride, max_entries, [&](const char*, const char*) { ++n; })) return n;
  }
  K key{}, next{};
  const K* prev = nullptr;
  uint32_t n = 0;
  while (n < max_entries && bpf_map_get_next_key(fd, prev, &next) == 0) {
    key = next;
    prev = &key;
    ++n;
  }
  return n;
}

// A BPF_F_MMAPABLE array map of T laid out [cpu][index] (bpf/vigil_abi.h VIGIL_CPU_ELEM): the
// kernel side's per-CPU counters, read and reset from user space through a shared mapping, with
// no system call. Each 8-byte word is loaded and stored whole, so a counter that the kernel
// increments concurrently is never read torn.
template <typename T>
class CpuArray {
  static_assert(sizeof(T) % 8 == 0, "whole 8-byte words");

 public:
  CpuArray() = default;
  CpuArray(const CpuArray&) = delete;
  CpuArray& operator=(const CpuArray&) = delete;
  ~CpuArray() { unmap(); }

  // Maps the array behind `fd`, which must have been created with per_cpu * cpus entries.
  // Returns an error text, empty on success.
  std::string map(int fd, uint32_t per_cpu, int cpus) {
    unmap();
    const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
    const size_t bytes = (sizeof(T) * per_cpu * static_cast<size_t>(cpus) + page - 1) / page * page;
    void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) return std::string("mmap: ") + std::strerror(errno);
    base_ = static_cast<uint64_t*>(p);
    bytes_ = bytes;
    per_cpu_ = per_cpu;
    cpus_ = cpus;
    return {};
  }

  uint32_t per_cpu() const { return per_cpu_; }
  int cpus() const { return cpus_; }

  // Every CPU's copy of entry `index` into out (resized to the CPU count); false if out of range.
  bool read(uint32_t index, std::vector<T>& out) const {
    if (!base_ || index >= per_cpu_) return false;
    out.resize(static_cast<size_t>(cpus_));
    for (int c = 0; c < cpus_; ++c) {
      const uint64_t* from = word(c, index);
      uint64_t words[sizeof(T) / 8];
      for (size_t w = 0; w < sizeof(T) / 8; ++w) words[w] = __atomic_load_n(from + w, __ATOMIC_RELAXED);
      std::memcpy(&out[static_cast<size_t>(c)], words, sizeof(T));
    }
    return true;
  }

  // Sets every CPU's copy of entry `index` to zero.
  void zero(uint32_t index) {
    if (!base_ || index >= per_cpu_) return;
    for (int c = 0; c < cpus_; ++c) {
      uint64_t* to = word(c, index);
      for (size_t w = 0; w < sizeof(T) / 8; ++w) __atomic_store_n(to + w, uint64_t{0}, __ATOMIC_RELAXED);
    }
  }

 private:
  uint64_t* word(int cpu, uint32_t index) const {
    return base_ + (static_cast<size_t>(cpu) * per_cpu_ + index) * (sizeof(T) / 8);
  }
  void unmap() {
    if (base_) munmap(base_, bytes_);
    base_ = nullptr;
  }
  uint64_t* base_ = nullptr;
  size_t bytes_ = 0;
  uint32_t per_cpu_ = 0;
  int cpus_ = 0;
};

}  // namespace vigil
