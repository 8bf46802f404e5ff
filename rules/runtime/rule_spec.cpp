#include "rules/runtime/rule_spec.h"

#include <lua.hpp>

#include <algorithm>
#include <cmath>
#include <cctype>
#include <cstdio>

#include "rules/runtime/durations.h"
#include "rules/runtime/field_names.h"
#include "rules/runtime/lua_detector.h"
#include "rules/runtime/lua_sandbox.h"

namespace vigil::rules {
namespace {

const std::vector<std::string_view> kRuleFields = {
    "name", "metric", "where", "by", "detect", "severity", "pending", "resolve_after", "summary", "on_anomaly", "on_resolve",
    "ratio", "cooldown", "suppress", "max_notifications_per_hour", "capture"};

const std::vector<std::string_view> kCaptureFields = {"before", "after", "filter", "snaplen", "max_packets", "max_bytes"};
const std::vector<std::string_view> kCaptureFieldsWithPods = {"pods",    "before",      "after",    "filter",
                                                              "snaplen", "max_packets", "max_bytes"};

// Pushes t[key] without metamethods and returns its type.
int raw_field(lua_State* L, int table, const char* key) {
  lua_pushstring(L, key);
  return lua_rawget(L, table);
}

std::string type_of(lua_State* L, int index) { return luaL_typename(L, index); }

bool valid_name(const std::string& s, bool colons) {
  if (s.empty()) return false;
  for (size_t i = 0; i < s.size(); ++i) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    bool ok = std::isalpha(c) || c == '_' || (colons && c == ':') || (i > 0 && std::isdigit(c));
    if (!ok) return false;
  }
  return true;
}

// Reads field `key` of the table at `t` as a string; the value is left popped.
Result<std::optional<std::string>> string_field(lua_State* L, int t, const char* key) {
  int type = raw_field(L, t, key);
  std::optional<std::string> out;
  if (type == LUA_TSTRING) out = lua_tostring(L, -1);
  std::string got = type_of(L, -1);
  lua_pop(L, 1);
  if (type == LUA_TNIL || type == LUA_TSTRING) return out;
  return make_error(std::string("field '") + key + "' must be a string (got " + got + ")");
}

Result<std::optional<double>> duration_field(lua_State* L, int t, const char* key) {
  int type = raw_field(L, t, key);
  std::optional<double> out;
  std::string error;
  if (type == LUA_TNUMBER) {
    double v = lua_tonumber(L, -1);
    if (std::isfinite(v) && v >= 0) out = v;
    else error = "a duration must be >= 0 seconds";
  } else if (type == LUA_TSTRING) {
    auto d = parse_duration(lua_tostring(L, -1));
    if (d) out = *d;
    else error = d.error().message;
  } else if (type != LUA_TNIL) {
    error = "must be a duration like \"30s\" (got " + type_of(L, -1) + ")";
  }
  lua_pop(L, 1);
  if (!error.empty()) return make_error(std::string("field '") + key + "': " + error);
  return out;
}

static_assert(Handler::kNone == LUA_NOREF);

// Keeps the function in the registry; an absent field gives an empty Handler.
Result<Handler> function_field(lua_State* L, int t, const char* key) {
  int type = raw_field(L, t, key);
  Handler handler;
  if (type == LUA_TNIL) {
    lua_pop(L, 1);
    return handler;
  }
  if (type != LUA_TFUNCTION) {
    std::string got = type_of(L, -1);
    lua_pop(L, 1);
    return make_error(std::string("field '") + key + "' must be a function (got " + got + ")");
  }
  lua_Debug ar;
  lua_pushvalue(L, -1);
  lua_getinfo(L, ">S", &ar);
  handler.location = LuaSandbox::from(L).located(std::string(ar.short_src) + ":" + std::to_string(ar.linedefined));
  handler.ref = luaL_ref(L, LUA_REGISTRYINDEX);
  return handler;
}

// A label value or a list of them, on the top of the stack.
Result<std::vector<std::string>> label_values(lua_State* L, const std::string& label, const std::string& field) {
  std::vector<std::string> values;
  if (lua_type(L, -1) == LUA_TSTRING) {
    values.emplace_back(lua_tostring(L, -1));
    return values;
  }
  std::string what = "field '" + field + "': label '" + label + "' must be a string, a list of strings or { except = ... }";
  if (lua_type(L, -1) != LUA_TTABLE) return make_error(what);
  lua_Unsigned n = lua_rawlen(L, -1);
  for (lua_Unsigned i = 1; i <= n; ++i) {
    int type = lua_rawgeti(L, -1, static_cast<lua_Integer>(i));
    if (type == LUA_TSTRING) values.emplace_back(lua_tostring(L, -1));
    lua_pop(L, 1);
    if (type != LUA_TSTRING) return make_error(what);
  }
  if (values.empty()) return make_error(what + " (the list is empty)");
  return values;
}

// `where` (or `suppress`, or a ratio term's `where`, named by `field`) of the table at `t`.
Result<std::vector<LabelMatcher>> where_field(lua_State* L, int t, const char* key = "where",
                                              const std::string& field = "where") {
  std::vector<LabelMatcher> out;
  int type = raw_field(L, t, key);
  if (type == LUA_TNIL) {
    lua_pop(L, 1);
    return out;
  }
  if (type != LUA_TTABLE) {
    std::string got = type_of(L, -1);
    lua_pop(L, 1);
    return make_error("field '" + field + "' must be a table of label = value (got " + got + ")");
  }
  std::string error;
  lua_pushnil(L);
  while (lua_next(L, -2)) {
    if (lua_type(L, -2) != LUA_TSTRING || !valid_name(lua_tostring(L, -2), false)) {
      error = "field '" + field + "': keys must be label names, e.g. " + key + " = { direction = \"ingress\" }";
      lua_pop(L, 2);
      break;
    }
    std::string label = lua_tostring(L, -2);
    // { except = "X" } or { except = { "X", "Y" } } excludes values instead of selecting them.
    bool negate = false;
    if (lua_type(L, -1) == LUA_TTABLE) {
      if (lua_getfield(L, -1, "except") != LUA_TNIL) {
        negate = true;
        lua_remove(L, -2);  // the { except = ... } table; its list stays on top
      } else {
        lua_pop(L, 1);
      }
    }
    auto values = label_values(L, label, field);
    lua_pop(L, 1);
    if (!values) {
      error = values.error().message;
      lua_pop(L, 1);
      break;
    }
    out.push_back({label, std::move(*values), negate});
  }
  lua_pop(L, 1);
  if (!error.empty()) return make_error(error);
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.name < b.name; });
  return out;
}

