// Helps error messages about misspelt fields say what was meant.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace vigil::rules {

// "unknown field 'thresold' (did you mean 'threshold'?)", or the list of known fields when
// nothing is close.
std::string unknown_field(std::string_view field, const std::vector<std::string_view>& known);

}  // namespace vigil::rules
