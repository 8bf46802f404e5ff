// `vigil rules test`: the values notation, passing and failing tests with their diffs, and bad
// test files reported with file, line and field.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <random>

#include "rules/runtime/rule_test.h"

using namespace vigil::rules;
namespace fs = std::filesystem;

namespace {

std::vector<std::optional<double>> expand(const std::string& text, uint64_t seed = 1) {
  auto s = parse_values(text);
  EXPECT_TRUE(s.ok()) << text << ": " << (s.ok() ? "" : s.error().message);
  std::vector<std::optional<double>> out;
  if (!s.ok()) return out;
  for (uint64_t i = 0; i < s->size(); ++i) out.push_back(s->at(i, 1767225600.0 + static_cast<double>(i), seed));
  return out;
}

std::string values_error(const std::string& text) {
  auto s = parse_values(text);
  return s.ok() ? "(parsed)" : s.error().message;
}

class RuleTestFiles : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("vigil-rule-test-" + std::to_string(std::random_device{}()));
    fs::create_directories(dir_);
    // Fires when the gauge is above 10; notifies "default".
    write("high.lua",
          "rule {\n"
          "  name = \"high\", metric = \"level\", by = { \"pod\" },\n"
          "  detect = threshold { above = 10 }, severity = \"critical\", resolve_after = \"2s\",\n"
          "  summary = \"{pod} is at {value}\",\n"
          "  on_anomaly = function(a) notify(\"default\", a) end,\n"
          "}\n");
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string write(const std::string& name, const std::string& text) {
    fs::path p = dir_ / name;
    std::ofstream(p) << text;
    return p.string();
  }

  // A test file over high.lua; `expect` is the test's expectation block.
  std::string test_file(const std::string& expect, const std::string& values = "1x3 20x2 1x5") {
    return write("high.test.yaml",
                 "rule_files: [high.lua]\n"          // line 1
                 "tick: 1s\n"                        // 2
                 "tests:\n"                          // 3
                 "  - name: spike\n"                 // 4
                 "    input_series:\n"               // 5
                 "      - series: 'level{pod=\"a\"}'\n"  // 6
                 "        values: '" + values + "'\n"    // 7
                 + expect);                          // 8...
  }

  fs::path dir_;
};

}  // namespace

TEST(RuleTestValues, ExpandsThePromtoolNotation) {
  EXPECT_EQ(expand("0+10x3"), (std::vector<std::optional<double>>{0, 10, 20, 30}));
  EXPECT_EQ(expand("5x2 7"), (std::vector<std::optional<double>>{5, 5, 5, 7}));
  EXPECT_EQ(expand("-5-1x2"), (std::vector<std::optional<double>>{-5, -6, -7}));
  EXPECT_EQ(expand("1e3+1e2x1"), (std::vector<std::optional<double>>{1000, 1100}));
  EXPECT_EQ(expand("1 _ _x1 2.5"), (std::vector<std::optional<double>>{1, std::nullopt, std::nullopt, std::nullopt, 2.5}));
  auto s = parse_values("1x9");
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->size(), 10u);
  EXPECT_FALSE(s->at(10, 0, 1).has_value());  // past the end: absent
}

TEST(RuleTestValues, NoiseIsBoundedSeededAndCentred) {
  auto a = expand("100x9999 noise 5", 7);
  auto b = expand("100x9999 noise 5", 7);
  auto c = expand("100x9999 noise 5", 8);
  ASSERT_EQ(a.size(), 10000u);
  EXPECT_EQ(a, b);  // the same seed gives the same noise
  EXPECT_NE(a, c);
  double sum = 0, lo = 1e9, hi = -1e9;
  for (const auto& v : a) sum += *v, lo = std::min(lo, *v), hi = std::max(hi, *v);
  EXPECT_GE(lo, 95);
  EXPECT_LE(hi, 105);
  EXPECT_LT(lo, 95.1);  // the whole band is used
  EXPECT_GT(hi, 104.9);
  EXPECT_NEAR(sum / 10000, 100, 0.2);
}

