// Counters that one series exports from several sources over its life, made to go on from where
// they were whenever the source changes, instead of stepping or falling back.
//
// A pod's forward counts come from the TC programs (counting from their attach), from its
// host-side veth's statistics or from its own end's (counting from the interface's creation).
// Which one changes while the pod lives: its packet-level annotation turned on or off (the pod
// is attached again), metrics.ingress_hook: auto moving what it receives to its own end, a
// re-attach that starts the programs' counters at 0. Exported as read, each change would be a
// step: up by the interface's history (a spike in rate(), and a surge to the rules' detectors),
// or down to 0 (a reset). Here the series keeps its value at the change and adds what the new
// source counts after it. What passed between the last read of the old source and the change
// (at most a tick) is not counted.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <utility>

namespace vigil {

class ContinuedCounters {
 public:
  // Where a value comes from. Two reads are of one source when kind, a and b are equal.
  struct Source {
    int kind = 0;
    uint64_t a = 0, b = 0;
    // Counts from 0 at a moment after the source before it was last read (the programs, from
    // their attach): all of it is new. Otherwise (an interface's statistics) only what it counts
    // after the change is.
    bool from_zero = false;
    bool same(const Source& o) const { return kind == o.kind && a == o.a && b == o.b; }
  };
  // The series of `owner` (a pod) and `part` (direction and counter).
  using Key = std::pair<std::string, int>;

  // The value to export for `key`, whose source `source` reads `raw` now. `exported()`, asked
  // only where no value was exported for `key` before: the value the series has, if any (a pod
  // that left and came back within the series' grace time keeps its series); it goes on from
  // there.
  template <class Exported>
  double next(const Key& key, const Source& source, double raw, Exported&& exported) {
    auto [it, fresh] = states_.try_emplace(key);
    State& s = it->second;
    if (fresh) {
      const std::optional<double> had = exported();
      s.source = source;
      s.offset = had.value_or(0);
      // No series yet: everything the source has counted (an interface's history).
      s.base = had && !source.from_zero ? raw : 0;
    } else if (!s.source.same(source)) {
      s.source = source;
      s.offset = s.last;
      s.base = source.from_zero ? 0 : raw;
    } else if (raw < s.raw) {
      // The same source started again from 0.
      s.offset = s.last;
      s.base = 0;
    }
    s.raw = raw;
    s.last = s.offset + raw - s.base;
    return s.last;
  }
  double next(const Key& key, const Source& source, double raw) {
    return next(key, source, raw, [] { return std::optional<double>(); });
  }

  // Forgets the series of owners for which `keep` is false.
  void keep_only(const std::function<bool(const std::string& owner)>& keep) {
    for (auto it = states_.begin(); it != states_.end();) it = keep(it->first.first) ? std::next(it) : states_.erase(it);
  }
  size_t size() const { return states_.size(); }

 private:
  struct State {
    Source source;
    double base = 0;    // the source's value that the series' `offset` stands for
    double offset = 0;  // the series' value when the source became this one
    double raw = 0;     // the source's last value
    double last = 0;    // the last value exported
  };
  std::map<Key, State> states_;
};

}  // namespace vigil
