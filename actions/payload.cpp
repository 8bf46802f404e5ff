// The webhook body, version "vigil.v1". docs/webhook.md documents every field; a test checks
// that the example there is exactly what this encoder produces.
#include <cmath>
#include <cstdio>
#include <ctime>

#include "actions/notifier.h"

namespace vigil::actions {
namespace {

using ojson = nlohmann::ordered_json;

// JSON has no NaN or infinity; such numbers become null rather than invalid output.
ojson number_or_null(double v) { return std::isfinite(v) ? ojson(v) : ojson(nullptr); }

ojson time_or_null(double unix_seconds) {
  return std::isfinite(unix_seconds) ? ojson(format_rfc3339(unix_seconds)) : ojson(nullptr);
}

ojson string_or_null(const std::string* s) { return s ? ojson(*s) : ojson(nullptr); }

ojson labels_object(const Labels& labels) {
  ojson out = ojson::object();
  for (const auto& [k, v] : labels) out[k] = v;
  return out;
}

}  // namespace

std::string format_rfc3339(double unix_seconds) {
  // Round to whole milliseconds first so that 59.9996 s becomes the next second, not ".1000".
  const long long total_ms = std::llround(unix_seconds * 1000.0);
  long long secs = total_ms / 1000;
  long long ms = total_ms % 1000;
  if (ms < 0) {  // before 1970: keep the millisecond part positive
    ms += 1000;
    secs -= 1;
  }
  const std::time_t t = static_cast<std::time_t>(secs);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[64];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03lldZ", tm.tm_year + 1900, tm.tm_mon + 1,
                tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ms);
  return buf;
}

std::string capture_url(const std::string& agent_url, const std::string& id) {
  if (agent_url.empty()) return "";
  std::string base = agent_url;
  while (!base.empty() && base.back() == '/') base.pop_back();
  return base + "/api/v1/captures/" + id + "/pcap";
}

Anomaly::CaptureDone capture_done_from_manifest(const nlohmann::json& m) {
  Anomaly::CaptureDone d;
  if (!m.is_object()) return d;
  const auto text = [&](const char* key) {
    auto it = m.find(key);
    return it != m.end() && it->is_string() ? it->get<std::string>() : std::string();
  };
  const auto count = [&](const char* key) {
    auto it = m.find(key);
    return it != m.end() && it->is_number_unsigned() ? it->get<uint64_t>() : uint64_t{0};
  };
  d.id = text("id");
  d.status = text("status");
  d.ended_by = text("ended_by");
  d.error = text("error");
  if (auto it = m.find("complete"); it != m.end() && it->is_boolean()) d.complete = it->get<bool>();
  d.packets = count("packets");
  d.packets_lost = count("packets_lost");
  d.bytes = count("bytes_written");
  if (auto w = m.find("window"); w != m.end() && w->is_object()) {
    if (auto s = w->find("start"); s != w->end() && s->is_number()) d.window_start = s->get<double>();
    if (auto e = w->find("end"); e != w->end() && e->is_number()) d.window_end = e->get<double>();
  }
  return d;
}

nlohmann::ordered_json encode_webhook_payload(const Anomaly& a, const std::string& agent_url) {
  ojson group = ojson::object();
  for (const auto& [k, v] : a.scope)
    if (k != "namespace" && k != "pod") group[k] = v;

  ojson pod_labels = ojson::object();
  for (const auto& [k, v] : a.pod_labels) pod_labels[k] = v;

  ojson body;
  body["version"] = "vigil.v1";
  if (!a.event.empty()) body["event"] = a.event;  // absent: the anomaly's own firing/resolved
  body["id"] = a.id;
  body["status"] = to_string(a.status);
  body["rule"] = a.rule;
  body["severity"] = a.severity;
  body["summary"] = a.summary;
  body["started_at"] = time_or_null(a.started_at);
  if (a.status == AnomalyStatus::Resolved) body["ended_at"] = time_or_null(a.ended_at);
  body["scope"] = {
      {"node", a.node},
      {"namespace", string_or_null(find_label(a.scope, "namespace"))},
      {"pod", string_or_null(find_label(a.scope, "pod"))},
      {"labels", std::move(pod_labels)},
      {"group", std::move(group)},
  };
  body["metric"] = {
      {"name", a.metric},
      {"labels", labels_object(a.metric_labels)},
      {"value", number_or_null(a.value)},
      {"baseline", number_or_null(a.baseline)},
      {"score", number_or_null(a.score)},
  };
  if (!a.recent.empty()) {
    ojson values = ojson::array();
    for (double v : a.recent) values.push_back(number_or_null(v));
    body["metric"]["recent"] = {{"step_seconds", a.recent_step}, {"values", std::move(values)}};
  }
  body["detector"] = a.detector;
  if (!a.captures.empty()) {
    ojson captures = ojson::array();
    for (const auto& id : a.captures) {
      ojson c = {{"id", id}};
      if (!agent_url.empty()) c["url"] = capture_url(agent_url, id);
      captures.push_back(std::move(c));
    }
    body["captures"] = std::move(captures);
  }
  if (a.event == kEventCaptureCompleted) {
    const auto& d = a.capture_done;
    ojson c = {{"id", d.id}};
    if (!agent_url.empty() && d.status != "failed") c["url"] = capture_url(agent_url, d.id);  // failed: no pcapng
    c["status"] = d.status;
    c["complete"] = d.complete;
    c["packets"] = d.packets;
    c["packets_lost"] = d.packets_lost;
    c["bytes"] = d.bytes;
    c["ended_by"] = d.ended_by;
    c["error"] = d.error.empty() ? ojson(nullptr) : ojson(d.error);
    c["window"] = {{"start", time_or_null(d.window_start)}, {"end", time_or_null(d.window_end)}};
    body["capture"] = std::move(c);
  }
  return body;
}

}  // namespace vigil::actions