TEST(RuleTestValues, WaveFollowsTheClock) {
  auto s = parse_values("10x3 wave 4 4s");
  ASSERT_TRUE(s.ok());
  // t = 0, 1, 2, 3 seconds into a 4 s period: sin = 0, 1, 0, -1.
  EXPECT_NEAR(*s->at(0, 1000, 1), 10, 1e-9);
  EXPECT_NEAR(*s->at(1, 1001, 1), 14, 1e-9);
  EXPECT_NEAR(*s->at(2, 1002, 1), 10, 1e-9);
  EXPECT_NEAR(*s->at(3, 1003, 1), 6, 1e-9);
}

TEST(RuleTestValues, BadNotationSaysWhichTerm) {
  EXPECT_NE(values_error("").find("no values"), std::string::npos);
  EXPECT_NE(values_error("1 0+10").find("term 2 '0+10': 'a+b' needs a repeat count"), std::string::npos) << values_error("1 0+10");
  EXPECT_NE(values_error("abc").find("term 1 'abc': bad number"), std::string::npos);
  EXPECT_NE(values_error("5xq").find("term 1 '5xq': bad repeat count"), std::string::npos);
  EXPECT_NE(values_error("1+zx3").find("bad step"), std::string::npos);
  EXPECT_NE(values_error("noise 5").find("'noise' must follow a term"), std::string::npos);
  EXPECT_NE(values_error("_x3 noise 5").find("'noise' must follow a term"), std::string::npos);
  EXPECT_NE(values_error("1x3 noise").find("'noise' needs an amplitude"), std::string::npos);
  EXPECT_NE(values_error("1x3 wave 5 0s").find("'wave': bad period '0s'"), std::string::npos);
  EXPECT_NE(values_error("1x99999999999").find("at most"), std::string::npos);
}

TEST_F(RuleTestFiles, PassingTestExitsZero) {
  std::string f = test_file(
      "    expected_anomalies:\n"
      "      - {at: 4s, rule: high, scope: {pod: a}, severity: critical, summary: 'a is at 20', value: {min: 20, max: 20}}\n"
      "      - {at: 9s, rule: high, status: resolved, scope: {pod: a}}\n"
      "    expected_notifications:\n"
      "      - {at: 4s, channel: default, rule: high, scope: {pod: a}}\n"
      "      - {at: 9s, channel: default, rule: high, status: resolved, scope: {pod: a}}\n");
  auto run = run_rule_tests({f});
  EXPECT_EQ(run.exit_code, 0) << run.out << run.err;
  EXPECT_EQ(run.passed, 1u);
  EXPECT_NE(run.out.find("ok    " + f + ":4: spike (2 anomaly events, 2 notifications, 13s simulated)"), std::string::npos)
      << run.out;
  EXPECT_NE(run.out.find("1 test: 1 passed, 0 failed"), std::string::npos) << run.out;
}

TEST_F(RuleTestFiles, TimeRangesMatch) {
  std::string f = test_file(
      "    expected_anomalies:\n"
      "      - {at: 3s..5s, rule: high, scope: {pod: a}}\n"
      "      - {at: 6s..10s, rule: high, status: resolved, scope: {pod: a}}\n");
  auto run = run_rule_tests({f});
  EXPECT_EQ(run.exit_code, 0) << run.out << run.err;
}

TEST_F(RuleTestFiles, MissedExpectationShowsWantClosestAndDifferingFields) {
  std::string f = test_file(
      "    expected_anomalies:\n"                                      // 8
      "      - {at: 5s, rule: high, scope: {pod: a}, severity: warning}\n"  // 9
      "      - {at: 9s, rule: high, status: resolved, scope: {pod: a}}\n");
  auto run = run_rule_tests({f});
  EXPECT_EQ(run.exit_code, 1) << run.out << run.err;
  EXPECT_EQ(run.failed, 1u);
  EXPECT_NE(run.out.find("FAIL  " + f + ":4: spike"), std::string::npos) << run.out;
  EXPECT_NE(run.out.find(f + ":9: expected anomaly not seen"), std::string::npos) << run.out;
  EXPECT_NE(run.out.find("want: at 5s firing high {pod=\"a\"} severity=warning"), std::string::npos) << run.out;
  EXPECT_NE(run.out.find("closest got: at 4s firing high {pod=\"a\"} severity=critical value=20"), std::string::npos) << run.out;
  EXPECT_NE(run.out.find("differs in: at, severity"), std::string::npos) << run.out;
  EXPECT_NE(run.out.find("2 anomaly events seen:"), std::string::npos) << run.out;
  EXPECT_NE(run.out.find("1 test: 0 passed, 1 failed"), std::string::npos) << run.out;
}

