// Helpers shared by the detector implementations (detectors.cpp, detectors_learned.cpp):
// parameter parsing with field-named errors, the snapshot format, and the score mapping.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "rules/runtime/detectors.h"

namespace vigil::rules::detail {

Result<void> only_known(const Params& params, const std::vector<std::string_view>& known);
Result<std::optional<double>> number_field(const Params& params, const std::string& key);
Result<std::optional<double>> duration_field(const Params& params, const std::string& key);
Result<Direction> direction_field(const Params& params, Direction fallback);
// A duration turned into ticks (at least `min_ticks`, at most `max_ticks`), for messages that
// name the field.
Result<size_t> ticks_of(const std::string& field, double seconds, const DetectorContext& ctx, size_t min_ticks,
                        size_t max_ticks);
const char* direction_name(Direction d);
std::string number_text(double v);  // shortest round-tripping form, "4", "0.5"

// score / threshold in the watched direction mapped to [0,1): r^2 / (1 + r^2).
double probability_of(double score, double threshold, Direction d);
bool beyond(double score, double threshold, Direction d);

constexpr double kInf = std::numeric_limits<double>::infinity();

// Snapshots: a magic tag naming the detector and its format version, then fixed-width fields
// in host byte order (snapshots are for the same agent binary on the same node).
class SnapshotWriter {
 public:
  SnapshotWriter(std::string& out, std::string_view tag) : out_(out) {
    out_.clear();
    out_.append(tag);
    out_.push_back('\0');
  }
  template <typename T>
  void put(T v) {
    char buf[sizeof(T)];
    std::memcpy(buf, &v, sizeof(T));
    out_.append(buf, sizeof(T));
  }
  void put_doubles(const std::vector<double>& v) {
    put<uint64_t>(v.size());
    for (double d : v) put(d);
  }

 private:
  std::string& out_;
};

class SnapshotReader {
 public:
  SnapshotReader(std::string_view in, std::string_view tag) : in_(in) {
    if (in_.size() < tag.size() + 1 || in_.substr(0, tag.size()) != tag || in_[tag.size()] != '\0') ok_ = false;
    else pos_ = tag.size() + 1;
  }
  template <typename T>
  T get() {
    T v{};
    if (!ok_ || in_.size() - pos_ < sizeof(T)) {
      ok_ = false;
      return v;
    }
    std::memcpy(&v, in_.data() + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }
  // Reads a vector that must have exactly `expected` entries (the parameters fix its size).
  std::vector<double> get_doubles(size_t expected) {
    auto n = get<uint64_t>();
    std::vector<double> v;
    if (!ok_ || n != expected) {
      ok_ = false;
      return v;
    }
    v.resize(expected);
    for (auto& d : v) d = get<double>();
    return v;
  }
  // True when everything was read and nothing is left over.
  bool done() const { return ok_ && pos_ == in_.size(); }
  bool ok() const { return ok_; }
  void fail() { ok_ = false; }

 private:
  std::string_view in_;
  size_t pos_ = 0;
  bool ok_ = true;
};

Result<std::shared_ptr<const Detector>> make_ewma(const Params& params, const DetectorContext& ctx);
Result<std::shared_ptr<const Detector>> make_mad(const Params& params, const DetectorContext& ctx);
Result<std::shared_ptr<const Detector>> make_seasonal(const Params& params, const DetectorContext& ctx);
Result<std::shared_ptr<const Detector>> make_cusum(const Params& params, const DetectorContext& ctx);
Result<std::shared_ptr<const Detector>> make_range(const Params& params, const DetectorContext& ctx);
Result<std::shared_ptr<const Detector>> make_rate_of_change(const Params& params, const DetectorContext& ctx);
Result<std::shared_ptr<const Detector>> make_any(const Params& params, const DetectorContext& ctx);

}  // namespace vigil::rules::detail
