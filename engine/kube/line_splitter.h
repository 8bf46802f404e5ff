// Cuts a streamed HTTP body into lines as it arrives: a watch response is one JSON event a
// line, a list response is one line of up to megabytes. Each byte is searched for a newline
// once, however the transport cuts the stream into chunks (4 KiB at a time from httplib), so a
// 20 MB list page costs one pass, not one pass per chunk over the part already received.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

namespace vigil::kube {

class LineSplitter {
 public:
  explicit LineSplitter(size_t max_line) : max_line_(max_line) {}

  enum class Fed {
    more,      // every complete line handed over; waiting for the rest
    stopped,   // on_line returned false (the rest of the chunk is not read)
    too_long,  // a line (finished or not) is longer than max_line bytes, its "\r" included
  };
  // Hands each complete line of `data` (after what earlier chunks left unfinished) to on_line,
  // without its "\n" and a "\r" before it; empty lines are skipped.
  Fed feed(std::string_view data, const std::function<bool(std::string_view line)>& on_line);

  // The unfinished line: what the stream ended in the middle of.
  std::string_view rest() const { return partial_; }
  // Bytes searched for a newline so far (each byte once: the property the splitter exists for).
  uint64_t bytes_scanned() const { return scanned_; }

 private:
  size_t max_line_;
  std::string partial_;  // never holds a newline
  uint64_t scanned_ = 0;
};

}  // namespace vigil::kube
