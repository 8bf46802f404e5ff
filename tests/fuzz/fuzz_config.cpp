// The agent's config file (engine/config.cpp, parse_config): YAML from the operator. Never
// throws, and every error names the file. Paths it names resolve under a directory that does
// not exist, so rule globs match nothing and nothing on this machine is read by accident.
#include "engine/config.h"
#include "tests/fuzz/fuzz_check.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace vigil::fuzz;
  auto config = vigil::parse_config(text_of(data, size), "fuzz-config.yaml", "/nonexistent/vigil-fuzz");
  if (!config) check_error(config.error().message, "fuzz-config.yaml", "parse_config");
  return 0;
}
