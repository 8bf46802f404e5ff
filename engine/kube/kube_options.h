// Settings of the Kubernetes pod source (`pods: {source: kubernetes, kubernetes: {...}}`,
// docs/config.md). Plain data: engine/config.cpp fills and validates it, engine/kube uses it.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

namespace vigil::kube {

struct KubeOptions {
  std::string node;  // spec.nodeName of the pods to follow (Config::node)

  // Where the API server is and how to authenticate. Empty kubeconfig: in-cluster (the
  // service account under service_account_dir, the server from KUBERNETES_SERVICE_HOST/PORT).
  std::string kubeconfig;
  std::string api_server;  // overrides the server (in-cluster or the kubeconfig's), e.g. https://10.0.0.1:6443
  std::string ca_file;     // overrides the CA (service account ca.crt or the kubeconfig's)
  std::string token_file;  // overrides the bearer token file; re-read whenever it changes
  std::string service_account_dir = "/var/run/secrets/kubernetes.io/serviceaccount";
  bool allow_insecure = false;  // a kubeconfig's insecure-skip-tls-verify is refused unless true

  // Scope. Empty include: every namespace. Exclude wins over include.
  std::vector<std::string> include_namespaces;
  std::vector<std::string> exclude_namespaces;
  // "all": every pod unless it (or else its namespace) says vigil.dev/observe: "false";
  // "annotated": only pods that (or whose namespace) say vigil.dev/observe: "true".
  std::string observe = "all";
  // Pod labels copied into PodSpec.labels (and so into metric labels); others are dropped.
  std::vector<std::string> label_allowlist = {"app", "app.kubernetes.io/name", "app.kubernetes.io/instance",
                                              "app.kubernetes.io/component", "k8s-app"};

  double watch_timeout_seconds = 300;  // timeoutSeconds of each watch request
  double resync_seconds = 600;         // a full re-list at least this often (0: only when needed)
  double request_timeout_seconds = 10; // connect/read timeout of list and get requests
  double backoff_initial_seconds = 0.5;
  double backoff_max_seconds = 30;
  size_t owner_cache_size = 1024;      // ReplicaSet/Job -> workload lookups kept
  double owner_ttl_seconds = 600;      // how long one is used before it is asked again (tests shorten it)
  size_t page_size = 500;              // `limit` of list requests

  // Remote peers: watch the cluster's EndpointSlices and Services so that remote context can
  // name a peer address (a pod of another node behind a Service, or a Service's cluster IP).
  // The agent turns it on when remote context is configured. At most max_peer_addresses
  // addresses are kept; the rest are counted and left unnamed.
  bool watch_peers = false;
  size_t max_peer_addresses = 100000;
};

}  // namespace vigil::kube
