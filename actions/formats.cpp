// Request bodies per notifier type: the generic webhook (vigil.v1, optionally reshaped by a
// template and signed), Slack Block Kit, PagerDuty Events API v2 and Alertmanager API v2.
#include <cmath>
#include <cstdio>
#include <algorithm>
#include <functional>

#include "actions/notifier_impl.h"

namespace vigil::actions {
namespace {

using ojson = nlohmann::ordered_json;

std::string value_text(double v) {
  if (!std::isfinite(v)) return "n/a";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.4g", v);
  return buf;
}

std::string duration_text(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "";
  const long long s = std::llround(seconds);
  if (s < 60) return std::to_string(s) + "s";
  if (s < 3600) return std::to_string(s / 60) + "m" + (s % 60 ? " " + std::to_string(s % 60) + "s" : "");
  return std::to_string(s / 3600) + "h" + ((s % 3600) / 60 ? " " + std::to_string((s % 3600) / 60) + "m" : "");
}

std::string label_or(const Anomaly& a, const std::string& name, const std::string& fallback) {
  const std::string* v = find_label(a.scope, name);
  return v ? *v : fallback;
}

bool resolved(const Anomaly& a) { return a.status == AnomalyStatus::Resolved; }

// Whether a webhook `template` uses {{event}} or {{capture...}}: such a template is written for
// capture follow-ups too.
bool template_mentions_followups(const std::string& body_template);

// --- webhook ----------------------------------------------------------------------------

class WebhookFormat final : public Format {
 public:
  explicit WebhookFormat(const NotifierConfig& c)
      : secret_(c.secret), signature_header_(c.signature_header), agent_url_(c.agent_url),
        template_(c.body_template.empty() ? ojson() : ojson::parse(c.body_template)),
        template_takes_followups_(template_mentions_followups(c.body_template)) {}

  HttpRequest render(const std::vector<const Message*>& batch) const override {
    const Anomaly& a = batch.front()->anomaly;
    // A template written for anomalies only (no {{event}} or {{capture...}}) would render the
    // follow-up as the same anomaly again, which reads like a re-fire: it gets no follow-ups.
    if (is_followup(a) && !template_.is_null() && !template_takes_followups_)
      return skipped_request("the template uses neither {{event}} nor {{capture...}}");
    ojson body = encode_webhook_payload(a, agent_url_);
    if (!template_.is_null()) body = render_template(template_, body);
    HttpRequest r = body_request(dump_json(body));
    if (!secret_.empty()) r.headers.emplace_back(signature_header_, "sha256=" + hmac_sha256_hex(secret_, r.body));
    return r;
  }

 private:
  const std::string secret_;
  const std::string signature_header_;
  const std::string agent_url_;
  const ojson template_;
  const bool template_takes_followups_;
};

// --- slack ------------------------------------------------------------------------------

// Slack mrkdwn treats &, < and > as control characters.
std::string slack_escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '&') out += "&amp;";
    else if (c == '<') out += "&lt;";
    else if (c == '>') out += "&gt;";
    else out += c;
  }
  return out;
}

std::string truncate(std::string s, size_t max) {
  if (s.size() <= max) return s;
  s.resize(max - 3);
  while (!s.empty() && (static_cast<unsigned char>(s.back()) & 0xC0) == 0x80) s.pop_back();  // no half UTF-8
  if (!s.empty() && static_cast<unsigned char>(s.back()) >= 0xC0) s.pop_back();
  return s + "...";
}

const char* severity_icon(const Anomaly& a) {
  if (resolved(a)) return "\xE2\x9C\x85";                     // ✅
  if (a.severity == "critical") return "\xF0\x9F\x94\xB4";    // 🔴
  if (a.severity == "warning") return "\xF0\x9F\x9F\xA0";     // 🟠
  return "\xF0\x9F\x94\xB5";                                  // 🔵
}

std::string upper(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return s;
}

