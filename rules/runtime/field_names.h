// Helps error messages about misspelt fields say what was meant.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace vigil::rules {

// "unknown field 'thresold' (did you mean 'threshold'?)", or the list of known fields when
// nothing is close.
std::string unknown_field(std::string_view field, const std::vector<std::string_view>& known);

// The known name `name` most likely meant: within two edits, else the one sharing the most
// "_"-separated words (at least two besides the first; a word one edit away counts), ties to
// the fewest edits; "" when none.
std::string closest_name(std::string_view name, const std::vector<std::string_view>& known);

}  // namespace vigil::rules
