// The rules' saved state (rules/runtime/state_store.cpp): a file the agent wrote, but one that a
// crash, a full disk or an older version may have left in any shape. decode_state never
// throws, and what it accepts survives being written again: encode(decode(x)) decodes to the
// same encoding, so a restart loses nothing that the state held. An input that starts with 'W'
// is a payload the target wraps in a valid header (magic, version, length, checksum), so that
// mutations reach the payload's decoder instead of stopping at the checksum.
#include "rules/runtime/state_store.h"
#include "tests/fuzz/fuzz_check.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace vigil::fuzz;
  namespace rules = vigil::rules;
  std::string bytes = text_of(data, size);
  if (!bytes.empty() && bytes[0] == 'W') {
    // The header of an empty state, less its length and checksum: magic and version.
    static const std::string prefix = [] {
      const std::string empty = rules::encode_state({});
      return empty.substr(0, empty.size() - 12 - 16);
    }();
    const std::string payload = bytes.substr(1);
    const uint64_t length = payload.size(), sum = rules::fnv1a64(payload);
    bytes = prefix;
    bytes.append(reinterpret_cast<const char*>(&length), 8);
    bytes.append(reinterpret_cast<const char*>(&sum), 8);
    bytes += payload;
  }
  auto state = rules::decode_state(bytes);
  if (!state) {
    check_error(state.error().message, "", "decode_state");
    return 0;
  }
  const std::string once = rules::encode_state(*state);
  auto again = rules::decode_state(once);
  check(again.ok(), "decode_state refused what encode_state wrote: " + (again ? std::string() : again.error().message));
  check(rules::encode_state(*again) == once, "the state changed when written and read again");
  return 0;
}
