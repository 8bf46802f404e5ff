// A metric family reader: declares its series once, then each tick reads its kernel map(s)
// into the SeriesStore. Families are registered explicitly in families.cpp.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "engine/config.h"
#include "engine/datapath.h"
#include "engine/kube/kube_pods.h"
#include "engine/pod_manager.h"
#include "engine/series_store.h"
#include "engine/tracepoint_audit.h"

namespace vigil {

struct FamilyContext {
  const Datapath& datapath;
  const PodManager& pods;
  SeriesStore& store;
  // Addresses of other nodes' pods and of Services, from the Kubernetes API (null without it).
  const kube::PeerDirectory* peers = nullptr;
  // metrics.tracepoint_audit (null when off).
  TracepointAudit* tracepoint_audit = nullptr;
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
