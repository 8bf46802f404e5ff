// `vigil record` against a real agent, and its output replayed by `vigil replay`: the agent's
// tick counter (a histogram's _count, 5 per second at a 200 ms tick) recorded as a rate, its
// traffic map's capacity (a gauge) as a value, and a rule on the recorded rate fires in replay.
#include <gtest/gtest.h>

#include <fstream>
#include <set>
#include <sstream>
#include <thread>

#include "support.h"

namespace vigil::test {
namespace {

using namespace std::chrono_literals;

std::vector<std::vector<std::string>> csv_rows(const std::string& path) {
  std::ifstream in(path);
  std::vector<std::vector<std::string>> rows;
  for (std::string line; std::getline(in, line);) {
    std::vector<std::string> cells;
    std::stringstream ss(line);
    for (std::string cell; std::getline(ss, cell, ',');) cells.push_back(cell);
    rows.push_back(cells);
  }
  return rows;
}

// An agent with no pods and a 200 ms tick, listening on `port`; `extra` is more configuration.
Process start_agent(const std::string& dir, int port, const std::string& extra) {
  const std::string config = write_temp_file(dir, "vigil.yaml",
                                             "listen: 127.0.0.1:" + std::to_string(port) + "\ntick: 200ms\n"
                                             "state_dir: " + dir + "/state\npods: {source: none}\nrules: []\nnotifiers: []\n" +
                                                 extra);
  return Process({binary_path("vigil"), "agent", "--config", config}, dir + "/agent.log");
}

// Waits (bounded, 10 s) until the agent serves /metrics.
bool answers(int port) {
  int status = 0;
  for (int i = 0; i < 100 && status != 200; ++i) {
    http_get("127.0.0.1", port, "/metrics", &status);
    if (status != 200) std::this_thread::sleep_for(100ms);
  }
  return status == 200;
}

TEST(Record, RecordsAnAgentsSeriesThatReplayReads) {
  VIGIL_REQUIRE_ROOT();  // the agent loads its eBPF programs
  const ScopedTempDir temp;
  const std::string& dir = temp.path();
  const int port = free_port();
  Process agent = start_agent(dir, port, "");
  ASSERT_TRUE(answers(port)) << agent.log();
  const std::string vigil = binary_path("vigil");
  const std::string at = " --agent 127.0.0.1:" + std::to_string(port);

  auto r = run(vigil + " record --metric vigil_tick_duration_seconds_count --interval 1s --samples 4 --output " + dir +
               "/ticks.csv" + at);
  ASSERT_EQ(r.status, 0) << r.output;
  auto rows = csv_rows(dir + "/ticks.csv");
  ASSERT_EQ(rows.size(), 5u) << r.output;  // header + 4
  EXPECT_EQ(rows[0], (std::vector<std::string>{"timestamp", "value"}));
  for (size_t i = 1; i < rows.size(); ++i) {
    ASSERT_EQ(rows[i].size(), 2u);
    const double rate = std::stod(rows[i][1]);
    EXPECT_GE(rate, 3.0) << "ticks per second at a 200 ms tick, row " << i;
    EXPECT_LE(rate, 7.0) << "row " << i;
  }

  r = run(vigil + " record --metric vigil_bpf_map_max_entries --where map=vigil_traffic --interval 100ms --samples 2" + at);
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("timestamp,value\n"), std::string::npos) << r.output;
  auto capacity = metric_value(http_get("127.0.0.1", port, "/metrics"), "vigil_bpf_map_max_entries", {{"map", "vigil_traffic"}});
  ASSERT_TRUE(capacity.has_value());
  std::ostringstream expected;
  expected << "," << *capacity << "\n";
  EXPECT_NE(r.output.find(expected.str()), std::string::npos) << r.output;