TEST_F(RuleTestFiles, UnexpectedAnomaliesFail) {
  // Nothing expected, but the spike fires and resolves: both are failures, as in promtool.
  std::string f = test_file("    expected_anomalies: []\n");
  auto run = run_rule_tests({f});
  EXPECT_EQ(run.exit_code, 1) << run.out;
  EXPECT_NE(run.out.find("unexpected anomaly: at 4s firing high {pod=\"a\"}"), std::string::npos) << run.out;
  EXPECT_NE(run.out.find("unexpected anomaly: at 9s resolved high {pod=\"a\"}"), std::string::npos) << run.out;
  // Notifications are not checked without expected_notifications.
  EXPECT_EQ(run.out.find("notification"), std::string::npos) << run.out;
}

TEST_F(RuleTestFiles, NotificationsAreComparedWhenListed) {
  std::string f = test_file(
      "    expected_anomalies:\n"
      "      - {at: 4s, rule: high, scope: {pod: a}}\n"
      "      - {at: 9s, rule: high, status: resolved, scope: {pod: a}}\n"
      "    expected_notifications:\n"                                           // 11
      "      - {at: 4s, channel: oncall, rule: high, scope: {pod: a}}\n");  // 12
  auto run = run_rule_tests({f});
  EXPECT_EQ(run.exit_code, 1) << run.out;
  EXPECT_NE(run.out.find(f + ":12: expected notification not seen"), std::string::npos) << run.out;
  EXPECT_NE(run.out.find("differs in: channel"), std::string::npos) << run.out;
  EXPECT_NE(run.out.find("unexpected notification: at 9s channel=default resolved high"), std::string::npos) << run.out;
}

TEST_F(RuleTestFiles, QuietInputPasses) {
  std::string f = test_file("    expected_anomalies: []\n    expected_notifications: []\n", "1x100 noise 5");
  auto run = run_rule_tests({f});
  EXPECT_EQ(run.exit_code, 0) << run.out;
}

TEST_F(RuleTestFiles, CountersGivenAsRates) {
  write("rate.lua",
        "rule { name = \"fast\", metric = \"c_total\", by = {}, detect = threshold { above = 50 } }\n");
  std::string f = write("rate.test.yaml",
                        "rule_files: [rate.lua]\n"
                        "tick: 10s\n"
                        "tests:\n"
                        "  - input_series:\n"
                        "      - {metric: c_total, labels: {pod: a}, rates: '10x5 100 10x5'}\n"
                        "    expected_anomalies:\n"
                        "      - {at: 1m, rule: fast, value: {min: 100, max: 100}}\n"
                        "      - {at: 1m20s, rule: fast, status: resolved}\n");
  auto run = run_rule_tests({f});
  EXPECT_EQ(run.exit_code, 0) << run.out << run.err;
  EXPECT_NE(run.out.find(f + ":4: tests[0]"), std::string::npos) << run.out;  // unnamed: the field names it
}

// A series the agent reads every 10 s (read_every, as the netstat family is): the rule sees each
// read's rate, held until the next read, one read late, and never the whole increase on one tick.
TEST_F(RuleTestFiles, SeriesReadOnASchedule) {
  write("read.lua",
        "rule { name = \"fast\", metric = \"c_total\", by = {}, detect = threshold { above = 50 } }\n");
  std::string f = write("read.test.yaml",
                        "rule_files: [read.lua]\n"
                        "tick: 1s\n"
                        "tests:\n"
                        "  - input_series:\n"
                        "      - {metric: c_total, rates: '10x29 100x19 10x29', read_every: 10s}\n"
                        "    expected_anomalies:\n"
                        // Read at 30 s: 9 ticks of 10/s and one of 100/s; at 40 s: 100/s.
                        "      - {at: 40s, rule: fast, value: {min: 100, max: 100}}\n"
                        "      - {at: 1m10s, rule: fast, status: resolved}\n");
  auto run = run_rule_tests({f});
  EXPECT_EQ(run.exit_code, 0) << run.out << run.err;
  std::string bad = write("bad.test.yaml",
                          "rule_files: [read.lua]\n"
                          "tests:\n"
                          "  - input_series: [{metric: c_total, rates: '1', read_every: 500ms}]\n");
  auto refused = run_rule_tests({bad});
  EXPECT_EQ(refused.exit_code, 2);
  EXPECT_NE(refused.err.find(bad + ":3: tests[0].input_series[0].read_every: must be at least the tick"), std::string::npos)
      << refused.err;
}