Result<std::vector<std::string>> by_field(lua_State* L, int t) {
  int type = raw_field(L, t, "by");
  if (type == LUA_TNIL) {
    lua_pop(L, 1);
    return std::vector<std::string>{"namespace", "pod"};
  }
  std::vector<std::string> out;
  std::string error;
  if (type != LUA_TTABLE) {
    error = "field 'by' must be a list of label names (got " + type_of(L, -1) + ")";
  } else {
    lua_Unsigned n = lua_rawlen(L, -1);
    for (lua_Unsigned i = 1; i <= n && error.empty(); ++i) {
      if (lua_rawgeti(L, -1, static_cast<lua_Integer>(i)) == LUA_TSTRING && valid_name(lua_tostring(L, -1), false)) {
        std::string label = lua_tostring(L, -1);
        if (std::find(out.begin(), out.end(), label) != out.end()) error = "field 'by' names '" + label + "' twice";
        out.push_back(label);
      } else {
        error = "field 'by' must be a list of label names, e.g. by = { \"namespace\", \"pod\" }";
      }
      lua_pop(L, 1);
    }
    if (error.empty() && n == 0) {
      lua_pushnil(L);
      if (lua_next(L, -2)) {
        lua_pop(L, 2);
        error = "field 'by' must be a list of label names, e.g. by = { \"namespace\", \"pod\" }";
      }
    }
  }
  lua_pop(L, 1);
  if (!error.empty()) return make_error(error);
  return out;
}