ojson mrkdwn(const std::string& text) { return {{"type", "mrkdwn"}, {"text", text}}; }
ojson plain(const std::string& text) { return {{"type", "plain_text"}, {"text", truncate(text, 150)}, {"emoji", true}}; }

class SlackFormat final : public Format {
 public:
  explicit SlackFormat(const NotifierConfig& c) : agent_url_(c.agent_url) {}
  bool groups() const override { return true; }

  HttpRequest render(const std::vector<const Message*>& batch) const override {
    ojson body;
    if (batch.size() == 1) {
      body = single(batch.front()->anomaly);
    } else {
      body = grouped(batch);
    }
    return body_request(dump_json(body));
  }

 private:
  // "Capture ready for <rule> on <ns/pod>: N packets (M lost, incomplete)" and a Download
  // button. Incoming webhooks cannot thread it under the anomaly's message: a message of its own.
  ojson followup(const Anomaly& a) const {
    const auto& d = a.capture_done;
    const std::string where = find_label(a.scope, "pod")
                                  ? label_or(a, "namespace", "-") + "/" + label_or(a, "pod", "-")
                                  : "node " + a.node;
    const bool failed = d.status == "failed";
    std::string text;
    if (failed) {
      text = "Capture failed for " + a.rule + " on " + where + (d.error.empty() ? "" : ": " + d.error);
    } else {
      text = "Capture ready for " + a.rule + " on " + where + ": " + std::to_string(d.packets) + " packet" +
             (d.packets == 1 ? "" : "s");
      std::string notes;
      if (d.packets_lost > 0) notes = std::to_string(d.packets_lost) + " lost";
      if (!d.complete) notes += (notes.empty() ? "" : ", ") + std::string("incomplete");
      if (!notes.empty()) text += " (" + notes + ")";
    }
    ojson blocks = ojson::array();
    blocks.push_back({{"type", "section"},
                      {"text", mrkdwn(truncate((failed ? "\xE2\x9A\xA0\xEF\xB8\x8F " : "\xF0\x9F\x93\xA6 ") +
                                               slack_escape(text), 3000))}});  // ⚠️ / 📦
    std::string context = "capture " + slack_escape(d.id);
    if (!d.ended_by.empty()) context += " \xC2\xB7 ended by " + slack_escape(d.ended_by);
    if (std::isfinite(d.window_end - d.window_start) && d.window_end > d.window_start)
      context += " \xC2\xB7 " + duration_text(d.window_end - d.window_start) + " from " + format_rfc3339(d.window_start);
    context += " \xC2\xB7 anomaly " + a.id + " (" + to_string(a.status) + ")";
    blocks.push_back({{"type", "context"}, {"elements", ojson::array({mrkdwn(truncate(context, 3000))})}});
    if (!agent_url_.empty() && !failed)
      blocks.push_back({{"type", "actions"},
                        {"elements", ojson::array({{{"type", "button"},
                                                    {"text", plain("Download capture")},
                                                    {"url", capture_url(agent_url_, d.id)}}})}});
    return {{"text", slack_escape(text)}, {"blocks", blocks}};
  }