// A rule with a capture option runs under test (every capture is granted, nothing captured),
// and `captures: N` expects how many captures an anomaly or notification carries.
TEST_F(RuleTestFiles, CapturesAreGrantedAndCounted) {
  write("cap.lua",
        "rule {\n"
        "  name = \"cap\", metric = \"level\", detect = threshold { above = 10 }, resolve_after = \"2s\",\n"
        "  capture = { before = \"10s\", after = \"30s\", filter = \"tcp port 443\" },\n"
        "  on_anomaly = function(a)\n"
        "    local id = capture { pods = a.pods, after = \"1m\" }\n"
        "    assert(id and #a.captures == 1, \"captures\")\n"
        "    notify(\"default\", a)\n"
        "  end,\n"
        "}\n");
  const std::string head =
      "rule_files: [cap.lua]\n"
      "tests:\n"
      "  - pods: [{name: web-1}]\n"
      "    input_series:\n"
      "      - {series: 'level{namespace=\"default\",pod=\"web-1\"}', values: '1x3 20x2 1x5'}\n"
      "    expected_anomalies:\n";
  std::string f = write("cap.test.yaml", head +
                                             "      - {at: 4s, rule: cap, scope: {namespace: default, pod: web-1}, captures: 1}\n"
                                             "      - {at: 9s, rule: cap, status: resolved, scope: {namespace: default, pod: web-1}, captures: 2}\n"
                                             "    expected_notifications:\n"
                                             "      - {at: 4s, channel: default, rule: cap, scope: {namespace: default, pod: web-1}, captures: 2}\n"
                                             "      - {at: 9s, channel: default, rule: cap, status: resolved, scope: {namespace: default, pod: web-1}, captures: 2}\n");
  auto run = run_rule_tests({f});
  EXPECT_EQ(run.exit_code, 0) << run.out << run.err;

  std::string wrong = write("cap2.test.yaml", head +
                                                  "      - {at: 4s, rule: cap, scope: {namespace: default, pod: web-1}, captures: 0}\n"  // 7
                                                  "      - {at: 9s, rule: cap, status: resolved, scope: {namespace: default, pod: web-1}}\n");
  run = run_rule_tests({wrong});
  EXPECT_EQ(run.exit_code, 1) << run.out << run.err;
  EXPECT_NE(run.out.find(wrong + ":7: expected anomaly not seen"), std::string::npos) << run.out;
  EXPECT_NE(run.out.find("want: at 4s firing cap {namespace=\"default\",pod=\"web-1\"} captures=0"), std::string::npos) << run.out;
  EXPECT_NE(run.out.find("differs in: captures"), std::string::npos) << run.out;
}

TEST_F(RuleTestFiles, RuleErrorsFailTheTest) {
  write("bad-handler.lua",
        "rule { name = \"b\", metric = \"level\", by = {}, detect = threshold { above = 10 },\n"
        "  on_anomaly = function(a) error(\"boom\") end }\n");
  std::string f = write("b.test.yaml",
                        "rule_files: [bad-handler.lua]\n"
                        "tests:\n"
                        "  - input_series: [{series: level, values: '1 20 1'}]\n"
                        "    expected_anomalies: [{at: 1s, rule: b}]\n");
  auto run = run_rule_tests({f});
  EXPECT_EQ(run.exit_code, 1) << run.out;
  EXPECT_NE(run.out.find("rule 'b' failed (runtime 1): "), std::string::npos) << run.out;
  EXPECT_NE(run.out.find("bad-handler.lua:2:"), std::string::npos) << run.out;
  EXPECT_NE(run.out.find("boom"), std::string::npos) << run.out;
}

TEST_F(RuleTestFiles, RuleFileThatDoesNotLoadFails) {
  write("syntax.lua", "rule {\n  name = \"x\"\n  metric = \"m\",\n}\n");
  std::string f = write("s.test.yaml",
                        "rule_files: [syntax.lua]\ntests:\n  - input_series: [{series: m, values: '1'}]\n");
  auto run = run_rule_tests({f});
  EXPECT_EQ(run.exit_code, 1) << run.out;
  EXPECT_NE(run.out.find("rule files do not load: "), std::string::npos) << run.out;
  EXPECT_NE(run.out.find("syntax.lua:3:"), std::string::npos) << run.out;
}

