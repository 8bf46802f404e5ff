// The CLI commands that talk to a running agent (capture, anomalies, record) add what to
// check when it cannot be reached at all.
#pragma once

#include <string>

#include <httplib.h>

namespace vigil {

inline std::string agent_hint(httplib::Error e) {
  if (e != httplib::Error::Connection && e != httplib::Error::ConnectionTimeout) return "";
  return "; is `vigil agent` running and listening there (its `listen`, default 127.0.0.1:9965)? Use --agent HOST:PORT";
}

}  // namespace vigil
