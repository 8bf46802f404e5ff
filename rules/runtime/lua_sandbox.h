// A sandboxed lua_State for one rule file. Only base, table, string, math and utf8 are
// reachable, through a per-file _ENV built from an allow-list; chunks load as text only;
// memory is capped by the allocator and CPU by an instruction-count hook. Every call from C++
// into Lua goes through call(), which adds a traceback and reports which limit was hit.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

struct lua_State;
struct lua_Debug;

namespace vigil::rules {

class LuaSandbox {
 public:
  struct Limits {
    size_t memory_bytes = 0;    // 0: unlimited
    uint64_t instructions = 0;  // per call; 0: unlimited. Allocations count too (see lua_sandbox.cpp)
  };

  struct CallError {
    enum class Kind { Runtime, Budget, Memory };
    Kind kind = Kind::Runtime;
    std::string message;    // "file:line: what happened" when Lua knows where
    std::string traceback;  // "stack traceback:\n\t..." (empty for memory errors)
  };

  // Lifts the memory limit while engine code (not rule code) builds values in the state.
  // Such code must use raw accesses only, so no rule code runs and no Lua error can
  // long-jump over C++ objects; the limit is restored when the section ends.
  class EngineSection {
   public:
    explicit EngineSection(lua_State* L);
    ~EngineSection();
    EngineSection(const EngineSection&) = delete;
    EngineSection& operator=(const EngineSection&) = delete;

   private:
    LuaSandbox& sandbox_;
    bool saved_;
  };

  static std::unique_ptr<LuaSandbox> create(std::string name, Limits limits);
  ~LuaSandbox();
  LuaSandbox(const LuaSandbox&) = delete;
  LuaSandbox& operator=(const LuaSandbox&) = delete;

  static LuaSandbox& from(lua_State* L);
  lua_State* state() const { return L_; }
  const std::string& name() const { return name_; }
  size_t memory_used() const { return used_; }
  // A full garbage collection (finalizers cannot run: setmetatable refuses __gc).
  void collect_garbage();
  const Limits& limits() const { return limits_; }
  // What is left of the current call's instruction budget (HUGE_VAL when unlimited).
  double instructions_left() const;
  // Charges work done in C (counted in instructions) to the current call; once the budget is
  // spent the next instruction raises.
  void charge_instructions(uint64_t work);

  // Pushes the file's global table (its _ENV) so the engine can add its API to it.
  void push_env();

  // Compiles `source` (text only, binary chunks are refused) and runs its top level with the
  // limits. Lua cuts source names longer than LUA_IDSIZE (60) to "...tail", so the chunk is
  // named by the file's base name and located() puts the full path back in what Lua reports.
  std::optional<CallError> run(std::string_view source, const std::string& path);

  // `text` (a message, a traceback or a "file:line") with the chunk's short name, wherever
  // Lua wrote it as a position, replaced by the full path given to run().
  std::string located(std::string text) const;

  // Calls the function below `nargs` arguments on the stack, with the limits; pops them all.
  // On success its first `nresults` results are left on the stack (the caller pops them).
  std::optional<CallError> call(int nargs, int nresults = 0);

  // The same, but the call draws on a budget shared by several calls (a custom detector's
  // update() of every group in one tick): `*spent` instructions are already used and is
  // advanced by what this call used, at least kSharedCallCost. When nothing is left, the
  // function is not called and the error is a budget error.
  static constexpr uint64_t kSharedCallCost = 64;
  std::optional<CallError> call_shared(int nargs, int nresults, uint64_t* spent);

  // Valid while the sandbox lives: *handle() becomes null when it is destroyed, so values
  // that keep registry references (custom detector states) can tell whether to release them.
  std::shared_ptr<LuaSandbox* const> handle() const { return handle_; }

 private:
  LuaSandbox(std::string name, Limits limits);
  void build_env();
  CallError error_from_stack(int status);
  std::optional<CallError> call_with(int nargs, int nresults, uint64_t already_spent, uint64_t max_period);

  static void* allocate(void* ud, void* ptr, size_t osize, size_t nsize);
  static void count_hook(lua_State* L, lua_Debug* ar);
  static int message_handler(lua_State* L);
  static int sandbox_print(lua_State* L);
  bool charge(uint64_t work);

  std::string name_;
  std::string path_;   // given to run()
  std::string chunk_;  // what Lua calls it in positions (its short_src)
  bool loading_ = false;  // the main chunk is running (run()): errors get the raising line
  Limits limits_;
  lua_State* L_ = nullptr;
  int env_ref_ = -1;
  size_t used_ = 0;
  bool enforce_memory_ = false;
  uint64_t executed_ = 0;
  int hook_period_ = 0;
  uint64_t max_hook_period_ = 0;
  std::shared_ptr<LuaSandbox*> handle_;
  bool over_budget_ = false;
  std::string budget_message_;
  bool memory_refused_ = false;  // the memory limit refused an allocation in this call
  int prints_ = 0;  // print() lines logged during the current call
};

}  // namespace vigil::rules
