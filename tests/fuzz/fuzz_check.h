// What every fuzz target shares: a failed invariant aborts with a message, so that the driver
// (tests/fuzz/driver.cpp) or libFuzzer keeps the input that broke it.
#pragma once

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

namespace vigil::fuzz {

[[noreturn]] inline void fail(const std::string& what) {
  std::fprintf(stderr, "vigil fuzz: invariant broken: %s\n", what.c_str());
  std::abort();
}

inline void check(bool ok, const std::string& what) {
  if (!ok) fail(what);
}

inline std::string text_of(const uint8_t* data, size_t size) { return std::string(reinterpret_cast<const char*>(data), size); }

// An error message a user can act on: not empty, and naming what it is about when `about` is
// given (the file, say).
inline void check_error(const std::string& message, std::string_view about, const std::string& where) {
  check(!message.empty(), where + ": empty error message");
  if (!about.empty())
    check(message.find(about) != std::string::npos, where + ": error does not name " + std::string(about) + ": " + message);
}

}  // namespace vigil::fuzz
