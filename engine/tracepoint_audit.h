// Tracepoint delivery audit (metrics.tracepoint_audit): tells the tracepoint hits the kernel did
// not run Vigil's tracing programs for.
//
// Some kernels (seen on a 6.18 PVM guest: docs/architecture.md, "Kernel side") now and then skip
// every BPF program on a tracepoint for a batch of hits, without counting a recursion miss,
// while the tracepoint's tracefs event sees them all. Vigil's counts of drops, TCP states and
// retransmits are then short, silently. The audit makes that loss a number:
//   - each audited tracepoint gets a tracefs instance of the agent's own
//     (instances/vigil-audit-PID-PROGRAM, a one-page ring buffer per CPU that overwrites), whose
//     per-CPU `entries + overrun` count the tracepoint's hits since it was enabled;
//   - each tracing program counts its runs (vigil_tp_runs, per CPU), first thing in each run;
//   - undelivered = hits - (runs - runs before the event was enabled), never below what it was.
// That is a lower bound, never a false alarm: the programs were attached before the event was
// enabled, so a hit the instance counts went through the program's probe first (the probes of a
// tracepoint run in the order they were registered, all from one load of the probe list), and
// the hits are read before the runs, so every counted hit's run is in the runs read after it.
// Runs of hits before the enable (in the runs baseline's window) can only lower the figure.
//
// Cost: a ring-buffer write per hit of each tracepoint (about what the program costs), which
// is why it is opt-in. Instances left by an agent that died are removed at start.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "rules/core/result.h"

namespace vigil {

class TracepointAudit {
 public:
  struct Probe {
    std::string program;  // the BPF program, e.g. vigil_kfree_skb
    std::string event;    // its tracepoint as tracefs names it, e.g. skb/kfree_skb
    uint32_t index;       // its entry in vigil_tp_runs (enum vigil_tp_program)
  };
  struct Reading {
    std::string program, event;
    uint64_t hits = 0;         // since the audit started
    uint64_t runs = 0;         // of the program, since the audit started
    uint64_t undelivered = 0;  // hits the program did not run for (lower bound, monotonic)
  };
  // runs(index): the program's runs so far (summed over CPUs).
  using RunsReader = std::function<uint64_t(uint32_t index)>;

  // Enables each probe's event in a new instance under `tracefs` (the tracefs mount point).
  // Fails with what is wrong (tracefs not mounted, an event this kernel lacks) and removes
  // whatever it made.
  static Result<std::unique_ptr<TracepointAudit>> start(const std::string& tracefs, const std::vector<Probe>& probes,
                                                       RunsReader runs);
  ~TracepointAudit();
  TracepointAudit(const TracepointAudit&) = delete;
  TracepointAudit& operator=(const TracepointAudit&) = delete;

  std::vector<Reading> read();

  // Removes the instances named vigil-audit-PID-* whose PID no longer runs; returns how many.
  static int remove_stale(const std::string& tracefs);

 private:
  struct Instance {
    Probe probe;
    std::string dir;
    uint64_t runs_before = 0;
    uint64_t undelivered = 0;
  };
  TracepointAudit(std::string tracefs, RunsReader runs) : tracefs_(std::move(tracefs)), runs_(std::move(runs)) {}
  uint64_t hits(const Instance& in) const;

  std::string tracefs_;
  RunsReader runs_;
  std::vector<Instance> instances_;
};

// Sums `entries` and `overrun` of a tracefs per_cpu/cpuN/stats file's text: the events the CPU's
// ring buffer took, kept or overwritten. nullopt when either is missing.
std::optional<uint64_t> tracefs_cpu_written(const std::string& stats);

}  // namespace vigil
