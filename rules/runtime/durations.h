// Durations in rule files: "500ms", "20s", "2m", "1h", "1h30m", or a number of seconds.
#pragma once

#include <string>
#include <string_view>

#include "rules/core/result.h"

namespace vigil::rules {

// Parses a duration string into seconds. Units: ms, s, m, h, d; parts may be chained
// ("1h30m") and numbers may have a fraction ("1.5m"). Negative durations are errors.
Result<double> parse_duration(std::string_view text);

// Renders seconds compactly for messages ("90s" -> "1m30s").
std::string format_duration(double seconds);

}  // namespace vigil::rules
