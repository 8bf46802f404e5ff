#include "rules/runtime/lua_detector.h"

#include <cctype>
#include <cmath>
#include <cstring>
#include <lua.hpp>
#include <vector>

#include "rules/runtime/detector_util.h"

namespace vigil::rules {
namespace {

constexpr std::string_view kTag{"vigil.lua.v1\0", 13};

// True when the message starts with "<source>:<line>:".
bool has_location(const std::string& message) {
  size_t sep = message.find(": ");
  if (sep == std::string::npos || sep == 0) return false;
  size_t colon = message.rfind(':', sep - 1);
  if (colon == std::string::npos || colon + 1 >= sep) return false;
  for (size_t i = colon + 1; i < sep; ++i)
    if (!std::isdigit(static_cast<unsigned char>(message[i]))) return false;
  return true;
}

void unref(const std::shared_ptr<LuaSandbox* const>& handle, int ref) {
  if (ref == LUA_NOREF || ref == LUA_REFNIL) return;
  LuaSandbox* sb = *handle;
  if (!sb) return;  // the whole state is gone, and the reference with it
  LuaSandbox::EngineSection section(sb->state());
  luaL_unref(sb->state(), LUA_REGISTRYINDEX, ref);
}

// Reads one number field of update()'s result; "" or what is wrong.
std::string number_of(lua_State* L, int t, const char* key, double& out) {
  lua_pushstring(L, key);
  int type = lua_rawget(L, t);
  std::string error;
  if (type == LUA_TNUMBER) {
    double v = lua_tonumber(L, -1);
    if (std::isnan(v)) error = std::string("field '") + key + "' is NaN";
    else out = v;
  } else if (type != LUA_TNIL) {
    error = std::string("field '") + key + "' must be a number (got " + luaL_typename(L, -1) + ")";
  }
  lua_pop(L, 1);
  return error;
}

// update()'s result at the top of the stack, raw accesses only.
std::string read_verdict(lua_State* L, double value, Verdict& v) {
  const int t = lua_gettop(L);
  if (lua_type(L, t) != LUA_TTABLE)
    return std::string("update must return a table { anomalous = true/false, score = ..., baseline = ..., band_low = ..., "
                       "band_high = ... } (got ") + luaL_typename(L, t) + ")";
  static const char* const kKnown[] = {"anomalous", "score", "baseline", "band_low", "band_high", "probability"};
  std::string error;
  int entries = 0;
  lua_pushnil(L);
  while (error.empty() && lua_next(L, t)) {
    bool known = false;
    if (lua_type(L, -2) == LUA_TSTRING)
      for (const char* k : kKnown) known = known || std::strcmp(k, lua_tostring(L, -2)) == 0;
    if (!known || ++entries > 6)
      error = std::string("update returned an unknown field ") +
              (lua_type(L, -2) == LUA_TSTRING ? "'" + std::string(lua_tostring(L, -2)) + "'" : "(not a name)") +
              " (known: anomalous, score, baseline, band_low, band_high, probability)";
    lua_pop(L, 1);
  }
  if (!error.empty()) {
    lua_pop(L, 1);
    return error;
  }
  lua_pushliteral(L, "anomalous");
  int type = lua_rawget(L, t);
  if (type != LUA_TNIL && type != LUA_TBOOLEAN) error = std::string("field 'anomalous' must be a boolean (got ") + luaL_typename(L, -1) + ")";
  v.anomalous = lua_toboolean(L, -1);
  lua_pop(L, 1);
  if (!error.empty()) return error;
  v.score = 0;
  v.baseline = value;
  v.band_low = -detail::kInf;
  v.band_high = detail::kInf;
  double probability = v.anomalous ? 1 : 0;
  for (auto [key, out] : {std::pair<const char*, double*>{"score", &v.score}, {"baseline", &v.baseline},
                          {"band_low", &v.band_low}, {"band_high", &v.band_high}, {"probability", &probability}})
    if (error = number_of(L, t, key, *out); !error.empty()) return error;
  if (!(probability >= 0 && probability <= 1)) return "field 'probability' must be in [0, 1]";
  v.probability = probability;
  return "";
}

class LuaDetectorState : public DetectorState {
 public:
  explicit LuaDetectorState(std::shared_ptr<const LuaDetector> d) : d_(std::move(d)) {}
  ~LuaDetectorState() override { unref(d_->sandbox_, ref_); }

