// The notification outbox's records (actions/outbox.cpp, message_from_json): JSON files the
// agent wrote and reads back after a restart, in whatever state a crash left them. Never
// throws; a message it accepts is written back the same way (to_json(from_json(x)) is stable),
// so a notification that waits across restarts is delivered as it was queued.
#include <nlohmann/json.hpp>

#include "actions/notifier_impl.h"
#include "tests/fuzz/fuzz_check.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace vigil::fuzz;
  namespace actions = vigil::actions;
  const nlohmann::json j = nlohmann::json::parse(text_of(data, size), nullptr, false);
  if (j.is_discarded()) return 0;
  auto m = actions::message_from_json(j);
  if (!m) {
    check_error(m.error().message, "", "message_from_json");
    return 0;
  }
  const nlohmann::json once = actions::message_to_json(*m);
  auto again = actions::message_from_json(once);
  check(again.ok(), "message_from_json refused what message_to_json wrote: " + (again ? std::string() : again.error().message));
  check(actions::message_to_json(*again) == once, "the message changed when written and read again");
  return 0;
}