// A detector declared in Lua: its definition (user value 2: name, init, update, location) and
// parameters (user value 1: numbers, strings and booleans only).
Result<std::shared_ptr<const Detector>> build_custom_detector(lua_State* L, int index, int depth) {
  const int ud = lua_absindex(L, index);
  lua_getiuservalue(L, ud, 2);
  const int def = lua_gettop(L);
  LuaDetectorDef d;
  if (raw_field(L, def, "name") == LUA_TSTRING) d.name = lua_tostring(L, -1);
  if (raw_field(L, def, "location") == LUA_TSTRING) d.location = lua_tostring(L, -1);
  lua_pop(L, 2);
  if (depth > 0) {
    lua_pop(L, 1);
    return make_error("custom detector '" + d.name + "' cannot be combined in any { ... }");
  }
  lua_getiuservalue(L, ud, 1);
  auto params = read_params(L, -1, nullptr, depth + 1);
  lua_pop(L, 1);
  if (!params) {
    lua_pop(L, 1);
    return context(d.name, params.error());
  }
  auto init = function_field(L, def, "init");
  auto update = function_field(L, def, "update");
  lua_pop(L, 1);
  if (!init || !update || !update->ref) {  // detector{} checked them: not reached
    if (init && init->ref != LUA_NOREF) luaL_unref(L, LUA_REGISTRYINDEX, init->ref);
    if (update && update->ref != LUA_NOREF) luaL_unref(L, LUA_REGISTRYINDEX, update->ref);
    return make_error("custom detector '" + d.name + "' has no update function");
  }
  d.init_ref = init->ref;
  d.update_ref = update->ref;
  d.update_location = update->location;
  return std::shared_ptr<const Detector>(std::make_shared<LuaDetector>(L, std::move(d), std::move(*params)));
}

// Builds the detector value at `index` (a userdata made by threshold{}, baseline.zscore{} ...);
// combinators such as any { ... } hold sub-detectors, built here depth first.
Result<std::shared_ptr<const Detector>> build_detector(lua_State* L, int index, const DetectorContext& ctx, int depth) {
  auto* ud = static_cast<DetectorUserdata*>(luaL_testudata(L, index, kDetectorMetatable));
  if (!ud) return make_error("not a detector");
  // An error names the detector's own line (the innermost one's, in any { ... }).
  auto at_line = [ud](Error e) {
    if (e.line == 0) e.line = ud->line;
    return e;
  };
  if (ud->kind == kCustomDetectorKind) {
    auto custom = build_custom_detector(L, index, depth);
    if (!custom) return at_line(custom.error());
    return custom;
  }
  const DetectorKind& kind = detector_kinds()[static_cast<size_t>(ud->kind)];
  if (depth > 4) return at_line(make_error(std::string(kind.name) + ": detectors nest at most 4 deep"));
  if (depth > 0 && std::string_view(kind.name) == "first_seen")
    return at_line(make_error("first_seen judges label values and cannot be combined in any { ... }"));
  lua_getiuservalue(L, index, 1);
  auto params = read_params(L, -1, &ctx, depth + 1);
  lua_pop(L, 1);
  if (!params) return at_line(context(kind.name, params.error()));
  auto detector = kind.make(*params, ctx);
  if (!detector) return at_line(context(kind.name, detector.error()));
  return detector;
}

Result<std::shared_ptr<const Detector>> detect_field(lua_State* L, int t, const DetectorContext& ctx) {
  raw_field(L, t, "detect");
  if (!luaL_testudata(L, -1, kDetectorMetatable)) {
    bool missing = lua_isnil(L, -1);
    std::string got = type_of(L, -1);
    lua_pop(L, 1);
    if (missing) return make_error("missing required field 'detect' (e.g. detect = baseline.zscore { window = \"5m\", threshold = 4 })");
    return make_error("field 'detect' must be a detector such as baseline.zscore {...} or threshold {...} (got " + got + ")");
  }
  auto detector = build_detector(L, lua_gettop(L), ctx, 0);
  lua_pop(L, 1);
  return detector;
}

