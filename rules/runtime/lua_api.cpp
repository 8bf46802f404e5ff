#include "rules/runtime/lua_api.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdlib>
#include <exception>
#include <lua.hpp>
#include <map>

#include "rules/runtime/channel_scan.h"

namespace vigil::rules {
namespace {

FileContext& file_context(lua_State* L) {
  return *static_cast<FileContext*>(lua_touserdata(L, lua_upvalueindex(1)));
}

// "file:line" of the Lua code that called the running C function, or the file alone when the
// caller is not Lua code (pcall(rule, {...})).
std::string caller_location(lua_State* L, const FileContext& ctx) {
  luaL_where(L, 1);
  std::string where = lua_tostring(L, -1);
  lua_pop(L, 1);
  if (where.size() >= 2 && where.ends_with(": ")) where.resize(where.size() - 2);
  return where.empty() ? ctx.path : LuaSandbox::from(L).located(where);
}

// The line of the Lua code calling the running C function; 0 when it is not Lua code.
int caller_line(lua_State* L) {
  lua_Debug ar;
  if (!lua_getstack(L, 1, &ar) || !lua_getinfo(L, "l", &ar)) return 0;
  return ar.currentline > 0 ? ar.currentline : 0;
}

// Runs engine code inside a Lua C function. `body` returns an error message or "" and sets
// the number of results it pushed. No Lua error may long-jump over C++ objects, so the body
// runs with the memory limit lifted and uses raw accesses only, and the error is raised once
// every C++ object is gone. C++ exceptions become Lua errors as well.
template <typename Body>
int engine_code(lua_State* L, Body&& body) {
  bool failed = false;
  int results = 0;
  {
    LuaSandbox::EngineSection section(L);
    try {
      std::string error = body(results);
      if (!error.empty()) {
        lua_pushlstring(L, error.data(), error.size());
        failed = true;
      }
    } catch (const std::exception& e) {
      lua_pushstring(L, e.what());
      failed = true;
    }
  }
  if (failed) return lua_error(L);
  return results;
}

int lua_rule(lua_State* L) {
  if (lua_type(L, 1) != LUA_TTABLE)
    return luaL_error(L, "rule expects a table: rule { name = \"...\", metric = \"...\", detect = ... }");
  return engine_code(L, [L](int&) -> std::string {
    FileContext& ctx = file_context(L);
    std::string where = caller_location(L, ctx);
    if (!ctx.loading) return where + ": rule{} can only be called while the rule file loads";
    auto spec = parse_rule(L, 1, ctx.detectors);
    if (!spec) {
      // A detector's error names the detector's line, not the first line of the rule.
      const size_t colon = where.rfind(':');
      if (spec.error().line > 0 && colon != std::string::npos)
        return where.substr(0, colon + 1) + std::to_string(spec.error().line) + ": " + spec.error().message;
      return where + ": " + spec.error().message;
    }
    for (const auto& other : ctx.declared)
      if (other.name == spec->name) return where + ": rule '" + spec->name + "' is already defined at " + other.location;
    spec->file = ctx.path;
    spec->location = where;
    ctx.declared.push_back(std::move(*spec));
    return "";
  });
}

// Reads a string field of the table at `t` without metamethods.
std::optional<std::string> raw_string(lua_State* L, int t, const char* key) {
  lua_pushstring(L, key);
  std::optional<std::string> out;
  if (lua_rawget(L, t) == LUA_TSTRING) out = lua_tostring(L, -1);
  lua_pop(L, 1);
  return out;
}

bool valid_label_name(const std::string& k) {
  if (k.empty() || k.size() > 64 || std::isdigit(static_cast<unsigned char>(k[0]))) return false;
  return std::all_of(k.begin(), k.end(), [](char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_'; });
}

// notify(channel, a, { severity = ..., summary = ..., labels = { k = "v" } }): the third
// argument overrides what the notification says. The overrides stay with the episode, so the
// resolve (and later channels) carry them too; extra labels join the anomaly's scope (the
// webhook's scope.group, Alertmanager labels) but never replace a label of the group.
std::string apply_overrides(lua_State* L, Anomaly& a) {
  if (lua_gettop(L) < 3 || lua_isnil(L, 3)) return "";
  if (lua_type(L, 3) != LUA_TTABLE)
    return "notify: the third argument must be a table of overrides, e.g. { severity = \"critical\" }";
  lua_pushnil(L);
  while (lua_next(L, 3) != 0) {
    const bool key_is_string = lua_type(L, -2) == LUA_TSTRING;
    const std::string key = key_is_string ? lua_tostring(L, -2) : "";
    lua_pop(L, 1);
    if (key != "severity" && key != "summary" && key != "labels") {
      lua_pop(L, 1);
      return "notify: unknown override '" + key + "' (known: severity, summary, labels)";
    }
  }
  std::optional<std::string> severity = raw_string(L, 3, "severity");
  lua_pushstring(L, "severity");
  const int severity_type = lua_rawget(L, 3);
  lua_pop(L, 1);
  if (severity_type != LUA_TNIL && !severity) return "notify: overrides.severity must be a string";
  if (severity) {
    if (*severity != "info" && *severity != "warning" && *severity != "critical")
      return "notify: overrides.severity must be info, warning or critical (got '" + *severity + "')";
    a.severity = *severity;
  }
  lua_pushstring(L, "summary");
  const int summary_type = lua_rawget(L, 3);
  if (summary_type != LUA_TNIL && summary_type != LUA_TSTRING) {
    lua_pop(L, 1);
    return "notify: overrides.summary must be a string";
  }
  if (summary_type == LUA_TSTRING) a.summary = lua_tostring(L, -1);
  lua_pop(L, 1);

  lua_pushstring(L, "labels");
  const int labels_type = lua_rawget(L, 3);
  if (labels_type == LUA_TNIL) {
    lua_pop(L, 1);
    return "";
  }
  if (labels_type != LUA_TTABLE) {
    lua_pop(L, 1);
    return "notify: overrides.labels must be a table of name = \"value\"";
  }
  const int labels = lua_gettop(L);
  Labels extra;
  std::string error;
  lua_pushnil(L);
  while (lua_next(L, labels) != 0) {
    if (lua_type(L, -2) != LUA_TSTRING || lua_type(L, -1) != LUA_TSTRING) {
      error = "notify: overrides.labels must map names to strings";
    } else {
      const std::string k = lua_tostring(L, -2);
      if (!valid_label_name(k)) error = "notify: overrides.labels: '" + k + "' is not a valid label name";
      else if (find_label(a.scope, k) && *find_label(a.scope, k) != lua_tostring(L, -1))
        error = "notify: overrides.labels." + k + " is a label of the rule's group and cannot be changed";
      else if (!find_label(a.scope, k)) extra.emplace_back(k, lua_tostring(L, -1));
    }
    lua_pop(L, 1);
    if (!error.empty() || extra.size() > 16) {
      lua_pop(L, 2);
      return error.empty() ? "notify: overrides.labels: at most 16 extra labels" : error;
    }
  }
  lua_pop(L, 1);
  for (auto& kv : extra) a.scope.push_back(std::move(kv));
  sort_labels(a.scope);
  return "";
}

std::string notify_impl(lua_State* L, FileContext& ctx) {
  if (lua_type(L, 1) != LUA_TSTRING) return "notify: the channel must be a string, e.g. notify(\"default\", a)";
  if (lua_type(L, 2) != LUA_TTABLE) return "notify: the second argument must be the anomaly, e.g. notify(\"default\", a)";
  std::string channel = lua_tostring(L, 1);
  Episode* episode = ctx.handling;
  if (!episode) return "notify: can only be called from on_anomaly or on_resolve";
  if (raw_string(L, 2, "id") != episode->anomaly.id)
    return "notify: the second argument must be the anomaly passed to the handler";
  if (ctx.channels && !ctx.channels->count(channel)) return "notify: " + unknown_channel(channel, *ctx.channels);

  Anomaly& a = episode->anomaly;
  if (auto summary = raw_string(L, 2, "summary")) a.summary = *summary;
  if (auto severity = raw_string(L, 2, "severity")) {
    if (*severity != "info" && *severity != "warning" && *severity != "critical")
      return "notify: a.severity must be info, warning or critical (got '" + *severity + "')";
    a.severity = *severity;
  }
  if (auto error = apply_overrides(L, a); !error.empty()) return error;
  // Once per channel per episode: the resolve goes to every channel recorded here.
  if (std::find(episode->channels.begin(), episode->channels.end(), channel) != episode->channels.end()) return "";
  if (ctx.sink) {
    try {
      ctx.sink->notify(channel, a);
    } catch (const std::exception& e) {
      return "notify: channel '" + channel + "' failed: " + e.what();
    }
  }
  episode->channels.push_back(channel);
  return "";
}

int lua_notify(lua_State* L) {
  return engine_code(L, [L](int&) -> std::string {
    FileContext& ctx = file_context(L);
    std::string error = notify_impl(L, ctx);
    if (error.empty()) return "";
    ctx.notify_error = caller_location(L, ctx) + ": " + error;
    return ctx.notify_error;
  });
}

// capture{ pods = a.pods, before = "10s", after = "30s", filter = "...", snaplen =, max_packets =,
// max_bytes = }: asks the agent for a packet capture. Misuse is a Lua error; a refusal by the
// agent is not: it returns nil and the reason. The id joins the episode's anomaly, so a later
// notify() links to it.
std::string capture_impl(lua_State* L, FileContext& ctx, int& results) {
  Episode* episode = ctx.handling;
  if (!episode) return "capture: can only be called from on_anomaly or on_resolve";
  if (lua_type(L, 1) != LUA_TTABLE)
    return "capture: expects a table, e.g. capture { pods = a.pods, before = \"10s\", after = \"30s\" }";
  if (lua_gettop(L) > 1) return "capture: expects one table argument, e.g. capture { pods = a.pods }";
  auto spec = read_capture_spec(L, 1, "", true);
  if (!spec) return "capture: " + spec.error().message;
  if (spec->pods.empty()) spec->pods = episode->pods;
  if (spec->pods.empty())
    return "capture: the anomaly has no pod (its rule is not grouped by namespace and pod); give pods = { \"namespace/name\" }";
  if (!spec->filter.empty() && ctx.check_capture_filter) {
    std::string problem = ctx.check_capture_filter(spec->filter);
    if (!problem.empty()) return "capture: field 'filter': " + problem;
  }
  Anomaly& a = episode->anomaly;
  spec->rule = a.rule;
  spec->anomaly_id = a.id;
  spec->reason = a.summary;
  // A handler cannot flood the agent (or the episode) with requests: past the limits they are
  // refused here, as the agent would.
  Result<std::string> id = make_error("captures are not available here");
  if (++ctx.capture_calls > FileContext::kMaxCaptureCalls)
    id = make_error("at most " + std::to_string(FileContext::kMaxCaptureCalls) + " capture{} calls per handler call");
  else if (a.captures.size() >= FileContext::kMaxCaptures)
    id = make_error("at most " + std::to_string(FileContext::kMaxCaptures) + " captures per anomaly");
  else if (ctx.sink) {
    try {
      id = ctx.sink->capture(*spec);
    } catch (const std::exception& e) {
      id = make_error(e.what());
    }
  }
  if (id) {
    a.captures.push_back(*id);
    lua_pushlstring(L, id->data(), id->size());
    results = 1;
  } else {
    ++ctx.capture_refused;
    ctx.capture_refusal = id.error().message;
    lua_pushnil(L);
    lua_pushlstring(L, id.error().message.data(), id.error().message.size());
    results = 2;
  }
  return "";
}

int lua_capture(lua_State* L) {
  return engine_code(L, [L](int& results) -> std::string {
    FileContext& ctx = file_context(L);
    std::string error = capture_impl(L, ctx, results);
    return error.empty() ? "" : caller_location(L, ctx) + ": " + error;
  });
}

int lua_make_detector(lua_State* L) {
  auto kind = static_cast<int>(lua_tointeger(L, lua_upvalueindex(1)));
  if (lua_type(L, 1) != LUA_TTABLE) {
    const char* name = detector_kinds()[static_cast<size_t>(kind)].name;
    return luaL_error(L, "%s expects a table of parameters: %s { ... }", name, name);
  }
  auto* ud = static_cast<DetectorUserdata*>(lua_newuserdatauv(L, sizeof(DetectorUserdata), 1));
  ud->kind = kind;
  ud->line = caller_line(L);
  lua_pushvalue(L, 1);
  lua_setiuservalue(L, -2, 1);
  luaL_setmetatable(L, kDetectorMetatable);
  return 1;
}

int detector_tostring(lua_State* L) {
  auto* ud = static_cast<DetectorUserdata*>(luaL_checkudata(L, 1, kDetectorMetatable));
  if (ud->kind == kCustomDetectorKind) {
    lua_getiuservalue(L, 1, 2);
    lua_pushliteral(L, "name");
    lua_rawget(L, -2);
    lua_pushfstring(L, "detector: %s", lua_tostring(L, -1));
    return 1;
  }
  lua_pushfstring(L, "detector: %s", detector_kinds()[static_cast<size_t>(ud->kind)].name);
  return 1;
}

// spike { factor = 3 }: a detector value of the custom detector whose definition table is
// the upvalue. The parameters are checked when rule{} builds it (numbers, strings, booleans).
int lua_custom_detector(lua_State* L) {
  if (lua_isnoneornil(L, 1)) {
    lua_settop(L, 0);
    lua_newtable(L);
  }
  if (lua_type(L, 1) != LUA_TTABLE) {
    lua_pushliteral(L, "name");
    lua_rawget(L, lua_upvalueindex(1));
    const char* name = lua_tostring(L, -1);
    return luaL_error(L, "%s expects a table of parameters: %s { ... }", name, name);
  }
  auto* ud = static_cast<DetectorUserdata*>(lua_newuserdatauv(L, sizeof(DetectorUserdata), 2));
  ud->kind = kCustomDetectorKind;
  ud->line = caller_line(L);
  lua_pushvalue(L, 1);
  lua_setiuservalue(L, -2, 1);
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_setiuservalue(L, -2, 2);
  luaL_setmetatable(L, kDetectorMetatable);
  return 1;
}

bool valid_detector_name(const std::string& s) {
  if (s.empty() || s.size() > 64) return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.' || c == '-';
  });
}

// detector { name = "spike", init = function(params) ... end, update = function(state, value,
// t, params) ... end }: declares a custom detector and returns its constructor.
std::string declare_detector(lua_State* L, FileContext& ctx) {
  const std::string where = caller_location(L, ctx);
  if (lua_type(L, 1) != LUA_TTABLE)
    return where + ": detector expects a table: detector { name = \"...\", update = function(state, value, t, params) ... end }";
  if (!ctx.loading) return where + ": detector{} can only be called while the rule file loads";
  lua_settop(L, 1);
  lua_pushliteral(L, "name");
  const int name_type = lua_rawget(L, 1);
  if (name_type != LUA_TSTRING)
    return where + ": detector: " + (name_type == LUA_TNIL ? "missing required field 'name'" : "field 'name' must be a string") +
           " (shown as the anomaly's detector)";
  const std::string name = lua_tostring(L, 2);
  lua_pop(L, 1);
  const std::string prefix = where + ": detector '" + name + "': ";
  if (!valid_detector_name(name)) return prefix + "the name must be 1 to 64 letters, digits, '_', '.' or '-'";
  if (find_detector_kind(name)) return prefix + "this is the name of a built-in detector; choose another";
  std::string error;
  lua_pushnil(L);
  while (error.empty() && lua_next(L, 1)) {
    lua_pop(L, 1);
    const bool named = lua_type(L, -1) == LUA_TSTRING;
    const std::string key = named ? lua_tostring(L, -1) : "";
    if (!named) error = prefix + "fields must be named (name, init, update), found a positional value";
    else if (key != "name" && key != "init" && key != "update") error = prefix + "unknown field '" + key + "' (known: name, init, update)";
    if (!error.empty()) lua_pop(L, 1);
  }
  if (!error.empty()) return error;
  for (const char* key : {"init", "update"}) {
    lua_pushstring(L, key);
    const int type = lua_rawget(L, 1);
    const std::string got = luaL_typename(L, -1);
    lua_pop(L, 1);
    if (type == LUA_TNIL && std::string_view(key) == "update")
      return prefix + "missing required field 'update' (a function(state, value, t, params) returning { anomalous = ..., score = ... })";
    if (type != LUA_TNIL && type != LUA_TFUNCTION)
      return prefix + "field '" + key + "' must be a function (got " + got + ")";
  }
  lua_createtable(L, 0, 4);  // the definition, out of the rule's reach in the constructor's upvalue
  const int def = lua_gettop(L);
  lua_pushlstring(L, name.data(), name.size());
  lua_setfield(L, def, "name");
  lua_pushlstring(L, where.data(), where.size());
  lua_setfield(L, def, "location");
  for (const char* key : {"init", "update"}) {
    lua_pushstring(L, key);
    lua_rawget(L, 1);
    lua_setfield(L, def, key);
  }
  lua_pushcclosure(L, lua_custom_detector, 1);
  return "";
}

int lua_declare_detector(lua_State* L) {
  return engine_code(L, [L](int& results) -> std::string {
    std::string error = declare_detector(L, file_context(L));
    if (error.empty()) results = 1;
    return error;
  });
}

// ---- require and vigil.stats ------------------------------------------------------------------
// No C++ object may be alive where these raise (luaL_error long-jumps): they use the stack only.

constexpr const char* kModules = "vigil.stats";

// Pushes a full userdata holding the numbers of the array at `index`; returns them and their
// count. Charged one instruction per entry; entries must be numbers.
double* numbers_of(lua_State* L, int index, const char* fn, lua_Unsigned* count) {
  luaL_checktype(L, index, LUA_TTABLE);
  const lua_Unsigned n = lua_rawlen(L, index);
  LuaSandbox& sb = LuaSandbox::from(L);
  sb.charge_instructions(n);
  if (sb.instructions_left() <= 0) luaL_error(L, "stats.%s: instruction budget exceeded", fn);
  auto* out = static_cast<double*>(lua_newuserdatauv(L, (n ? n : 1) * sizeof(double), 0));
  for (lua_Unsigned i = 1; i <= n; ++i) {
    if (lua_rawgeti(L, index, static_cast<lua_Integer>(i)) != LUA_TNUMBER)
      luaL_error(L, "stats.%s: entry %I of the array is a %s, not a number", fn, static_cast<lua_Integer>(i),
                 luaL_typename(L, -1));
    out[i - 1] = lua_tonumber(L, -1);
    lua_pop(L, 1);
  }
  *count = n;
  return out;
}

double mean_of(const double* v, lua_Unsigned n) {
  double sum = 0;
  for (lua_Unsigned i = 0; i < n; ++i) sum += v[i];
  return sum / static_cast<double>(n);
}

// stats.mean(array): the mean; nil for an empty array.
int stats_mean(lua_State* L) {
  lua_Unsigned n = 0;
  const double* v = numbers_of(L, 1, "mean", &n);
  if (n == 0) lua_pushnil(L);
  else lua_pushnumber(L, mean_of(v, n));
  return 1;
}

// stats.stddev(array): the population standard deviation; nil for an empty array.
int stats_stddev(lua_State* L) {
  lua_Unsigned n = 0;
  const double* v = numbers_of(L, 1, "stddev", &n);
  if (n == 0) {
    lua_pushnil(L);
    return 1;
  }
  const double m = mean_of(v, n);
  double m2 = 0;
  for (lua_Unsigned i = 0; i < n; ++i) m2 += (v[i] - m) * (v[i] - m);
  lua_pushnumber(L, std::sqrt(m2 / static_cast<double>(n)));
  return 1;
}

// stats.quantile(array, q): the q-quantile (0 <= q <= 1), linear between the sorted values;
// nil for an empty array. Charged n log2 n more instructions for the sort.
int stats_quantile(lua_State* L) {
  const double q = luaL_checknumber(L, 2);
  if (!(q >= 0 && q <= 1)) return luaL_error(L, "stats.quantile: q must be between 0 and 1 (got %f)", q);
  lua_Unsigned n = 0;
  double* v = numbers_of(L, 1, "quantile", &n);
  if (n == 0) {
    lua_pushnil(L);
    return 1;
  }
  LuaSandbox& sb = LuaSandbox::from(L);
  sb.charge_instructions(static_cast<uint64_t>(static_cast<double>(n) * std::log2(static_cast<double>(n) + 1)));
  if (sb.instructions_left() <= 0) return luaL_error(L, "stats.quantile: instruction budget exceeded");
  for (lua_Unsigned i = 0; i < n; ++i)
    if (std::isnan(v[i])) return luaL_error(L, "stats.quantile: entry %I is NaN", static_cast<lua_Integer>(i + 1));
  std::sort(v, v + n);
  const double pos = q * static_cast<double>(n - 1);
  const auto lo = static_cast<lua_Unsigned>(std::floor(pos));
  const lua_Unsigned hi = std::min(lo + 1, n - 1);
  lua_pushnumber(L, v[lo] + (v[hi] - v[lo]) * (pos - static_cast<double>(lo)));
  return 1;
}

// stats.ewma(previous, value, alpha): one step of an exponentially weighted moving average,
// previous + alpha * (value - previous); with previous nil, the value (the first step).
int stats_ewma(lua_State* L) {
  const double value = luaL_checknumber(L, 2);
  const double alpha = luaL_checknumber(L, 3);
  if (!(alpha > 0 && alpha <= 1)) return luaL_error(L, "stats.ewma: alpha must be in (0, 1] (got %f)", alpha);
  if (lua_isnil(L, 1)) {
    lua_pushnumber(L, value);
    return 1;
  }
  const double previous = luaL_checknumber(L, 1);
  lua_pushnumber(L, previous + alpha * (value - previous));
  return 1;
}

// require(name): Vigil's built-in modules only; no file is ever read. The upvalue holds them.
int lua_require(lua_State* L) {
  if (lua_type(L, 1) == LUA_TSTRING) {
    lua_pushvalue(L, 1);
    if (lua_rawget(L, lua_upvalueindex(1)) != LUA_TNIL) return 1;
    lua_pop(L, 1);
  }
  return luaL_error(L, "require: only Vigil's built-in modules (%s) can be required, not %s", kModules,
                    lua_type(L, 1) == LUA_TSTRING ? lua_pushfstring(L, "'%s'", lua_tostring(L, 1)) : luaL_typename(L, 1));
}

int refuse_write(lua_State* L) { return luaL_error(L, "the rule API tables are read-only"); }

// Replaces the table on the top of the stack by a read-only view of it, so one rule cannot
// redefine baseline.zscore for the rules after it.
void make_read_only(lua_State* L) {
  lua_newtable(L);            // proxy
  lua_createtable(L, 0, 3);   // its metatable
  lua_pushvalue(L, -3);
  lua_setfield(L, -2, "__index");
  lua_pushcfunction(L, refuse_write);
  lua_setfield(L, -2, "__newindex");
  lua_pushliteral(L, "read-only");
  lua_setfield(L, -2, "__metatable");
  lua_setmetatable(L, -2);
  lua_remove(L, -2);
}

void set_string(lua_State* L, const char* key, const std::string& value) {
  lua_pushlstring(L, value.data(), value.size());
  lua_setfield(L, -2, key);
}

void set_number(lua_State* L, const char* key, double value) {
  lua_pushnumber(L, value);
  lua_setfield(L, -2, key);
}

void push_labels(lua_State* L, const Labels& labels) {
  lua_createtable(L, 0, static_cast<int>(labels.size()));
  for (const auto& [k, v] : labels) set_string(L, k.c_str(), v);
}

}  // namespace

void install_api(LuaSandbox& sandbox, FileContext* ctx) {
  lua_State* L = sandbox.state();
  LuaSandbox::EngineSection section(L);

  luaL_newmetatable(L, kDetectorMetatable);
  lua_pushcfunction(L, detector_tostring);
  lua_setfield(L, -2, "__tostring");
  lua_pushliteral(L, "detector");
  lua_setfield(L, -2, "__metatable");
  lua_pop(L, 1);

  sandbox.push_env();
  const int env = lua_gettop(L);
  lua_pushlightuserdata(L, ctx);
  lua_pushcclosure(L, lua_rule, 1);
  lua_setfield(L, env, "rule");
  lua_pushlightuserdata(L, ctx);
  lua_pushcclosure(L, lua_notify, 1);
  lua_setfield(L, env, "notify");
  lua_pushlightuserdata(L, ctx);
  lua_pushcclosure(L, lua_capture, 1);
  lua_setfield(L, env, "capture");
  lua_pushlightuserdata(L, ctx);
  lua_pushcclosure(L, lua_declare_detector, 1);
  lua_setfield(L, env, "detector");

  // require: the built-in modules, each a read-only table made once per file.
  lua_newtable(L);  // name -> module
  const luaL_Reg stats[] = {{"mean", stats_mean}, {"stddev", stats_stddev}, {"quantile", stats_quantile},
                            {"ewma", stats_ewma}, {nullptr, nullptr}};
  luaL_newlib(L, stats);
  make_read_only(L);
  lua_setfield(L, -2, "vigil.stats");
  lua_pushcclosure(L, lua_require, 1);
  lua_setfield(L, env, "require");

  // Detectors with dotted names live in namespace tables ("baseline.zscore").
  std::map<std::string, int> namespaces;  // name -> stack index of its table
  auto kinds = detector_kinds();
  for (size_t i = 0; i < kinds.size(); ++i) {
    std::string name = kinds[i].name;
    lua_pushinteger(L, static_cast<lua_Integer>(i));
    lua_pushcclosure(L, lua_make_detector, 1);
    size_t dot = name.find('.');
    if (dot == std::string::npos) {
      lua_setfield(L, env, name.c_str());
      continue;
    }
    std::string space = name.substr(0, dot);
    if (!namespaces.count(space)) {
      lua_newtable(L);
      lua_insert(L, -2);
      namespaces[space] = lua_gettop(L) - 1;
    }
    lua_setfield(L, namespaces[space], name.substr(dot + 1).c_str());
  }
  for (auto it = namespaces.rbegin(); it != namespaces.rend(); ++it) {
    lua_pushvalue(L, it->second);
    make_read_only(L);
    lua_setfield(L, env, it->first.c_str());
  }
  lua_settop(L, env - 1);
}

static void push_list(lua_State* L, const std::vector<std::string>& values) {
  lua_createtable(L, static_cast<int>(values.size()), 0);
  for (size_t i = 0; i < values.size(); ++i) {
    lua_pushlstring(L, values[i].data(), values[i].size());
    lua_rawseti(L, -2, static_cast<lua_Integer>(i + 1));
  }
}

void push_anomaly(lua_State* L, const Anomaly& a, const std::vector<std::string>& pods) {
  lua_createtable(L, 0, 25);
  set_string(L, "id", a.id);
  set_string(L, "rule", a.rule);
  set_string(L, "severity", a.severity);
  set_string(L, "summary", a.summary);
  set_string(L, "status", to_string(a.status));
  set_string(L, "node", a.node);
  set_string(L, "metric", a.metric);
  set_string(L, "detector", a.detector);
  set_number(L, "value", a.value);
  set_number(L, "baseline", a.baseline);
  set_number(L, "score", a.score);
  set_number(L, "band_low", a.band_low);
  set_number(L, "band_high", a.band_high);
  set_string(L, "detector_params", a.detector_params);
  set_number(L, "started_at", a.started_at);
  if (a.status == AnomalyStatus::Resolved) set_number(L, "ended_at", a.ended_at);
  set_number(L, "recent_step", a.recent_step);
  lua_createtable(L, static_cast<int>(a.recent.size()), 0);
  for (size_t i = 0; i < a.recent.size(); ++i) {
    lua_pushnumber(L, a.recent[i]);
    lua_rawseti(L, -2, static_cast<lua_Integer>(i + 1));
  }
  lua_setfield(L, -2, "recent");
  push_list(L, pods);
  lua_setfield(L, -2, "pods");
  push_list(L, a.captures);
  lua_setfield(L, -2, "captures");
  push_labels(L, a.metric_labels);
  lua_setfield(L, -2, "labels");
  push_labels(L, a.scope);
  lua_createtable(L, 0, static_cast<int>(a.pod_labels.size()));
  for (const auto& [k, v] : a.pod_labels) set_string(L, k.c_str(), v);
  lua_setfield(L, -2, "labels");
  lua_setfield(L, -2, "scope");
}

}  // namespace vigil::rules
