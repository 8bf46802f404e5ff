// Reading eBPF maps from user space: per-CPU values summed into one, entries visited in one
// pass. Families (engine/families/) use these instead of each writing its own map loop.
#pragma once

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include <sys/mman.h>
#include <unistd.h>

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

// Calls fn(key, per_cpu_values) for every entry of a per-CPU hash map. An entry deleted while
// we walk is skipped; the walk is bounded by `max_entries`.
template <typename K, typename V, typename F>
void for_each_percpu(int fd, uint32_t max_entries, F&& fn) {
  std::vector<V> values(possible_cpus());
  K key{}, next{};
  const K* prev = nullptr;
  for (uint32_t i = 0; i < max_entries && bpf_map_get_next_key(fd, prev, &next) == 0; ++i) {
    key = next;
    prev = &key;
    if (bpf_map_lookup_elem(fd, &key, values.data()) != 0) continue;
    fn(key, values);
  }
}

// Calls fn(key, value) for every entry of a plain (not per-CPU) hash map; same bounds.
template <typename K, typename V, typename F>
void for_each_entry(int fd, uint32_t max_entries, F&& fn) {
  V value{};
  K key{}, next{};
  const K* prev = nullptr;
  for (uint32_t i = 0; i < max_entries && bpf_map_get_next_key(fd, prev, &next) == 0; ++i) {
    key = next;
    prev = &key;
    if (bpf_map_lookup_elem(fd, &key, &value) != 0) continue;
    fn(key, value);
  }
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

// Number of entries in a hash map (for occupancy), bounded by max_entries.
template <typename K>
uint32_t count_entries(int fd, uint32_t max_entries) {
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
