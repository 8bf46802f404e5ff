// Loading rule files: every mistake is an error naming the file and line; the sandbox holds.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <lua.hpp>

#include "rules/runtime/engine.h"
#include "rules/runtime/field_names.h"

using namespace vigil;
using namespace vigil::rules;
namespace fs = std::filesystem;

namespace {

class RuleDir {
 public:
  RuleDir() {
    static int n = 0;
    dir_ = fs::temp_directory_path() / ("vigil-load-" + std::to_string(getpid()) + "-" + std::to_string(n++));
    fs::create_directories(dir_);
  }
  ~RuleDir() { fs::remove_all(dir_); }
  std::string write(const std::string& name, const std::string& text) {
    std::string path = (dir_ / name).string();
    std::ofstream(path, std::ios::binary) << text;
    return path;
  }

 private:
  fs::path dir_;
};

EngineOptions options() {
  EngineOptions o;
  o.channels = std::set<std::string>{"oncall", "default"};
  o.memory_limit_bytes = 4u << 20;
  o.instruction_limit = 200'000;
  return o;
}

// Loads one file and returns the error message, or "" when it loaded.
std::string load_error(const std::string& path, EngineOptions o = options()) {
  auto engine = RuleEngine::load({path}, o, nullptr);
  return engine.ok() ? "" : engine.error().message;
}

const char* kGoodRule = R"lua(
rule {
  name = "good",
  metric = "vigil_drop_packets_total",
  detect = baseline.zscore { window = "2m", threshold = 4 },
  on_anomaly = function(a) notify("oncall", a) end,
}
)lua";

// A rule whose line 3 is replaced by `field`.
std::string rule_with(const std::string& field) {
  return "-- line 1\nrule {\n  " + field +
         ",\n  name = \"pod-drop-surge\",\n  metric = \"vigil_drop_packets_total\",\n"
         "  detect = baseline.zscore { window = \"2m\", threshold = 4 },\n}\n";
}

}  // namespace

// What `vigil rules check` suggests for a series name no series has.
TEST(RulesLoad, ClosestNameForAMisspeltSeries) {
  const std::vector<std::string_view> known = {"vigil_drop_packets_total", "vigil_drop_bytes_total",
                                               "vigil_tcp_resets_total", "vigil_tcp_retransmits_total", "vigil_pods"};
  EXPECT_EQ(closest_name("vigil_drop_packet_total", known), "vigil_drop_packets_total");  // one edit
  EXPECT_EQ(closest_name("vigil_tcp_retransmits", known), "vigil_tcp_retransmits_total");  // the same words
  EXPECT_EQ(closest_name("tcp_resets_total", known), "vigil_tcp_resets_total");
  EXPECT_EQ(closest_name("vigil_drops_total", known), "vigil_drop_bytes_total");  // "drops" ~ "drop", fewest edits
  EXPECT_EQ(closest_name("vigil_queue_depth", known), "");  // nothing like it
  EXPECT_EQ(closest_name("vigil_total", known), "");
}

TEST(RulesLoad, GoodFileLoads) {
  RuleDir dir;
  auto engine = RuleEngine::load({dir.write("good.lua", kGoodRule)}, options(), nullptr);
  ASSERT_TRUE(engine.ok()) << engine.error().message;
  auto st = (*engine)->status();
  ASSERT_EQ(st.size(), 1u);
  EXPECT_EQ(st[0].rule, "good");
  EXPECT_EQ(st[0].file, dir.write("good.lua", kGoodRule));
}

TEST(RulesLoad, SyntaxError) {
  RuleDir dir;
  std::string path = dir.write("syntax.lua", "rule {\n  name = \"x\"\n  metric = \"m\",\n}\n");
  std::string e = load_error(path);
  EXPECT_EQ(e.rfind(path + ":3:", 0), 0u) << e;
  EXPECT_NE(e.find("'}' expected"), std::string::npos) << e;
}

