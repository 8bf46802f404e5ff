// The command line as a user meets it: bad rule files and bad configs are reported with file
// and line, and the agent refuses to start half-configured. No privileges needed.
#include <filesystem>

#include <gtest/gtest.h>

#include "support.h"

namespace vigil::test {
namespace {

class Cli : public ::testing::Test {
 protected:
  void SetUp() override { dir_ = make_temp_dir(); }
  void TearDown() override { run("rm -rf " + dir_); }
  CommandResult vigil(const std::string& args) { return run(binary_path("vigil") + " " + args); }
  std::string dir_;
};

TEST_F(Cli, RulesCheckAcceptsTheShippedPack) {
  auto r = vigil("rules check " + source_path("rules/pack/pod-drop-surge.lua") + " " +
                 source_path("rules/pack/pod-traffic.lua"));
  EXPECT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("pod-drop-surge.lua: ok (1 rules)"), std::string::npos) << r.output;
}

TEST_F(Cli, RulesCheckReportsEachBrokenFileWithFileAndLine) {
  std::string syntax = write_temp_file(dir_, "syntax.lua", "rule {\n  name = \"x\",\n  metric = \"m\"\n  detect = 1,\n}\n");
  std::string os_call = write_temp_file(dir_, "os.lua", "\n\nos.execute(\"touch /tmp/pwned\")\n");
  std::string field = write_temp_file(dir_, "field.lua",
                                      "rule {\n  name = \"x\", metric = \"m\",\n  detect = threshold { above = 1 },\n"
                                      "  thresold = 3,\n}\n");
  std::string good = write_temp_file(dir_, "good.lua",
                                     "rule { name = \"g\", metric = \"vigil_pods\", detect = threshold { above = 1 } }\n");
  // It loads, but watches a series the agent does not have: it would never fire.
  std::string typo = write_temp_file(dir_, "typo.lua",
                                     "\nrule { name = \"t\", metric = \"vigil_drop_packet_total\", detect = threshold { above = 1 } }\n");
  auto r = vigil("rules check " + syntax + " " + os_call + " " + field + " " + good + " " + typo);
  EXPECT_EQ(r.status, 1) << r.output;
  EXPECT_NE(r.output.find("syntax.lua:4:"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("os.lua:3:"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("'os'"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("field.lua:1:"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("thresold"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("good.lua: ok"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("typo.lua:2: rule 't': metric 'vigil_drop_packet_total' is not a series the agent exports, so "
                          "the rule never sees a value (did you mean 'vigil_drop_packets_total'?)"),
            std::string::npos)
      << r.output;
  EXPECT_EQ(r.output.find("typo.lua: ok"), std::string::npos) << r.output;
}

TEST_F(Cli, RulesCheckWithConfigChecksNotifierChannels) {
  std::string rule = write_temp_file(dir_, "r.lua",
                                     "rule {\n  name = \"x\", metric = \"m\", detect = threshold { above = 1 },\n"
                                     "  on_anomaly = function(a)\n    notify(\"oncal\", a)\n  end,\n}\n");
  std::string config = write_temp_file(dir_, "vigil.yaml",
                                       "pods: {source: none}\nrules: []\nnotifiers:\n  - {name: oncall, type: log}\n");
  auto r = vigil("rules check --config " + config + " " + rule);
  EXPECT_EQ(r.status, 1) << r.output;
  EXPECT_NE(r.output.find("r.lua:4: unknown notifier channel 'oncal'"), std::string::npos) << r.output;
}

// `vigil config check`: what the agent would refuse at start, found without starting it.
TEST_F(Cli, ConfigCheckAcceptsAConfigWithTheShippedPack) {
  size_t pack_files = 0;
  for (const auto& e : std::filesystem::directory_iterator(source_path("rules/pack")))
    pack_files += e.path().extension() == ".lua";
  ASSERT_GT(pack_files, 0u);
  std::string config = write_temp_file(dir_, "vigil.yaml", "pods: {source: none}\nstate_dir: " + dir_ + "/state\n");
  auto r = vigil("config check " + config);
  EXPECT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("vigil.yaml: ok (" + std::to_string(pack_files) + " rule files, "), std::string::npos) << r.output;
  EXPECT_NE(r.output.find(" rules, 1 notifiers)"), std::string::npos) << r.output;
  // Nothing was started or written: no state directory.
  EXPECT_FALSE(std::filesystem::exists(dir_ + "/state")) << r.output;
}

TEST_F(Cli, ConfigCheckReportsEachBrokenConfigWithFileAndLine) {
  // A key misspelt.
  std::string key = write_temp_file(dir_, "key.yaml", "pods: {source: none}\ntik: 1s\n");
  // A notifier whose URL is in a file that is not there.
  std::string secret = write_temp_file(dir_, "secret.yaml",
                                       "pods: {source: none}\nrules: []\nnotifiers:\n  - name: slack\n    type: slack\n"
                                       "    url_file: " + dir_ + "/missing-url\n");
  // A rule that notifies a channel the config does not have.
  write_temp_file(dir_, "channel.lua",
                  "rule {\n  name = \"x\", metric = \"vigil_pods\", detect = threshold { above = 1 },\n"
                  "  on_anomaly = function(a)\n    notify(\"oncal\", a)\n  end,\n}\n");
  std::string channel = write_temp_file(dir_, "channel.yaml",
                                        "pods: {source: none}\nrules: [channel.lua]\nnotifiers:\n  - {name: oncall, type: log}\n");
  // A rule on a series the agent never exports, and one with a capture filter libpcap refuses.
  write_temp_file(dir_, "typo.lua", "\nrule { name = \"t\", metric = \"vigil_drop_packet_total\", detect = threshold { above = 1 } }\n");
  std::string typo = write_temp_file(dir_, "typo.yaml", "pods: {source: none}\nrules: [typo.lua]\n");
  write_temp_file(dir_, "filter.lua",
                  "rule { name = \"f\", metric = \"vigil_pods\", detect = threshold { above = 1 },\n"
                  "  capture = { filter = \"tcp port nope\" } }\n");
  std::string filter = write_temp_file(dir_, "filter.yaml", "pods: {source: none}\nrules: [filter.lua]\n");
  // A pattern that matches no file.
  std::string glob = write_temp_file(dir_, "glob.yaml", "pods: {source: none}\nrules: [\"custom/*.lua\"]\n");
  std::string good = write_temp_file(dir_, "good.yaml", "pods: {source: none}\nrules: []\nnotifiers: []\n");
  auto r = vigil("config check " + key + " " + secret + " " + channel + " " + typo + " " + filter + " " + glob + " " + good);
  EXPECT_EQ(r.status, 1) << r.output;
  EXPECT_NE(r.output.find("key.yaml:2: unknown key 'tik'"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("secret.yaml:6: notifiers[0].url_file: "), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("missing-url"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("channel.lua:4: unknown notifier channel 'oncal' (configured: oncall)"), std::string::npos)
      << r.output;
  EXPECT_NE(r.output.find("typo.lua:2: rule 't': metric 'vigil_drop_packet_total' is not a series the agent exports"),
            std::string::npos)
      << r.output;
  EXPECT_NE(r.output.find("filter.lua:1: rule 'f': field 'capture.filter': 'tcp port nope'"), std::string::npos)
      << r.output;
  EXPECT_NE(r.output.find("glob.yaml:2: "), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("custom/*.lua"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("good.yaml: ok (0 rule files, 0 rules, 0 notifiers)"), std::string::npos) << r.output;
  for (const char* name : {"key.yaml: ok", "secret.yaml: ok", "channel.yaml: ok", "typo.yaml: ok", "filter.yaml: ok", "glob.yaml: ok"})
    EXPECT_EQ(r.output.find(name), std::string::npos) << name << "\n" << r.output;
}

// `rules check` compiles capture filters as the agent does, with or without --config.
TEST_F(Cli, RulesCheckCompilesCaptureFilters) {
  std::string rule = write_temp_file(dir_, "filter.lua",
                                     "rule { name = \"f\", metric = \"vigil_pods\", detect = threshold { above = 1 },\n"
                                     "  capture = { filter = \"tcp port nope\" } }\n");
  auto r = vigil("rules check " + rule);
  EXPECT_EQ(r.status, 1) << r.output;
  EXPECT_NE(r.output.find("filter.lua:1: rule 'f': field 'capture.filter': 'tcp port nope': unknown port 'nope'"),
            std::string::npos)
      << r.output;
}

TEST_F(Cli, AgentRefusesABadConfigNamingFileLineAndKey) {
  std::string config = write_temp_file(dir_, "vigil.yaml", "node: n1\ntik: 1s\n");
  auto r = vigil("agent --config " + config);
  EXPECT_EQ(r.status, 1) << r.output;
  EXPECT_NE(r.output.find("vigil.yaml:2: unknown key 'tik'"), std::string::npos) << r.output;
}

TEST_F(Cli, AgentRefusesABrokenRuleFileBeforeStarting) {
  write_temp_file(dir_, "broken.lua", "rule {\n  name = \"x\",\n  metric = \"m\"\n  detect = 1,\n}\n");
  std::string config = write_temp_file(dir_, "vigil.yaml",
                                       "listen: 127.0.0.1:" + std::to_string(free_port()) +
                                           "\npods: {source: none}\nrules: [\"*.lua\"]\n");
  auto r = vigil("agent --config " + config);
  EXPECT_EQ(r.status, 1) << r.output;
  EXPECT_NE(r.output.find("broken.lua:4:"), std::string::npos) << r.output;
}

// rule_limits in the config bind both `rules check --config` and the agent: a file whose top
// level runs ~300,000 instructions loads under the default 10 million and not under 100,000.
TEST_F(Cli, RuleLimitsFromTheConfigBindRulesCheckAndTheAgent) {
  std::string rule = write_temp_file(dir_, "busy.lua",
                                     "local n = 0\nfor i = 1, 100000 do n = n + i end\n"
                                     "rule { name = \"b\", metric = \"vigil_pods\", detect = threshold { above = 1 } }\n");
  const std::string base = "listen: 127.0.0.1:" + std::to_string(free_port()) +
                           "\npods: {source: none}\nnotifiers: []\nrules: [\"busy.lua\"]\n";
  std::string loose = write_temp_file(dir_, "loose.yaml", base);
  std::string tight = write_temp_file(dir_, "tight.yaml", base + "rule_limits: {instructions: 100000, quarantine_after: 5}\n");
  auto r = vigil("rules check --config " + loose + " " + rule);
  EXPECT_EQ(r.status, 0) << r.output;
  r = vigil("rules check --config " + tight + " " + rule);
  EXPECT_EQ(r.status, 1) << r.output;
  EXPECT_NE(r.output.find("instruction budget exceeded (100000 instructions per call)"), std::string::npos) << r.output;
  // The agent loads its rules under the same limits, before it touches the kernel.
  r = vigil("agent --config " + tight);
  EXPECT_EQ(r.status, 1) << r.output;
  EXPECT_NE(r.output.find("instruction budget exceeded (100000 instructions per call)"), std::string::npos) << r.output;
  // A limit out of range names its key.
  std::string bad = write_temp_file(dir_, "bad.yaml", base + "rule_limits:\n  memory: 2GiB\n");
  r = vigil("agent --config " + bad);
  EXPECT_EQ(r.status, 1) << r.output;
  EXPECT_NE(r.output.find("bad.yaml:6: rule_limits.memory: must be from 1MiB to 1GiB"), std::string::npos) << r.output;
}

TEST_F(Cli, UsageErrors) {
  EXPECT_EQ(vigil("").status, 2);
  auto r = vigil("agent --nope 1");
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.output.find("unknown option --nope"), std::string::npos) << r.output;
  EXPECT_EQ(vigil("rules check").status, 2);
  EXPECT_EQ(vigil("config check").status, 2);
  EXPECT_EQ(vigil("version").status, 0);
  EXPECT_EQ(vigil("anomalies --format yaml").status, 2);
  // An unknown log level would have been read as "off" and silenced the agent.
  r = vigil("agent --log-level verbose");
  EXPECT_EQ(r.status, 2) << r.output;
  EXPECT_NE(r.output.find("--log-level verbose: expected trace, debug, info, warn, error, critical or off"), std::string::npos)
      << r.output;
  EXPECT_EQ(vigil("anomalies --agent nowhere").status, 2);
}

// The commands that talk to an agent say what to check when none answers, not httplib's bare
// error name. Port 1 on loopback: nothing listens there.
TEST_F(Cli, CommandsThatNeedAnAgentSayWhenItIsNotThere) {
  for (const std::string cmd : {"anomalies", "capture list", "record --metric vigil_up --samples 1"}) {
    auto r = vigil(cmd + " --agent 127.0.0.1:1");
    EXPECT_EQ(r.status, 1) << cmd << ": " << r.output;
    EXPECT_NE(r.output.find("127.0.0.1:1"), std::string::npos) << cmd << ": " << r.output;
    EXPECT_NE(r.output.find("cannot connect (refused or unreachable); is `vigil agent` running"), std::string::npos)
        << cmd << ": " << r.output;
  }
  // A recording that failed leaves an earlier one as it was (no header-only file in its place),
  // and a path that cannot be written fails before the first scrape.
  ScopedTempDir dir;
  const std::string earlier = write_temp_file(dir.path(), "earlier.csv", "timestamp,value\n1,2\n");
  auto r = vigil("record --metric vigil_up --samples 1 --agent 127.0.0.1:1 --output " + earlier);
  EXPECT_EQ(r.status, 1) << r.output;
  EXPECT_EQ(run("cat " + earlier).output, "timestamp,value\n1,2\n");
  r = vigil("record --metric vigil_up --samples 1 --agent 127.0.0.1:1 --output " + dir.path() + "/no/such/dir/x.csv");
  EXPECT_EQ(r.status, 1) << r.output;
  EXPECT_NE(r.output.find("/no/such/dir/x.csv: cannot write: No such file or directory"), std::string::npos) << r.output;
  EXPECT_EQ(r.output.find("cannot connect"), std::string::npos) << "scraped before checking the output: " << r.output;
}

}  // namespace
}  // namespace vigil::test
