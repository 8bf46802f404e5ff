// Immediates written into the TC programs' instructions before load (vigil_abi.h,
// VIGIL_IMM_*): the settings the programs compute a packet's counter address from, as
// constants instead of loads from read-only data. Header-only, libbpf alone: the agent
// (Datapath::open_and_load) and the benchmark that runs the programs without it
// (tests/bench/bpf_test_run.cpp) load the same programs the same way.
#pragma once

#include <bpf/libbpf.h>
#include <linux/bpf.h>
#include <linux/types.h>

#include <cstdint>
#include <cstdio>
#include <string>
#include <utility>
#include <vector>

#include "vigil_abi.h"

namespace vigil {

// The largest power of two <= n (n >= 1), minus one: the mask of the traffic slot the TC
// programs guess from an ifindex.
inline uint32_t slot_guess_mask(uint32_t n) {
  uint32_t p = 1;
  while (p <= n / 2) p *= 2;
  return p - 1;
}

// Writes each marker's value into the instructions of `prog` (opened, not loaded). Every marker
// must be found at least once: the TC programs inline the code that holds them, and one left in
// a subprogram (which this does not reach) or dropped by the compiler would have the program
// compute with the marker instead of the setting. Returns an error message, empty on success.
inline std::string write_immediates(bpf_program* prog, const std::vector<std::pair<int32_t, uint32_t>>& values) {
  const std::string name = bpf_program__name(prog);
  const bpf_insn* insns = bpf_program__insns(prog);
  const size_t count = bpf_program__insn_cnt(prog);
  if (!insns || count == 0) return "program " + name + ": no instructions";
  std::vector<bpf_insn> patched(insns, insns + count);
  std::vector<size_t> found(values.size(), 0);
  for (size_t i = 0; i < count; ++i) {
    bpf_insn& insn = patched[i];
    if (insn.code == (BPF_LD | BPF_IMM | BPF_DW)) {
      ++i;  // a 64-bit immediate spans two instructions; the second has no opcode of its own
      continue;
    }
    if (insn.code != (BPF_ALU64 | BPF_MOV | BPF_K)) continue;
    for (size_t v = 0; v < values.size(); ++v) {
      if (insn.imm != values[v].first) continue;
      insn.imm = static_cast<int32_t>(values[v].second);
      ++found[v];
    }
  }
  for (size_t v = 0; v < values.size(); ++v)
    if (found[v] == 0) {
      char marker[16];
      std::snprintf(marker, sizeof(marker), "0x%08x", static_cast<uint32_t>(values[v].first));
      return "program " + name + ": immediate marker " + marker + " not found (the eBPF object does not match this build)";
    }
  if (int err = bpf_program__set_insns(prog, patched.data(), patched.size()))
    return "program " + name + ": set instructions: error " + std::to_string(-err);
  return {};
}

// The TC programs' immediates for a datapath of max_pods (1..VIGIL_MAX_PODS) pod interfaces.
inline std::string write_tc_immediates(bpf_program* prog, uint32_t max_pods) {
  return write_immediates(prog, {{VIGIL_IMM_PODS_PER_CPU, max_pods}, {VIGIL_IMM_SLOT_GUESS_MASK, slot_guess_mask(max_pods)}});
}

}  // namespace vigil