TEST(RulesLoad, RuleFieldErrorsNameFileLineRuleAndField) {
  RuleDir dir;
  std::string path = dir.write("x.lua", rule_with("thresold = 4"));
  std::string e = load_error(path);
  EXPECT_EQ(e.rfind(path + ":2: rule 'pod-drop-surge': unknown field 'thresold'", 0), 0u) << e;

  path = dir.write("for.lua", rule_with("[\"for\"] = \"30s\""));
  EXPECT_EQ(load_error(path), path + ":2: rule 'pod-drop-surge': unknown field 'for' (use 'pending': `for` is a Lua keyword)");

  path = dir.write("duration.lua", rule_with("pending = \"5 minutes\""));
  EXPECT_EQ(load_error(path), path + ":2: rule 'pod-drop-surge': field 'pending': bad duration '5 minutes' "
                                     "(use e.g. 500ms, 20s, 2m, 1h30m or a number of seconds)");

  path = dir.write("severity.lua", rule_with("severity = \"high\""));
  EXPECT_EQ(load_error(path), path + ":2: rule 'pod-drop-surge': field 'severity' must be info, warning or critical (got 'high')");

  path = dir.write("type.lua", rule_with("on_anomaly = \"notify\""));
  EXPECT_EQ(load_error(path), path + ":2: rule 'pod-drop-surge': field 'on_anomaly' must be a function (got string)");

  path = dir.write("where.lua", rule_with("where = { direction = 3 }"));
  EXPECT_NE(load_error(path).find(":2: rule 'pod-drop-surge': field 'where': label 'direction' must be a string"),
            std::string::npos);

  path = dir.write("by.lua", rule_with("by = \"pod\""));
  EXPECT_EQ(load_error(path), path + ":2: rule 'pod-drop-surge': field 'by' must be a list of label names (got string)");
}

TEST(RulesLoad, MissingFieldsAndDetectorParameters) {
  RuleDir dir;
  std::string path = dir.write("noname.lua", "rule { metric = \"m\" }\n");
  EXPECT_EQ(load_error(path), path + ":1: rule: missing required field 'name'");
  path = dir.write("nometric.lua", "\n\nrule { name = \"r\", detect = threshold { above = 1 } }\n");
  EXPECT_EQ(load_error(path), path + ":3: rule 'r': missing required field 'metric' (a Prometheus metric name)");
  path = dir.write("nodetect.lua", "rule { name = \"r\", metric = \"m\" }\n");
  EXPECT_NE(load_error(path).find(":1: rule 'r': missing required field 'detect'"), std::string::npos);
  path = dir.write("param.lua",
                   "rule {\n  name = \"r\", metric = \"m\",\n  detect = baseline.zscore { window = \"2m\", thresold = 4 },\n}\n");
  // A detector's parameters are named at the detector's line.
  EXPECT_EQ(load_error(path), path + ":3: rule 'r': baseline.zscore: unknown field 'thresold' (did you mean 'threshold'?)");
  path = dir.write("window.lua", "rule { name = \"r\", metric = \"m\", detect = baseline.zscore { window = \"2 m\", threshold = 4 } }");
  EXPECT_NE(load_error(path).find("rule 'r': baseline.zscore: field 'window': bad duration '2 m'"), std::string::npos);
  path = dir.write("notable.lua", "rule \"r\"\n");
  EXPECT_NE(load_error(path).find(":1: rule expects a table"), std::string::npos);
}

TEST(RulesLoad, DuplicateRuleNames) {
  RuleDir dir;
  std::string a = dir.write("a.lua", kGoodRule);
  std::string b = dir.write("b.lua", std::string("\n") + kGoodRule);
  auto engine = RuleEngine::load({a, b}, options(), nullptr);
  ASSERT_FALSE(engine.ok());
  EXPECT_EQ(engine.error().message, b + ":3: rule 'good' is already defined at " + a + ":2");
  std::string twice = dir.write("twice.lua", std::string(kGoodRule) + kGoodRule);
  EXPECT_EQ(load_error(twice), twice + ":9: rule 'good' is already defined at " + twice + ":2");
}

TEST(RulesLoad, UnknownNotifierChannel) {
  RuleDir dir;
  std::string path = dir.write("channel.lua", R"lua(-- notify("ignored-in-comment", a)
--[[ notify("ignored", a) ]]
local text = 'notify("ignored-in-string", a)'
local ch = "computed"
rule {
  name = "r", metric = "m",
  detect = threshold { above = 1 },
  on_anomaly = function(a)
    notify(ch, a)
    notify("default", a)
    notify "oncall"
    notify(
      'oncal', a)
  end,
}
)lua");
  EXPECT_EQ(load_error(path), path + ":13: unknown notifier channel 'oncal' (configured: default, oncall)");
  auto o = options();
  o.channels.reset();  // no notifier list: nothing to check against
  EXPECT_EQ(load_error(path, o), "");
}

TEST(RulesLoad, TopLevelRuntimeErrors) {
  RuleDir dir;
  std::string path = dir.write("os.lua", "os.execute(\"x\")\n");
  EXPECT_EQ(load_error(path), path + ":1: attempt to index a nil value (global 'os')");
  path = dir.write("notify.lua", "\nnotify(\"default\", {})\n");
  EXPECT_EQ(load_error(path), path + ":2: notify: can only be called from on_anomaly or on_resolve");
  // Errors Lua gives no position of its own get the line that raised them (the rules fuzz
  // target found error({...}) at the top level loading with "(error object is a table value)").
  path = dir.write("table.lua", "\nerror({ name = 'x' })\n");
  EXPECT_EQ(load_error(path), path + ":2: (error object is a table value)");
  path = dir.write("level0.lua", "error('no position', 0)\n");
  EXPECT_EQ(load_error(path), path + ":1: no position");
  path = dir.write("assert.lua", "local x = 1\n\nassert(x == 2, 'x must be 2')\n");
  EXPECT_EQ(load_error(path), path + ":3: x must be 2");
  path = dir.write("missing.lua", "");
  fs::remove(path);
  EXPECT_EQ(load_error(path), path + ": cannot read rule file: No such file or directory");
}