// Every key of the table at `t` is one of `known`; `field` names the table in the error.
Result<void> only_fields(lua_State* L, int t, const std::vector<std::string_view>& known, const std::string& field) {
  std::string error;
  lua_pushnil(L);
  while (error.empty() && lua_next(L, t)) {
    if (lua_type(L, -2) != LUA_TSTRING) error = "field '" + field + "' takes named fields only, found a positional value";
    else if (std::find(known.begin(), known.end(), std::string_view(lua_tostring(L, -2))) == known.end())
      error = "field '" + field + "': " + unknown_field(lua_tostring(L, -2), known);
    lua_pop(L, 1);
  }
  if (!error.empty()) {
    lua_pop(L, 1);
    return make_error(error);
  }
  return {};
}

// One term { metric = "...", where = { ... } } at the top of the stack.
Result<SeriesTerm> ratio_term(lua_State* L, const std::string& field) {
  const int t = lua_gettop(L);
  if (lua_type(L, t) != LUA_TTABLE)
    return make_error("field '" + field + "' must be a table { metric = \"...\", where = { ... } } (got " + type_of(L, t) + ")");
  if (auto r = only_fields(L, t, {"metric", "where"}, field); !r) return r.error();
  SeriesTerm term;
  auto metric = string_field(L, t, "metric");
  if (!metric) return make_error("field '" + field + "." + metric.error().message.substr(7));
  if (!*metric) return make_error("field '" + field + "': missing required field 'metric'");
  if (!valid_name(**metric, true)) return make_error("field '" + field + ".metric': '" + **metric + "' is not a valid metric name");
  term.metric = **metric;
  auto where = where_field(L, t, "where", field + ".where");
  if (!where) return where.error();
  term.where = std::move(*where);
  return term;
}

// numerator or denominator: one term, or a list of terms that are summed.
Result<std::vector<SeriesTerm>> ratio_side(lua_State* L, int ratio, const char* key) {
  const std::string field = std::string("ratio.") + key;
  int type = raw_field(L, ratio, key);
  std::vector<SeriesTerm> out;
  std::string error;
  if (type == LUA_TNIL) {
    error = "field 'ratio': missing required field '" + std::string(key) + "' (e.g. " + key +
            " = { metric = \"vigil_drop_packets_total\" })";
  } else if (type != LUA_TTABLE) {
    error = "field '" + field + "' must be a table { metric = \"...\" } or a list of them (got " + type_of(L, -1) + ")";
  } else if (lua_rawlen(L, -1) == 0) {
    auto term = ratio_term(L, field);
    if (term) out.push_back(std::move(*term));
    else error = term.error().message;
  } else {
    const lua_Unsigned n = lua_rawlen(L, -1);
    if (n > 8) error = "field '" + field + "': at most 8 terms";
    for (lua_Unsigned i = 1; i <= n && error.empty(); ++i) {
      lua_rawgeti(L, -1, static_cast<lua_Integer>(i));
      auto term = ratio_term(L, field + "[" + std::to_string(i) + "]");
      lua_pop(L, 1);
      if (term) out.push_back(std::move(*term));
      else error = term.error().message;
    }
    if (error.empty()) {
      lua_pushnil(L);
      while (error.empty() && lua_next(L, -2)) {
        if (!lua_isinteger(L, -2)) error = "field '" + field + "': a list of terms takes no named fields";
        lua_pop(L, 1);
      }
      if (!error.empty()) lua_pop(L, 1);
    }
  }
  lua_pop(L, 1);
  if (!error.empty()) return make_error(error);
  return out;
}

std::string term_text(const std::vector<SeriesTerm>& terms) {
  std::string out;
  for (const auto& term : terms) out += (out.empty() ? "" : " + ") + term.metric;
  return terms.size() > 1 ? "(" + out + ")" : out;
}