TEST_F(RuleTestFiles, BadInputNamesFileLineAndField) {
  struct Case {
    std::string text;
    std::string error;
  };
  const std::vector<Case> cases = {
      {"rule_files: [high.lua]\ntests:\n  - input_series: [{series: 'level', values: '1'}]\n"
       "    expected_anomalies:\n      - {at: 1s, rule: high, scor: {min: 1}}\n",
       ":5: tests[0].expected_anomalies[0]: unknown key 'scor' (known: at, rule, scope, status,"},
      {"rule_files: [nope.lua]\ntests: []\n", ":1: rule_files[0]: no such rule file: "},
      {"rule_files: [high.lua]\ntests:\n  - name: x\n    input_series:\n      - series: level\n        values: '1 0+1'\n",
       ":6: tests[0].input_series[0].values: term 2 '0+1': 'a+b' needs a repeat count"},
      {"rule_files: [high.lua]\ntick: fast\ntests: []\n", ":2: tick: bad duration 'fast'"},
      {"rule_files: [high.lua]\ntests:\n  - input_series: [{series: 'level{pod=a}', values: '1'}]\n",
       ":3: tests[0].input_series[0].series: bad label at 'pod=a'"},
      {"rule_files: [high.lua]\ntests:\n  - input_series: [{series: level, values: '1'}]\n"
       "    expected_anomalies: [{at: 1s}]\n",
       ":4: tests[0].expected_anomalies[0].rule: missing (required)"},
      {"rule_files: [high.lua]\ntests:\n  - input_series: [{series: level, values: '1'}]\n"
       "    expected_anomalies: [{at: 1s, rule: high, status: fired}]\n",
       ":4: tests[0].expected_anomalies[0].status: expected firing or resolved, got 'fired'"},
      {"rule_files: [high.lua]\ntests:\n  - input_series: [{series: level, rates: '1'}]\n",
       ":3: tests[0].input_series[0].rates: rates are for counters"},
      {"rule_files: [high.lua]\ntests:\n  - input_series: [{series: level, values: '1'}]\n"
       "    expected_anomalies: [{at: 5s..1s, rule: high}]\n",
       ":4: tests[0].expected_anomalies[0].at: the range ends before it starts"},
      {"rule_files: [high.lua]\ntests:\n  - {name: x}\n", ":3: tests[0]: no input_series and no duration"},
      {"rule_files: [high.lua]\n", ":1: tests: missing (required)"},
  };
  for (const auto& c : cases) {
    std::string f = write("bad.test.yaml", c.text);
    auto run = run_rule_tests({f});
    EXPECT_EQ(run.exit_code, 2) << c.text << "\n" << run.out << run.err;
    EXPECT_NE(run.err.find(f + c.error), std::string::npos) << "want: " << f << c.error << "\ngot: " << run.err;
  }
  std::string yaml = write("bad.test.yaml", "rule_files: [high.lua]\ntests: [{a: 1\n");
  auto broken = run_rule_tests({yaml});
  EXPECT_EQ(broken.exit_code, 2);
  EXPECT_NE(broken.err.find(yaml + ":"), std::string::npos) << broken.err;
  EXPECT_NE(broken.err.find(": invalid YAML: "), std::string::npos) << broken.err;
  auto run = run_rule_tests({(dir_ / "missing.yaml").string()});
  EXPECT_EQ(run.exit_code, 2);
  EXPECT_NE(run.err.find("missing.yaml: cannot read test file: No such file or directory"), std::string::npos) << run.err;
}

TEST_F(RuleTestFiles, BadFileDoesNotHideTheOthersResults) {
  std::string good = test_file(
      "    expected_anomalies:\n"
      "      - {at: 4s, rule: high, scope: {pod: a}}\n"
      "      - {at: 9s, rule: high, status: resolved, scope: {pod: a}}\n");
  std::string bad = write("bad.test.yaml", "rule_files: [high.lua]\ntests: 3\n");
  auto run = run_rule_tests({bad, good});
  EXPECT_EQ(run.exit_code, 2);
  EXPECT_EQ(run.passed, 1u);
  EXPECT_NE(run.err.find(bad + ":2: tests: expected a list of tests"), std::string::npos) << run.err;
}
