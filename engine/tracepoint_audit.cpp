#include "engine/tracepoint_audit.h"

#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>

namespace vigil {

namespace {

const char kPrefix[] = "vigil-audit-";

std::string err_text(int err) { return std::strerror(err); }

// Writes `value` to a tracefs control file; the error names the file.
Result<void> write_control(const std::string& path, const std::string& value) {
  std::ofstream f(path);
  if (!f) return make_error("open " + path + ": " + err_text(errno));
  f << value;
  f.flush();
  if (!f) return make_error("write '" + value + "' to " + path + ": " + err_text(errno));
  return {};
}

std::optional<std::string> read_text(const std::string& path) {
  std::ifstream f(path);
  if (!f) return std::nullopt;
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

}  // namespace

std::optional<uint64_t> tracefs_cpu_written(const std::string& stats) {
  std::optional<uint64_t> entries, overrun;
  std::istringstream in(stats);
  std::string line;
  while (std::getline(in, line)) {
    const auto colon = line.find(':');
    if (colon == std::string::npos) continue;
    const std::string key = line.substr(0, colon);
    if (key != "entries" && key != "overrun") continue;
    try {
      size_t used = 0;
      const std::string number = line.substr(colon + 1);
      const uint64_t v = std::stoull(number, &used);
      if (number.find_first_not_of(" \t", used) != std::string::npos) return std::nullopt;
      (key == "entries" ? entries : overrun) = v;
    } catch (const std::exception&) {
      return std::nullopt;
    }
  }
  if (!entries || !overrun) return std::nullopt;
  return *entries + *overrun;
}

int TracepointAudit::remove_stale(const std::string& tracefs) {
  namespace fs = std::filesystem;
  int removed = 0;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(tracefs + "/instances", ec)) {
    const std::string name = entry.path().filename().string();
    if (name.rfind(kPrefix, 0) != 0) continue;
    const std::string rest = name.substr(sizeof(kPrefix) - 1);
    const auto dash = rest.find('-');
    long pid = 0;
    try {
      pid = std::stol(rest.substr(0, dash));
    } catch (const std::exception&) {
      continue;
    }
    if (pid <= 0) continue;
    if (kill(static_cast<pid_t>(pid), 0) == 0 || errno != ESRCH) continue;  // its agent runs: not ours
    if (rmdir(entry.path().c_str()) == 0) ++removed;
  }
  return removed;
}

Result<std::unique_ptr<TracepointAudit>> TracepointAudit::start(const std::string& tracefs,
                                                                const std::vector<Probe>& probes, RunsReader runs) {
  struct stat st {};
  if (stat((tracefs + "/instances").c_str(), &st) != 0)
    return make_error("metrics.tracepoint_audit: tracefs is not mounted at " + tracefs +
                      " (mount -t tracefs tracefs " + tracefs + ")");
  remove_stale(tracefs);
  std::unique_ptr<TracepointAudit> audit(new TracepointAudit(tracefs, std::move(runs)));
  for (const auto& probe : probes) {
    const std::string enable = tracefs + "/events/" + probe.event + "/enable";
    if (access(enable.c_str(), F_OK) != 0)
      return make_error("metrics.tracepoint_audit: this kernel has no tracepoint " + probe.event + " (" + enable +
                        ": " + err_text(errno) + ")");
    Instance in{probe, tracefs + "/instances/" + kPrefix + std::to_string(getpid()) + "-" + probe.program};
    if (mkdir(in.dir.c_str(), 0700) != 0) {
      if (errno != EEXIST || rmdir(in.dir.c_str()) != 0 || mkdir(in.dir.c_str(), 0700) != 0)
        return make_error("metrics.tracepoint_audit: create tracefs instance " + in.dir + ": " + err_text(errno));
    }
    audit->instances_.push_back(in);  // removed by the destructor from here on
    Instance& made = audit->instances_.back();
    // The smallest ring: the events are counted, never read.
    if (auto r = write_control(made.dir + "/buffer_size_kb", "4"); !r) return context("metrics.tracepoint_audit", r.error());
    // The baseline first, the event after: hits counted from here on all had the program's probe
    // run before theirs (see the header).
    made.runs_before = audit->runs_(probe.index);
    if (auto r = write_control(made.dir + "/events/" + probe.event + "/enable", "1"); !r)
      return context("metrics.tracepoint_audit", r.error());
  }
  return audit;
}

TracepointAudit::~TracepointAudit() {
  for (const auto& in : instances_) {
    (void)write_control(in.dir + "/events/" + in.probe.event + "/enable", "0");  // rmdir disables it anyway
    rmdir(in.dir.c_str());
  }
}

uint64_t TracepointAudit::hits(const Instance& in) const {
  namespace fs = std::filesystem;
  uint64_t total = 0;
  std::error_code ec;
  for (const auto& cpu : fs::directory_iterator(in.dir + "/per_cpu", ec)) {
    auto text = read_text(cpu.path().string() + "/stats");
    if (!text) continue;
    if (auto n = tracefs_cpu_written(*text)) total += *n;
  }
  return total;
}

std::vector<TracepointAudit::Reading> TracepointAudit::read() {
  std::vector<Reading> out;
  for (auto& in : instances_) {
    // Hits before runs: a hit read here had its run done before (see the header).
    const uint64_t h = hits(in);
    const uint64_t r = runs_(in.probe.index) - in.runs_before;
    if (h > r && h - r > in.undelivered) in.undelivered = h - r;
    out.push_back({in.probe.program, in.probe.event, h, r, in.undelivered});
  }
  return out;
}

}  // namespace vigil
