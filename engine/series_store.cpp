#include "engine/series_store.h"

#include <prometheus/metric_family.h>

#include <stdexcept>

namespace vigil {

void SeriesStore::describe(const std::string& name, const std::string& help, SeriesKind kind) {
  std::lock_guard lock(mu_);
  auto& f = families_[name];
  f.help = help;
  f.kind = kind;
}

SeriesStore::Family& SeriesStore::described(const std::string& name) {
  auto it = families_.find(name);
  if (it == families_.end()) throw std::logic_error("series family not described: " + name);
  return it->second;
}

void SeriesStore::set(const std::string& name, const Labels& labels, double value) {
  std::lock_guard lock(mu_);
  described(name).series[labels].value = value;
}

bool SeriesStore::set_continued(const std::string& name, const Labels& labels, double count, uint64_t epoch) {
  std::lock_guard lock(mu_);
  auto& series = described(name).series;
  const bool made = series.find(labels) == nullptr;
  SeriesValue& s = series[labels];
  // A series made now has epoch 0, and so starts with all the source has.
  if (s.epoch != epoch || count < s.raw) s.offset = s.value;
  s.raw = count;
  s.epoch = epoch;
  s.value = s.offset + count;
  return made;
}

SeriesStore::Family& SeriesStore::described_histogram(const std::string& name, const std::vector<double>& upper_bounds,
                                                      const std::vector<uint64_t>& counts) {
  auto it = families_.find(name);
  if (it == families_.end() || it->second.kind != SeriesKind::Histogram)
    throw std::logic_error("histogram family not described: " + name);
  if (upper_bounds.size() != counts.size()) throw std::logic_error("histogram bounds and counts differ: " + name);
  if (it->second.bounds.empty()) it->second.bounds = upper_bounds;
  if (it->second.bounds.size() != counts.size()) throw std::logic_error("histogram bounds changed: " + name);
  return it->second;
}

void SeriesStore::set_histogram(const std::string& name, const Labels& labels, const std::vector<double>& upper_bounds,
                                const std::vector<uint64_t>& bucket_counts, double sum) {
  std::lock_guard lock(mu_);
  HistogramValue& h = described_histogram(name, upper_bounds, bucket_counts).histograms[labels];
  h.counts.assign(bucket_counts.begin(), bucket_counts.end());  // in place: no allocation a tick
  h.sum = sum;
}

void SeriesStore::set_histogram_continued(const std::string& name, const Labels& labels,
                                          const std::vector<double>& upper_bounds,
                                          const std::vector<uint64_t>& bucket_counts, double sum, uint64_t epoch) {
  std::lock_guard lock(mu_);
  HistogramValue& h = described_histogram(name, upper_bounds, bucket_counts).histograms[labels];
  bool again = h.epoch != epoch || sum < h.raw_sum || h.raw_counts.size() != bucket_counts.size();
  for (size_t i = 0; !again && i < bucket_counts.size(); ++i) again = bucket_counts[i] < h.raw_counts[i];
  if (h.counts.size() != bucket_counts.size()) h.counts.assign(bucket_counts.size(), 0);
  if (again) {
    h.raw_counts.assign(bucket_counts.size(), 0);
    h.sum_offset = h.sum;
  }
  for (size_t i = 0; i < bucket_counts.size(); ++i) h.counts[i] += bucket_counts[i] - h.raw_counts[i];
  h.raw_counts.assign(bucket_counts.begin(), bucket_counts.end());
  h.raw_sum = sum;
  h.epoch = epoch;
  h.sum = h.sum_offset + sum;
}

void SeriesStore::set_read_time(const std::string& name, double unix_time) {
  std::lock_guard lock(mu_);
  Family& f = described(name);
  if (unix_time == f.read_time) return;
  f.previous_read_time = f.read_time;
  f.read_time = unix_time;
  f.first_read.clear();
}

void SeriesStore::mark_first_read(const std::string& name, const Labels& labels) {
  std::lock_guard lock(mu_);
  described(name).first_read.insert(labels);
}

std::optional<double> SeriesStore::value(const std::string& name, const Labels& labels) const {
  std::lock_guard lock(mu_);
  auto f = families_.find(name);
  if (f == families_.end()) return std::nullopt;
  const SeriesValue* v = f->second.series.find(labels);
  if (!v) return std::nullopt;
  return v->value;
}

void SeriesStore::clear(const std::string& name) {
  std::lock_guard lock(mu_);
  Family& f = described(name);
  f.series.clear();
  f.first_read.clear();
  f.histograms.clear();
}

namespace {
template <class Family, class Match>
void erase_matching(Family& family, const Match& match) {
  family.series.erase_if(match);
  std::erase_if(family.first_read, [&](const Labels& l) { return match(l); });
  family.histograms.erase_if(match);
}
}  // namespace

void SeriesStore::remove_if(const std::function<bool(const Labels&)>& match) {
  std::lock_guard lock(mu_);
  for (auto& [name, family] : families_) erase_matching(family, match);
}

void SeriesStore::remove_if(const std::string& name, const std::function<bool(const Labels&)>& match) {
  std::lock_guard lock(mu_);
  if (auto it = families_.find(name); it != families_.end()) erase_matching(it->second, match);
}

std::vector<Sample> SeriesStore::snapshot(const std::set<std::string>* only) const {
  std::lock_guard lock(mu_);
  // A series family is wanted by its name, a histogram's sum and count each by theirs.
  auto wanted = [&](const std::string& name) { return !only || only->count(name) > 0; };
  struct Chosen {
    const std::string* name;
    const Family* family;
    bool series, sum, count;
  };
  std::vector<Chosen> chosen;
  size_t n = 0;
  for (const auto& [name, family] : families_) {
    Chosen c{&name, &family, wanted(name), false, false};
    if (!family.histograms.empty()) {
      c.sum = wanted(name + "_sum");
      c.count = wanted(name + "_count");
    }
    n += (c.series ? family.series.size() : 0) + (c.sum + c.count) * family.histograms.size();
    if (c.series || c.sum || c.count) chosen.push_back(c);
  }
  std::vector<Sample> out;
  out.reserve(n);  // one allocation, not a copy of every sample each time the vector grows
  for (const auto& [name_ptr, family_ptr, series, sum, count] : chosen) {
    const std::string& name = *name_ptr;
    const Family& family = *family_ptr;
    const double t = family.read_time, t0 = family.previous_read_time;
    if (series)
      for (const auto& [labels, value] : family.series) {
        const bool first = !family.first_read.empty() && family.first_read.count(labels);
        out.push_back(Sample{name, labels, value.value, family.kind, t, first ? 0 : t0});
      }
    if (sum || count)
      for (const auto& [labels, h] : family.histograms) {
        if (sum) out.push_back(Sample{name + "_sum", labels, h.sum, SeriesKind::Counter, t, t0});
        if (!count) continue;
        uint64_t total = 0;
        for (auto c : h.counts) total += c;
        out.push_back(Sample{name + "_count", labels, static_cast<double>(total), SeriesKind::Counter, t, t0});
      }
  }
  return out;
}

std::vector<std::string> SeriesStore::sample_names() const {
  std::lock_guard lock(mu_);
  std::vector<std::string> out;
  for (const auto& [name, family] : families_) {
    if (family.kind == SeriesKind::Histogram) {
      out.push_back(name + "_sum");
      out.push_back(name + "_count");
    } else {
      out.push_back(name);
    }
  }
  return out;
}

size_t SeriesStore::size() const {
  std::lock_guard lock(mu_);
  size_t n = 0;
  for (const auto& [name, family] : families_) n += family.series.size() + family.histograms.size();
  return n;
}

std::vector<prometheus::MetricFamily> SeriesStore::Collect() const {
  std::lock_guard lock(mu_);
  std::vector<prometheus::MetricFamily> out;
  out.reserve(families_.size());
  for (const auto& [name, family] : families_) {
    prometheus::MetricFamily mf;
    mf.name = name;
    mf.help = family.help;
    mf.type = family.kind == SeriesKind::Counter   ? prometheus::MetricType::Counter
              : family.kind == SeriesKind::Gauge ? prometheus::MetricType::Gauge
                                                 : prometheus::MetricType::Histogram;
    for (const auto& [labels, h] : family.histograms) {
      prometheus::ClientMetric m;
      for (const auto& [k, v] : labels) m.label.push_back({k, v});
      uint64_t cumulative = 0;
      for (size_t i = 0; i < h.counts.size(); ++i) {
        cumulative += h.counts[i];
        m.histogram.bucket.push_back({cumulative, family.bounds[i]});
      }
      m.histogram.sample_count = cumulative;
      m.histogram.sample_sum = h.sum;
      mf.metric.push_back(std::move(m));
    }
    for (const auto& [labels, value] : family.series) {
      prometheus::ClientMetric m;
      for (const auto& [k, v] : labels) m.label.push_back({k, v});
      if (family.kind == SeriesKind::Counter) m.counter.value = value.value;
      else m.gauge.value = value.value;
      mf.metric.push_back(std::move(m));
    }
    out.push_back(std::move(mf));
  }
  return out;
}

}  // namespace vigil
