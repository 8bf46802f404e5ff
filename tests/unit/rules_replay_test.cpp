// `vigil replay`: CSV reading (header, CRLF, repeated and backward timestamps), one output row
// per input row, the firing at a known spike, and the CLI end to end when it is built.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "rules/runtime/replay.h"

using namespace vigil;
using namespace vigil::rules;
namespace fs = std::filesystem;

namespace {

class TempDir {
 public:
  TempDir() {
    static int n = 0;
    dir_ = fs::temp_directory_path() / ("vigil-replay-" + std::to_string(getpid()) + "-" + std::to_string(n++));
    fs::create_directories(dir_);
  }
  ~TempDir() { fs::remove_all(dir_); }
  std::string write(const std::string& name, const std::string& text) {
    std::string path = (dir_ / name).string();
    std::ofstream(path, std::ios::binary) << text;
    return path;
  }
  std::string path(const std::string& name) const { return (dir_ / name).string(); }

 private:
  fs::path dir_;
};

const char* kRule = R"lua(
rule {
  name = "spike",
  metric = "latency_ms",
  where = { service = "api" },
  detect = baseline.ewma { half_life = "5m", threshold = 6, min_stddev = 0.5, warmup = "10m" },
  resolve_after = "0s",
}
)lua";

// 40 rows a minute apart around 10 (+-1), a spike to 60 at row 30; CRLF, a header, a repeated
// timestamp at row 12 and one that goes back a minute at row 20.
std::string spike_csv() {
  std::ostringstream out;
  out << "timestamp,value\r\n";
  for (int i = 0; i < 40; ++i) {
    int minute = i;
    if (i == 12) minute = 11;
    if (i == 20) minute = 18;
    char ts[32];
    std::snprintf(ts, sizeof ts, "2024-03-01 10:%02d:00", minute);
    out << ts << "," << (i == 30 ? 60 : 10 + (i % 3) - 1) << "\r\n";
  }
  return out.str();
}

}  // namespace

TEST(RulesReplay, ReadsCsvInFileOrder) {
  auto points = parse_replay_csv("timestamp,value\r\n2024-03-01 00:00:00,1.5\r\n\r\n1709251200,2\n2024-03-01T00:00:00Z,-3e2\n", "x.csv");
  ASSERT_TRUE(points.ok()) << points.error().message;
  ASSERT_EQ(points->size(), 3u);
  EXPECT_DOUBLE_EQ((*points)[0].timestamp, 1709251200);  // UTC
  EXPECT_EQ((*points)[0].timestamp_text, "2024-03-01 00:00:00");
  EXPECT_EQ((*points)[0].value_text, "1.5");
  EXPECT_DOUBLE_EQ((*points)[1].timestamp, 1709251200);
  EXPECT_DOUBLE_EQ((*points)[2].value, -300);

  auto bad = parse_replay_csv("timestamp,value\n2024-03-01 00:00:00,abc\n", "y.csv");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error().message, "y.csv:2: bad value 'abc' (a finite number)");
  bad = parse_replay_csv("1,2\nyesterday,3\n", "z.csv");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error().message.rfind("z.csv:2: bad timestamp 'yesterday'", 0), 0u);
}

TEST(RulesReplay, OneRowPerInputRowFiringAtTheSpike) {
  TempDir dir;
  std::string rule = dir.write("spike.lua", kRule);
  auto points = parse_replay_csv(spike_csv(), "spike.csv");
  ASSERT_TRUE(points.ok());
  ASSERT_EQ(points->size(), 40u);
  EXPECT_DOUBLE_EQ(infer_tick(*points), 60);
  auto rows = replay(rule, *points, {});
  ASSERT_TRUE(rows.ok()) << rows.error().message;
  ASSERT_EQ(rows->size(), 40u);
  for (size_t i = 0; i < rows->size(); ++i) {
    SCOPED_TRACE(i);
    EXPECT_EQ((*rows)[i].firing, i == 30);
    EXPECT_GE((*rows)[i].anomaly_score, 0);
    EXPECT_LE((*rows)[i].anomaly_score, 1);
    if (i != 30) {
      EXPECT_LT((*rows)[i].anomaly_score, 0.5);
    }
  }
  EXPECT_GT((*rows)[30].anomaly_score, 0.9);
  // The clock never goes back: row 20 (10:18) is replayed at 10:19, the time of row 19.
  EXPECT_DOUBLE_EQ((*rows)[20].time, (*rows)[19].time);
  EXPECT_DOUBLE_EQ((*rows)[12].time, (*rows)[11].time);

  std::string csv = format_replay_csv(*points, *rows);
  EXPECT_EQ(csv.substr(0, csv.find('\n')), "timestamp,value,anomaly_score,firing");
  EXPECT_NE(csv.find("\n2024-03-01 10:30:00,60,"), std::string::npos);
  EXPECT_EQ(std::count(csv.begin(), csv.end(), '\n'), 41);
}

TEST(RulesReplay, RuleFileErrors) {
  TempDir dir;
  auto points = parse_replay_csv("1,1\n2,2\n", "p.csv");
  ASSERT_TRUE(points.ok());
  std::string two = dir.write("two.lua", std::string(kRule) + std::string(kRule).replace(std::string(kRule).find("\"spike\""), 7, "\"other\""));
  auto r = replay(two, *points, {});
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("replay needs exactly one rule in the file (found 2)"), std::string::npos);
  std::string bad = dir.write("bad.lua", "rule { name = \"r\", metric = \"m\",\n detect = baseline.ewma { half_life = 0 } }\n");
  r = replay(bad, *points, {});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().message, bad + ":2: rule 'r': baseline.ewma: field 'half_life' must be > 0");
}

TEST(RulesReplay, CommandLine) {
  std::string vigil = std::string(VIGIL_BINARY_DIR) + "/vigil";
  if (!fs::exists(vigil)) vigil = std::string(VIGIL_BINARY_DIR) + "/engine/vigil";
  if (!fs::exists(vigil)) GTEST_SKIP() << "the vigil binary is not built in " << VIGIL_BINARY_DIR;
  TempDir dir;
  std::string rule = dir.write("spike.lua", kRule);
  std::string input = dir.write("spike.csv", spike_csv());
  std::string output = dir.path("out.csv");
  std::string cmd = vigil + " replay --rules " + rule + " --input " + input + " --output " + output;
  int rc = std::system(cmd.c_str());
  ASSERT_TRUE(WIFEXITED(rc) && WEXITSTATUS(rc) == 0) << cmd;
  std::ifstream in(output);
  std::string line;
  std::vector<std::string> lines;
  while (std::getline(in, line)) lines.push_back(line);
  ASSERT_EQ(lines.size(), 41u);
  EXPECT_EQ(lines[0], "timestamp,value,anomaly_score,firing");
  for (size_t i = 1; i < lines.size(); ++i) EXPECT_EQ(lines[i].back(), i == 31 ? '1' : '0') << lines[i];
  EXPECT_EQ(lines[31].rfind("2024-03-01 10:30:00,60,0.9", 0), 0u) << lines[31];

  rc = std::system((vigil + " replay --rules " + rule + " --input " + dir.path("missing.csv") + " 2>/dev/null").c_str());
  EXPECT_TRUE(WIFEXITED(rc) && WEXITSTATUS(rc) == 1);
}