Result<std::optional<RatioSpec>> ratio_field(lua_State* L, int t) {
  int type = raw_field(L, t, "ratio");
  if (type == LUA_TNIL) {
    lua_pop(L, 1);
    return std::optional<RatioSpec>();
  }
  const int r = lua_gettop(L);
  auto fail = [L](std::string message) -> Result<std::optional<RatioSpec>> {
    lua_pop(L, 1);
    return make_error(std::move(message));
  };
  if (type != LUA_TTABLE)
    return fail("field 'ratio' must be a table { numerator = {...}, denominator = {...}, min_volume = 20 } (got " +
                type_of(L, r) + ")");
  if (auto ok = only_fields(L, r, {"numerator", "denominator", "min_volume"}, "ratio"); !ok) return fail(ok.error().message);
  RatioSpec ratio;
  auto numerator = ratio_side(L, r, "numerator");
  if (!numerator) return fail(numerator.error().message);
  ratio.numerator = std::move(*numerator);
  auto denominator = ratio_side(L, r, "denominator");
  if (!denominator) return fail(denominator.error().message);
  ratio.denominator = std::move(*denominator);
  int mv = raw_field(L, r, "min_volume");
  if (mv != LUA_TNIL) {
    double v = lua_tonumber(L, -1);
    bool ok = mv == LUA_TNUMBER && std::isfinite(v) && v >= 0;
    std::string got = type_of(L, -1);
    lua_pop(L, 1);
    if (!ok) return fail("field 'ratio.min_volume' must be a number >= 0 (events in the denominator per tick; got " +
                         (mv == LUA_TNUMBER ? std::to_string(v) : got) + ")");
    ratio.min_volume = v;
  } else {
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  return std::optional<RatioSpec>(std::move(ratio));
}

// A whole number in [0, max] at the top of the stack (popped); `name` is the full field name.
Result<uint64_t> count_value(lua_State* L, const std::string& name, double max) {
  const int type = lua_type(L, -1);
  const double v = type == LUA_TNUMBER ? lua_tonumber(L, -1) : 0;
  char number[32];
  std::snprintf(number, sizeof number, "%.14g", v);
  const std::string got = type == LUA_TNUMBER ? number : type_of(L, -1);
  lua_pop(L, 1);
  if (type != LUA_TNUMBER || !std::isfinite(v) || v != std::floor(v) || v < 0 || v > max) {
    char bound[32];
    std::snprintf(bound, sizeof bound, "%.0f", max);
    return make_error("field '" + name + "' must be a whole number from 0 (the agent's default) to " + bound +
                      " (got " + got + ")");
  }
  return static_cast<uint64_t>(v);
}

// "field 'key'..." -> "field 'full'...": errors of the shared field readers, renamed for a
// field inside a table (capture.before).
std::string renamed(const std::string& message, const std::string& key, const std::string& full) {
  const std::string from = "field '" + key + "'";
  if (message.rfind(from, 0) != 0) return message;
  return "field '" + full + "'" + message.substr(from.size());
}

// "namespace/name", each part non-empty, no other '/'.
bool valid_pod_ref(const std::string& s) {
  const size_t slash = s.find('/');
  return slash != std::string::npos && slash > 0 && slash + 1 < s.size() && s.find('/', slash + 1) == std::string::npos &&
         s.size() <= 317;  // a namespace (63) and a pod name (253)
}

}  // namespace

std::vector<std::string> scope_pods(const Labels& scope) {
  const std::string* ns = find_label(scope, "namespace");
  const std::string* pod = find_label(scope, "pod");
  if (!ns || !pod || ns->empty() || pod->empty()) return {};
  return {*ns + "/" + *pod};
}

