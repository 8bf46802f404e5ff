// What the outbox stores: a Message as JSON (every Anomaly field, so nothing is lost across a
// restart), plus the ids and hashes the notifiers need.
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <random>

#include "actions/notifier_impl.h"

namespace vigil::actions {
namespace {

using json = nlohmann::json;

// JSON has no NaN or infinity; the outbox keeps them as strings so a restart restores them.
json number(double v) {
  if (std::isfinite(v)) return v;
  return std::isnan(v) ? "nan" : (v > 0 ? "inf" : "-inf");
}

double number_of(const json& j) {
  if (j.is_number()) return j.get<double>();
  if (j.is_string()) {
    const auto s = j.get<std::string>();
    if (s == "inf") return INFINITY;
    if (s == "-inf") return -INFINITY;
    return NAN;
  }
  return 0;
}

json labels(const Labels& l) {
  json out = json::array();
  for (const auto& [k, v] : l) out.push_back({k, v});
  return out;
}

Labels labels_of(const json& j) {
  Labels out;
  for (const auto& kv : j) out.emplace_back(kv.at(0).get<std::string>(), kv.at(1).get<std::string>());
  return out;
}

std::string hex(const unsigned char* p, size_t n) {
  static const char* digits = "0123456789abcdef";
  std::string out(n * 2, '0');
  for (size_t i = 0; i < n; ++i) {
    out[2 * i] = digits[p[i] >> 4];
    out[2 * i + 1] = digits[p[i] & 15];
  }
  return out;
}

}  // namespace

double unix_now() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

json recent_json(const std::vector<double>& values) {
  json out = json::array();
  for (double v : values) out.push_back(number(v));
  return out;
}

json message_to_json(const Message& m) {
  const Anomaly& a = m.anomaly;
  json pod_labels = json::object();
  for (const auto& [k, v] : a.pod_labels) pod_labels[k] = v;
  json out = {
      {"seq", m.seq},
      {"key", m.key},
      {"enqueued_unix", m.enqueued_unix},
      {"suppressed", m.suppressed},
      {"anomaly",
       {{"id", a.id},
        {"status", to_string(a.status)},
        {"rule", a.rule},
        {"severity", a.severity},
        {"summary", a.summary},
        {"started_at", number(a.started_at)},
        {"ended_at", number(a.ended_at)},
        {"node", a.node},
        {"scope", labels(a.scope)},
        {"pod_labels", pod_labels},
        {"metric", a.metric},
        {"metric_labels", labels(a.metric_labels)},
        {"value", number(a.value)},
        {"baseline", number(a.baseline)},
        {"score", number(a.score)},
        {"detector", a.detector},
        {"band_low", number(a.band_low)},
        {"band_high", number(a.band_high)},
        {"detector_params", a.detector_params},
        {"recent", recent_json(a.recent)},
        {"recent_step", number(a.recent_step)},
        {"captures", a.captures}}},
  };
  if (!a.event.empty()) {  // a follow-up; the anomaly's own notifications have neither
    const auto& d = a.capture_done;
    out["anomaly"]["event"] = a.event;
    out["anomaly"]["capture_done"] = {{"id", d.id},
                                      {"status", d.status},
                                      {"ended_by", d.ended_by},
                                      {"error", d.error},
                                      {"complete", d.complete},
                                      {"packets", d.packets},
                                      {"packets_lost", d.packets_lost},
                                      {"bytes", d.bytes},
                                      {"window_start", number(d.window_start)},
                                      {"window_end", number(d.window_end)}};
  }
  return out;
}

Result<Message> message_from_json(const json& j) {
  try {
    Message m;
    m.seq = j.at("seq").get<uint64_t>();
    m.key = j.at("key").get<std::string>();
    m.enqueued_unix = j.at("enqueued_unix").get<double>();
    m.suppressed = j.value("suppressed", uint64_t{0});
    const json& x = j.at("anomaly");
    Anomaly& a = m.anomaly;
    a.id = x.at("id").get<std::string>();
    a.status = x.at("status").get<std::string>() == "resolved" ? AnomalyStatus::Resolved : AnomalyStatus::Firing;
    a.rule = x.at("rule").get<std::string>();
    a.severity = x.at("severity").get<std::string>();
    a.summary = x.at("summary").get<std::string>();
    a.started_at = number_of(x.at("started_at"));
    a.ended_at = number_of(x.at("ended_at"));
    a.node = x.at("node").get<std::string>();
    a.scope = labels_of(x.at("scope"));
    for (const auto& [k, v] : x.at("pod_labels").items()) a.pod_labels[k] = v.get<std::string>();
    a.metric = x.at("metric").get<std::string>();
    a.metric_labels = labels_of(x.at("metric_labels"));
    a.value = number_of(x.at("value"));
    a.baseline = number_of(x.at("baseline"));
    a.score = number_of(x.at("score"));
    a.detector = x.at("detector").get<std::string>();
    a.band_low = number_of(x.value("band_low", json(0)));
    a.band_high = number_of(x.value("band_high", json(0)));
    a.detector_params = x.value("detector_params", "");
    if (auto r = x.find("recent"); r != x.end() && r->is_array())  // records from before 0.x have none
      for (const auto& v : *r) a.recent.push_back(number_of(v));
    a.recent_step = number_of(x.value("recent_step", json(0)));
    if (auto c = x.find("captures"); c != x.end() && c->is_array())  // older records have none
      for (const auto& id : *c) a.captures.push_back(id.get<std::string>());
    a.event = x.value("event", "");  // older records: the anomaly's own notification
    if (auto d = x.find("capture_done"); d != x.end() && d->is_object()) {
      auto& c = a.capture_done;
      c.id = d->value("id", "");
      c.status = d->value("status", "");
      c.ended_by = d->value("ended_by", "");
      c.error = d->value("error", "");
      c.complete = d->value("complete", false);
      c.packets = d->value("packets", uint64_t{0});
      c.packets_lost = d->value("packets_lost", uint64_t{0});
      c.bytes = d->value("bytes", uint64_t{0});
      c.window_start = number_of(d->value("window_start", json(0)));
      c.window_end = number_of(d->value("window_end", json(0)));
    }
    return m;
  } catch (const std::exception& e) {
    return make_error(std::string("malformed outbox record: ") + e.what());
  }
}

// A random UUID (version 4) from the OpenSSL CSPRNG, falling back to std::random_device.
std::string new_uuid() {
  unsigned char b[16];
  if (RAND_bytes(b, sizeof b) != 1) {
    std::random_device rd;
    for (auto& c : b) c = static_cast<unsigned char>(rd());
  }
  b[6] = static_cast<unsigned char>((b[6] & 0x0f) | 0x40);
  b[8] = static_cast<unsigned char>((b[8] & 0x3f) | 0x80);
  const std::string h = hex(b, sizeof b);
  return h.substr(0, 8) + "-" + h.substr(8, 4) + "-" + h.substr(12, 4) + "-" + h.substr(16, 4) + "-" + h.substr(20);
}

std::string followup_key(const std::string& channel, const Anomaly& a) {
  // RFC 9562 version 8 (custom) UUID from SHA-256 of what identifies the follow-up.
  std::string h = sha256_hex(channel + "\n" + a.id + "\n" + a.event + "\n" + a.capture_done.id).substr(0, 32);
  static const char* digits = "0123456789abcdef";
  h[12] = '8';
  const int v = h[16] <= '9' ? h[16] - '0' : h[16] - 'a' + 10;
  h[16] = digits[(v & 3) | 8];
  return h.substr(0, 8) + "-" + h.substr(8, 4) + "-" + h.substr(12, 4) + "-" + h.substr(16, 4) + "-" + h.substr(20);
}

std::string sha256_hex(const std::string& data) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(data.data(), data.size(), md, &len, EVP_sha256(), nullptr);
  return hex(md, len);
}

std::string hmac_sha256_hex(const std::string& key, const std::string& data) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()), reinterpret_cast<const unsigned char*>(data.data()),
       data.size(), md, &len);
  return hex(md, len);
}

}  // namespace vigil::actions
