// The pods file (engine/pods.cpp, parse_pods): YAML written by hand or by a script. Never
// throws, every error names the file, and every pod it accepts has a name and a way to find
// its interface (a network namespace or an address).
#include "engine/pods.h"
#include "tests/fuzz/fuzz_check.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace vigil::fuzz;
  auto pods = vigil::parse_pods(text_of(data, size), "fuzz-pods.yaml");
  if (!pods) {
    check_error(pods.error().message, "fuzz-pods.yaml", "parse_pods");
    return 0;
  }
  for (const auto& pod : *pods) {
    check(!pod.name.empty(), "parse_pods accepted a pod without a name");
    check(!pod.netns.empty() || !pod.ip.empty(), "parse_pods accepted " + pod.key() + " with neither netns nor ip");
  }
  return 0;
}
