// The small notations users type: durations and sizes (config), `--where k=v` filters and
// Prometheus text scraped by `vigil record`, replay CSV files and rule-test value notation
// (`vigil replay`, `vigil rules test`), notifier and API server URLs. The first byte picks the
// parser, the rest is its input. None throws; what they accept is in range.
#include <cmath>

#include "actions/notifier_impl.h"
#include "engine/config.h"
#include "engine/kube/kube_client.h"
#include "engine/record.h"
#include "rules/runtime/durations.h"
#include "rules/runtime/replay.h"
#include "rules/runtime/rule_test.h"
#include "tests/fuzz/fuzz_check.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace vigil::fuzz;
  if (size == 0) return 0;
  const uint8_t kind = data[0] % 9;
  const std::string text = text_of(data + 1, size - 1);
  switch (kind) {
    case 0: {
      auto d = vigil::parse_duration(text);
      if (d) check(std::isfinite(*d) && *d >= 0, "parse_duration(" + text + ") gave " + std::to_string(*d));
      else check_error(d.error().message, "", "parse_duration");
      break;
    }
    case 1: {
      auto d = vigil::rules::parse_duration(text);
      if (d) check(std::isfinite(*d) && *d >= 0, "rules::parse_duration(" + text + ") gave " + std::to_string(*d));
      else check_error(d.error().message, "", "rules::parse_duration");
      break;
    }
    case 2: {
      auto s = vigil::parse_size(text);
      if (!s) check_error(s.error().message, "", "parse_size");
      break;
    }
    case 3: {
      auto w = vigil::parse_where(text);
      if (!w) check_error(w.error().message, "", "parse_where");
      break;
    }
    case 4: {
      // Prometheus text format; the metric and filter are fixed, the text is the input.
      auto v = vigil::scrape_value(text, "vigil_pod_packets_total", {{"direction", "ingress"}});
      if (!v) check_error(v.error().message, "", "scrape_value");
      break;
    }
    case 5: {
      auto points = vigil::rules::parse_replay_csv(text, "fuzz.csv");
      if (!points) check_error(points.error().message, "fuzz.csv", "parse_replay_csv");
      else
        for (const auto& p : *points) check(std::isfinite(p.timestamp), "parse_replay_csv gave a timestamp that is not finite");
      break;
    }
    case 6: {
      auto series = vigil::rules::parse_values(text);
      if (!series) {
        check_error(series.error().message, "", "parse_values");
        break;
      }
      // Values on demand: the first few and the last, as a rule test reads them.
      const uint64_t n = series->size();
      for (uint64_t i = 0; i < std::min<uint64_t>(n, 64); ++i) (void)series->at(i, 1.7e9 + static_cast<double>(i), 1);
      if (n) (void)series->at(n - 1, 1.7e9, 1);
      break;
    }
    case 7: {
      auto url = vigil::actions::parse_http_url(text);
      if (!url) check_error(url.error().message, "", "parse_http_url");
      else
        check((url->scheme == "http" || url->scheme == "https") && url->port > 0 && url->port < 65536 &&
                  !url->host.empty() && !url->path.empty() && url->path[0] == '/',
              "parse_http_url(" + text + ") accepted scheme " + url->scheme + " host " + url->host + " port " +
                  std::to_string(url->port) + " path " + url->path);
      break;
    }
    default: {
      std::string host;
      int port = 0;
      auto r = vigil::kube::parse_server_url(text, host, port);
      if (!r) check_error(r.error().message, "", "parse_server_url");
      else check(!host.empty() && port > 0 && port < 65536, "parse_server_url(" + text + ") gave " + host + ":" + std::to_string(port));
      break;
    }
  }
  return 0;
}
