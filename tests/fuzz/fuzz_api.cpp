// What a person or a script POSTs to the agent's /api/v1/captures (engine/captures.h,
// parse_capture_request): any body is answered, never thrown on. A refused body gets a message
// naming what is wrong; an accepted one says which pods (by name, or a namespace or labels to
// match), names pods as "namespace/name", and has options a capture can start with.
#include <cmath>
#include <string>

#include "engine/captures.h"
#include "tests/fuzz/fuzz_check.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace vigil::fuzz;
  const std::string body = text_of(data, size);
  auto req = vigil::parse_capture_request(body);
  if (!req) {
    check_error(req.error().message, "", "parse_capture_request");
    return 0;
  }
  const auto& spec = req->spec;
  check(!spec.pods.empty() || !req->namespace_.empty() || !req->labels.empty(),
        "parse_capture_request accepted a request that names no pods");
  for (const auto& p : spec.pods) check(p.find('/') != std::string::npos, "a pod without a namespace: " + p);
  for (double d : {spec.before_seconds, spec.after_seconds})
    check(d == -1 || (d >= 0 && !std::isnan(d)), "a negative or NaN duration: " + std::to_string(d));
  return 0;
}
