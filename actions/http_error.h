// What an HTTP client error means, in words a person can act on ("cannot connect (refused or
// unreachable)" rather than httplib's "Connection"). Shared by the notifiers and the CLI.
#pragma once

#include <string>

#include <httplib.h>

namespace vigil::actions {

std::string describe_http_error(httplib::Error e);

}  // namespace vigil::actions
