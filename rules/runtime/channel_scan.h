// Finds notify("name") calls with a literal channel in a rule file's source, so a misspelt
// channel is a load error rather than a missed page at 3 a.m.
#pragma once

#include <set>
#include <string>
#include <string_view>
#include <vector>

namespace vigil::rules {

struct ChannelUse {
  int line;
  std::string channel;
};

// Skips comments and other strings; ignores x.notify(...) and literals with escapes.
std::vector<ChannelUse> literal_notify_channels(std::string_view source);

// "unknown notifier channel 'oncal' (configured: default, oncall)"
std::string unknown_channel(const std::string& channel, const std::set<std::string>& configured);

}  // namespace vigil::rules
