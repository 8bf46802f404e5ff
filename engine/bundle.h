// The capture bundle: what a person triaging a capture wants to see next to the packets, taken
// from inside the pod's network namespace at the trigger, like Retina's capture bundle:
// addresses, links with statistics, routes (every table), policy rules, neighbours, sockets
// (`ss`) and the nftables / iptables rules. Each command runs in a child process that enters
// the namespace and writes one file (0600); a missing tool or a failing command is recorded,
// never fatal.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

#include "actions/capture.h"

namespace vigil {

// Writes the bundle of `pod` into `dir` (created, 0700). Returns {"files": [names written],
// "errors": ["ss: not installed", ...]}. At most `timeout_seconds` per command.
nlohmann::json collect_bundle(const actions::CapturePod& pod, const std::string& dir, double timeout_seconds = 5);

}  // namespace vigil
