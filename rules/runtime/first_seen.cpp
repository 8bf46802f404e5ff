#include "rules/runtime/first_seen.h"

#include <algorithm>
#include <cctype>
#include <cmath>

#include "rules/core/series.h"
#include "rules/runtime/detector_util.h"
#include "rules/runtime/durations.h"
#include "rules/runtime/state_store.h"

namespace vigil::rules {
namespace {

using namespace detail;

constexpr size_t kMaxValuesCap = 4096;
constexpr const char* kTag = "vigil.first_seen.v1";

bool valid_label(const std::string& s) {
  if (s.empty()) return false;
  for (size_t i = 0; i < s.size(); ++i) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    if (!(std::isalpha(c) || c == '_' || (i > 0 && std::isdigit(c)))) return false;
  }
  return true;
}

}  // namespace

bool FirstSeenState::remember(uint64_t h) {
  auto it = std::lower_bound(hashes_.begin(), hashes_.end(), h);
  if (it != hashes_.end() && *it == h) return true;
  if (hashes_.size() >= p_.max_values) return false;
  hashes_.insert(it, h);
  return true;
}

std::vector<size_t> FirstSeenState::observe(const std::vector<std::string>& values, double age, bool judge) {
  std::vector<size_t> fresh;
  const bool learning = !judge || age + 1e-6 < p_.learn;
  for (size_t i = 0; i < values.size(); ++i) {
    const uint64_t h = fnv1a64(values[i]);
    if (std::binary_search(hashes_.begin(), hashes_.end(), h)) continue;
    if (!remember(h)) {
      ++overflow_;  // full: neither remembered nor judged
      continue;
    }
    if (!learning) fresh.push_back(i);
  }
  return fresh;
}

Verdict FirstSeenState::evaluate(double value, double /*age*/) const {
  Verdict v;
  v.score = value;
  v.baseline = 0;
  v.band_low = -kInf;
  v.band_high = 0;
  v.anomalous = value > 0;
  v.probability = v.anomalous ? 1.0 : 0.0;
  return v;
}

void FirstSeenState::save(std::string& out) const {
  SnapshotWriter w(out, kTag);
  w.put<uint64_t>(p_.max_values);
  w.put<uint64_t>(overflow_);
  w.put<uint64_t>(hashes_.size());
  for (uint64_t h : hashes_) w.put(h);
}

bool FirstSeenState::restore(std::string_view in) {
  SnapshotReader r(in, kTag);
  if (r.get<uint64_t>() != p_.max_values) return false;
  const auto overflow = r.get<uint64_t>();
  const auto n = r.get<uint64_t>();
  if (!r.ok() || n > p_.max_values) return false;
  std::vector<uint64_t> hashes;
  hashes.reserve(n);
  for (uint64_t i = 0; i < n; ++i) hashes.push_back(r.get<uint64_t>());
  if (!r.done() || !std::is_sorted(hashes.begin(), hashes.end())) return false;
  hashes_ = std::move(hashes);
  overflow_ = reported_overflow_ = overflow;
  return true;
}

FirstSeenDetector::FirstSeenDetector(FirstSeenParams p) : p_(std::move(p)) {
  for (const auto& l : p_.labels) value_label_ += (value_label_.empty() ? "" : ",") + l;
  summary_ = "{scope} used a new " + value_label_ + " {" + value_label_ + "}, not seen in " +
             format_duration(p_.learn) + " of learning";
}

std::string FirstSeenDetector::describe() const {
  return "label=" + value_label_ + " learn=" + format_duration(p_.learn) +
         " max_values=" + std::to_string(p_.max_values);
}

std::string FirstSeenDetector::value_of(const Labels& labels) const {
  std::string out;
  bool any = false;
  for (size_t i = 0; i < p_.labels.size(); ++i) {
    const std::string* v = find_label(labels, p_.labels[i]);
    if (i) out += '/';
    if (v && !v->empty()) out += *v, any = true;
  }
  return any ? out : std::string();
}

Result<std::shared_ptr<const Detector>> make_first_seen(const Params& params, const DetectorContext& ctx) {
  if (auto r = only_known(params, {"label", "learn", "max_values"}); !r) return r.error();
  FirstSeenParams p;
  auto label = params.find("label");
  if (label == params.end())
    return make_error("missing required field 'label' (e.g. label = \"remote_ip\", or \"remote_namespace,remote_pod\")");
  const auto* text = std::get_if<std::string>(&label->second);
  if (!text) return make_error("field 'label' must be a label name or names separated by commas");
  size_t start = 0;
  while (start <= text->size()) {
    size_t comma = text->find(',', start);
    if (comma == std::string::npos) comma = text->size();
    std::string name = text->substr(start, comma - start);
    if (!valid_label(name)) return make_error("field 'label': '" + name + "' is not a label name");
    if (std::find(p.labels.begin(), p.labels.end(), name) != p.labels.end())
      return make_error("field 'label' names '" + name + "' twice");
    p.labels.push_back(name);
    start = comma + 1;
  }
  if (p.labels.size() > 4) return make_error("field 'label': at most 4 labels");

  auto learn = duration_field(params, "learn");
  if (!learn) return learn.error();
  if (!*learn) return make_error("missing required field 'learn' (e.g. learn = \"1h\")");
  if (**learn < ctx.tick_seconds)
    return make_error("field 'learn': " + format_duration(**learn) + " is shorter than one tick of " +
                      format_duration(ctx.tick_seconds));
  p.learn = **learn;

  auto max_values = number_field(params, "max_values");
  if (!max_values) return max_values.error();
  if (*max_values) {
    double m = **max_values;
    if (m != std::floor(m) || m < 1 || m > static_cast<double>(kMaxValuesCap))
      return make_error("field 'max_values' must be a whole number from 1 to " + std::to_string(kMaxValuesCap));
    p.max_values = static_cast<size_t>(m);
  }
  return std::shared_ptr<const Detector>(std::make_shared<FirstSeenDetector>(std::move(p)));
}

}  // namespace vigil::rules