  // A series that does not exist, and bad arguments, are errors.
  r = run(vigil + " record --metric vigil_no_such_metric --interval 100ms --samples 1" + at);
  EXPECT_EQ(r.status, 1) << r.output;
  EXPECT_NE(r.output.find("no series vigil_no_such_metric"), std::string::npos) << r.output;
  r = run(vigil + " record --metric x --where pod" + at);
  EXPECT_EQ(r.status, 2) << r.output;
  EXPECT_NE(r.output.find("'pod' is not label=value"), std::string::npos) << r.output;

  // The recording replays: a rule that wants more than 2 ticks/s fires on every row.
  write_temp_file(dir, "ticking.lua",
                  "rule { name = \"ticking\", metric = \"vigil_tick_duration_seconds_count\", by = {},\n"
                  "  detect = threshold { above = 2 }, pending = \"0s\" }\n");
  r = run(vigil + " replay --rules " + dir + "/ticking.lua --input " + dir + "/ticks.csv");
  ASSERT_EQ(r.status, 0) << r.output;
  std::stringstream out(r.output);
  std::string line;
  int firing = 0, lines = 0;
  while (std::getline(out, line)) {
    if (line.rfind("timestamp", 0) == 0) continue;
    ++lines;
    firing += line.size() > 2 && line.substr(line.size() - 2) == ",1";
  }
  EXPECT_EQ(lines, 4) << r.output;
  EXPECT_EQ(firing, 4) << r.output;
  EXPECT_EQ(agent.terminate(), 0) << agent.log();
}

// A counter the agent reads on its own schedule (netstat, every 2 s here), recorded every
// 500 ms: each row is the rate between the agent's last two reads, held until the next, never
// the 0 of a scrape between reads.
TEST(Record, ACounterReadOnAScheduleIsRecordedAsTheRateBetweenReads) {
  VIGIL_REQUIRE_ROOT();
  const ScopedTempDir temp;
  const std::string& dir = temp.path();
  const int port = free_port();
  Process agent = start_agent(dir, port, "metrics: {netstat: {interval: 2s}}\n");
  ASSERT_TRUE(answers(port)) << agent.log();
  // About 10 refused connections a second on loopback for ~12 s: the node's Tcp:ActiveOpens.
  const int closed = free_port();
  Process opener({"/bin/bash", "-c",
                  "for i in $(seq 120); do (exec 3<>/dev/tcp/127.0.0.1/" + std::to_string(closed) +
                      ") 2>/dev/null; sleep 0.1; done"},
                 dir + "/opener.log");
  auto r = run(binary_path("vigil") + " record --metric vigil_node_netstat_total --where group=Tcp,statistic=ActiveOpens"
               " --interval 500ms --samples 16 --output " + dir + "/opens.csv --agent 127.0.0.1:" + std::to_string(port));
  opener.terminate();
  ASSERT_EQ(r.status, 0) << r.output;
  auto rows = csv_rows(dir + "/opens.csv");
  ASSERT_GE(rows.size(), 9u) << r.output;  // the header, and rows from the agent's second read on
  std::set<std::string> distinct;
  std::string shown;
  for (size_t i = 1; i < rows.size(); ++i) shown += rows[i].size() == 2 ? rows[i][1] + " " : "? ";
  std::printf("recorded ActiveOpens/s: %s\n", shown.c_str());
  for (size_t i = 1; i < rows.size(); ++i) {
    ASSERT_EQ(rows[i].size(), 2u);
    const double rate = std::stod(rows[i][1]);
    EXPECT_GE(rate, 3.0) << "row " << i << ": never 0 between reads";
    EXPECT_LE(rate, 100.0) << "row " << i << ": never a read's whole increase over one scrape";
    distinct.insert(rows[i][1]);
  }
  // One value a read: 4 scrapes a read.
  EXPECT_LE(distinct.size(), (rows.size() - 1) / 3 + 1) << r.output;
  EXPECT_EQ(agent.terminate(), 0) << agent.log();
}

}  // namespace
}  // namespace vigil::test
