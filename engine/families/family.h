// A metric family reader: declares its series once, then each tick reads its kernel map(s)
// into the SeriesStore. Families are registered explicitly in families.cpp.
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "engine/config.h"
#include "engine/datapath.h"
#include "engine/kube/kube_pods.h"
#include "engine/pod_manager.h"
#include "engine/series_store.h"
#include "engine/tracepoint_audit.h"

namespace vigil {

// How many entries each hash map held when a family walked it in this tick, by map name. The
// health family, which reads last, takes its occupancy gauges from here, so that a map a family
// reads anyway is walked once a tick, not twice: a walk visits every bucket of the map, and the
// largest (vigil_dns_pending, 131,072 buckets by default) take about half a millisecond even
// when empty.
class MapCensus {
 public:
  // After a walk of the whole map; `entries`: those it visited, less any the family deleted.
  void walked(const char* map, uint32_t entries) { entries_[map] = entries; }
  std::optional<uint32_t> entries(const char* map) const {
    auto it = entries_.find(map);
    return it == entries_.end() ? std::nullopt : std::optional<uint32_t>(it->second);
  }

 private:
  std::map<std::string, uint32_t, std::less<>> entries_;
};

struct FamilyContext {
  const Datapath& datapath;
  const PodManager& pods;
  SeriesStore& store;
  // Addresses of other nodes' pods and of Services, from the Kubernetes API (null without it).
  const kube::PeerDirectory* peers = nullptr;
  // metrics.tracepoint_audit (null when off).
  TracepointAudit* tracepoint_audit = nullptr;
  // This tick's walks (null: every family walks what it needs, health included).
  MapCensus* census = nullptr;

  void walked(const char* map, uint32_t entries) const {
    if (census) census->walked(map, entries);
  }
};

class Family {
 public:
  virtual ~Family() = default;
  virtual const char* name() const = 0;
  virtual void describe(SeriesStore& store) const = 0;
  virtual void read(const FamilyContext& ctx) = 0;
};

// Every family the agent exports, in a fixed order (some only when configured).
std::vector<std::unique_ptr<Family>> make_families(const Config& config);

// The series that only the packet-level programs give (metrics.packet_level): a pod that stops
// having them (its annotation or pods-file entry says false now) loses these at once instead of
// keeping their last values for as long as it lives.
const std::vector<std::string>& packet_level_series();

// Shared label helpers.
Labels pod_labels(const WatchedPod& pod);
Labels pod_labels(const WatchedPod& pod, std::initializer_list<std::pair<std::string, std::string>> extra);
const char* direction_name(int direction);

std::unique_ptr<Family> make_traffic_family();
std::unique_ptr<Family> make_drop_family();
std::unique_ptr<Family> make_tcp_family();
std::unique_ptr<Family> make_dns_family(double timeout_seconds);
std::unique_ptr<Family> make_health_family();
std::unique_ptr<Family> make_remote_family();
std::unique_ptr<Family> make_apiserver_family(double no_response_seconds);
std::unique_ptr<Family> make_netstat_family(const NetstatConfig& config);

}  // namespace vigil
