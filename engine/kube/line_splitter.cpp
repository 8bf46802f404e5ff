#include "engine/kube/line_splitter.h"

namespace vigil::kube {

namespace {

// A line as handed over: no trailing "\r"; empty ones are not handed over at all.
bool emit(std::string_view line, const std::function<bool(std::string_view)>& on_line) {
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  return line.empty() || on_line(line);
}

}  // namespace

LineSplitter::Fed LineSplitter::feed(std::string_view data, const std::function<bool(std::string_view)>& on_line) {
  while (!data.empty()) {
    const size_t nl = data.find('\n');
    scanned_ += nl == std::string_view::npos ? data.size() : nl + 1;
    if (nl == std::string_view::npos) {
      // The line goes on in a later chunk; keep what there is (and no more than the limit).
      if (partial_.size() + data.size() > max_line_) return Fed::too_long;
      partial_.append(data);
      return Fed::more;
    }
    if (partial_.size() + nl > max_line_) return Fed::too_long;
    bool go_on;
    if (partial_.empty()) {
      go_on = emit(data.substr(0, nl), on_line);  // straight from the chunk, no copy
    } else {
      partial_.append(data.substr(0, nl));
      go_on = emit(partial_, on_line);
      partial_.clear();
    }
    if (!go_on) return Fed::stopped;
    data.remove_prefix(nl + 1);
  }
  return Fed::more;
}

}  // namespace vigil::kube
