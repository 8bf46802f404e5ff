// Persisted rule state (baselines): the file format and its atomic write. The engine decides
// what goes in (rule_eval.h's group snapshots); this file only encodes, checks and stores.
//
// Layout (host byte order, like the detector snapshots: same agent, same node):
//   "VIGILST\0"  u32 format version  u64 payload length  u64 FNV-1a of the payload  payload
// payload: f64 saved_at, u32 rules, per rule: str name, u64 params hash, u32 groups, per group:
//   u32 labels, (str name, str value)..., str workload, f64 age, str detector snapshot
// (str = u32 length + bytes). A file that is short, long, fails its checksum or has another
// version is refused as a whole with the reason.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "rules/core/result.h"
#include "rules/core/series.h"

namespace vigil::rules {

inline constexpr uint32_t kStateFormatVersion = 1;

struct GroupSnapshot {
  Labels key;            // the group's `by` labels
  std::string workload;  // "namespace/Kind/name|other labels" when the pod's owner is known, else ""
  double age = 0;        // seconds the group had learned: warm-up progress
  std::string detector;  // DetectorState::save()
};

struct RuleSnapshot {
  std::string name;
  uint64_t params_hash = 0;  // rule_params_hash(): a changed detector or parameter drops the state
  std::vector<GroupSnapshot> groups;
};

struct StateSnapshot {
  double saved_at = 0;
  std::vector<RuleSnapshot> rules;
};

std::string encode_state(const StateSnapshot& state);
Result<StateSnapshot> decode_state(std::string_view bytes);  // error says why, without the file name

// Writes `bytes` to a temporary file in the same directory, fsyncs it, renames it over `path`
// and fsyncs the directory: a crash leaves the old file or the new one, never half of one.
Result<void> write_file_atomic(const std::string& path, std::string_view bytes);

uint64_t fnv1a64(std::string_view bytes, uint64_t seed = 14695981039346656037ull);

// The owning workload of a pod: PodMeta::workload when the source resolved it (the Kubernetes
// API's owner references), else a guess from the labels its controller sets: a Deployment's pod
// "web-7d9f8-x2k4q" with pod-template-hash=7d9f8 belongs to "ns/Deployment/web"; a StatefulSet's
// or DaemonSet's (controller-revision-hash) to its name without the last "-suffix". Empty when
// unknown; such groups are keyed by their labels only.
std::string workload_of(const PodMeta& pod);

}  // namespace vigil::rules
