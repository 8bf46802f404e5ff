// Custom detectors written in Lua (detector { name, init, update }) and require("vigil.stats").
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>

#include "rules_engine_support.h"

namespace vigil::rules::testing {
namespace {

// Anomalous when the value is more than `factor` times the last normal value of its group.
const std::string kSpike = R"lua(local spike = detector {
  name = "spike",
  init = function(params) return { n = 0 } end,
  update = function(state, value, t, params)
    local last = state.last
    local anomalous = last ~= nil and value > params.factor * last
    if not anomalous then state.last = value end
    state.n = state.n + 1
    return { anomalous = anomalous, score = last and value / last or 0, baseline = last or value,
             band_low = 0, band_high = (last or value) * params.factor }
  end,
}
)lua";

std::string spike_rule(const std::string& extra = "") {
  return kSpike + R"lua(rule {
  name = "spiky",
  metric = "m",
  detect = spike { factor = 3 },
  resolve_after = "0s",
  on_anomaly = function(a) notify("default", a) end,
)lua" + extra + "}\n";
}

void tick(RuleEngine& e, int t, std::vector<Sample> samples) { e.tick(TickInput{T0 + t, std::move(samples), {}}); }

TEST(CustomDetector, FiresAndResolvesWithItsVerdict) {
  RuleDir dir;
  RecordingSink sink;
  auto engine = load({dir.write("spike.lua", spike_rule())}, &sink);
  ASSERT_TRUE(engine);
  int t = 0;
  for (; t < 5; ++t) tick(*engine, t, {gauge("m", "a", 10)});
  EXPECT_TRUE(sink.sent.empty());
  tick(*engine, t++, {gauge("m", "a", 100)});
  auto fired = sink.with(AnomalyStatus::Firing);
  ASSERT_EQ(fired.size(), 1u);
  EXPECT_EQ(fired[0].detector, "spike");
  EXPECT_EQ(fired[0].detector_params, "factor=3");
  EXPECT_DOUBLE_EQ(fired[0].value, 100);
  EXPECT_DOUBLE_EQ(fired[0].score, 10);
  EXPECT_DOUBLE_EQ(fired[0].baseline, 10);
  EXPECT_DOUBLE_EQ(fired[0].band_low, 0);
  EXPECT_DOUBLE_EQ(fired[0].band_high, 30);
  EXPECT_NE(fired[0].summary.find("expected 10"), std::string::npos) << fired[0].summary;
  tick(*engine, t++, {gauge("m", "a", 11)});
  EXPECT_EQ(sink.with(AnomalyStatus::Resolved).size(), 1u);
  EXPECT_TRUE(status_of(*engine, "spiky").errors.empty()) << status_of(*engine, "spiky").last_error;
}

TEST(CustomDetector, EachGroupHasItsOwnState) {
  RuleDir dir;
  RecordingSink sink;
  auto engine = load({dir.write("spike.lua", spike_rule())}, &sink);
  ASSERT_TRUE(engine);
  int t = 0;
  for (; t < 3; ++t) tick(*engine, t, {gauge("m", "a", 10), gauge("m", "b", 1000)});
  // 50 is a spike for a (last 10), not for b (last 1000); b's 1000 is not one for a's state.
  tick(*engine, t++, {gauge("m", "a", 50), gauge("m", "b", 1000)});
  auto fired = sink.with(AnomalyStatus::Firing);
  ASSERT_EQ(fired.size(), 1u);
  EXPECT_EQ(*find_label(fired[0].scope, "pod"), "a");
  tick(*engine, t++, {gauge("m", "a", 10), gauge("m", "b", 4000)});
  fired = sink.with(AnomalyStatus::Firing);
  ASSERT_EQ(fired.size(), 2u);
  EXPECT_EQ(*find_label(fired[1].scope, "pod"), "b");
}

