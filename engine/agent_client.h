// What the CLI commands that talk to a running agent (capture, anomalies, record) share: the
// client for --agent HOST:PORT (IPv6 in brackets), and what to check when it does not answer.
#pragma once

#include <cstdlib>
#include <optional>
#include <string>

#include <httplib.h>

namespace vigil {

// A client for `agent` ("127.0.0.1:9965", "[::1]:9965"); nullopt and `error` when it is not
// HOST:PORT with a port from 1 to 65535. Timeouts are the caller's.
inline std::optional<httplib::Client> agent_client(const std::string& agent, std::string& error) {
  const size_t colon = agent.rfind(':');
  const int port = colon == std::string::npos ? 0 : std::atoi(agent.c_str() + colon + 1);
  if (colon == std::string::npos || port <= 0 || port > 65535) {
    error = "--agent " + agent + ": expected HOST:PORT, e.g. 127.0.0.1:9965";
    return std::nullopt;
  }
  std::string host = agent.substr(0, colon);
  if (host.size() > 2 && host.front() == '[') host = host.substr(1, host.size() - 2);
  return std::optional<httplib::Client>(std::in_place, host, port);
}

inline std::string agent_hint(httplib::Error e) {
  if (e != httplib::Error::Connection && e != httplib::Error::ConnectionTimeout) return "";
  return "; is `vigil agent` running and listening there (its `listen`, default 127.0.0.1:9965)? Use --agent HOST:PORT";
}

}  // namespace vigil