Result<CaptureSpec> read_capture_spec(lua_State* L, int index, const std::string& field, bool with_pods) {
  const int t = lua_absindex(L, index);
  // Sub-fields are named "capture.before" under a rule, "before" in capture{}.
  const std::string prefix = field.empty() ? "" : field + ".";
  const auto sub = [&](const char* key) { return prefix + key; };
  if (lua_type(L, t) != LUA_TTABLE)
    return make_error((field.empty() ? std::string("the argument") : "field '" + field + "'") +
                      " must be a table, e.g. { before = \"10s\", after = \"30s\", filter = \"tcp port 443\" } (got " +
                      type_of(L, t) + ")");
  const auto& known = with_pods ? kCaptureFieldsWithPods : kCaptureFields;
  {
    std::string error;
    lua_pushnil(L);
    while (error.empty() && lua_next(L, t)) {
      if (lua_type(L, -2) != LUA_TSTRING) error = "takes named fields only, found a positional value";
      else if (std::find(known.begin(), known.end(), std::string_view(lua_tostring(L, -2))) == known.end())
        error = unknown_field(lua_tostring(L, -2), known);
      lua_pop(L, 1);
    }
    if (!error.empty()) {
      lua_pop(L, 1);  // the key lua_next left behind
      return make_error(field.empty() ? error : "field '" + field + "': " + error);
    }
  }
  CaptureSpec spec;
  if (with_pods) {
    const int type = raw_field(L, t, "pods");
    std::string error;
    if (type == LUA_TSTRING) {
      spec.pods.emplace_back(lua_tostring(L, -1));
    } else if (type == LUA_TTABLE) {
      const lua_Unsigned n = lua_rawlen(L, -1);
      for (lua_Unsigned i = 1; i <= n && error.empty(); ++i) {
        if (lua_rawgeti(L, -1, static_cast<lua_Integer>(i)) == LUA_TSTRING) spec.pods.emplace_back(lua_tostring(L, -1));
        else error = "field '" + sub("pods") + "' must be a list of \"namespace/name\" strings (entry " + std::to_string(i) +
                     " is a " + type_of(L, -1) + ")";
        lua_pop(L, 1);
      }
      if (error.empty() && n == 0) {
        lua_pushnil(L);
        if (lua_next(L, -2)) {
          lua_pop(L, 2);
          error = "field '" + sub("pods") + "' must be a list of \"namespace/name\" strings";
        } else {
          error = "field '" + sub("pods") + "' is empty (give pods = a.pods, or leave it out for the anomaly's pods)";
        }
      }
      if (error.empty() && n > 16) error = "field '" + sub("pods") + "': at most 16 pods";
    } else if (type != LUA_TNIL) {
      error = "field '" + sub("pods") + "' must be a \"namespace/name\" string or a list of them (got " + type_of(L, -1) + ")";
    }
    lua_pop(L, 1);
    if (!error.empty()) return make_error(error);
    for (const auto& p : spec.pods)
      if (!valid_pod_ref(p)) return make_error("field '" + sub("pods") + "': '" + p + "' is not \"namespace/name\"");
  }
  for (const char* key : {"before", "after"}) {
    auto d = duration_field(L, t, key);
    if (!d) return make_error(renamed(d.error().message, key, sub(key)));
    if (*d) (std::string_view(key) == "before" ? spec.before_seconds : spec.after_seconds) = **d;
  }
  auto filter = string_field(L, t, "filter");
  if (!filter) return make_error(renamed(filter.error().message, "filter", sub("filter")));
  if (*filter) {
    if ((*filter)->size() > 1024) return make_error("field '" + sub("filter") + "' is longer than 1024 characters");
    spec.filter = **filter;
  }
  struct Count {
    const char* key;
    double max;
  };
  for (Count c : {Count{"snaplen", 262144}, Count{"max_packets", 1e12}, Count{"max_bytes", 1e15}}) {
    if (raw_field(L, t, c.key) == LUA_TNIL) {
      lua_pop(L, 1);
      continue;
    }
    auto v = count_value(L, sub(c.key), c.max);
    if (!v) return v.error();
    if (std::string_view(c.key) == "snaplen") spec.snaplen = static_cast<uint32_t>(*v);
    else if (std::string_view(c.key) == "max_packets") spec.max_packets = *v;
    else spec.max_bytes = *v;
  }
  return spec;
}

