// What the Kubernetes API server sends (engine/kube/kube_pods.cpp): Pod, Service,
// EndpointSlice and Namespace objects as JSON, and a kubeconfig as YAML
// (engine/kube/kube_client.cpp), and the streamed bodies those come in, cut into lines
// (engine/kube/line_splitter.h). The first byte picks the parser, the rest is its input. None
// throws; an object it accepts has what the agent keys it by; the lines are the same however
// the stream is chunked.
#include <algorithm>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine/kube/kube_client.h"
#include "engine/kube/kube_pods.h"
#include "engine/kube/line_splitter.h"
#include "tests/fuzz/fuzz_check.h"

namespace {

// A watch or list body: its first byte seeds the chunk sizes and picks the line limit, the rest
// is the stream. The splitter must hand over what one plain pass over the whole body gives.
void check_stream_lines(const std::string& input) {
  using vigil::fuzz::check;
  using vigil::kube::LineSplitter;
  if (input.empty()) return;
  const uint8_t seed = static_cast<uint8_t>(input[0]);
  const std::string_view body = std::string_view(input).substr(1);
  const size_t max_line = seed & 1 ? 16 : body.size() + 1;
  // The reference: every "\n"-ended line, "\r" stripped, empty ones skipped, until one is too long.
  std::vector<std::string> want;
  bool want_too_long = false;
  std::string want_rest;
  for (size_t at = 0;;) {
    const size_t nl = body.find('\n', at);
    std::string_view line = body.substr(at, nl == std::string_view::npos ? std::string_view::npos : nl - at);
    if (line.size() > max_line) {
      want_too_long = true;
      break;
    }
    if (nl == std::string_view::npos) {
      want_rest = line;
      break;
    }
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (!line.empty()) want.emplace_back(line);
    at = nl + 1;
  }
  LineSplitter lines(max_line);
  std::vector<std::string> got;
  bool too_long = false;
  uint32_t state = seed * 2654435761u + 1;
  for (size_t at = 0; at < body.size() && !too_long;) {
    state = state * 1103515245u + 12345u;
    const size_t n = std::min<size_t>(body.size() - at, 1 + (state >> 16) % 64);
    const auto fed = lines.feed(body.substr(at, n), [&](std::string_view l) {
      got.emplace_back(l);
      return true;
    });
    check(fed != LineSplitter::Fed::stopped, "line splitter stopped without being asked");
    too_long = fed == LineSplitter::Fed::too_long;
    at += n;
  }
  check(got == want, "line splitter: other lines than one pass over the body gives");
  check(too_long == want_too_long, "line splitter: too_long disagrees with the longest line");
  if (!too_long) {
    check(lines.rest() == want_rest, "line splitter: the unfinished line differs");
    check(lines.bytes_scanned() == body.size(), "line splitter: searched a byte more than once");
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace vigil::fuzz;
  namespace kube = vigil::kube;
  if (size == 0) return 0;
  const uint8_t kind = data[0] % 6;
  const std::string text = text_of(data + 1, size - 1);
  if (kind == 5) {
    check_stream_lines(text);
    return 0;
  }
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