  ojson single(const Anomaly& a) const {
    if (is_followup(a)) return followup(a);
    const std::string state = resolved(a) ? "resolved" : "firing";
    ojson blocks = ojson::array();
    blocks.push_back({{"type", "header"},
                      {"text", plain(std::string(severity_icon(a)) + " " + upper(a.severity) + " " + a.rule + " " + state)}});
    std::string text = slack_escape(a.summary);
    if (resolved(a)) text += "\nResolved after " + duration_text(a.ended_at - a.started_at) + ".";
    blocks.push_back({{"type", "section"}, {"text", mrkdwn(truncate(text, 3000))}});
    ojson fields = ojson::array();
    fields.push_back(mrkdwn("*Namespace*\n" + slack_escape(label_or(a, "namespace", "-"))));
    fields.push_back(mrkdwn("*Pod*\n" + slack_escape(label_or(a, "pod", "-"))));
    fields.push_back(mrkdwn("*Node*\n" + slack_escape(a.node)));
    fields.push_back(mrkdwn("*Observed vs expected*\n" + value_text(a.value) + " vs " + value_text(a.baseline)));
    blocks.push_back({{"type", "section"}, {"fields", fields}});
    if (a.recent.size() >= 2) {
      auto [lo, hi] = std::minmax_element(a.recent.begin(), a.recent.end());
      blocks.push_back({{"type", "section"},
                        {"text", mrkdwn("*Last " + duration_text(a.recent_step * static_cast<double>(a.recent.size())) +
                                        "* (" + value_text(*lo) + " to " + value_text(*hi) + ")\n`" +
                                        sparkline(a.recent) + "`")}});
    }
    std::string context = "`" + slack_escape(a.metric) + "` \xC2\xB7 " + slack_escape(a.detector) + " score " +
                          value_text(a.score) + " \xC2\xB7 started " + format_rfc3339(a.started_at) + " \xC2\xB7 id " +
                          a.id;
    if (!a.captures.empty() && agent_url_.empty()) {  // no link to give: the ids, for `vigil capture get`
      context += " \xC2\xB7 capture";
      for (size_t i = 0; i < a.captures.size(); ++i) context += (i ? ", " : " ") + slack_escape(a.captures[i]);
    }
    blocks.push_back({{"type", "context"}, {"elements", ojson::array({mrkdwn(truncate(context, 3000))})}});
    if (auto links = link_block({&a})) blocks.push_back(*links);
    const std::string fallback = "[" + upper(a.severity) + "] " + a.rule + " " + state + " on " +
                                 label_or(a, "namespace", "-") + "/" + label_or(a, "pod", "-") + ": " + a.summary;
    return {{"text", slack_escape(fallback)}, {"blocks", blocks}};
  }

  // One message for anomalies that started together on one node; at most 10 are detailed
  // (Slack allows 50 blocks per message).
  ojson grouped(const std::vector<const Message*>& batch) const {
    constexpr size_t kDetailed = 10;
    const Anomaly& first = batch.front()->anomaly;
    ojson blocks = ojson::array();
    blocks.push_back({{"type", "header"},
                      {"text", plain(std::string(severity_icon(first)) + " " + std::to_string(batch.size()) +
                                     " anomalies on " + first.node)}});
    for (size_t i = 0; i < batch.size() && i < kDetailed; ++i) {
      const Anomaly& a = batch[i]->anomaly;
      std::string text = "*" + upper(a.severity) + "* `" + slack_escape(a.rule) + "` " +
                         slack_escape(label_or(a, "namespace", "-")) + "/" + slack_escape(label_or(a, "pod", "-")) +
                         (resolved(a) ? " resolved" : "") + "\n" + slack_escape(a.summary) + "\nobserved " +
                         value_text(a.value) + " vs expected " + value_text(a.baseline);
      blocks.push_back({{"type", "section"}, {"text", mrkdwn(truncate(text, 3000))}});
    }
    if (batch.size() > kDetailed)
      blocks.push_back({{"type", "context"},
                        {"elements", ojson::array({mrkdwn("and " + std::to_string(batch.size() - kDetailed) + " more")})}});
    std::vector<const Anomaly*> anomalies;
    for (const Message* m : batch) anomalies.push_back(&m->anomaly);
    if (auto links = link_block(anomalies)) blocks.push_back(*links);
    return {{"text", std::to_string(batch.size()) + " anomalies on " + slack_escape(first.node)}, {"blocks", blocks}};
  }