namespace {

Result<RuleSpec> parse_fields(lua_State* L, int t, const DetectorContext& ctx) {
  RuleSpec spec;
  // Unknown or positional fields first: a typo is the likeliest cause of any later error.
  std::string error;
  lua_pushnil(L);
  while (error.empty() && lua_next(L, t)) {
    if (lua_type(L, -2) != LUA_TSTRING) {
      error = "fields must be named (e.g. name = \"...\"), found a positional value";
    } else {
      std::string key = lua_tostring(L, -2);
      if (key == "for") error = "unknown field 'for' (use 'pending': `for` is a Lua keyword)";
      else if (std::find(kRuleFields.begin(), kRuleFields.end(), key) == kRuleFields.end()) error = unknown_field(key, kRuleFields);
    }
    lua_pop(L, 1);
  }
  if (!error.empty()) {
    lua_pop(L, 1);  // the key lua_next left behind
    return make_error(error);
  }

  auto ratio = ratio_field(L, t);
  if (!ratio) return ratio.error();
  spec.ratio = std::move(*ratio);

  auto metric = string_field(L, t, "metric");
  if (!metric) return metric.error();
  if (spec.ratio) {
    if (*metric) return make_error("field 'metric': a ratio rule names its metrics in ratio.numerator and ratio.denominator");
    spec.metric = term_text(spec.ratio->numerator) + " / " + term_text(spec.ratio->denominator);
  } else {
    if (!*metric) return make_error("missing required field 'metric' (a Prometheus metric name)");
    if (!valid_name(**metric, true)) return make_error("field 'metric': '" + **metric + "' is not a valid metric name");
    spec.metric = **metric;
  }

  auto where = where_field(L, t);
  if (!where) return where.error();
  if (spec.ratio && !where->empty())
    return make_error("field 'where': a ratio rule puts its matchers in each term (ratio.numerator.where, ...)");
  spec.where = std::move(*where);

  auto by = by_field(L, t);
  if (!by) return by.error();
  spec.by = std::move(*by);

  auto detector = detect_field(L, t, ctx);
  if (!detector) return detector.error();
  spec.detector = std::move(*detector);
  if (spec.ratio && std::string_view(spec.detector->name()) == "first_seen")
    return make_error("field 'detect': first_seen judges label values, not a ratio; use it with 'metric'");

  auto severity = string_field(L, t, "severity");
  if (!severity) return severity.error();
  if (*severity) {
    if (**severity != "info" && **severity != "warning" && **severity != "critical")
      return make_error("field 'severity' must be info, warning or critical (got '" + **severity + "')");
    spec.severity = **severity;
  }

  auto pending = duration_field(L, t, "pending");
  if (!pending) return pending.error();
  spec.pending = pending->value_or(0);

  auto resolve_after = duration_field(L, t, "resolve_after");
  if (!resolve_after) return resolve_after.error();
  spec.resolve_after = resolve_after->value_or(10);

  auto summary = string_field(L, t, "summary");
  if (!summary) return summary.error();
  spec.summary = *summary;

  auto on_anomaly = function_field(L, t, "on_anomaly");
  if (!on_anomaly) return on_anomaly.error();
  spec.on_anomaly = *on_anomaly;
  auto on_resolve = function_field(L, t, "on_resolve");
  if (!on_resolve) return on_resolve.error();
  spec.on_resolve = *on_resolve;

  auto cooldown = duration_field(L, t, "cooldown");
  if (!cooldown) return cooldown.error();
  spec.cooldown = cooldown->value_or(0);

  auto suppress = where_field(L, t, "suppress", "suppress");
  if (!suppress) return suppress.error();
  for (const auto& m : *suppress)
    if (std::find(spec.by.begin(), spec.by.end(), m.name) == spec.by.end())
      return make_error("field 'suppress': label '" + m.name + "' is not one of 'by' (suppress matches the group's labels)");
  spec.suppress = std::move(*suppress);

  int budget = raw_field(L, t, "max_notifications_per_hour");
  if (budget != LUA_TNIL) {
    bool ok = lua_isinteger(L, -1) && lua_tointeger(L, -1) >= 1 && lua_tointeger(L, -1) <= 1'000'000;
    if (!ok && budget == LUA_TNUMBER) {
      double v = lua_tonumber(L, -1);
      ok = v == std::floor(v) && v >= 1 && v <= 1e6;
    }
    if (ok) spec.max_notifications_per_hour = static_cast<uint32_t>(lua_tonumber(L, -1));
    std::string got = type_of(L, -1);
    lua_pop(L, 1);
    if (!ok) return make_error("field 'max_notifications_per_hour' must be a whole number from 1 to 1000000 (got " + got + ")");
  } else {
    lua_pop(L, 1);
  }

  if (raw_field(L, t, "capture") != LUA_TNIL) {
    auto capture = read_capture_spec(L, lua_gettop(L), "capture", false);
    lua_pop(L, 1);
    if (!capture) return capture.error();
    const auto grouped_by = [&](const char* label) { return std::find(spec.by.begin(), spec.by.end(), label) != spec.by.end(); };
    if (!grouped_by("namespace") || !grouped_by("pod"))
      return make_error("field 'capture': captures are of pods, so the rule must be grouped by pod: by = { \"namespace\", \"pod\", ... }");
    spec.capture = std::move(*capture);
  } else {
    lua_pop(L, 1);
  }
  return spec;
}

}  // namespace

