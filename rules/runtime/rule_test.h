// `vigil rules test`: unit tests for rule files, in the spirit of `promtool test rules`. A test
// file (YAML) names the rule files under test, gives input series in a compact notation over
// simulated time and lists the anomalies (and notifications) it expects; the real RuleEngine
// runs every test in simulated time with a recording ActionSink and the result is compared.
// The format is documented in docs/rules.md, "Testing rules".
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "rules/core/result.h"

namespace vigil::rules {

// One term of a values notation: `a+bxn` (n+1 values a, a+b, ..., a+n*b), `axn`, `a`, `_`
// (absent) or `_xn`, with optional modifiers `noise S` (seeded uniform noise in [-S, S]) and
// `wave A P` (A * sin(2*pi*t/P), t in Unix seconds, so a 1d wave follows the UTC day).
struct ValueTerm {
  double start = 0;
  double step = 0;
  uint64_t count = 1;  // values this term gives
  bool absent = false;
  double noise = 0;
  double wave_amplitude = 0;
  double wave_period = 0;  // seconds; 0: no wave
};

// A parsed values notation; values are computed on demand, so weeks of ticks cost nothing.
class ValueSeries {
 public:
  std::vector<ValueTerm> terms;
  uint64_t size() const;
  // The value at tick `index` (nullopt: absent, or past the end). `time` is the tick's Unix
  // time (for waves) and `seed` picks the noise, which depends only on (seed, index).
  std::optional<double> at(uint64_t index, double time, uint64_t seed) const;
};

// Parses "0+10x100 5x60 100x600 noise 5 wave 20 1d _x10". Errors say which term is wrong.
Result<ValueSeries> parse_values(std::string_view text);

struct RuleTestRun {
  int exit_code = 0;  // 0: every test passed; 1: a test failed; 2: bad input
  size_t tests = 0;
  size_t passed = 0;
  size_t failed = 0;
  std::string out;  // results and failure diffs
  std::string err;  // bad input
};

// Runs every test of every file. Paths of rule files are relative to their test file.
RuleTestRun run_rule_tests(const std::vector<std::string>& files);

}  // namespace vigil::rules