  // The agent's rules, then a "Capture" button per capture of the anomalies (Slack allows 25
  // elements in an actions block).
  std::optional<ojson> link_block(const std::vector<const Anomaly*>& anomalies) const {
    if (agent_url_.empty()) return std::nullopt;
    ojson buttons = ojson::array();
    buttons.push_back({{"type", "button"}, {"text", plain("Agent: rules")}, {"url", agent_url_ + "/api/v1/rules"}});
    size_t total = 0;
    for (const Anomaly* a : anomalies) total += a->captures.size();
    for (const Anomaly* a : anomalies)
      for (const auto& id : a->captures) {
        if (buttons.size() >= 25) break;
        std::string text = "Capture";
        if (anomalies.size() > 1) text += " " + label_or(*a, "pod", a->rule);
        else if (total > 1) text += " " + std::to_string(buttons.size());
        buttons.push_back({{"type", "button"}, {"text", plain(text)}, {"url", capture_url(agent_url_, id)}});
      }
    return ojson{{"type", "actions"}, {"elements", buttons}};
  }

  const std::string agent_url_;
};

// --- pagerduty --------------------------------------------------------------------------

class PagerDutyFormat final : public Format {
 public:
  explicit PagerDutyFormat(const NotifierConfig& c)
      : routing_key_(c.routing_key), agent_url_(c.agent_url), change_path_(change_events_path(c.url)) {}

  HttpRequest render(const std::vector<const Message*>& batch) const override {
    const Anomaly& a = batch.front()->anomaly;
    if (is_followup(a)) return change_event(a);
    ojson body;
    body["routing_key"] = routing_key_;
    body["event_action"] = resolved(a) ? "resolve" : "trigger";
    body["dedup_key"] = pagerduty_dedup_key(a);
    if (!resolved(a)) {
      const std::string* ns = find_label(a.scope, "namespace");
      const std::string* pod = find_label(a.scope, "pod");
      ojson payload;
      payload["summary"] = truncate(a.summary.empty() ? a.rule : a.summary, 1024);
      payload["source"] = a.node;
      payload["severity"] = pagerduty_severity(a.severity);
      payload["timestamp"] = format_rfc3339(a.started_at);
      payload["component"] = ns && pod ? *ns + "/" + *pod : a.metric;
      payload["group"] = ns ? *ns : a.node;
      payload["class"] = a.rule;
      payload["custom_details"] = encode_webhook_payload(a, agent_url_);
      body["payload"] = payload;
      body["client"] = "Vigil";
      if (!agent_url_.empty()) {
        body["client_url"] = agent_url_;
        ojson links = ojson::array({{{"href", agent_url_ + "/api/v1/rules"}, {"text", "Vigil agent on " + a.node}}});
        for (const auto& id : a.captures)
          links.push_back({{"href", capture_url(agent_url_, id)}, {"text", "Packet capture " + id}});
        body["links"] = std::move(links);
      }
    }
    return body_request(dump_json(body));
  }

 private:
  // A capture follow-up is a change event (Events API v2, POST /v2/change/enqueue), not an
  // alert event: a `trigger` with the incident's dedup_key would add a trigger to the open
  // alert (and open a new incident once that one is resolved, as the capture often ends
  // after the resolve), and alert events have no "information only" action. Change events
  // never open an incident nor page anyone; PagerDuty lists them under the service's recent
  // changes and on its incidents as related changes, with their links.
  HttpRequest change_event(const Anomaly& a) const {
    if (change_path_.empty())
      return skipped_request("url does not end in /enqueue, so the change events endpoint (/change/enqueue) is unknown");
    const auto& d = a.capture_done;
    const std::string* ns = find_label(a.scope, "namespace");
    const std::string* pod = find_label(a.scope, "pod");
    std::string summary = (d.status == "failed" ? "Capture failed for " : "Capture ready for ") + a.rule + " on " +
                          (ns && pod ? *ns + "/" + *pod : a.node);
    if (d.status == "failed") {
      if (!d.error.empty()) summary += ": " + d.error;
    } else {
      summary += ": " + std::to_string(d.packets) + " packets";
      if (d.packets_lost > 0 || !d.complete)
        summary += std::string(" (") + (d.packets_lost > 0 ? std::to_string(d.packets_lost) + " lost" : "") +
                   (d.packets_lost > 0 && !d.complete ? ", " : "") + (d.complete ? "" : "incomplete") + ")";
    }
    ojson details = encode_webhook_payload(a, agent_url_);
    details["dedup_key"] = pagerduty_dedup_key(a);  // the incident's, to find the one it belongs to
    ojson body;
    body["routing_key"] = routing_key_;
    body["payload"] = {{"summary", truncate(summary, 1024)},
                       {"source", a.node},
                       {"timestamp", format_rfc3339(std::isfinite(d.window_end) && d.window_end > 0 ? d.window_end
                                                                                                   : a.started_at)},
                       {"custom_details", std::move(details)}};
    if (!agent_url_.empty() && d.status != "failed")
      body["links"] = ojson::array({{{"href", capture_url(agent_url_, d.id)}, {"text", "Packet capture " + d.id}}});
    return body_request(dump_json(body), change_path_);
  }