bool RuleSpec::seeds_from_pods() const {
  // A rule with a capture option keeps its pods' lookback rings from their groups.
  if (!capture && detector && !detector->judges_quiet_pods()) return false;
  return std::all_of(by.begin(), by.end(), [](const auto& l) { return l == "namespace" || l == "pod"; });
}

std::vector<SeriesTerm> RuleSpec::terms() const {
  if (!ratio) return {SeriesTerm{metric, where}};
  std::vector<SeriesTerm> out = ratio->numerator;
  out.insert(out.end(), ratio->denominator.begin(), ratio->denominator.end());
  return out;
}

std::vector<std::string> RuleSpec::metrics() const {
  std::vector<std::string> out;
  for (const auto& term : terms())
    if (std::find(out.begin(), out.end(), term.metric) == out.end()) out.push_back(term.metric);
  return out;
}

Result<Params> read_params(lua_State* L, int index, const DetectorContext* ctx, int depth) {
  int t = lua_absindex(L, index);
  Params params;
  std::string error;
  int error_line = 0;  // a sub-detector's, when the error is its
  lua_pushnil(L);
  while (error.empty() && lua_next(L, t)) {
    const bool is_detector = luaL_testudata(L, -1, kDetectorMetatable) != nullptr;
    if (is_detector && ctx && lua_isinteger(L, -2)) {
      // A positional sub-detector: any { baseline.ewma {...}, change.cusum {...} }.
      std::string key = std::to_string(lua_tointeger(L, -2));
      auto child = build_detector(L, lua_gettop(L), *ctx, depth);
      if (child) params[key] = *child;
      else {
        error = "entry " + key + ": " + child.error().message;
        error_line = child.error().line;
      }
    } else if (lua_type(L, -2) != LUA_TSTRING) {
      error = "parameters must be named, e.g. { window = \"5m\", threshold = 4 }";
    } else {
      std::string key = lua_tostring(L, -2);
      switch (lua_type(L, -1)) {
        case LUA_TNUMBER: params[key] = lua_tonumber(L, -1); break;
        case LUA_TSTRING: params[key] = std::string(lua_tostring(L, -1)); break;
        case LUA_TBOOLEAN: params[key] = static_cast<bool>(lua_toboolean(L, -1)); break;
        default: error = "field '" + key + "' must be a number, string or boolean (got " + type_of(L, -1) + ")";
      }
    }
    lua_pop(L, 1);
  }
  if (!error.empty()) {
    lua_pop(L, 1);
    return Error{error, error_line};
  }
  return params;
}

Result<RuleSpec> parse_rule(lua_State* L, int index, const DetectorContext& ctx) {
  int t = lua_absindex(L, index);
  auto name = string_field(L, t, "name");
  if (!name) return context("rule", name.error());
  if (!*name || (*name)->empty()) return make_error("rule: missing required field 'name'");
  auto spec = parse_fields(L, t, ctx);
  if (!spec) return context("rule '" + **name + "'", spec.error());
  spec->name = **name;
  return spec;
}

}  // namespace vigil::rules
