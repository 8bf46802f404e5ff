// Custom detectors written in Lua:
//   local spike = detector { name = "spike", init = function(params) ... end,
//                            update = function(state, value, t, params) ... end }
//   rule { ..., detect = spike { factor = 3 } }
// Each group's state is a Lua table in the rule file's state (a registry reference, released
// when the group is dropped). update() runs once per tick per group under the file's memory
// limit; the update() calls of one rule in one tick share one instruction budget. Failures are
// kept here for the engine, which reports them as the rule's errors (take_error()).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "rules/runtime/detectors.h"
#include "rules/runtime/lua_sandbox.h"

struct lua_State;

namespace vigil::rules {

// What `detector { ... }` declared, as read from its definition table.
struct LuaDetectorDef {
  std::string name;
  int init_ref = -2;    // LUA_NOREF: no init, the state starts as an empty table
  int update_ref = -2;
  std::string location;         // "file:line" of the detector{} call
  std::string update_location;  // "file:line" where update is defined
};

class LuaDetector : public Detector, public std::enable_shared_from_this<LuaDetector> {
 public:
  // Takes the references of `def` and makes a parameter table from `params`.
  LuaDetector(lua_State* L, LuaDetectorDef def, Params params);
  ~LuaDetector() override;

  const char* name() const override { return def_.name.c_str(); }
  std::unique_ptr<DetectorState> new_state() const override;
  const char* default_summary() const override {
    return "{metric} for {scope} is {value}{unit}, expected {baseline}{unit} (score {score})";
  }
  std::string describe() const override { return describe_; }

  struct Failure {
    LuaSandbox::CallError error;  // the first of the tick
    uint64_t calls = 0;           // failed calls since the last take_error()
  };
  // The failures since the last call, for the engine to count as the rule's errors.
  std::optional<Failure> take_error() const;
  // Whether update() ran without failing since the last take_error().
  bool ran() const { return ran_; }

 // Shared with the detector's states (lua_detector.cpp).
  std::shared_ptr<LuaSandbox* const> sandbox_;
  LuaDetectorDef def_;
  Params params_;
  int params_ref_ = -2;
  std::string describe_;
  // The tick being evaluated (its time) and the instructions its calls have used.
  mutable std::optional<double> tick_;
  mutable uint64_t spent_ = 0;
  mutable std::optional<Failure> failure_;
  mutable bool ran_ = false;
};

// The largest state table save() persists: flat (string or number keys; number, string or
// boolean values), at most this many entries and this many bytes of strings.
inline constexpr size_t kMaxSavedEntries = 256;
inline constexpr size_t kMaxSavedStringBytes = 16384;

}  // namespace vigil::rules