  // The configured alert events URL's path with its last segment "enqueue" replaced by
  // "change/enqueue" (https://events.pagerduty.com/v2/enqueue -> /v2/change/enqueue); "" when
  // the path does not end in /enqueue (a proxy of unknown layout).
  static std::string change_events_path(const std::string& url) {
    auto u = parse_http_url(url);
    if (!u) return "";
    const size_t q = u->path.find('?');
    std::string path = u->path.substr(0, q);
    const std::string query = q == std::string::npos ? "" : u->path.substr(q);
    while (path.size() > 1 && path.back() == '/') path.pop_back();
    if (!path.ends_with("/enqueue")) return "";
    return path.substr(0, path.size() - 7) + "change/enqueue" + query;
  }

  const std::string routing_key_;
  const std::string agent_url_;
  const std::string change_path_;
};

// --- alertmanager -----------------------------------------------------------------------

// Alertmanager label names are [a-zA-Z_][a-zA-Z0-9_]*.
std::string label_name(const std::string& s) {
  std::string out;
  for (char c : s) out += std::isalnum(static_cast<unsigned char>(c)) || c == '_' ? c : '_';
  if (out.empty() || std::isdigit(static_cast<unsigned char>(out[0]))) out.insert(0, "_");
  return out;
}

class AlertmanagerFormat final : public Format {
 public:
  explicit AlertmanagerFormat(const NotifierConfig& c) : agent_url_(c.agent_url) {}
  bool tracks_firing() const override { return true; }
  bool sends_summaries() const override { return false; }

  // A capture follow-up re-posts the alert with the same labels (so it is the same alert) and
  // its capture annotations updated, while it fires; Alertmanager keeps the newest annotations
  // and does not notify again for them. Once resolved it is skipped: re-posting a resolved
  // alert changes nothing a receiver sees, and one Alertmanager has already forgotten would be
  // created just to be resolved.
  HttpRequest render(const std::vector<const Message*>& batch) const override {
    ojson alerts = ojson::array();
    for (const Message* m : batch)
      if (!is_followup(m->anomaly) || !resolved(m->anomaly)) alerts.push_back(alert(m->anomaly));
    if (alerts.empty()) return skipped_request("the alert has resolved; Alertmanager is not told about its capture");
    return body_request(dump_json(alerts));
  }