  Verdict evaluate(double value, double age) const override { return evaluate_at(value, age, 0); }
  Verdict evaluate_at(double value, double age, double now) const override;
  void learn(double) override {}
  void save(std::string& out) const override;
  bool restore(std::string_view in) override;
  size_t memory_bytes() const override { return sizeof(*this); }

 private:
  void fail(LuaSandbox::CallError error, const std::string& where, const char* what) const {
    if (!has_location(error.message)) error.message = where + ": " + error.message + " (in " + d_->def_.name + " " + what + ")";
    if (error.kind == LuaSandbox::CallError::Kind::Budget && error.message.ends_with(" per call)"))
      error.message.replace(error.message.size() - 10, 10, " per tick, shared by the rule's detector calls)");
    if (!d_->failure_) d_->failure_ = LuaDetector::Failure{std::move(error), 0};
    ++d_->failure_->calls;
  }

  std::shared_ptr<const LuaDetector> d_;
  mutable int ref_ = LUA_NOREF;  // the group's state table
  mutable Verdict last_;         // kept when a call fails
};

Verdict LuaDetectorState::evaluate_at(double value, double /*age*/, double now) const {
  const LuaDetector& d = *d_;
  LuaSandbox* sb = *d.sandbox_;
  if (!sb) return last_;
  if (!d.tick_ || *d.tick_ != now) {  // a new tick: a fresh budget for the rule's calls
    d.tick_ = now;
    d.spent_ = 0;
  }
  lua_State* L = sb->state();
  if (ref_ == LUA_NOREF) {
    if (d.def_.init_ref != LUA_NOREF) {
      {
        LuaSandbox::EngineSection section(L);
        lua_rawgeti(L, LUA_REGISTRYINDEX, d.def_.init_ref);
        lua_rawgeti(L, LUA_REGISTRYINDEX, d.params_ref_);
      }
      if (auto error = sb->call_shared(1, 1, &d.spent_)) {
        fail(std::move(*error), d.def_.location, "init");
        return last_;
      }
      if (lua_type(L, -1) != LUA_TTABLE) {
        LuaSandbox::CallError e;
        e.message = d.def_.location + ": detector '" + d.def_.name + "': init must return a table (got " +
                    luaL_typename(L, -1) + ")";
        lua_pop(L, 1);
        fail(std::move(e), d.def_.location, "init");
        return last_;
      }
    } else {
      LuaSandbox::EngineSection section(L);
      lua_newtable(L);
    }
    LuaSandbox::EngineSection section(L);
    ref_ = luaL_ref(L, LUA_REGISTRYINDEX);
  }
  {
    LuaSandbox::EngineSection section(L);
    lua_rawgeti(L, LUA_REGISTRYINDEX, d.def_.update_ref);
    lua_rawgeti(L, LUA_REGISTRYINDEX, ref_);
    lua_pushnumber(L, value);
    lua_pushnumber(L, now);
    lua_rawgeti(L, LUA_REGISTRYINDEX, d.params_ref_);
  }
  if (auto error = sb->call_shared(4, 1, &d.spent_)) {
    fail(std::move(*error), d.def_.update_location, "update");
    return last_;
  }
  Verdict v;
  std::string problem;
  {
    LuaSandbox::EngineSection section(L);
    problem = read_verdict(L, value, v);
    lua_pop(L, 1);
  }
  if (!problem.empty()) {
    LuaSandbox::CallError e;
    e.message = d.def_.update_location + ": detector '" + d.def_.name + "': " + problem;
    fail(std::move(e), d.def_.update_location, "update");
    return last_;
  }
  d.ran_ = true;
  last_ = v;
  return v;
}

// The snapshot: the tag, then 0 (no state table yet), 2 (a table save() cannot keep: restore
// refuses it and the group warms up again) or 1, a count and the entries, each a key and a
// value as a type byte ('i' integer, 'f' float, 's' string, 'b' boolean) and its bytes.
void put_value(std::string& out, lua_State* L, int index) {
  auto put = [&out](const void* p, size_t n) { out.append(static_cast<const char*>(p), n); };
  switch (lua_type(L, index)) {
    case LUA_TBOOLEAN: {
      out.push_back('b');
      out.push_back(lua_toboolean(L, index) ? 1 : 0);
      break;
    }
    case LUA_TNUMBER:
      if (lua_isinteger(L, index)) {
        out.push_back('i');
        lua_Integer i = lua_tointeger(L, index);
        put(&i, sizeof i);
      } else {
        out.push_back('f');
        double f = lua_tonumber(L, index);
        put(&f, sizeof f);
      }
      break;
    default: {  // a string: checked by the caller
      size_t len = 0;
      const char* s = lua_tolstring(L, index, &len);
      out.push_back('s');
      uint32_t n = static_cast<uint32_t>(len);
      put(&n, sizeof n);
      put(s, len);
    }
  }
}

void LuaDetectorState::save(std::string& out) const {
  out.assign(kTag);
  LuaSandbox* sb = *d_->sandbox_;
  if (!sb || ref_ == LUA_NOREF) {
    out.push_back(0);
    return;
  }
  lua_State* L = sb->state();
  LuaSandbox::EngineSection section(L);
  lua_rawgeti(L, LUA_REGISTRYINDEX, ref_);
  const int t = lua_gettop(L);
  std::string body;
  uint32_t count = 0;
  size_t string_bytes = 0;
  bool flat = true;
  lua_pushnil(L);
  while (lua_next(L, t)) {
    const int kt = lua_type(L, -2), vt = lua_type(L, -1);
    // Both checked before either is converted: lua_tolstring on a number key would break next.
    const bool ok_key = kt == LUA_TSTRING || kt == LUA_TNUMBER;
    const bool ok_value = vt == LUA_TSTRING || vt == LUA_TNUMBER || vt == LUA_TBOOLEAN;
    if (kt == LUA_TSTRING) string_bytes += lua_rawlen(L, -2);
    if (vt == LUA_TSTRING) string_bytes += lua_rawlen(L, -1);
    if (!ok_key || !ok_value || ++count > kMaxSavedEntries || string_bytes > kMaxSavedStringBytes) {
      flat = false;
      lua_pop(L, 2);
      break;
    }
    lua_pushvalue(L, -2);  // a copy of the key, so converting it cannot disturb lua_next
    put_value(body, L, -1);
    lua_pop(L, 1);
    put_value(body, L, -1);
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  if (!flat) {
    out.push_back(2);
    return;
  }
  out.push_back(1);
  out.append(reinterpret_cast<const char*>(&count), sizeof count);
  out += body;
}

struct Item {
  char type = 0;
  lua_Integer i = 0;
  double f = 0;
  bool b = false;
  std::string s;
};

bool read_item(std::string_view in, size_t& pos, Item& item) {
  auto get = [&](void* p, size_t n) {
    if (in.size() - pos < n) return false;
    std::memcpy(p, in.data() + pos, n);
    pos += n;
    return true;
  };
  if (!get(&item.type, 1)) return false;
  switch (item.type) {
    case 'b': {
      char c = 0;
      if (!get(&c, 1)) return false;
      item.b = c != 0;
      return true;
    }
    case 'i': return get(&item.i, sizeof item.i);
    case 'f': return get(&item.f, sizeof item.f);
    case 's': {
      uint32_t n = 0;
      if (!get(&n, sizeof n) || n > kMaxSavedStringBytes || in.size() - pos < n) return false;
      item.s.assign(in.data() + pos, n);
      pos += n;
      return true;
    }
  }
  return false;
}

void push_item(lua_State* L, const Item& item) {
  switch (item.type) {
    case 'b': lua_pushboolean(L, item.b); break;
    case 'i': lua_pushinteger(L, item.i); break;
    case 'f': lua_pushnumber(L, item.f); break;
    default: lua_pushlstring(L, item.s.data(), item.s.size());
  }
}

bool LuaDetectorState::restore(std::string_view in) {
  LuaSandbox* sb = *d_->sandbox_;
  if (!sb || in.size() < kTag.size() + 1 || in.substr(0, kTag.size()) != kTag) return false;
  size_t pos = kTag.size();
  const char flag = in[pos++];
  if (flag == 0 && pos == in.size()) {  // saved before its first sample: init runs as usual
    unref(d_->sandbox_, ref_);
    ref_ = LUA_NOREF;
    return true;
  }
  if (flag != 1) return false;
  uint32_t count = 0;
  if (in.size() - pos < sizeof count) return false;
  std::memcpy(&count, in.data() + pos, sizeof count);
  pos += sizeof count;
  if (count > kMaxSavedEntries) return false;
  std::vector<std::pair<Item, Item>> entries(count);
  for (auto& [k, v] : entries) {
    if (!read_item(in, pos, k) || !read_item(in, pos, v)) return false;
    if (k.type == 'b' || (k.type == 'f' && std::isnan(k.f))) return false;
  }
  if (pos != in.size()) return false;
  lua_State* L = sb->state();
  LuaSandbox::EngineSection section(L);
  lua_createtable(L, 0, static_cast<int>(count));
  for (const auto& [k, v] : entries) {
    push_item(L, k);
    push_item(L, v);
    lua_rawset(L, -3);
  }
  unref(d_->sandbox_, ref_);
  ref_ = luaL_ref(L, LUA_REGISTRYINDEX);
  return true;
}

}  // namespace

LuaDetector::LuaDetector(lua_State* L, LuaDetectorDef def, Params params)
    : sandbox_(LuaSandbox::from(L).handle()), def_(std::move(def)), params_(std::move(params)) {
  LuaSandbox::EngineSection section(L);
  lua_createtable(L, 0, static_cast<int>(params_.size()));
  for (const auto& [key, value] : params_) {
    if (const double* n = std::get_if<double>(&value)) lua_pushnumber(L, *n);
    else if (const std::string* s = std::get_if<std::string>(&value)) lua_pushlstring(L, s->data(), s->size());
    else if (const bool* b = std::get_if<bool>(&value)) lua_pushboolean(L, *b);
    else continue;  // read_params() without a context makes no sub-detectors
    lua_setfield(L, -2, key.c_str());
    describe_ += (describe_.empty() ? "" : " ") + key + "=";
    if (const double* n = std::get_if<double>(&value)) describe_ += detail::number_text(*n);
    else if (const std::string* s = std::get_if<std::string>(&value)) describe_ += *s;
    else describe_ += std::get<bool>(value) ? "true" : "false";
  }
  params_ref_ = luaL_ref(L, LUA_REGISTRYINDEX);
}

LuaDetector::~LuaDetector() {
  unref(sandbox_, params_ref_);
  unref(sandbox_, def_.init_ref);
  unref(sandbox_, def_.update_ref);
}

std::unique_ptr<DetectorState> LuaDetector::new_state() const {
  return std::make_unique<LuaDetectorState>(shared_from_this());
}

std::optional<LuaDetector::Failure> LuaDetector::take_error() const {
  ran_ = false;
  auto out = std::move(failure_);
  failure_.reset();
  return out;
}

}  // namespace vigil::rules
