// The /proc/net statistics files the netstat family reads in each pod's namespace
// (engine/netns_stats.h): whatever a kernel (or a mangled file) puts there is parsed or refused
// with the file and line named, never thrown on. The first byte picks the parser: 0 snmp and
// netstat (header and value line pairs), 1 snmp6 (name value lines), 2 sockstat.
#include <string>

#include "engine/netns_stats.h"
#include "tests/fuzz/fuzz_check.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace vigil::fuzz;
  if (size == 0) return 0;
  const int kind = data[0] % 3;
  const std::string text = text_of(data + 1, size - 1);
  const std::string origin = "/proc/net/fuzzed";
  auto parsed = kind == 0   ? vigil::parse_mib_pairs(text, origin)
                : kind == 1 ? vigil::parse_mib_snmp6(text, origin)
                            : vigil::parse_sockstat(text, origin);
  if (!parsed) {
    check_error(parsed.error().message, origin + ":", "procnet parser");
    return 0;
  }
  size_t words = 0;
  bool in_word = false;
  for (char c : text) {
    const bool space = c == ' ' || c == '\t' || c == '\n';
    if (!space && !in_word) ++words;
    in_word = !space;
  }
  check(parsed->size() <= words, "more counters than words in the file");
  for (const auto& c : *parsed) {
    check(!c.group.empty() && !c.name.empty(), "a counter without a group or a name");
    for (const std::string* s : {&c.group, &c.name})
      check(s->find_first_of(" \t\n") == std::string::npos, "whitespace inside a name: '" + *s + "'");
  }
  return 0;
}