 private:
  ojson alert(const Anomaly& a) const {
    ojson labels = ojson::object();
    labels["alertname"] = a.rule;
    labels["rule"] = a.rule;
    labels["severity"] = a.severity;
    labels["node"] = a.node;
    for (const auto& [k, v] : a.scope) {
      const std::string name = label_name(k);
      if (!labels.contains(name)) labels[name] = v;
    }
    ojson annotations = {{"summary", a.summary},
                         {"value", value_text(a.value)},
                         {"baseline", value_text(a.baseline)},
                         {"score", value_text(a.score)},
                         {"metric", a.metric},
                         {"detector", a.detector},
                         {"vigil_id", a.id}};
    std::vector<std::string> ids = a.captures;
    const bool followup = is_followup(a) && !a.capture_done.id.empty();
    if (followup && std::find(ids.begin(), ids.end(), a.capture_done.id) == ids.end()) ids.push_back(a.capture_done.id);
    if (!ids.empty()) {
      std::string joined;
      for (const auto& id : ids) joined += (joined.empty() ? "" : ",") + id;
      annotations["capture_ids"] = joined;
      // The follow-up links the capture that ended, which capture_status is about.
      const std::string& linked = followup ? a.capture_done.id : ids.front();
      if (!agent_url_.empty()) annotations["capture_url"] = capture_url(agent_url_, linked);
    }
    if (followup) annotations["capture_status"] = a.capture_done.status;
    ojson out = {{"labels", labels}, {"annotations", annotations}, {"startsAt", format_rfc3339(a.started_at)}};
    if (resolved(a)) out["endsAt"] = format_rfc3339(std::max(a.ended_at, a.started_at));
    if (!agent_url_.empty()) out["generatorURL"] = agent_url_ + "/api/v1/rules";
    return out;
  }

  const std::string agent_url_;
};

// A {{path}} placeholder found in a template string.
struct Placeholder {
  size_t pos = 0, len = 0;
  std::string path;
};

std::vector<Placeholder> placeholders(const std::string& s) {
  std::vector<Placeholder> out;
  for (size_t at = s.find("{{"); at != std::string::npos; at = s.find("{{", at + 2)) {
    const size_t close = s.find("}}", at + 2);
    if (close == std::string::npos) break;
    std::string path = s.substr(at + 2, close - at - 2);
    path.erase(0, path.find_first_not_of(' '));
    path.erase(path.find_last_not_of(' ') + 1);
    const bool ok = !path.empty() && std::all_of(path.begin(), path.end(), [](char c) {
      return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.';
    });
    if (!ok) continue;
    out.push_back({at, close + 2 - at, path});
    at = close;
  }
  return out;
}

// Calls `fn` for every placeholder in the strings and keys of a template.
void each_placeholder(const ojson& j, const std::function<void(const Placeholder&)>& fn) {
  if (j.is_string())
    for (const auto& p : placeholders(j.get<std::string>())) fn(p);
  if (j.is_object())
    for (const auto& [k, v] : j.items()) {
      for (const auto& p : placeholders(k)) fn(p);
      each_placeholder(v, fn);
    }
  if (j.is_array())
    for (const auto& v : j) each_placeholder(v, fn);
}

bool template_mentions_followups(const std::string& body_template) {
  if (body_template.empty()) return false;
  auto parsed = ojson::parse(body_template, nullptr, false);
  if (parsed.is_discarded()) return false;
  bool found = false;
  each_placeholder(parsed, [&](const Placeholder& p) {
    found = found || p.path == "event" || p.path == "capture" || p.path.starts_with("capture.");
  });
  return found;
}

const ojson* lookup(const ojson& body, const std::string& path) {
  const ojson* cur = &body;
  size_t start = 0;
  while (start <= path.size()) {
    const size_t dot = path.find('.', start);
    const std::string key = path.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
    if (!cur->is_object() || !cur->contains(key)) return nullptr;
    cur = &(*cur)[key];
    if (dot == std::string::npos) break;
    start = dot + 1;
  }
  return cur;
}

}  // namespace