// A group that goes away (its series unseen for 5 minutes) takes its state table with it: the
// file's Lua state shrinks back once the groups are forgotten, however many there were.
TEST(CustomDetector, ForgottenGroupsGiveTheirLuaMemoryBack) {
  RuleDir dir;
  RecordingSink sink;
  auto engine = load({dir.write("fat.lua", R"lua(local fat = detector {
  name = "fat",
  init = function(params)
    local history = {}
    for i = 1, 256 do history[i] = i * 0.5 end
    return { history = history, n = 0 }
  end,
  update = function(state, value, t, params)
    state.n = state.n + 1
    state.history[state.n % 256 + 1] = value
    return { anomalous = false, score = 0 }
  end,
}
rule { name = "fat", metric = "m", detect = fat {} }
)lua")}, &sink);
  ASSERT_TRUE(engine);
  for (int t = 0; t < 3; ++t) tick(*engine, t, {gauge("m", "keep", 1)});
  const size_t before = engine->lua_memory_bytes();
  std::vector<Sample> many{gauge("m", "keep", 1)};
  // 100 new groups in one tick: their init() calls fit in the rule's instruction budget.
  for (int i = 0; i < 100; ++i) many.push_back(gauge("m", "pod-" + std::to_string(i), i));
  for (int t = 3; t < 6; ++t) tick(*engine, t, many);
  const size_t peak = engine->lua_memory_bytes();
  EXPECT_GT(peak, before + 100 * 2048) << "each group's table holds 256 numbers";
  EXPECT_FALSE(engine->status()[0].disabled) << engine->status()[0].last_error;
  // Only "keep" from now on. A series is kept 300 s after its last sample (a scrape may miss
  // it), and its group 300 s after that: the 100 are gone by t = 620.
  for (int t = 6; t < 640; t += 10) tick(*engine, t, {gauge("m", "keep", 1)});
  const size_t after = engine->lua_memory_bytes();
  EXPECT_LT(after, before + 64 * 1024) << "before " << before << ", peak " << peak << ", after " << after;
  EXPECT_EQ(engine->status()[0].groups, 1u);
}

TEST(CustomDetector, StatePersistsAcrossARestartWhenFlat) {
  RuleDir dir;
  // Anomalous from its 5th sample: the count must survive the restart.
  const std::string text = R"lua(local count = detector {
  name = "count",
  update = function(state, value, t, params)
    state.n = (state.n or 0) + 1
    state.tag = "x"
    state.seen = true
    return { anomalous = state.n >= params.at, score = state.n }
  end,
}
rule { name = "counting", metric = "m", detect = count { at = 5 }, on_anomaly = function(a) notify("default", a) end }
)lua";
  const std::string path = dir.write("count.lua", text);
  std::string saved;
  {
    RecordingSink sink;
    auto engine = load({path}, &sink);
    ASSERT_TRUE(engine);
    for (int t = 0; t < 3; ++t) tick(*engine, t, {gauge("m", "a", 1)});
    saved = engine->snapshot_state();
  }
  RecordingSink sink;
  auto engine = load({path}, &sink);
  ASSERT_TRUE(engine);
  EXPECT_EQ(engine->restore_snapshot(saved, "test").groups, 1u);
  tick(*engine, 10, {gauge("m", "a", 1)});
  EXPECT_TRUE(sink.sent.empty());
  tick(*engine, 11, {gauge("m", "a", 1)});
  auto fired = sink.with(AnomalyStatus::Firing);
  ASSERT_EQ(fired.size(), 1u);
  EXPECT_DOUBLE_EQ(fired[0].score, 5);
}

TEST(CustomDetector, NestedStateRestartsWithWarmUp) {
  RuleDir dir;
  const std::string path = dir.write("nested.lua", R"lua(local count = detector {
  name = "count",
  init = function() return { n = 0, inner = {} } end,
  update = function(state, value)
    state.n = state.n + 1
    return { anomalous = state.n >= 3 }
  end,
}
rule { name = "nested", metric = "m", detect = count {}, on_anomaly = function(a) notify("default", a) end }
)lua");
  std::string saved;
  {
    auto engine = load({path}, nullptr);
    ASSERT_TRUE(engine);
    for (int t = 0; t < 2; ++t) tick(*engine, t, {gauge("m", "a", 1)});
    saved = engine->snapshot_state();
  }
  RecordingSink sink;
  auto engine = load({path}, &sink);
  ASSERT_TRUE(engine);
  engine->restore_snapshot(saved, "test");
  tick(*engine, 10, {gauge("m", "a", 1)});
  EXPECT_TRUE(sink.sent.empty()) << "a table state was restored";
  tick(*engine, 11, {gauge("m", "a", 1)});
  tick(*engine, 12, {gauge("m", "a", 1)});
  EXPECT_EQ(sink.with(AnomalyStatus::Firing).size(), 1u);
}

