// The detectors' saved states (rules/runtime/detectors*.cpp, first_seen.cpp): each group's
// baseline is saved with the rules' state (see fuzz_state.cpp for the file around them) and
// restored into a fresh state at start. The first byte picks one of the configurations below;
// then
//   second byte even: the rest is a saved state to restore(). restore() must not crash, and a
//     state it accepts must save and restore again to the same bytes (a restart loses nothing)
//     and keep judging values;
//   second byte odd: the rest is values (8 bytes each, mapped into +-1e15, the range of real
//     rates), fed through evaluate, learn or hold as the detector's verdict says, as the rule
//     evaluator does; afterwards the state's snapshot must restore into a fresh state and save
//     back byte for byte.
// Seeds (corpus/detectors) are states saved after a few hundred values, written by this target
// itself with --make-seeds DIR.
#include <cmath>
#include <cstring>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "rules/runtime/detectors.h"
#include "tests/fuzz/fuzz_check.h"

namespace {

using namespace vigil::rules;
using vigil::fuzz::check;
using vigil::fuzz::fail;

struct Config {
  const char* kind;
  Params params;
};

std::vector<std::shared_ptr<const Detector>> make_all() {
  DetectorContext ctx;
  ctx.tick_seconds = 1;
  std::vector<Config> configs = {
      {"threshold", {{"above", 10.0}}},
      {"baseline.zscore", {{"window", std::string("2m")}, {"threshold", 3.0}}},
      {"baseline.ewma", {{"half_life", std::string("1m")}, {"threshold", 4.0}, {"direction", std::string("both")}}},
      {"baseline.mad", {{"window", std::string("2m")}}},
      {"baseline.seasonal", {{"period", std::string("4m")}}},
      {"baseline.range", {{"half_life", std::string("1m")}}},
      {"change.cusum", {{"half_life", std::string("1m")}, {"threshold", 20.0}}},
      {"rate_of_change", {{"above", 5.0}}},
      {"first_seen", {{"label", std::string("remote_ip")}, {"learn", std::string("1m")}}},
  };
  // Every detector Vigil knows is fuzzed: a new one fails here until it has a configuration.
  for (const auto& kind : detector_kinds()) {
    bool covered = std::string(kind.name) == "any";  // made below, from two of the others
    for (const auto& c : configs) covered = covered || std::string(kind.name) == c.kind;
    if (!covered) fail(std::string("detector ") + kind.name + " has no configuration in tests/fuzz/fuzz_detectors.cpp");
  }
  std::vector<std::shared_ptr<const Detector>> out;
  for (auto& c : configs) {
    const DetectorKind* kind = find_detector_kind(c.kind);
    if (!kind) fail(std::string("no detector kind ") + c.kind);
    auto d = kind->make(c.params, ctx);
    if (!d) fail(std::string(c.kind) + ": " + d.error().message);
    out.push_back(*d);
  }
  // any { ewma, threshold }: the combinator's state holds its children's.
  Params any{{"1", out[2]}, {"2", out[0]}};
  auto d = find_detector_kind("any")->make(any, ctx);
  if (!d) fail("any: " + d.error().message);
  out.push_back(*d);
  return out;
}

const std::vector<std::shared_ptr<const Detector>>& detectors() {
  static const auto all = make_all();
  return all;
}

// One tick as the rule evaluator runs it: judge, then learn what was normal or hold what was not.
void feed(DetectorState& s, double value, double age, double now) {
  const Verdict v = s.evaluate_at(value, age, now);
  if (v.anomalous) s.hold(value, now);
  else s.learn_at(value, now);
}

std::string saved(const DetectorState& s) {
  std::string out;
  s.save(out);
  return out;
}

// A state that restored from `bytes`: saving it gives what a fresh state restores to the same.
void check_roundtrip(const Detector& d, const DetectorState& s) {
  const std::string once = saved(s);
  auto fresh = d.new_state();
  check(fresh->restore(once), std::string(d.name()) + ": restore() refused what save() wrote");
  check(saved(*fresh) == once, std::string(d.name()) + ": the state changed when saved and restored again");
}

double value_at(const uint8_t* p) {
  uint64_t bits;
  std::memcpy(&bits, p, 8);
  double v;
  std::memcpy(&v, &bits, 8);
  if (!std::isfinite(v)) return static_cast<double>(bits % 1000);
  return std::fmod(v, 1e15);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  const auto& all = detectors();
  const Detector& d = *all[data[0] % all.size()];
  auto state = d.new_state();
  const double t0 = 1.7e9;
  if (data[1] % 2 == 0) {
    if (!state->restore(std::string_view(reinterpret_cast<const char*>(data + 2), size - 2))) return 0;
    check_roundtrip(d, *state);
    for (int i = 0; i < 16; ++i) feed(*state, i % 4 ? 1.0 : 50.0, 3600 + i, t0 + i);
    check_roundtrip(d, *state);
    return 0;
  }
  size_t i = 0;
  for (const uint8_t* p = data + 2; p + 8 <= data + size; p += 8, ++i)
    feed(*state, value_at(p), static_cast<double>(i), t0 + static_cast<double>(i));
  check_roundtrip(d, *state);
  return 0;
}

// Writes the seeds: each configuration's state after 300 ticks of a noisy level with a spike,
// as a restore input (second byte 0), and a short run of values (second byte 1).
extern "C" int LLVMFuzzerInitialize(int* argc, char*** argv) {
  if (*argc < 3 || std::strcmp((*argv)[1], "--make-seeds") != 0) return 0;
  const std::string dir = (*argv)[2];
  const auto& all = detectors();
  for (size_t k = 0; k < all.size(); ++k) {
    auto s = all[k]->new_state();
    for (int i = 0; i < 300; ++i) feed(*s, 100 + (i * 37 % 11) + (i == 250 ? 500 : 0), i, 1.7e9 + i);
    std::string bytes{static_cast<char>(k), 0};
    bytes += saved(*s);
    std::ofstream(dir + "/state-" + std::to_string(k) + "-" + all[k]->name() + ".bin", std::ios::binary) << bytes;
    std::string values{static_cast<char>(k), 1};
    for (int i = 0; i < 40; ++i) {
      const double v = 10 + (i * 7 % 5) + (i == 30 ? 200 : 0);
      values.append(reinterpret_cast<const char*>(&v), 8);
    }
    std::ofstream(dir + "/values-" + std::to_string(k) + "-" + all[k]->name() + ".bin", std::ios::binary) << values;
  }
  std::exit(0);
}
