// The node's pods from the Kubernetes API server (`pods: {source: kubernetes}`).
//
// Two threads keep a view of the cluster current: one lists and then watches the pods bound to
// this node (GET /api/v1/pods?fieldSelector=spec.nodeName=<node>, pages of `page_size`, then
// watch from the list's resourceVersion with bookmarks), the other does the same for namespaces
// (their labels and the vigil.dev/observe annotation). A 410 Gone (status or ERROR event)
// re-lists; a dropped watch resumes from the last resourceVersion seen; other errors back off
// exponentially with jitter. Anything malformed is counted, logged and skipped: the last good
// view stays. Each pod's controller is resolved to its workload (ReplicaSet -> Deployment,
// Job -> CronJob) through a bounded cache.
//
// The view is published as a KubeSnapshot: the PodSpecs PodManager takes (ip set, netns empty,
// so the pod's namespace is found by address), the workload of each, and the source's health.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine/kube/kube_client.h"
#include "engine/kube/kube_options.h"
#include "engine/pods.h"
#include "rules/core/result.h"

namespace vigil::kube {

struct OwnerRef {
  std::string kind, name, uid;
  bool controller = false;
};

// What the agent keeps of a v1 Pod.
struct PodObject {
  std::string namespace_, name, uid, node, phase, resource_version;
  bool host_network = false;
  bool terminating = false;  // metadata.deletionTimestamp is set
  std::vector<std::string> ips;  // status.podIPs[].ip, else status.podIP
  std::map<std::string, std::string> labels, annotations;
  std::vector<OwnerRef> owners;
  // Filled by the source: the pod's workload ("Deployment"/"web"), or "Pod"/<name>.
  std::string workload_kind, workload_name;
  std::string key() const { return namespace_ + "/" + name; }
};

// Who is behind a remote address: a pod (an EndpointSlice endpoint's targetRef) and its
// Service, or a Service's cluster IP (pod empty).
struct PeerInfo {
  std::string namespace_, pod, service;
  bool operator==(const PeerInfo&) const = default;
};
using PeerDirectory = std::map<std::string, PeerInfo>;  // address as text -> who

// What the agent keeps of a discovery.k8s.io/v1 EndpointSlice and of a v1 Service.
struct EndpointSliceObject {
  std::string namespace_, name, service;  // service: the kubernetes.io/service-name label
  std::vector<std::pair<std::string, std::string>> endpoints;  // (address, pod name or "")
};
struct ServiceObject {
  std::string namespace_, name;
  std::vector<std::string> cluster_ips;  // spec.clusterIPs, else spec.clusterIP; "None" left out
};
Result<EndpointSliceObject> parse_endpoint_slice(const nlohmann::json& j);
Result<ServiceObject> parse_service(const nlohmann::json& j);

struct NamespaceObject {
  std::string name, resource_version;
  std::map<std::string, std::string> labels, annotations;
};

// Strict readers: a missing name or a field of the wrong type is an error naming the field.
Result<PodObject> parse_pod(const nlohmann::json& j);
Result<NamespaceObject> parse_namespace(const nlohmann::json& j);

// One pod of the view.
struct KubePod {
  PodSpec spec;  // labels: the allow-listed ones; ip: the first address; netns: empty
  std::string uid, node, phase;
  std::vector<std::string> ips;
  std::string workload_kind, workload_name;
  std::map<std::string, std::string> namespace_labels;
};

struct Selection {
  std::vector<KubePod> pods;  // sorted by namespace/name
  size_t host_network = 0, not_running = 0, no_ip = 0, out_of_scope = 0;
};

// Which of the node's pods are watched: Running or Pending with an address, not hostNetwork,
// on `options.node`, in scope (namespaces include/exclude, the observe mode and the
// vigil.dev/observe annotation of the pod, else of its namespace).
Selection select_pods(const std::map<std::string, PodObject>& pods,
                      const std::map<std::string, NamespaceObject>& namespaces, const KubeOptions& options);

struct KubeStatus {
  std::string state = "starting";  // starting, listing, watching, backoff, stopped
  std::chrono::system_clock::time_point last_sync{};  // last list, event, bookmark or clean watch end
  std::chrono::steady_clock::time_point last_sync_steady{};
  uint64_t consecutive_errors = 0;
  std::map<std::string, uint64_t> errors;  // by kind: connect, auth, http, decode, stream, gone, watch, owner, token
  std::string last_error;
  std::string resource_version;  // of the pods watch
  uint64_t lists = 0, watches = 0, events = 0, bookmarks = 0, token_reloads = 0;
  bool namespaces_synced = false;
  bool peers_synced = false;      // EndpointSlices and Services listed (with watch_peers)
  size_t peers_dropped = 0;       // addresses past max_peer_addresses, left unnamed
  uint64_t peer_rebuilds = 0;     // of the peer directory: at most one a read, whatever the event rate
  // Pods of this node the API server reported that are not in the view, by reason.
  size_t skipped_host_network = 0, skipped_not_running = 0, skipped_no_ip = 0, skipped_out_of_scope = 0;