std::optional<std::string> template_problem(const std::string& body_template) {
  auto parsed = ojson::parse(body_template, nullptr, false);
  if (parsed.is_discarded()) return "not valid JSON";
  if (!parsed.is_object() && !parsed.is_array()) return "must be a JSON object or array";
  // Every placeholder must name a field of the vigil.v1 body (a resolved one has them all);
  // under labels and group any key may appear.
  Anomaly sample;
  sample.status = AnomalyStatus::Resolved;
  sample.captures = {"id"};
  sample.event = kEventCaptureCompleted;  // so {{event}} and {{capture.*}} are known too
  sample.capture_done.id = "id";
  const ojson body = encode_webhook_payload(sample, "http://agent");
  std::optional<std::string> problem;
  each_placeholder(parsed, [&](const Placeholder& p) {
    const bool open_map = p.path.find("labels.") != std::string::npos || p.path.find("group.") != std::string::npos;
    if (!problem && !open_map && !lookup(body, p.path))
      problem = "unknown field '{{" + p.path + "}}' (see docs/webhook.md for the fields)";
  });
  return problem;
}

ojson render_template(const ojson& tmpl, const ojson& body) {
  if (tmpl.is_string()) {
    const std::string s = tmpl.get<std::string>();
    const auto found = placeholders(s);
    if (found.size() == 1 && found[0].pos == 0 && found[0].len == s.size()) {
      const ojson* v = lookup(body, found[0].path);
      return v ? *v : ojson(nullptr);
    }
    std::string out;
    size_t last = 0;
    for (const auto& p : found) {
      out.append(s, last, p.pos - last);
      if (const ojson* v = lookup(body, p.path); v && !v->is_null())
        out += v->is_string() ? v->get<std::string>() : dump_json(*v);
      last = p.pos + p.len;
    }
    out.append(s, last, std::string::npos);
    return out;
  }
  if (tmpl.is_object()) {
    ojson out = ojson::object();
    for (const auto& [k, v] : tmpl.items()) out[render_template(ojson(k), body).get<std::string>()] = render_template(v, body);
    return out;
  }
  if (tmpl.is_array()) {
    ojson out = ojson::array();
    for (const auto& v : tmpl) out.push_back(render_template(v, body));
    return out;
  }
  return tmpl;
}

std::string sparkline(const std::vector<double>& values) {
  static const char* bars[] = {"\xE2\x96\x81", "\xE2\x96\x82", "\xE2\x96\x83", "\xE2\x96\x84",
                               "\xE2\x96\x85", "\xE2\x96\x86", "\xE2\x96\x87", "\xE2\x96\x88"};
  std::vector<double> finite;
  for (double v : values)
    if (std::isfinite(v)) finite.push_back(v);
  if (finite.size() < 2) return "";
  const auto [lo, hi] = std::minmax_element(finite.begin(), finite.end());
  const double span = *hi - *lo;
  std::string out;
  for (double v : finite) {
    const int i = span > 0 ? static_cast<int>(std::lround((v - *lo) / span * 7)) : 0;
    out += bars[std::clamp(i, 0, 7)];
  }
  return out;
}

std::string pagerduty_dedup_key(const Anomaly& a) {
  std::string identity = a.rule + "\n" + a.node;
  for (const auto& [k, v] : a.scope) identity += "\n" + k + "=" + v;
  return "vigil-" + a.rule.substr(0, 200) + "-" + sha256_hex(identity).substr(0, 16);
}

std::string pagerduty_severity(const std::string& severity) {
  if (severity == "critical" || severity == "error" || severity == "warning" || severity == "info") return severity;
  return "warning";
}

std::unique_ptr<Format> make_webhook_format(const NotifierConfig& c) { return std::make_unique<WebhookFormat>(c); }
std::unique_ptr<Format> make_slack_format(const NotifierConfig& c) { return std::make_unique<SlackFormat>(c); }
std::unique_ptr<Format> make_pagerduty_format(const NotifierConfig& c) { return std::make_unique<PagerDutyFormat>(c); }
std::unique_ptr<Format> make_alertmanager_format(const NotifierConfig& c) {
  return std::make_unique<AlertmanagerFormat>(c);
}

}  // namespace vigil::actions
