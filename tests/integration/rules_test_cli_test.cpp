// `vigil rules test` as a user and CI meet it: the shipped pack's tests pass, a failing test
// exits 1 with its diff, a bad test file exits 2 naming file, line and field. No privileges.
#include <gtest/gtest.h>

#include "support.h"

namespace vigil::test {
namespace {

class RulesTestCli : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = make_temp_dir();
    write_temp_file(dir_, "high.lua",
                    "rule { name = \"high\", metric = \"level\", by = {}, detect = threshold { above = 10 },\n"
                    "  resolve_after = \"2s\", on_anomaly = function(a) notify(\"default\", a) end }\n");
  }
  void TearDown() override { run("rm -rf " + dir_); }
  CommandResult vigil(const std::string& args) { return run(binary_path("vigil") + " " + args); }
  std::string dir_;
};

TEST_F(RulesTestCli, TheShippedPackPasses) {
  auto r = vigil("rules test " + source_path("rules/pack/tests") + "/*.test.yaml");
  EXPECT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("ok    "), std::string::npos) << r.output;
  EXPECT_EQ(r.output.find("\nFAIL  "), std::string::npos) << r.output;  // a failed test's line; SERVFAIL is no failure
  EXPECT_NE(r.output.find("pod-drop-surge.test.yaml"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find(" 0 failed"), std::string::npos) << r.output;
}

TEST_F(RulesTestCli, PassFailAndBadInputExitCodes) {
  std::string pass = write_temp_file(dir_, "pass.test.yaml",
                                     "rule_files: [high.lua]\n"
                                     "tests:\n"
                                     "  - name: spike\n"
                                     "    input_series: [{series: level, values: '1x3 20 1x5'}]\n"
                                     "    expected_anomalies:\n"
                                     "      - {at: 4s, rule: high}\n"
                                     "      - {at: 7s, rule: high, status: resolved}\n"
                                     "    expected_notifications:\n"
                                     "      - {at: 4s, channel: default, rule: high}\n"
                                     "      - {at: 7s, channel: default, rule: high, status: resolved}\n");
  auto r = vigil("rules test " + pass);
  EXPECT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("ok    " + pass + ":3: spike"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("1 test: 1 passed, 0 failed"), std::string::npos) << r.output;

  std::string fail = write_temp_file(dir_, "fail.test.yaml",
                                     "rule_files: [high.lua]\n"
                                     "tests:\n"
                                     "  - name: spike\n"
                                     "    input_series: [{series: level, values: '1x3 20 1x5'}]\n"
                                     "    expected_anomalies:\n"
                                     "      - {at: 5s, rule: high}\n");
  r = vigil("rules test " + fail);
  EXPECT_EQ(r.status, 1) << r.output;
  EXPECT_NE(r.output.find("FAIL  " + fail + ":3: spike"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find(fail + ":6: expected anomaly not seen"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("want: at 5s firing high {}"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("closest got: at 4s firing high {}"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("differs in: at"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("unexpected anomaly: at 7s resolved high {}"), std::string::npos) << r.output;

  std::string bad = write_temp_file(dir_, "bad.test.yaml",
                                    "rule_files: [high.lua]\n"
                                    "tests:\n"
                                    "  - input_series: [{series: level, values: '1x3 20 1x5'}]\n"
                                    "    expected_anomalies:\n"
                                    "      - {at: 4s, rule: high, sevrity: warning}\n");
  r = vigil("rules test " + bad + " " + pass);
  EXPECT_EQ(r.status, 2) << r.output;
  EXPECT_NE(r.output.find(bad + ":5: tests[0].expected_anomalies[0]: unknown key 'sevrity'"), std::string::npos)
      << r.output;
  EXPECT_NE(r.output.find("1 test: 1 passed, 0 failed"), std::string::npos) << r.output;  // the good file still ran
}

TEST_F(RulesTestCli, UsageErrors) {
  auto r = vigil("rules test");
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.output.find("rules test needs at least one test file"), std::string::npos) << r.output;
  EXPECT_EQ(vigil("rules test --config x.yaml t.yaml").status, 2);
}

}  // namespace
}  // namespace vigil::test