TEST(CustomDetector, ErrorsAreRuleErrorsWithFileAndLineAndQuarantine) {
  RuleDir dir;
  RecordingSink sink;
  const std::string path = dir.write("err.lua", R"lua(local bad = detector {
  name = "bad",
  update = function(state, value)
    if value > 5 then
      error("too big: " .. value)
    end
    return { anomalous = false }
  end,
}
rule { name = "bad", metric = "m", detect = bad {} }
rule { name = "good", metric = "m", detect = threshold { above = 5 }, resolve_after = "0s",
       on_anomaly = function(a) notify("default", a) end }
)lua");
  auto engine = load({path}, &sink);
  ASSERT_TRUE(engine);
  tick(*engine, 0, {gauge("m", "a", 1), gauge("m", "b", 1)});
  tick(*engine, 1, {gauge("m", "a", 1), gauge("m", "b", 1)});
  EXPECT_TRUE(status_of(*engine, "bad").errors.empty());
  for (int t = 2; t < 6; ++t) tick(*engine, t, {gauge("m", "a", t % 2 ? 1 : 10), gauge("m", "b", 10)});
  RuleStatus st = status_of(*engine, "bad");
  EXPECT_EQ(st.errors["runtime"], 3u);  // one per tick, not per group
  EXPECT_TRUE(st.disabled);
  EXPECT_EQ(st.last_error.rfind(path + ":5: too big: 10", 0), 0u) << st.last_error;
  EXPECT_TRUE(status_of(*engine, "good").errors.empty());
  EXPECT_GE(sink.with(AnomalyStatus::Firing).size(), 2u);
}

TEST(CustomDetector, BadResultsAreRuntimeErrors) {
  RuleDir dir;
  const std::string path = dir.write("result.lua", R"lua(local bad = detector {
  name = "bad",
  update = function(state, value)
    return { anomalous = "yes" }
  end,
}
rule { name = "bad", metric = "m", detect = bad {} }
)lua");
  auto engine = load({path}, nullptr);
  ASSERT_TRUE(engine);
  for (int t = 0; t < 3; ++t) tick(*engine, t, {gauge("m", "a", 1)});
  RuleStatus st = status_of(*engine, "bad");
  EXPECT_EQ(st.errors["runtime"], 3u);
  EXPECT_EQ(st.last_error, path + ":3: detector 'bad': field 'anomalous' must be a boolean (got string)");
}

TEST(CustomDetector, BudgetExhaustionInsideUpdateIsContained) {
  RuleDir dir;
  RecordingSink sink;
  const std::string path = dir.write("loop.lua", R"lua(local loop = detector {
  name = "loop",
  init = function() return {} end,
  update = function(state, value)
    while true do
      pcall(function() end)
    end
  end,
}
rule { name = "loop", metric = "m", detect = loop {} }
)lua");
  const std::string good = dir.write("good.lua", R"lua(rule { name = "good", metric = "m",
  detect = threshold { above = 5 }, resolve_after = "0s", on_anomaly = function(a) notify("default", a) end }
)lua");
  auto engine = load({path, good}, &sink);
  ASSERT_TRUE(engine);
  std::vector<Sample> many;
  for (int i = 0; i < 50; ++i) many.push_back(gauge("m", "p" + std::to_string(i), 10));
  const auto start = std::chrono::steady_clock::now();
  for (int t = 0; t < 4; ++t) tick(*engine, t, many);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_LT(seconds, 5.0) << "the 50 groups' calls share one budget per tick";
  RuleStatus st = status_of(*engine, "loop");
  EXPECT_EQ(st.errors["budget"], 3u);
  EXPECT_TRUE(st.disabled);
  EXPECT_NE(st.last_error.find("instruction budget exceeded"), std::string::npos) << st.last_error;
  EXPECT_EQ(st.last_error.rfind(path + ":", 0), 0u) << st.last_error;
  EXPECT_EQ(sink.with(AnomalyStatus::Firing).size(), 50u);
}

TEST(CustomDetector, BadDeclarationsAreLoadErrorsWithFileAndLine) {
  RuleDir dir;
  auto error_of = [&](const std::string& text) { return load_error(dir.write("decl.lua", text)); };
  const std::string path = dir.path("decl.lua");
  EXPECT_EQ(error_of("\nlocal d = detector { name = \"d\" }\n"),
            path + ":2: detector 'd': missing required field 'update' (a function(state, value, t, params) returning "
                   "{ anomalous = ..., score = ... })");
  EXPECT_EQ(error_of("local d = detector { name = \"d\", update = 3 }\n"),
            path + ":1: detector 'd': field 'update' must be a function (got number)");
  EXPECT_EQ(error_of("local d = detector { name = \"d\", init = {}, update = function() end }\n"),
            path + ":1: detector 'd': field 'init' must be a function (got table)");
  EXPECT_EQ(error_of("local d = detector { update = function() end }\n"),
            path + ":1: detector: missing required field 'name' (shown as the anomaly's detector)");
  EXPECT_EQ(error_of("local d = detector { name = \"threshold\", update = function() end }\n"),
            path + ":1: detector 'threshold': this is the name of a built-in detector; choose another");
  EXPECT_EQ(error_of("local d = detector { name = \"d\", updat = function() end }\n"),
            path + ":1: detector 'd': unknown field 'updat' (known: name, init, update)");
  EXPECT_EQ(error_of("local d = detector { name = \"d\", update = function() end }\n"
                     "rule { name = \"r\", metric = \"m\",\n  detect = d { window = { 1 } } }\n"),
            path + ":3: rule 'r': d: field 'window' must be a number, string or boolean (got table)");
  EXPECT_EQ(error_of("local d = detector { name = \"d\", update = function() end }\n"
                     "rule { name = \"r\", metric = \"m\", detect = any { d {}, threshold { above = 1 } } }\n"),
            path + ":2: rule 'r': any: entry 1: custom detector 'd' cannot be combined in any { ... }");
  EXPECT_EQ(error_of("local d = detector { name = \"d\", update = function() end }\n"
                     "rule { name = \"r\", metric = \"m\", detect = d \"x\" }\n"),
            path + ":2: d expects a table of parameters: d { ... }");
}

