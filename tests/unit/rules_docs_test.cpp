// Every Lua example in docs/rules.md loads in the real engine: a whole rule file as it is, a
// fragment (`detect = ...`, `on_anomaly = ...`) inside a minimal rule. A documented example
// that the engine refuses fails here with the line of the docs where it starts.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "rules/runtime/engine.h"

namespace vigil::rules {
namespace {

namespace fs = std::filesystem;

struct Example {
  int line;  // of the docs, where the code starts
  std::string code;
};

std::vector<Example> lua_examples(const std::string& path) {
  std::ifstream in(path);
  std::vector<Example> out;
  std::string line;
  int n = 0;
  bool inside = false;
  while (std::getline(in, line)) {
    ++n;
    if (!inside && line.rfind("```lua", 0) == 0) {
      inside = true;
      out.push_back({n + 1, ""});
    } else if (inside && line.rfind("```", 0) == 0) {
      inside = false;
    } else if (inside) {
      out.back().code += line + "\n";
    }
  }
  return out;
}

class NullSink : public ActionSink {
 public:
  void notify(const std::string&, const Anomaly&) override {}
};

TEST(RulesDocs, EveryLuaExampleLoads) {
  const std::string docs = std::string(VIGIL_SOURCE_DIR) + "/docs/rules.md";
  const auto examples = lua_examples(docs);
  ASSERT_GE(examples.size(), 10u) << "no examples found in " << docs;
  const fs::path dir = fs::temp_directory_path() / ("vigil-docs-" + std::to_string(getpid()));
  fs::create_directories(dir);
  EngineOptions o;
  o.node = "node-a";
  o.channels = std::set<std::string>{"default", "oncall", "slack", "pagerduty", "alertmanager", "webhook"};
  o.memory_limit_bytes = 4u << 20;
  o.instruction_limit = 200'000;
  int whole = 0, fragments = 0;
  for (size_t i = 0; i < examples.size(); ++i) {
    const Example& e = examples[i];
    std::string code = e.code;
    const bool is_rule_file = code.find("rule {") != std::string::npos || code.find("rule{") != std::string::npos;
    if (!is_rule_file) {
      // A fragment of a rule's table: completed with what every rule needs.
      std::string body = code;
      while (!body.empty() && (body.back() == '\n' || body.back() == ' ')) body.pop_back();
      if (!body.empty() && body.back() != ',') body += ",";
      code = "rule {\n  name = \"docs-example-" + std::to_string(e.line) + "\",\n"
             "  metric = \"vigil_drop_packets_total\",\n  by = { \"namespace\", \"pod\" },\n" +
             (body.find("detect") == std::string::npos ? "  detect = threshold { above = 1 },\n" : "") + body + "\n}\n";
      ++fragments;
    } else {
      ++whole;
    }
    const std::string path = (dir / ("example-" + std::to_string(e.line) + ".lua")).string();
    std::ofstream(path) << code;
    NullSink sink;
    auto loaded = RuleEngine::load({path}, o, &sink);
    EXPECT_TRUE(loaded.ok()) << "docs/rules.md:" << e.line << ": the example does not load: "
                             << (loaded.ok() ? "" : loaded.error().message) << "\n" << code;
  }
  fs::remove_all(dir);
  EXPECT_GE(whole, 3);
  EXPECT_GE(fragments, 5);
}

}  // namespace
}  // namespace vigil::rules
