// Result<T>: the one error path in Vigil. An Error names the step that failed and why,
// e.g. "attach tc ingress on veth1234: Operation not permitted".
#pragma once

#include <string>
#include <utility>
#include <variant>

namespace vigil {

struct Error {
  std::string message;
  // The line of the input the error is about, when a step below knows it better than the step
  // that reports it (a detector's line inside a rule spanning many); 0 when not known.
  int line = 0;
};

template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}  // NOLINT(google-explicit-constructor)
  Result(Error error) : v_(std::move(error)) {}  // NOLINT(google-explicit-constructor)

  bool ok() const { return std::holds_alternative<T>(v_); }
  explicit operator bool() const { return ok(); }
  T& value() & { return std::get<T>(v_); }
  const T& value() const& { return std::get<T>(v_); }
  T&& value() && { return std::get<T>(std::move(v_)); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  const Error& error() const { return std::get<Error>(v_); }

 private:
  std::variant<T, Error> v_;
};

template <>
class [[nodiscard]] Result<void> {
 public:
  Result() = default;
  Result(Error error) : err_(std::move(error)), failed_(true) {}  // NOLINT
  bool ok() const { return !failed_; }
  explicit operator bool() const { return ok(); }
  const Error& error() const { return err_; }

 private:
  Error err_;
  bool failed_ = false;
};

inline Error make_error(std::string message) { return Error{std::move(message)}; }

// Prefixes an error with the step that was being attempted.
inline Error context(const std::string& step, const Error& e) { return Error{step + ": " + e.message, e.line}; }

}  // namespace vigil
