#include "rules/runtime/lua_sandbox.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <lua.hpp>
#include <string>

namespace vigil::rules {
namespace {

// Base functions a rule may use. Everything else (load, loadfile, dofile, require, io, os,
// package, debug, coroutine, string.dump) is simply not copied into the file's _ENV.
constexpr const char* kBaseAllowed[] = {"assert", "error",  "getmetatable", "ipairs",   "next",
                                        "pairs",  "pcall",  "rawequal",     "rawget",   "rawlen",
                                        "rawset", "select", "tonumber",     "tostring", "type",
                                        "xpcall", "_VERSION"};
constexpr const char* kLibraries[] = {LUA_STRLIBNAME, LUA_TABLIBNAME, LUA_MATHLIBNAME, LUA_UTF8LIBNAME};

// The hook fires at least this often so a huge budget still fits lua_sethook's int count.
constexpr uint64_t kMaxHookPeriod = 1u << 20;

// The hook counts VM instructions only, but one instruction can copy megabytes
// (s = s .. s, string.rep) and the collector's work grows with what is allocated. So every
// byte a rule allocates is charged to its instruction budget too, and so is each refused
// allocation, at the size of the heap the emergency collection that follows must walk.
constexpr uint64_t kBytesPerInstruction = 8;

// print() writes to the agent log: a rule may not flood it.
constexpr int kMaxPrintsPerCall = 20;
constexpr size_t kMaxPrintBytes = 1024;

int sandbox_collectgarbage(lua_State* L) {
  const char* option = luaL_optstring(L, 1, "collect");
  if (std::strcmp(option, "count") != 0)
    return luaL_error(L, "collectgarbage: only \"count\" is available to rules (got \"%s\")", option);
  lua_pushnumber(L, lua_gc(L, LUA_GCCOUNT, 0) + lua_gc(L, LUA_GCCOUNTB, 0) / 1024.0);
  return 1;
}

// Like the base setmetatable, but refuses __gc: finalizers run inside the garbage collector
// with hooks off, where the instruction budget cannot stop them.
int sandbox_setmetatable(lua_State* L) {
  int mt = lua_type(L, 2);
  luaL_checktype(L, 1, LUA_TTABLE);
  luaL_argexpected(L, mt == LUA_TNIL || mt == LUA_TTABLE, 2, "nil or table");
  if (mt == LUA_TTABLE) {
    lua_pushliteral(L, "__gc");
    if (lua_rawget(L, 2) != LUA_TNIL) return luaL_error(L, "setmetatable: __gc metamethods are not allowed in rules");
    lua_pop(L, 1);
  }
  if (luaL_getmetafield(L, 1, "__metatable") != LUA_TNIL) return luaL_error(L, "cannot change a protected metatable");
  lua_settop(L, 2);
  lua_setmetatable(L, 1);
  return 1;
}

// The instruction hook only sees Lua instructions, so a C function that loops without
// allocating escapes both budgets. These two are the library's unbounded loops of that kind.

// string.rep("", 1e15) loops 1e15 times to build "".
int sandbox_string_rep(lua_State* L) {
  size_t len = 0, sep_len = 0;
  luaL_checklstring(L, 1, &len);
  luaL_checkinteger(L, 2);
  luaL_optlstring(L, 3, "", &sep_len);
  if (len + sep_len == 0) {
    lua_pushliteral(L, "");
    return 1;
  }
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_insert(L, 1);
  lua_call(L, lua_gettop(L) - 1, 1);
  return 1;
}

// table.move(t, 1, 1e15, 2) copies nils into a table without allocating.
constexpr lua_Integer kMaxMove = 1 << 22;

int sandbox_table_move(lua_State* L) {
  lua_Integer first = luaL_checkinteger(L, 2);
  lua_Integer last = luaL_checkinteger(L, 3);
  if (last >= first && (first <= 0 ? last >= kMaxMove + first : last - first >= kMaxMove))
    return luaL_error(L, "table.move: more than %I elements", static_cast<lua_Integer>(kMaxMove));
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_insert(L, 1);
  lua_call(L, lua_gettop(L) - 1, LUA_MULTRET);
  return lua_gettop(L);
}

// Pattern matching backtracks inside one C call: `.-b` is quadratic in the subject's length,
// each further `*`, `+`, `-` or `%b` multiplies by it again, and a plain find is subject times
// pattern. find, match, gmatch and gsub estimate that worst case, counted this many steps per
// instruction (a step is a character comparison, cheaper than an instruction), and charge it
// to the budget: a match bigger than a whole budget is a runtime error, one bigger than what is
// left spends the budget. Rules match labels and summaries, far below that.
constexpr double kPatternStepsPerInstruction = 16;

double pattern_worst_case(const char* p, size_t m, size_t n, bool plain) {
  const double positions = static_cast<double>(n) + 1;
  double steps = positions * (static_cast<double>(m) + 1);
  if (plain) return steps;
  size_t i = 0;
  if (m > 0 && p[0] == '^') {
    steps = static_cast<double>(m) + 1;  // anchored: one start position
    i = 1;
  }
  for (; i < m && steps < 1e300; ++i) {
    char c = p[i];
    if (c == '%') {
      if (i + 1 < m && p[i + 1] == 'b') steps *= positions;
      ++i;
    } else if (c == '[') {  // a set: its characters are not quantifiers
      size_t j = i + 1;
      if (j < m && p[j] == '^') ++j;
      if (j < m && p[j] == ']') ++j;
      while (j < m && p[j] != ']') j += p[j] == '%' ? 2 : 1;
      i = j;
    } else if (c == '*' || c == '+' || c == '-') {
      steps *= positions;
    } else if (c == '?') {
      steps *= 2;
    }
  }
  return steps;
}

int sandbox_pattern(lua_State* L) {
  size_t n = 0, m = 0;
  luaL_checklstring(L, 1, &n);
  const char* pattern = luaL_checklstring(L, 2, &m);
  const char* name = lua_tostring(L, lua_upvalueindex(2));
  bool plain = std::strcmp(name, "find") == 0 && lua_toboolean(L, 4);
  double worst = pattern_worst_case(pattern, m, n, plain);
  LuaSandbox& sb = LuaSandbox::from(L);
  double allowed = sb.instructions_left() * kPatternStepsPerInstruction;
  double budget = sb.limits().instructions ? static_cast<double>(sb.limits().instructions) * kPatternStepsPerInstruction
                                           : HUGE_VAL;
  if (worst > allowed && worst <= budget) {  // it would fit a whole call: the budget has run out
    sb.charge_instructions(sb.limits().instructions);
    return luaL_error(L, "instruction budget exceeded");  // reported with where the budget ran out
  }
  if (worst > allowed)
    return luaL_error(L,
                      "string.%s: pattern too costly for a subject of %I bytes (worst case %f steps, more than "
                      "the budget's %f); match a shorter string or use fewer repetitions",
                      name, static_cast<lua_Integer>(n), worst, budget);
  // Charged at its worst case, or a loop of calls each just under the bound would add up.
  sb.charge_instructions(static_cast<uint64_t>(worst / kPatternStepsPerInstruction));
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_insert(L, 1);
  lua_call(L, lua_gettop(L) - 1, LUA_MULTRET);
  return lua_gettop(L);
}

// Replaces lib[name] by `guard`, which gets the original and the name as its upvalues.
void guard_library_function(lua_State* L, const char* lib, const char* name, lua_CFunction guard) {
  lua_getfield(L, -1, lib);
  lua_getfield(L, -1, name);
  lua_pushstring(L, name);
  lua_pushcclosure(L, guard, 2);
  lua_setfield(L, -2, name);
  lua_pop(L, 1);
}

int panic(lua_State* L) {
  const char* msg = lua_tostring(L, -1);
  spdlog::critical("unprotected Lua error in the rule engine: {}", msg ? msg : "(no message)");
  return 0;  // Lua aborts
}

}  // namespace

LuaSandbox::EngineSection::EngineSection(lua_State* L) : sandbox_(LuaSandbox::from(L)), saved_(sandbox_.enforce_memory_) {
  sandbox_.enforce_memory_ = false;
}

LuaSandbox::EngineSection::~EngineSection() { sandbox_.enforce_memory_ = saved_; }

LuaSandbox::LuaSandbox(std::string name, Limits limits)
    : name_(std::move(name)), limits_(limits), handle_(std::make_shared<LuaSandbox*>(this)) {}

LuaSandbox::~LuaSandbox() {
  *handle_ = nullptr;
  if (L_) lua_close(L_);
}

std::unique_ptr<LuaSandbox> LuaSandbox::create(std::string name, Limits limits) {
  std::unique_ptr<LuaSandbox> sb(new LuaSandbox(std::move(name), limits));
  sb->L_ = lua_newstate(&LuaSandbox::allocate, sb.get());
  if (!sb->L_) return nullptr;
  *static_cast<LuaSandbox**>(lua_getextraspace(sb->L_)) = sb.get();
  lua_atpanic(sb->L_, panic);
  sb->build_env();
  return sb;
}

LuaSandbox& LuaSandbox::from(lua_State* L) { return **static_cast<LuaSandbox**>(lua_getextraspace(L)); }

void LuaSandbox::build_env() {
  lua_State* L = L_;
  luaL_requiref(L, LUA_GNAME, luaopen_base, 1);
  luaL_requiref(L, LUA_STRLIBNAME, luaopen_string, 1);
  luaL_requiref(L, LUA_TABLIBNAME, luaopen_table, 1);
  luaL_requiref(L, LUA_MATHLIBNAME, luaopen_math, 1);
  luaL_requiref(L, LUA_UTF8LIBNAME, luaopen_utf8, 1);
  lua_settop(L, 0);

  lua_newtable(L);  // the file's _ENV
  lua_pushglobaltable(L);
  for (const char* name : kBaseAllowed) {
    lua_getfield(L, -1, name);
    lua_setfield(L, -3, name);
  }
  for (const char* name : kLibraries) {
    lua_getfield(L, -1, name);
    lua_setfield(L, -3, name);
  }
  lua_pop(L, 1);

  // string.dump makes binary chunks; nothing may load them, but there is no use for it either.
  lua_getfield(L, -1, LUA_STRLIBNAME);
  lua_pushnil(L);
  lua_setfield(L, -2, "dump");
  lua_pop(L, 1);

  guard_library_function(L, LUA_STRLIBNAME, "rep", sandbox_string_rep);
  guard_library_function(L, LUA_TABLIBNAME, "move", sandbox_table_move);
  for (const char* name : {"find", "match", "gmatch", "gsub"})
    guard_library_function(L, LUA_STRLIBNAME, name, sandbox_pattern);

  lua_pushcfunction(L, LuaSandbox::sandbox_print);
  lua_setfield(L, -2, "print");
  lua_pushcfunction(L, sandbox_collectgarbage);
  lua_setfield(L, -2, "collectgarbage");
  lua_pushcfunction(L, sandbox_setmetatable);
  lua_setfield(L, -2, "setmetatable");
  lua_pushvalue(L, -1);
  lua_setfield(L, -2, "_G");
  env_ref_ = luaL_ref(L, LUA_REGISTRYINDEX);
}

int LuaSandbox::sandbox_print(lua_State* L) {
  LuaSandbox& sb = from(L);
  if (sb.prints_ > kMaxPrintsPerCall) return 0;
  if (++sb.prints_ > kMaxPrintsPerCall) {
    try {
      spdlog::info("{}: more than {} print() lines in one call; the rest are dropped", sb.name_, kMaxPrintsPerCall);
    } catch (...) {
    }
    return 0;
  }
  int n = lua_gettop(L);
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  for (int i = 1; i <= n; ++i) {
    if (i > 1) luaL_addchar(&b, '\t');
    luaL_tolstring(L, i, nullptr);
    luaL_addvalue(&b);
  }
  luaL_pushresult(&b);
  size_t len = 0;
  const char* text = lua_tolstring(L, -1, &len);
  try {
    std::string_view line(text, std::min(len, kMaxPrintBytes));
    spdlog::info("{}: {}{}", sb.name_, line, len > kMaxPrintBytes ? " [truncated]" : "");
  } catch (...) {
  }
  return 0;
}

double LuaSandbox::instructions_left() const {
  if (!limits_.instructions) return HUGE_VAL;
  return executed_ >= limits_.instructions ? 0 : static_cast<double>(limits_.instructions - executed_);
}

void LuaSandbox::charge_instructions(uint64_t work) {
  if (enforce_memory_) charge(work);  // engine code is never charged
}

// Adds `work` to the current call's count; false once the budget is spent. Past it, the hook
// fires on every instruction and raises, so the rule's pcall cannot swallow the stop.
bool LuaSandbox::charge(uint64_t work) {
  if (!limits_.instructions) return true;
  if (over_budget_) return false;
  executed_ += work;
  if (executed_ < limits_.instructions) return true;
  over_budget_ = true;
  // Where the rule is: the innermost Lua frame (a C function such as string.rep has no line).
  // lua_getstack and lua_getinfo("Sl") do not allocate, so they are safe inside the allocator.
  budget_message_.clear();
  lua_Debug ar;
  for (int level = 0; level < 32 && lua_getstack(L_, level, &ar); ++level) {
    if (!lua_getinfo(L_, "Sl", &ar) || ar.currentline < 0) continue;
    try {
      budget_message_ = std::string(ar.short_src) + ":" + std::to_string(ar.currentline) +
                        ": instruction budget exceeded (" + std::to_string(limits_.instructions) +
                        " instructions per call)";
    } catch (...) {
    }
    break;
  }
  hook_period_ = 1;
  lua_sethook(L_, count_hook, LUA_MASKCOUNT, 1);
  return false;
}

void LuaSandbox::push_env() { lua_rawgeti(L_, LUA_REGISTRYINDEX, env_ref_); }

void* LuaSandbox::allocate(void* ud, void* ptr, size_t osize, size_t nsize) {
  auto* sb = static_cast<LuaSandbox*>(ud);
  size_t old = ptr ? osize : 0;  // without ptr, osize encodes the object type
  if (nsize == 0) {
    std::free(ptr);
    sb->used_ -= old;
    return nullptr;
  }
  if (sb->enforce_memory_ && nsize > old) {
    if (sb->limits_.memory_bytes && sb->used_ - old + nsize > sb->limits_.memory_bytes) {
      sb->memory_refused_ = true;
      sb->charge(sb->used_ / kBytesPerInstruction);
      return nullptr;  // Lua collects garbage and retries once, then raises "not enough memory"
    }
    if (!sb->charge((nsize - old) / kBytesPerInstruction)) return nullptr;
  }
  void* p = std::realloc(ptr, nsize);
  if (p) sb->used_ = sb->used_ - old + nsize;
  return p;
}

void LuaSandbox::count_hook(lua_State* L, lua_Debug* ar) {
  LuaSandbox& sb = from(L);
  if (!sb.over_budget_) {
    sb.executed_ += static_cast<uint64_t>(sb.hook_period_);
    if (sb.executed_ < sb.limits_.instructions) {
      int period = static_cast<int>(std::min(sb.limits_.instructions - sb.executed_, sb.max_hook_period_));
      if (period != sb.hook_period_) {
        sb.hook_period_ = period;
        lua_sethook(L, count_hook, LUA_MASKCOUNT, period);
      }
      return;
    }
    // From now on every instruction raises, so a pcall in the rule cannot swallow the stop.
    sb.over_budget_ = true;
    sb.hook_period_ = 1;
    lua_sethook(L, count_hook, LUA_MASKCOUNT, 1);
  }
  // The error is built with the memory limit lifted: were the message refused, the rule would
  // get "not enough memory" instead, which says nothing of where the budget ran out.
  const bool enforce = sb.enforce_memory_;
  sb.enforce_memory_ = false;
  if (sb.budget_message_.empty()) {
    lua_getinfo(L, "Sl", ar);
    lua_pushfstring(L, "%s:%d: instruction budget exceeded (%I instructions per call)", ar->short_src,
                    ar->currentline, static_cast<lua_Integer>(sb.limits_.instructions));
    // Kept aside: the error that finally reaches call() may be a later one (a rule's own
    // error handler failing, say), but this one says where the budget ran out.
    try {
      sb.budget_message_ = lua_tostring(L, -1);
    } catch (...) {
    }
  } else {
    lua_pushliteral(L, "instruction budget exceeded");
  }
  sb.enforce_memory_ = enforce;
  lua_error(L);
}

int LuaSandbox::message_handler(lua_State* L) {
  EngineSection section(L);  // the traceback must be built even when memory ran out
  const char* msg = lua_tostring(L, 1);
  if (!msg) msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
  // While the file's main chunk runs (loading), error({...}), error("x", 0) and
  // assert(false, "x") carry no position, and nothing else would name where they came from: put
  // the line that raised it in front, as Lua does for error("x"). (A handler's or detector's
  // error without one gets the function's own location from the engine instead.) Errors Vigil
  // raises itself name the whole path already (rule_spec.cpp).
  auto names = [msg](const char* where) {
    const size_t n = std::strlen(where);
    return n && std::strncmp(msg, where, n) == 0 && msg[n] == ':';
  };
  const LuaSandbox& sb = from(L);
  lua_Debug ar;
  if (sb.loading_ && !names(sb.path_.c_str()))
    for (int level = 1; lua_getstack(L, level, &ar); ++level) {
      if (!lua_getinfo(L, "Sl", &ar) || ar.currentline <= 0) continue;  // a C function: its caller
      if (!names(ar.short_src)) msg = lua_pushfstring(L, "%s:%d: %s", ar.short_src, ar.currentline, msg);
      break;
    }
  luaL_traceback(L, L, msg, 1);
  return 1;
}

std::optional<LuaSandbox::CallError> LuaSandbox::run(std::string_view source, const std::string& path) {
  path_ = path;
  size_t slash = path.find_last_of('/');
  chunk_ = slash == std::string::npos ? path : path.substr(slash + 1);
  if (chunk_.empty() || chunk_.size() > 48) chunk_ = "rule.lua";  // short_src must hold it whole
  std::string chunk_name = "@" + chunk_;
  enforce_memory_ = true;
  int status = luaL_loadbufferx(L_, source.data(), source.size(), chunk_name.c_str(), "t");
  enforce_memory_ = false;
  if (status != LUA_OK) {
    CallError e;
    e.kind = status == LUA_ERRMEM ? CallError::Kind::Memory : CallError::Kind::Runtime;
    const char* msg = lua_tostring(L_, -1);
    e.message = located(msg ? msg : "cannot load");
    lua_pop(L_, 1);
    if (!e.message.starts_with(path)) e.message = path + ": " + e.message;  // e.g. a binary chunk
    return e;
  }
  push_env();
  lua_setupvalue(L_, -2, 1);  // the main chunk's only upvalue is _ENV
  loading_ = true;
  auto error = call(0);
  loading_ = false;
  return error;
}

std::optional<LuaSandbox::CallError> LuaSandbox::call(int nargs, int nresults) {
  return call_with(nargs, nresults, 0, kMaxHookPeriod);
}

std::optional<LuaSandbox::CallError> LuaSandbox::call_shared(int nargs, int nresults, uint64_t* spent) {
  if (limits_.instructions && *spent >= limits_.instructions) {
    lua_settop(L_, lua_gettop(L_) - nargs - 1);
    CallError e;
    e.kind = CallError::Kind::Budget;
    e.message = "instruction budget exceeded (" + std::to_string(limits_.instructions) + " instructions per call)";
    return e;
  }
  // A short hook period: the hook counts whole periods, and many short calls must add up.
  auto error = call_with(nargs, nresults, *spent, kSharedCallCost);
  *spent = executed_ + kSharedCallCost;
  return error;
}

std::optional<LuaSandbox::CallError> LuaSandbox::call_with(int nargs, int nresults, uint64_t already_spent,
                                                           uint64_t max_period) {
  const int base = lua_gettop(L_) - nargs;  // the function
  lua_pushcfunction(L_, message_handler);
  lua_insert(L_, base);
  executed_ = already_spent;
  over_budget_ = false;
  budget_message_.clear();
  memory_refused_ = false;
  prints_ = 0;
  max_hook_period_ = max_period;
  if (limits_.instructions) {
    hook_period_ = static_cast<int>(std::min(limits_.instructions - std::min(already_spent, limits_.instructions - 1), max_period));
    lua_sethook(L_, count_hook, LUA_MASKCOUNT, hook_period_);
  }
  enforce_memory_ = true;
  int status = lua_pcall(L_, nargs, nresults, base);
  enforce_memory_ = false;
  lua_sethook(L_, nullptr, 0, 0);
  std::optional<CallError> error;
  if (status != LUA_OK) {
    error = error_from_stack(status);
    lua_settop(L_, base - 1);
  } else {
    lua_remove(L_, base);  // the message handler; the results stay
  }
  return error;
}

LuaSandbox::CallError LuaSandbox::error_from_stack(int status) {
  CallError e;
  if (status == LUA_ERRMEM && memory_refused_) {
    e.kind = CallError::Kind::Memory;
    e.message = "memory limit exceeded (" + std::to_string(limits_.memory_bytes >> 10) + " KiB per rule file)";
    return e;
  } else if (over_budget_) {
    e.kind = CallError::Kind::Budget;
    e.message = budget_message_;
    if (e.message.empty())  // spent by an allocation, with no instruction run since
      e.message = "instruction budget exceeded (" + std::to_string(limits_.instructions) + " instructions per call)";
  } else if (status == LUA_ERRMEM) {
    e.kind = CallError::Kind::Memory;
    e.message = "memory limit exceeded (" + std::to_string(limits_.memory_bytes >> 10) + " KiB per rule file)";
    return e;
  }
  const char* text = lua_tostring(L_, -1);
  std::string full = text ? text : "(error object is not a string)";
  size_t split = full.find("\nstack traceback:");
  if (e.message.empty()) e.message = full.substr(0, split);
  if (split != std::string::npos) e.traceback = located(full.substr(split + 1));
  e.message = located(std::move(e.message));
  return e;
}

std::string LuaSandbox::located(std::string text) const {
  if (chunk_.empty() || chunk_ == path_) return text;
  const std::string from = chunk_ + ":";
  const std::string to = path_ + ":";
  for (size_t at = text.find(from); at != std::string::npos; at = text.find(from, at)) {
    // Only where Lua writes a position: the start of a line ("file:3: ..."), a traceback
    // entry ("\tfile:3: in ...") or a function ("<file:3>"). A rule's own words stay.
    const bool position = at == 0 || text[at - 1] == '\n' || text[at - 1] == '\t' || text[at - 1] == '<';
    if (position) {
      text.replace(at, from.size(), to);
      at += to.size();
    } else {
      at += from.size();
    }
  }
  return text;
}

void LuaSandbox::collect_garbage() { lua_gc(L_, LUA_GCCOLLECT); }

}  // namespace vigil::rules