TEST(RulesSandbox, DangerousGlobalsAreAbsent) {
  RuleDir dir;
  std::string path = dir.write("globals.lua", R"lua(
for _, name in ipairs { "io", "os", "debug", "package", "load", "loadfile", "dofile",
                        "coroutine", "loadstring", "warn" } do
  assert(_G[name] == nil, name .. " is reachable")
end
assert(string.dump == nil, "string.dump is reachable")
assert(not pcall(require, "os"), "require reaches beyond Vigil's modules")
assert(type(collectgarbage("count")) == "number")
assert(not pcall(collectgarbage), "collectgarbage() may only count")
assert(not pcall(collectgarbage, "stop"), "collectgarbage('stop')")
assert(not pcall(setmetatable, {}, { __gc = function() end }), "__gc finalizers run outside the budget")
assert(not pcall(function() baseline.zscore = nil end), "baseline is read-only")
assert(getmetatable(baseline) == "read-only")
assert(tostring(threshold { above = 1 }) == "detector: threshold")
assert(getmetatable(threshold { above = 1 }) == "detector")
shared_global = 1
print("sandbox ok", 1, nil)
)lua");
  EXPECT_EQ(load_error(path), "");
  // Each file has its own state: another file does not see the first one's globals.
  std::string other = dir.write("other.lua", "assert(shared_global == nil, 'globals leak between files')\n");
  auto engine = RuleEngine::load({path, other}, options(), nullptr);
  EXPECT_TRUE(engine.ok()) << engine.error().message;
}

TEST(RulesSandbox, BinaryChunksAreRefused) {
  lua_State* L = luaL_newstate();
  ASSERT_EQ(luaL_loadstring(L, "rule { name = 'x' }"), LUA_OK);
  std::string bytes;
  lua_dump(
      L, [](lua_State*, const void* p, size_t n, void* ud) {
        static_cast<std::string*>(ud)->append(static_cast<const char*>(p), n);
        return 0;
      },
      &bytes, 1);
  lua_close(L);
  RuleDir dir;
  std::string path = dir.write("binary.lua", bytes);
  std::string e = load_error(path);
  EXPECT_EQ(e.rfind(path + ": ", 0), 0u) << e;
  EXPECT_NE(e.find("binary chunk"), std::string::npos) << e;
}

TEST(RulesSandbox, InfiniteLoopIsContainedEvenUnderPcall) {
  RuleDir dir;
  std::string path = dir.write("loop.lua", "local x = 0\nwhile true do x = x + 1 end\n");
  EXPECT_EQ(load_error(path), path + ":2: instruction budget exceeded (200000 instructions per call)");
  path = dir.write("pcall.lua", R"lua(
for i = 1, 100 do
  pcall(function() while true do end end)
  xpcall(function() while true do end end, function() while true do end end)
end
rule { name = "escaped", metric = "m", detect = threshold { above = 1 } }
)lua");
  EXPECT_NE(load_error(path).find("instruction budget exceeded"), std::string::npos);
}

TEST(RulesSandbox, MemoryBombIsContained) {
  RuleDir dir;
  std::string path = dir.write("bomb.lua", "local s = string.rep('x', 1 << 30)\n");
  EXPECT_EQ(load_error(path), path + ": memory limit exceeded (4096 KiB per rule file) while loading");
  path = dir.write("grow.lua", "local t = {}\nfor i = 1, 1e9 do t[i] = string.rep('y', 1000) .. i end\n");
  std::string e = load_error(path);
  EXPECT_TRUE(e.find("memory limit exceeded") != std::string::npos ||
              e.find("instruction budget exceeded") != std::string::npos)
      << e;
}

TEST(RulesSandbox, LibraryLoopsThatDoNotAllocateAreBounded) {
  // The instruction hook cannot see loops inside C functions; these would otherwise spin for days.
  RuleDir dir;
  std::string path = dir.write("cloops.lua", R"lua(
assert(string.rep("", 1e15) == "")
assert(("ab"):rep(3, ",") == "ab,ab,ab")
local ok, err = pcall(table.move, {}, 1, 1e15, 2)
assert(not ok and err:find("more than"), err)
assert(table.move({1, 2, 3}, 1, 3, 2)[3] == 2)
)lua");
  EXPECT_EQ(load_error(path), "");
}