  bool synced() const { return last_sync_steady != std::chrono::steady_clock::time_point{}; }
  // Seconds since the last successful sync; a negative value when there was none.
  double sync_age_seconds() const;
};

struct KubeSnapshot {
  std::vector<PodSpec> pods;     // sorted by namespace/name
  std::vector<KubePod> details;  // the same pods, same order
  KubeStatus status;
  uint64_t generation = 0;  // grows whenever `pods` changes
  // Remote peers by address (with watch_peers); shared, rebuilt when read after slices or
  // services changed.
  std::shared_ptr<const PeerDirectory> peers;
};

class KubePods {
 public:
  // Resolves the connection (kubeconfig or in-cluster); does not contact the API server.
  static Result<std::unique_ptr<KubePods>> create(KubeOptions options);
  KubePods(KubeOptions options, Connection connection);
  ~KubePods();
  KubePods(const KubePods&) = delete;
  KubePods& operator=(const KubePods&) = delete;

  void start();
  void stop();  // joins the threads; in-flight requests are aborted
  KubeSnapshot snapshot() const;
  uint64_t generation() const;
  // The remote peer directory (null until EndpointSlices or Services were listed).
  std::shared_ptr<const PeerDirectory> peers() const;

 private:
  struct Reflector;
  void run_pods();
  void run_namespaces();
  void run_endpoint_slices();
  void run_services();
  // Lists and watches one kind of peer object (EndpointSlices, Services) into `store`, keyed
  // namespace/name, marking the peer directory for a rebuild after every change.
  template <typename T, typename Parse>
  void mirror_peers(ApiClient& client, const char* resource, const char* path, const char* kind, Parse parse,
                    std::map<std::string, T>& store);
  // The peer directory is rebuilt from every slice and Service (O(addresses)), so not on each
  // of a rollout's many events but when it is next read (the agent reads it once a tick).
  void publish_peers() { peers_dirty_ = true; }  // mu_ held
  void rebuild_peers_if_dirty() const;          // mu_ held
  void publish();  // mu_ held
  void resolve_workload(PodObject& pod);
  std::pair<std::string, std::string> owner_of(const std::string& ns, const std::string& kind, const std::string& name);
  void count_error(const std::string& kind, const std::string& message, bool pods_stream);
  bool sleep_for(double seconds);  // false when stopping
  double backoff_delay(uint64_t failures);

  const KubeOptions options_;
  std::unique_ptr<ApiClient> pods_client_, ns_client_, owner_client_, slices_client_, services_client_;
  std::thread pods_thread_, ns_thread_, slices_thread_, services_thread_;
  std::atomic<bool> stopping_{false};
  std::mutex sleep_mu_;
  std::condition_variable sleep_cv_;

  mutable std::mutex mu_;
  std::map<std::string, PodObject> pods_;             // namespace/name
  std::map<std::string, NamespaceObject> namespaces_;  // name
  std::map<std::string, EndpointSliceObject> slices_;  // namespace/name
  std::map<std::string, ServiceObject> services_;      // namespace/name
  bool slices_synced_ = false, services_synced_ = false;
  KubeSnapshot snap_;
  // The peer directory's part of snap_, built on read (rebuild_peers_if_dirty).
  mutable bool peers_dirty_ = false;
  mutable std::shared_ptr<const PeerDirectory> peers_;
  mutable size_t peers_dropped_ = 0;
  mutable uint64_t peer_rebuilds_ = 0;

  // ns/kind/name -> (workload kind, name), with when it was learned; pods thread only.
  struct CachedOwner {
    std::string kind, name;
    std::chrono::steady_clock::time_point at;
  };
  std::map<std::string, CachedOwner> owner_cache_;
};

}  // namespace vigil::kube
