// What the Kubernetes API server sends (engine/kube/kube_pods.cpp): Pod, Service,
// EndpointSlice and Namespace objects as JSON, and a kubeconfig as YAML
// (engine/kube/kube_client.cpp). The first byte picks the parser, the rest is its input. None
// throws; an object it accepts has what the agent keys it by.
#include <nlohmann/json.hpp>

#include "engine/kube/kube_client.h"
#include "engine/kube/kube_pods.h"
#include "tests/fuzz/fuzz_check.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace vigil::fuzz;
  namespace kube = vigil::kube;
  if (size == 0) return 0;
  const uint8_t kind = data[0] % 5;
  const std::string text = text_of(data + 1, size - 1);
  if (kind == 4) {
    auto c = kube::parse_kubeconfig(text, "/nonexistent/vigil-fuzz/kubeconfig", false);
    if (!c) check_error(c.error().message, "", "parse_kubeconfig");
    return 0;
  }
  const nlohmann::json j = nlohmann::json::parse(text, nullptr, false);
  if (j.is_discarded()) return 0;
  switch (kind) {
    case 0: {
      auto pod = kube::parse_pod(j);
      if (!pod) check_error(pod.error().message, "", "parse_pod");
      else check(!pod->name.empty() && !pod->namespace_.empty(), "parse_pod accepted a pod without name or namespace");
      break;
    }
    case 1: {
      auto svc = kube::parse_service(j);
      if (!svc) check_error(svc.error().message, "", "parse_service");
      break;
    }
    case 2: {
      auto slice = kube::parse_endpoint_slice(j);
      if (!slice) check_error(slice.error().message, "", "parse_endpoint_slice");
      break;
    }
    default: {
      auto ns = kube::parse_namespace(j);
      if (!ns) check_error(ns.error().message, "", "parse_namespace");
      break;
    }
  }
  return 0;
}