TEST(CustomDetector, InitErrorsAreReported) {
  RuleDir dir;
  const std::string path = dir.write("init.lua", R"lua(local d = detector {
  name = "d",
  init = function(params) return 42 end,
  update = function() return { anomalous = false } end,
}
rule { name = "r", metric = "m", detect = d {} }
)lua");
  auto engine = load({path}, nullptr);
  ASSERT_TRUE(engine);
  tick(*engine, 0, {gauge("m", "a", 1)});
  EXPECT_EQ(status_of(*engine, "r").last_error, path + ":1: detector 'd': init must return a table (got number)");
}

TEST(VigilStats, RequireGivesTheBuiltInModulesOnly) {
  RuleDir dir;
  const std::string path = dir.write("stats.lua", R"lua(local stats = require("vigil.stats")
assert(require("vigil.stats") == stats)
assert(stats.mean({ 1, 2, 3, 6 }) == 3)
assert(stats.mean({}) == nil)
assert(math.abs(stats.stddev({ 2, 4, 4, 4, 5, 5, 7, 9 }) - 2) < 1e-12)
assert(stats.quantile({ 5, 1, 3 }, 0.5) == 3)
assert(stats.quantile({ 1, 2, 3, 4 }, 0.5) == 2.5)
assert(stats.quantile({ 1, 2, 3, 4 }, 1) == 4)
assert(stats.ewma(nil, 10, 0.5) == 10)
assert(stats.ewma(10, 20, 0.5) == 15)
assert(not pcall(stats.mean, { 1, "x" }))
assert(not pcall(stats.quantile, { 1 }, 2))
assert(not pcall(function() stats.mean = nil end), "the module is read-only")
local ok, err = pcall(require, "os")
assert(not ok and err:find("require: only Vigil's built-in modules (vigil.stats) can be required, not 'os'", 1, true), err)
assert(not pcall(require, "vigil/stats"))
assert(not pcall(require, "./stats"))
)lua");
  EXPECT_EQ(load_error(path), "");
  EXPECT_EQ(load_error(dir.write("req.lua", "\nlocal x = require(\"io\")\n")),
            dir.path("req.lua") + ":2: require: only Vigil's built-in modules (vigil.stats) can be required, not 'io'");
}

TEST(VigilStats, UsableFromACustomDetector) {
  RuleDir dir;
  RecordingSink sink;
  const std::string path = dir.write("median.lua", R"lua(local stats = require("vigil.stats")
local median = detector {
  name = "median",
  update = function(state, value, t, params)
    state.window = state.window or {}
    local w = state.window
    local m = #w >= params.n and stats.quantile(w, 0.5) or nil
    local anomalous = m ~= nil and value > 2 * m
    if not anomalous then
      w[#w + 1] = value
      if #w > params.n then table.remove(w, 1) end
    end
    return { anomalous = anomalous, baseline = m or value, score = m and value / m or 0 }
  end,
}
rule { name = "median", metric = "m", detect = median { n = 4 }, on_anomaly = function(a) notify("default", a) end }
)lua");
  auto engine = load({path}, &sink);
  ASSERT_TRUE(engine);
  int t = 0;
  for (double v : {10, 12, 11, 9, 10}) tick(*engine, t++, {gauge("m", "a", v)});
  EXPECT_TRUE(sink.sent.empty());
  tick(*engine, t++, {gauge("m", "a", 50)});
  auto fired = sink.with(AnomalyStatus::Firing);
  ASSERT_EQ(fired.size(), 1u);
  EXPECT_DOUBLE_EQ(fired[0].baseline, 10.5);
}

}  // namespace
}  // namespace vigil::rules::testing
