// Reading eBPF maps from user space: per-CPU values summed into one, entries visited in one
// pass. Families (engine/families/) use these instead of each writing its own map loop.
#pragma once

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include <cstdint>
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

}  // namespace vigil
