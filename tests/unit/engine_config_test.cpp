// The config parser: a full config, defaults, every error class with its exact
// file:line: key message, durations, rule globs and relative paths.
#include <stdlib.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include <gtest/gtest.h>

#include "engine/config.h"

namespace vigil {
namespace {

namespace fs = std::filesystem;

class ConfigTest : public testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/vigil-config-test-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string write(const std::string& rel, const std::string& text = "") {
    const fs::path p = fs::path(dir_) / rel;
    fs::create_directories(p.parent_path());
    std::ofstream(p) << text;
    return p.string();
  }

  Result<Config> parse(const std::string& text) { return parse_config(text, "config.yaml", dir_); }

  std::string error_of(const std::string& text) {
    auto c = parse(text);
    return c.ok() ? "(no error)" : c.error().message;
  }

  std::string dir_;
};

// The "## Example" block of docs/config.md, so the documented example is the tested one.
std::string documented_example() {
  std::ifstream in(VIGIL_SOURCE_DIR "/docs/config.md");
  std::stringstream ss;
  ss << in.rdbuf();
  const std::string doc = ss.str();
  const size_t section = doc.find("## Example");
  if (section == std::string::npos) return "";
  const std::string fence = "```yaml\n";
  const size_t start = doc.find(fence, section);
  if (start == std::string::npos) return "";
  const size_t end = doc.find("```", start + fence.size());
  if (end == std::string::npos) return "";
  return doc.substr(start + fence.size(), end - start - fence.size());
}

TEST_F(ConfigTest, FullConfig) {
  write("rules/b.lua");
  write("rules/a.lua");
  write("rules/notes.txt");
  write("extra/z.lua");
  write("pods.yaml", "[]\n");
  const std::string text = documented_example();
  ASSERT_FALSE(text.empty()) << "no ```yaml block after '## Example' in docs/config.md";
  auto c = parse(text);
  ASSERT_TRUE(c.ok()) << c.error().message;
  EXPECT_EQ(c->path, "config.yaml");
  EXPECT_EQ(c->node, "worker-7");
  EXPECT_EQ(c->listen, "0.0.0.0:9100");
  EXPECT_DOUBLE_EQ(c->tick_seconds, 0.5);
  EXPECT_EQ(c->state_dir, "/var/lib/vigil-test");
  EXPECT_EQ(c->pods.source, "file");
  EXPECT_EQ(c->pods.file, dir_ + "/pods.yaml");
  EXPECT_EQ(c->rules, (std::vector<std::string>{dir_ + "/rules/a.lua", dir_ + "/rules/b.lua", dir_ + "/extra/z.lua"}));

  ASSERT_EQ(c->notifiers.size(), 2u);
  EXPECT_EQ(c->notifiers[0].name, "default");
  EXPECT_EQ(c->notifiers[0].type, "log");
  const auto& w = c->notifiers[1];
  EXPECT_EQ(w.name, "oncall");
  EXPECT_EQ(w.type, "webhook");
  EXPECT_EQ(w.url, "https://hooks.example.com/vigil?team=net");
  EXPECT_EQ(w.headers, (std::map<std::string, std::string>{{"Authorization", "Bearer s3cret"}, {"X-Team", "net"}}));
  EXPECT_DOUBLE_EQ(w.timeout_seconds, 3);
  EXPECT_EQ(w.max_attempts, 7);
  EXPECT_DOUBLE_EQ(w.backoff_initial_seconds, 0.25);
  EXPECT_DOUBLE_EQ(w.backoff_max_seconds, 60);
  EXPECT_EQ(w.queue_limit, 500u);

  // The factory accepts what the parser accepted.
  auto d = actions::Dispatcher::create(c->notifiers);
  ASSERT_TRUE(d.ok()) << d.error().message;
  (*d)->stop();
}

TEST_F(ConfigTest, Defaults) {
  const Config d = default_config();
  EXPECT_EQ(d.path, "");
  char host[256] = {};
  ASSERT_EQ(gethostname(host, sizeof host - 1), 0);
  EXPECT_EQ(d.node, host);
  EXPECT_EQ(d.listen, "127.0.0.1:9965");
  EXPECT_DOUBLE_EQ(d.tick_seconds, 1.0);
  EXPECT_EQ(d.state_dir, "/var/lib/vigil");
  EXPECT_EQ(d.pods.source, "netns");
  EXPECT_EQ(d.pods.file, "");
  ASSERT_EQ(d.notifiers.size(), 1u);
  EXPECT_EQ(d.notifiers[0].name, "default");
  EXPECT_EQ(d.notifiers[0].type, "log");

  // The shipped pack is found in the source tree this test was built from.
  auto pack = expand_rule_paths({"*.lua"}, VIGIL_SOURCE_DIR "/rules/pack");
  ASSERT_TRUE(pack.ok()) << pack.error().message;
  EXPECT_FALSE(pack->empty());
  EXPECT_EQ(d.rules, *pack);
  EXPECT_EQ(shipped_rule_pack(), *pack);

  // An empty file, or one that sets a single key, keeps every other default.
  for (const std::string text : {"", "# nothing\n", "tick: 2s\n"}) {
    auto c = parse(text);
    ASSERT_TRUE(c.ok()) << c.error().message;
    EXPECT_EQ(c->node, d.node);
    EXPECT_EQ(c->listen, d.listen);
    EXPECT_EQ(c->rules, d.rules);
    EXPECT_EQ(c->notifiers.size(), 1u);
  }
  EXPECT_DOUBLE_EQ(parse("tick: 2s\n")->tick_seconds, 2);

  // Explicitly empty lists mean none.
  auto none = parse("rules: []\nnotifiers: []\n");
  ASSERT_TRUE(none.ok()) << none.error().message;
  EXPECT_TRUE(none->rules.empty());
  EXPECT_TRUE(none->notifiers.empty());
}

TEST_F(ConfigTest, UnknownKeys) {
  EXPECT_EQ(error_of("node: a\nlisten: 127.0.0.1:1\ntik: 1s\n"),
            "config.yaml:3: unknown key 'tik' (known: node, listen, tick, state_dir, max_pods, pods, rules, rule_limits, notifiers, metrics, remote_context, apiserver, captures, api)");
  EXPECT_EQ(error_of("pods:\n  source: none\n  path: x\n"), "config.yaml:3: pods: unknown key 'path' (known: source, file, kubernetes)");
  EXPECT_EQ(error_of("notifiers:\n  - name: a\n    type: log\n    uri: http://x\n"),
            "config.yaml:4: notifiers[0]: unknown key 'uri' (known: name, type, url, url_file, url_env, urls, headers, "
            "ca_file, secret, secret_file, secret_env, signature_header, template, routing_key, routing_key_file, "
            "routing_key_env, agent_url, resend_interval, timeout, max_attempts, backoff_initial, backoff_max, "
            "queue_limit, group_wait, suppress_repeats, rate_limit, rate_limit_period)");
  EXPECT_EQ(error_of("tick: 1s\nnode: a\ntick: 2s\n"), "config.yaml:3: tick: duplicate key (first at line 1)");
}

TEST_F(ConfigTest, WrongTypes) {
  EXPECT_EQ(error_of("- node\n"),
            "config.yaml:1: expected a map with keys node, listen, tick, state_dir, max_pods, pods, rules, rule_limits, notifiers, metrics, remote_context, apiserver, captures, api");
  EXPECT_EQ(error_of("node: [a, b]\n"), "config.yaml:1: node: expected a string");
  EXPECT_EQ(error_of("node: \"\"\n"), "config.yaml:1: node: must not be empty");
  EXPECT_EQ(error_of("listen: {host: a}\n"), "config.yaml:1: listen: expected a string");
  EXPECT_EQ(error_of("pods: file\n"), "config.yaml:1: pods: expected a map with keys source, file, kubernetes");
  EXPECT_EQ(error_of("rules: rules/*.lua\n"), "config.yaml:1: rules: expected a list of rule files or glob patterns");
  EXPECT_EQ(error_of("rules:\n  - {a: 1}\n"), "config.yaml:2: rules[0]: expected a string");
  EXPECT_EQ(error_of("notifiers: {name: a}\n"), "config.yaml:1: notifiers: expected a list of notifiers");
  EXPECT_EQ(error_of("notifiers:\n  - name: a\n    type: log\n  - name: b\n    type: webhook\n"
                     "    url: [http://x]\n"),
            "config.yaml:6: notifiers[1].url: expected a string");
  // An empty value is reported on its key's line.
  EXPECT_EQ(error_of("notifiers:\n  - name: a\n    type: webhook\n    url:\n    timeout: 2s\n"),
            "config.yaml:4: notifiers[0].url: expected a string");
  EXPECT_EQ(error_of("pods:\n  file:\n"), "config.yaml:2: pods.file: expected a string");
  EXPECT_EQ(error_of("notifiers:\n  - name: a\n    type: webhook\n    url: http://x\n    max_attempts: many\n"),
            "config.yaml:5: notifiers[0].max_attempts: expected an integer");
  EXPECT_EQ(error_of("notifiers:\n  - name: a\n    type: webhook\n    url: http://x\n    headers: [a]\n"),
            "config.yaml:5: notifiers[0].headers: expected a map of header names to values");
  EXPECT_EQ(error_of("notifiers:\n  - name: a\n    type: webhook\n    url: http://x\n    headers:\n      X-A: {b: c}\n"),
            "config.yaml:6: notifiers[0].headers.X-A: expected a string");
}

TEST_F(ConfigTest, BadValues) {
  EXPECT_EQ(error_of("listen: 127.0.0.1\n"), "config.yaml:1: listen: expected host:port, e.g. 127.0.0.1:9965");
  EXPECT_EQ(error_of("listen: 127.0.0.1:0\n"), "config.yaml:1: listen: port '0' is not a number from 1 to 65535");
  EXPECT_EQ(error_of("listen: 127.0.0.1:70000\n"),
            "config.yaml:1: listen: port '70000' is not a number from 1 to 65535");
  EXPECT_EQ(error_of("listen: \":9965\"\n"),
            "config.yaml:1: listen: missing host in ':9965' (use 0.0.0.0:PORT to listen on every address)");
  EXPECT_EQ(error_of("listen: \"::1:9965\"\n"), "config.yaml:1: listen: IPv6 addresses need brackets, e.g. [::1]:9965");
  EXPECT_TRUE(parse("listen: \"[::1]:9965\"\n").ok());

  EXPECT_EQ(error_of("tick: 0s\n"), "config.yaml:1: tick: must be greater than 0 and at most 1h");
  EXPECT_EQ(error_of("tick: 2h\n"), "config.yaml:1: tick: must be greater than 0 and at most 1h");
  EXPECT_EQ(error_of("tick: soon\n"),
            "config.yaml:1: tick: invalid duration 'soon' (expected e.g. 500ms, 2s, 1m30s, 1h or a number of seconds)");
  EXPECT_EQ(error_of("tick: -1\n"),
            "config.yaml:1: tick: invalid duration '-1' (expected e.g. 500ms, 2s, 1m30s, 1h or a number of seconds)");

  EXPECT_EQ(error_of("pods:\n  source: k8s\n"), "config.yaml:2: pods.source: unknown source 'k8s' (known: file, netns, kubernetes, none)");
  EXPECT_EQ(error_of("pods:\n  source: file\n"), "config.yaml:2: pods: missing key 'file' (required with source: file)");
  EXPECT_EQ(error_of("pods:\n  source: file\n  file: missing.yaml\n"),
            "config.yaml:3: pods.file: '" + dir_ + "/missing.yaml': No such file or directory");
  write("podsdir/x");
  EXPECT_EQ(error_of("pods:\n  file: podsdir\n"),
            "config.yaml:2: pods.file: '" + dir_ + "/podsdir' is a directory, not a pods file");
}

TEST_F(ConfigTest, NotifierErrors) {
  EXPECT_EQ(error_of("notifiers:\n  - name: a\n"), "config.yaml:2: notifiers[0]: missing key 'type' (webhook, slack, pagerduty, alertmanager or log)");
  EXPECT_EQ(error_of("notifiers:\n  - type: log\n"), "config.yaml:2: notifiers[0]: missing key 'name'");
  EXPECT_EQ(error_of("notifiers:\n  - name: Pager\n    type: log\n"),
            "config.yaml:2: notifiers[0].name: 'Pager' is not a valid name (1-64 characters from a-z, 0-9, '_', '-')");
  EXPECT_EQ(error_of("notifiers:\n  - name: a\n    type: teams\n"),
            "config.yaml:3: notifiers[0].type: unknown type 'teams' (known: webhook, slack, pagerduty, alertmanager, log)");
  EXPECT_EQ(error_of("notifiers:\n  - name: a\n    type: webhook\n"),
            "config.yaml:2: notifiers[0].url: required for type webhook (or url_file, url_env)");
  EXPECT_EQ(error_of("notifiers:\n  - name: a\n    type: webhook\n    url: ftp://x/\n"),
            "config.yaml:4: notifiers[0].url: expected a URL starting with http:// or https://");
  EXPECT_EQ(error_of("notifiers:\n  - name: a\n    type: log\n    url: http://x/\n"),
            "config.yaml:4: notifiers[0].url: only used by types webhook, slack, pagerduty, alertmanager");
  EXPECT_EQ(error_of("notifiers:\n  - name: a\n    type: webhook\n    url: http://x/\n    headers:\n"
                     "      X-Ok: 1\n      Host: y\n"),
            "config.yaml:7: notifiers[0].headers.Host: set by vigil itself; remove it");
  EXPECT_EQ(error_of("notifiers:\n  - name: a\n    type: webhook\n    url: http://x/\n    max_attempts: -1\n"),
            "config.yaml:5: notifiers[0].max_attempts: must be from 0 (no limit) to 1000000");
  EXPECT_EQ(error_of("notifiers:\n  - name: a\n    type: webhook\n    url: http://x/\n    queue_limit: -5\n"),
            "config.yaml:5: notifiers[0].queue_limit: must be from 1 to 1000000");
  EXPECT_EQ(error_of("notifiers:\n  - name: a\n    type: webhook\n    url: http://x/\n    timeout: 0\n"),
            "config.yaml:5: notifiers[0].timeout: must be greater than 0 and at most 5m");
  EXPECT_EQ(error_of("notifiers:\n  - name: a\n    type: webhook\n    url: http://x/\n    backoff_initial: 10s\n"
                     "    backoff_max: 1s\n"),
            "config.yaml:6: notifiers[0].backoff_max: must be at least backoff_initial and at most 1h");
  EXPECT_EQ(error_of("notifiers:\n  - name: a\n    type: log\n  - name: a\n    type: log\n"),
            "config.yaml:4: notifiers[1].name: duplicate notifier 'a' (first at line 2)");

  // A backoff_initial above the default backoff_max raises the unset cap instead of failing.
  auto c = parse("notifiers:\n  - name: a\n    type: webhook\n    url: http://x/\n    backoff_initial: 1m\n");
  ASSERT_TRUE(c.ok()) << c.error().message;
  EXPECT_DOUBLE_EQ(c->notifiers[0].backoff_max_seconds, 60);
}

TEST_F(ConfigTest, HeaderValuesAreNotEchoed) {
  const std::string e = error_of(
      "notifiers:\n  - name: a\n    type: webhook\n    url: http://x/\n    headers:\n      X-Token: \"abc\\r\\nsecret\"\n");
  EXPECT_EQ(e, "config.yaml:6: notifiers[0].headers.X-Token: value contains a line break or NUL");
  EXPECT_EQ(e.find("secret"), std::string::npos);
}

TEST_F(ConfigTest, YamlSyntaxErrorsHaveALine) {
  const std::string e = error_of("node: a\nlisten: [127.0.0.1:1\ntick: 1s\n");
  EXPECT_EQ(e.rfind("config.yaml:", 0), 0u) << e;
  EXPECT_NE(e.find(": invalid YAML: "), std::string::npos) << e;
  const std::string e2 = error_of("node: a\n  bad indent: b\n");
  EXPECT_EQ(e2.rfind("config.yaml:2: invalid YAML: ", 0), 0u) << e2;
}

TEST_F(ConfigTest, SeveralErrorsAreAllReported) {
  EXPECT_EQ(error_of("tik: 1s\nlisten: nowhere\nnotifiers:\n  - name: a\n"),
            "config.yaml:1: unknown key 'tik' (known: node, listen, tick, state_dir, max_pods, pods, rules, rule_limits, notifiers, metrics, remote_context, apiserver, captures, api)\n"
            "config.yaml:2: listen: expected host:port, e.g. 127.0.0.1:9965\n"
            "config.yaml:4: notifiers[0]: missing key 'type' (webhook, slack, pagerduty, alertmanager or log)");
}

TEST(ParseDuration, AcceptsUnitsAndPlainSeconds) {
  const std::pair<std::string, double> cases[] = {
      {"500ms", 0.5}, {"2s", 2},       {"2m", 120},     {"1h", 3600}, {"1h30m", 5400}, {"1m30s", 90},
      {"1.5s", 1.5},  {"2", 2},        {"0.25", 0.25},  {"0", 0},     {"1s500ms", 1.5}, {"90m", 5400},
  };
  for (const auto& [text, seconds] : cases) {
    auto d = parse_duration(text);
    ASSERT_TRUE(d.ok()) << text << ": " << d.error().message;
    EXPECT_DOUBLE_EQ(*d, seconds) << text;
  }
}

TEST(ParseDuration, RejectsOthers) {
  for (const std::string bad : {"", "s", "1x", "-1s", "1h30", "1 s", "1d", "abc", "1e3", ".", "ms", "1s ", " 1s"}) {
    auto d = parse_duration(bad);
    EXPECT_FALSE(d.ok()) << "'" << bad << "' was accepted as " << (d.ok() ? *d : 0);
  }
  EXPECT_EQ(parse_duration("1h30").error().message,
            "invalid duration '1h30': missing unit after the last number (expected e.g. 500ms, 2s, 1m30s, 1h or a "
            "number of seconds)");
  EXPECT_EQ(parse_duration("3d").error().message,
            "invalid duration '3d': unknown unit (expected e.g. 500ms, 2s, 1m30s, 1h or a number of seconds)");
}

TEST_F(ConfigTest, RuleGlobs) {
  write("r/b.lua");
  write("r/a.lua");
  write("r/c.lua");
  write("r/sub/d.lua");

  auto files = expand_rule_paths({"r/*.lua"}, dir_);
  ASSERT_TRUE(files.ok()) << files.error().message;
  EXPECT_EQ(*files, (std::vector<std::string>{dir_ + "/r/a.lua", dir_ + "/r/b.lua", dir_ + "/r/c.lua"}));

  files = expand_rule_paths({"r/[bc].lua", "r/*/*.lua", dir_ + "/r/a.lua"}, "/somewhere/else");
  EXPECT_FALSE(files.ok());  // relative patterns resolve against /somewhere/else
  files = expand_rule_paths({dir_ + "/r/[bc].lua", dir_ + "/r/*/*.lua", dir_ + "/r/a.lua"}, "/somewhere/else");
  ASSERT_TRUE(files.ok()) << files.error().message;
  EXPECT_EQ(*files, (std::vector<std::string>{dir_ + "/r/b.lua", dir_ + "/r/c.lua", dir_ + "/r/sub/d.lua",
                                              dir_ + "/r/a.lua"}));

  // A file named twice is loaded once, at its first place.
  auto c = parse("rules:\n  - r/b.lua\n  - r/*.lua\n  - r/a.lua\n");
  ASSERT_TRUE(c.ok()) << c.error().message;
  EXPECT_EQ(c->rules, (std::vector<std::string>{dir_ + "/r/b.lua", dir_ + "/r/a.lua", dir_ + "/r/c.lua"}));

  EXPECT_EQ(error_of("rules:\n  - r/*.lua\n  - nothing/*.lua\n"),
            "config.yaml:3: rules[1]: 'nothing/*.lua' (" + dir_ + "/nothing/*.lua) matches no file");
  EXPECT_EQ(error_of("rules:\n  - r/missing.lua\n"),
            "config.yaml:2: rules[0]: 'r/missing.lua' (" + dir_ + "/r/missing.lua): no such file");
  EXPECT_EQ(error_of("rules: [r]\n"), "config.yaml:1: rules[0]: '" + dir_ + "/r' is a directory; name its files, e.g. 'r/*.lua'");
}

TEST(RuleGlobs, MetacharactersInTheBaseDirAreLiteral) {
  char tmpl[] = "/tmp/vigil-[glob]*-XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  const std::string dir = tmpl;
  std::ofstream(dir + "/x.lua") << "";
  auto files = expand_rule_paths({"*.lua"}, dir);
  fs::remove_all(dir);
  ASSERT_TRUE(files.ok()) << files.error().message;
  EXPECT_EQ(*files, std::vector<std::string>{dir + "/x.lua"});
}

TEST_F(ConfigTest, RelativePathsResolveAgainstTheConfigFile) {
  write("conf/rules/x.lua");
  write("conf/pods.yaml", "[]\n");
  const std::string path = write("conf/vigil.yaml",
                                 "state_dir: state\npods: {source: file, file: pods.yaml}\nrules: [rules/*.lua]\n");
  // Loaded from another working directory, the config still finds its files.
  const fs::path cwd = fs::current_path();
  fs::current_path("/");
  auto c = load_config(path);
  fs::current_path(cwd);
  ASSERT_TRUE(c.ok()) << c.error().message;
  EXPECT_EQ(c->path, path);
  EXPECT_EQ(c->state_dir, dir_ + "/conf/state");
  EXPECT_EQ(c->pods.file, dir_ + "/conf/pods.yaml");
  EXPECT_EQ(c->rules, std::vector<std::string>{dir_ + "/conf/rules/x.lua"});

  // A relative config path works too, and errors name the file as given.
  fs::current_path(dir_);
  write("conf/bad.yaml", "node: a\ntick: never\n");
  auto bad = load_config("conf/bad.yaml");
  fs::current_path(cwd);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error().message,
            "conf/bad.yaml:2: tick: invalid duration 'never' (expected e.g. 500ms, 2s, 1m30s, 1h or a number of seconds)");
}

TEST_F(ConfigTest, MissingConfigFile) {
  auto c = load_config(dir_ + "/nope.yaml");
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.error().message, dir_ + "/nope.yaml: cannot read: No such file or directory");
}

TEST_F(ConfigTest, MetricsSection) {
  auto c = parse("metrics:\n  series_grace: 2m\n  retina_compat: true\n  dns_timeout: 2500ms\n  dns_max_pending: 1000\n"
                 "  tracepoint_audit: true\n  ingress_hook: pod\n  tcx: false\n");
  ASSERT_TRUE(c.ok()) << c.error().message;
  EXPECT_TRUE(c->metrics.tracepoint_audit);
  EXPECT_EQ(c->metrics.ingress_hook, "pod");
  EXPECT_FALSE(c->metrics.tcx);
  EXPECT_DOUBLE_EQ(c->metrics.series_grace_seconds, 120);
  EXPECT_TRUE(c->metrics.retina_compat);
  EXPECT_DOUBLE_EQ(c->metrics.dns_timeout_seconds, 2.5);
  EXPECT_EQ(c->metrics.dns_max_pending, 1000u);
  auto d = parse("");
  ASSERT_TRUE(d.ok());
  EXPECT_DOUBLE_EQ(d->metrics.series_grace_seconds, 60);
  EXPECT_FALSE(d->metrics.retina_compat);
  EXPECT_DOUBLE_EQ(d->metrics.dns_timeout_seconds, 5);
  EXPECT_EQ(d->metrics.dns_max_pending, 131072u);
  EXPECT_FALSE(d->metrics.tracepoint_audit);
  EXPECT_EQ(d->metrics.ingress_hook, "auto");
  EXPECT_TRUE(d->metrics.tcx);
  EXPECT_EQ(error_of("metrics:\n  tcx: no\n"), "config.yaml:2: metrics.tcx: expected true or false");
  EXPECT_EQ(error_of("metrics:\n  ingress_hook: veth\n"),
            "config.yaml:2: metrics.ingress_hook: unknown value 'veth' (known: auto, host, pod)");
  EXPECT_EQ(error_of("metrics:\n  tracepoint_audit: 1\n"), "config.yaml:2: metrics.tracepoint_audit: expected true or false");
  EXPECT_EQ(error_of("metrics:\n  dns_max_pending: 8\n"), "config.yaml:2: metrics.dns_max_pending: must be from 16 to 1048576");
  EXPECT_EQ(error_of("metrics:\n  dns_max_pending: lots\n"), "config.yaml:2: metrics.dns_max_pending: expected an integer");
  EXPECT_EQ(error_of("metrics:\n  dns_timeout: 50ms\n"), "config.yaml:2: metrics.dns_timeout: must be from 100ms to 1m");
  EXPECT_EQ(error_of("metrics:\n  dns_timeout: 2m\n"), "config.yaml:2: metrics.dns_timeout: must be from 100ms to 1m");
  EXPECT_EQ(error_of("metrics:\n  retina_compat: yes\n"), "config.yaml:2: metrics.retina_compat: expected true or false");
  EXPECT_EQ(error_of("metrics:\n  series_grace: 48h\n"), "config.yaml:2: metrics.series_grace: must be from 0 to 24h");
  EXPECT_EQ(error_of("metrics:\n  grace: 1m\n"),
            "config.yaml:2: metrics: unknown key 'grace' (known: series_grace, retina_compat, dns_timeout, dns_max_pending, netstat, packet_level, tracepoint_audit, ingress_hook, tcx)");
}

TEST_F(ConfigTest, PacketLevel) {
  auto d = parse("");
  ASSERT_TRUE(d.ok());
  EXPECT_TRUE(d->metrics.packet_level.all);  // every pod has the programs unless told otherwise
  auto c = parse("metrics:\n  packet_level:\n    pods: selected\n    namespaces: [shop]\n    pod_labels: {tier: web}\n");
  ASSERT_TRUE(c.ok()) << c.error().message;
  const auto& pl = c->metrics.packet_level;
  EXPECT_FALSE(pl.all);
  EXPECT_EQ(pl.namespaces, (std::vector<std::string>{"shop"}));
  EXPECT_EQ(pl.pod_labels.at("tier"), "web");
  // Chosen: in a namespace listed, or carrying every label; nothing listed chooses nobody.
  EXPECT_TRUE(pod_selected(pl.namespaces, pl.pod_labels, "shop", {}));
  EXPECT_TRUE(pod_selected(pl.namespaces, pl.pod_labels, "db", {{"tier", "web"}, {"app", "x"}}));
  EXPECT_FALSE(pod_selected(pl.namespaces, pl.pod_labels, "db", {{"tier", "db"}}));
  EXPECT_FALSE(pod_selected({}, {}, "shop", {{"tier", "web"}}));
  auto none = parse("metrics:\n  packet_level: {pods: selected}\n");
  ASSERT_TRUE(none.ok()) << none.error().message;
  EXPECT_FALSE(none->metrics.packet_level.all);
  EXPECT_EQ(error_of("metrics:\n  packet_level: {pods: some}\n"),
            "config.yaml:2: metrics.packet_level.pods: expected all or selected, got 'some'");
  EXPECT_EQ(error_of("metrics:\n  packet_level:\n    namespaces: [shop]\n"),
            "config.yaml:3: metrics.packet_level.pods: namespaces and pod_labels choose pods only with pods: selected "
            "(every pod has the programs with all)");
  EXPECT_EQ(error_of("metrics:\n  packet_level:\n    pods: selected\n    namespaces: shop\n"),
            "config.yaml:4: metrics.packet_level.namespaces: expected a list of namespace names");
  EXPECT_EQ(error_of("metrics:\n  packet_level: {pods: selected, labels: {a: b}}\n"),
            "config.yaml:2: metrics.packet_level: unknown key 'labels' (known: pods, namespaces, pod_labels)");
}

TEST_F(ConfigTest, RemoteContextSection) {
  auto c = parse("remote_context:\n  namespaces: [shop, db]\n  pod_labels: {tier: web}\n  max_peers: 20\n");
  ASSERT_TRUE(c.ok()) << c.error().message;
  EXPECT_EQ(c->remote_context.namespaces, (std::vector<std::string>{"shop", "db"}));
  EXPECT_EQ(c->remote_context.pod_labels.at("tier"), "web");
  EXPECT_EQ(c->remote_context.max_peers, 20u);
  auto d = parse("");
  ASSERT_TRUE(d.ok());
  EXPECT_TRUE(d->remote_context.namespaces.empty() && d->remote_context.pod_labels.empty());
  EXPECT_EQ(error_of("remote_context:\n  max_peers: 0\n"), "config.yaml:2: remote_context.max_peers: must be from 1 to 10000");
  EXPECT_EQ(error_of("remote_context:\n  namespaces: shop\n"),
            "config.yaml:2: remote_context.namespaces: expected a list of namespace names");
  // max_keys: what the per-CPU peer counters are sized for; off (the default) needs none.
  EXPECT_EQ(c->remote_context.max_keys, 16384u);
  EXPECT_TRUE(c->remote_context.enabled());
  EXPECT_FALSE(d->remote_context.enabled());
  auto k = parse("remote_context:\n  pod_labels: {tier: web}\n  max_keys: 65536\n");
  ASSERT_TRUE(k.ok()) << k.error().message;
  EXPECT_EQ(k->remote_context.max_keys, 65536u);
  EXPECT_TRUE(k->remote_context.enabled());
  EXPECT_EQ(error_of("remote_context:\n  max_keys: 65537\n"), "config.yaml:2: remote_context.max_keys: must be from 1 to 65536");
  EXPECT_EQ(error_of("remote_context:\n  max_keys: 0\n"), "config.yaml:2: remote_context.max_keys: must be from 1 to 65536");
}

TEST_F(ConfigTest, RuleLimitsSection) {
  auto d = parse("");
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->rule_limits.memory_bytes, 32u << 20);
  EXPECT_EQ(d->rule_limits.instructions, 10'000'000u);
  EXPECT_EQ(d->rule_limits.quarantine_after, 3);
  auto c = parse("rule_limits: {memory: 64MiB, instructions: 50000000, quarantine_after: 10}\n");
  ASSERT_TRUE(c.ok()) << c.error().message;
  EXPECT_EQ(c->rule_limits.memory_bytes, 64u << 20);
  EXPECT_EQ(c->rule_limits.instructions, 50'000'000u);
  EXPECT_EQ(c->rule_limits.quarantine_after, 10);
  EXPECT_EQ(error_of("rule_limits:\n  memory: 512KiB\n"), "config.yaml:2: rule_limits.memory: must be from 1MiB to 1GiB");
  EXPECT_EQ(error_of("rule_limits:\n  instructions: 10\n"),
            "config.yaml:2: rule_limits.instructions: must be from 100000 to 10000000000");
  EXPECT_EQ(error_of("rule_limits:\n  instructions: -5\n"),
            "config.yaml:2: rule_limits.instructions: must be from 100000 to 10000000000");
  EXPECT_EQ(error_of("rule_limits:\n  quarantine_after: 0\n"), "config.yaml:2: rule_limits.quarantine_after: must be from 1 to 1000");
  EXPECT_EQ(error_of("rule_limits:\n  cpu: 1\n"),
            "config.yaml:2: rule_limits: unknown key 'cpu' (known: memory, instructions, quarantine_after)");
}

TEST_F(ConfigTest, MaxPodsSizesTheDatapath) {
  auto d = parse("");
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->max_pods, 256u);
  auto c = parse("max_pods: 110\n");
  ASSERT_TRUE(c.ok()) << c.error().message;
  EXPECT_EQ(c->max_pods, 110u);
  EXPECT_EQ(error_of("tick: 1s\nmax_pods: 4097\n"), "config.yaml:2: max_pods: must be from 1 to 4096");
  EXPECT_EQ(error_of("max_pods: 0\n"), "config.yaml:1: max_pods: must be from 1 to 4096");
  EXPECT_EQ(error_of("max_pods: many\n"), "config.yaml:1: max_pods: expected an integer");
}

TEST_F(ConfigTest, ApiServerSection) {
  auto c = parse("apiserver:\n  addresses: [10.96.0.1:443, \"[fd00::1]:6443\"]\n  no_response_after: 3s\n  cgroup: cg\n");
  ASSERT_TRUE(c.ok()) << c.error().message;
  ASSERT_EQ(c->apiserver.addresses.size(), 2u);
  EXPECT_EQ(c->apiserver.addresses[0].ip, "10.96.0.1");
  EXPECT_EQ(c->apiserver.addresses[0].port, 443);
  EXPECT_EQ(c->apiserver.addresses[1].ip, "fd00::1");
  EXPECT_EQ(c->apiserver.addresses[1].port, 6443);
  EXPECT_DOUBLE_EQ(c->apiserver.no_response_seconds, 3);
  EXPECT_EQ(c->apiserver.cgroup, dir_ + "/cg");
  auto d = parse("");
  ASSERT_TRUE(d.ok());
  EXPECT_TRUE(d->apiserver.addresses.empty());
  EXPECT_DOUBLE_EQ(d->apiserver.no_response_seconds, 5);
  for (const char* bad : {"10.96.0.1", "10.96.0.1:0", "10.96.0.1:70000", "fd00::1:443", "[10.0.0.1]:443", "api:443"})
    EXPECT_EQ(error_of(std::string("apiserver:\n  addresses: [\"") + bad + "\"]\n"),
              std::string("config.yaml:2: apiserver.addresses[0]: expected IP:PORT, e.g. 10.96.0.1:443 or [fd00::1]:443, got '") +
                  bad + "'")
        << bad;
  EXPECT_EQ(error_of("apiserver:\n  no_response_after: 0s\n"),
            "config.yaml:2: apiserver.no_response_after: must be from 100ms to 10m");
  // The programs' table of API server addresses holds 64: the 65th is refused with the config.
  std::string many = "apiserver:\n  addresses: [";
  for (int i = 0; i < 65; ++i) many += (i ? ", " : "") + std::string("10.96.0.") + std::to_string(i + 1) + ":443";
  EXPECT_EQ(error_of(many + "]\n"), "config.yaml:2: apiserver.addresses: at most 64 addresses, got 65");
  EXPECT_TRUE(parse(many.substr(0, many.rfind(',')) + "]\n").ok());  // 64 are fine
}

TEST_F(ConfigTest, CapturesSection) {
  auto c = parse(
      "captures:\n  dir: caps\n  disk_quota: 2GiB\n  max_concurrent: 2\n  max_duration: 2m\n  max_bytes: 16MiB\n"
      "  max_packets: 5000\n  max_per_rule_per_hour: 3\n  before: 5s\n  after: 20s\n  snaplen: 256\n"
      "  lookback:\n    pods: all\n    pending: false\n    duration: 20s\n    per_pod: 1MiB\n    total: 8MiB\n    ring_buffer: 1MiB\n");
  ASSERT_TRUE(c.ok()) << c.error().message;
  const auto& l = c->captures.limits;
  EXPECT_TRUE(c->captures.enabled);
  EXPECT_EQ(l.dir, dir_ + "/caps");
  EXPECT_EQ(l.disk_quota_bytes, 2ull << 30);
  EXPECT_EQ(l.max_concurrent, 2u);
  EXPECT_DOUBLE_EQ(l.max_duration_seconds, 120);
  EXPECT_EQ(l.max_bytes_per_capture, 16ull << 20);
  EXPECT_EQ(l.max_packets_per_capture, 5000u);
  EXPECT_EQ(l.max_per_rule_per_hour, 3u);
  EXPECT_DOUBLE_EQ(l.default_before_seconds, 5);
  EXPECT_DOUBLE_EQ(l.default_after_seconds, 20);
  EXPECT_EQ(l.default_snaplen, 256u);
  EXPECT_EQ(c->captures.lookback_pods, "all");
  EXPECT_FALSE(c->captures.lookback_pending);
  EXPECT_DOUBLE_EQ(l.lookback_seconds, 20);
  EXPECT_EQ(l.lookback_bytes_per_pod, 1ull << 20);
  EXPECT_EQ(l.lookback_bytes_total, 8ull << 20);
  EXPECT_EQ(c->captures.ring_buffer_bytes, 1u << 20);

  auto d = parse("");
  ASSERT_TRUE(d.ok());
  EXPECT_TRUE(d->captures.enabled);
  EXPECT_EQ(d->captures.lookback_pods, "rules");
  EXPECT_TRUE(d->captures.lookback_pending);
  EXPECT_EQ(d->captures.limits.dir, "");  // the agent puts it under state_dir
  EXPECT_EQ(d->captures.ring_buffer_bytes, 8u << 20);

  EXPECT_EQ(error_of("captures:\n  lookback:\n    pending: soon\n"),
            "config.yaml:3: captures.lookback.pending: expected true or false");
  EXPECT_EQ(error_of("captures:\n  disk_quota: lots\n"),
            "config.yaml:2: captures.disk_quota: invalid size 'lots' (expected e.g. 64MiB, 1GiB, 512KiB or a number of bytes)");
  EXPECT_EQ(error_of("captures:\n  disk_quota: 10MB\n  max_bytes: 1GB\n  snaplen: 20\n"),
            "config.yaml:4: captures.snaplen: must be from 64 to 1536");
  EXPECT_EQ(error_of("captures:\n  lookback:\n    ring_buffer: 3MiB\n"),
            "config.yaml:3: captures.lookback.ring_buffer: must be a power of two from 64KiB to 1GiB (the kernel's ring buffer), e.g. 8MiB");
  EXPECT_EQ(error_of("captures:\n  lookback:\n    pods: some\n"),
            "config.yaml:3: captures.lookback.pods: unknown value 'some' (known: rules, all, none)");
  EXPECT_EQ(error_of("captures:\n  max_duration: 20s\n"),
            "config.yaml:2: captures: before + after (40.000000 s) exceeds max_duration (20.000000 s)");
  EXPECT_EQ(error_of("captures:\n  snap: 1\n").rfind("config.yaml:2: captures: unknown key 'snap' (known: enabled, dir,", 0), 0u);
}

TEST_F(ConfigTest, SizesParse) {
  EXPECT_EQ(*parse_size("4096"), 4096u);
  EXPECT_EQ(*parse_size("512KiB"), 512u << 10);
  EXPECT_EQ(*parse_size("1GB"), 1000000000u);
  EXPECT_FALSE(parse_size("1.5MiB").ok());
  EXPECT_FALSE(parse_size("-1").ok());
  EXPECT_FALSE(parse_size("99999999999999999999").ok());
  EXPECT_FALSE(parse_size("20000000TiB").ok());
}

TEST_F(ConfigTest, ApiTokenFromFileOrEnvironment) {
  write("token", "0123456789abcdef0123\n");
  auto c = parse("api:\n  token_file: token\n");
  ASSERT_TRUE(c.ok()) << c.error().message;
  EXPECT_EQ(c->api.token, "0123456789abcdef0123");
  setenv("VIGIL_TEST_TOKEN", "fedcba9876543210fedc", 1);
  auto e = parse("api:\n  token_env: VIGIL_TEST_TOKEN\n");
  ASSERT_TRUE(e.ok()) << e.error().message;
  EXPECT_EQ(e->api.token, "fedcba9876543210fedc");
  unsetenv("VIGIL_TEST_TOKEN");
  EXPECT_EQ(error_of("api:\n  token_env: VIGIL_TEST_TOKEN\n"),
            "config.yaml:2: api.token_env: environment variable VIGIL_TEST_TOKEN is not set");
  write("short", "abc\n");
  const std::string err = error_of("api:\n  token_file: short\n");
  EXPECT_EQ(err, "config.yaml:2: api.token_file: the token must be at least 16 characters (it is 3)");
  EXPECT_EQ(err.find("abc"), std::string::npos);  // the token itself is never shown
  EXPECT_EQ(error_of("api:\n  token_file: missing\n"),
            "config.yaml:2: api.token_file: '" + dir_ + "/missing': No such file or directory");
}

// Every notifier type and option: each bad value is reported with its file, line and key, and
// a secret's value never appears in an error.
TEST_F(ConfigTest, NotifierTypesAndOptions) {
  const std::string secret = write("hook.secret", "s3cr3t-hmac\n");
  setenv("VIGIL_TEST_SLACK_URL", "http://127.0.0.1:9/slack", 1);
  auto c = parse("notifiers:\n"
                 "  - {name: hook, type: webhook, url: 'http://127.0.0.1:9/h', secret_file: hook.secret,\n"
                 "     template: '{\"text\": \"{{summary}}\"}', suppress_repeats: 10m, rate_limit: 5, rate_limit_period: 1m}\n"
                 "  - {name: chat, type: slack, url_env: VIGIL_TEST_SLACK_URL, group_wait: 2s, agent_url: 'http://node:9965'}\n"
                 "  - {name: pager, type: pagerduty, routing_key: abc, url: 'http://127.0.0.1:9/enqueue'}\n"
                 "  - {name: am, type: alertmanager, urls: ['http://127.0.0.1:9093', 'http://127.0.0.1:9094'], resend_interval: 30s}\n");
  ASSERT_TRUE(c.ok()) << c.error().message;
  ASSERT_EQ(c->notifiers.size(), 4u);
  EXPECT_EQ(c->notifiers[0].secret_file, dir_ + "/hook.secret");
  EXPECT_EQ(c->notifiers[0].rate_limit, 5);
  EXPECT_EQ(c->notifiers[0].suppress_repeats_seconds, 600);
  EXPECT_EQ(c->notifiers[1].url_env, "VIGIL_TEST_SLACK_URL");
  EXPECT_EQ(c->notifiers[1].group_wait_seconds, 2);
  EXPECT_EQ(c->notifiers[2].routing_key, "abc");
  EXPECT_EQ(c->notifiers[3].urls.size(), 2u);
  EXPECT_EQ(c->notifiers[3].resend_interval_seconds, 30);
  (void)secret;

  EXPECT_EQ(error_of("notifiers:\n  - name: p\n    type: pagerduty\n"),
            "config.yaml:2: notifiers[0].routing_key: required for type pagerduty (or routing_key_file, routing_key_env)");
  EXPECT_EQ(error_of("notifiers:\n  - name: p\n    type: pagerduty\n    routing_key_file: missing.key\n"),
            "config.yaml:4: notifiers[0].routing_key_file: cannot read " + dir_ + "/missing.key: No such file or directory");
  EXPECT_EQ(error_of("notifiers:\n  - name: s\n    type: slack\n    url_env: VIGIL_TEST_UNSET_VARIABLE\n"),
            "config.yaml:4: notifiers[0].url_env: environment variable VIGIL_TEST_UNSET_VARIABLE is not set");
  EXPECT_EQ(error_of("notifiers:\n  - name: s\n    type: slack\n    url: http://x/\n    group_wait: 1h\n"),
            "config.yaml:5: notifiers[0].group_wait: must be from 0 (off) to 5m");
  EXPECT_EQ(error_of("notifiers:\n  - name: w\n    type: webhook\n    url: http://x/\n    group_wait: 1s\n"),
            "config.yaml:5: notifiers[0].group_wait: only used by type slack");
  EXPECT_EQ(error_of("notifiers:\n  - name: w\n    type: webhook\n    url: http://x/\n    template: '{\"a\": \"{{nope}}\"}'\n"),
            "config.yaml:5: notifiers[0].template: unknown field '{{nope}}' (see docs/webhook.md for the fields)");
  EXPECT_EQ(error_of("notifiers:\n  - name: w\n    type: webhook\n    url: http://x/\n    template: '{'\n"),
            "config.yaml:5: notifiers[0].template: not valid JSON");
  EXPECT_EQ(error_of("notifiers:\n  - name: a\n    type: alertmanager\n"),
            "config.yaml:2: notifiers[0].urls: required for type alertmanager (one URL per Alertmanager)");
  EXPECT_EQ(error_of("notifiers:\n  - name: a\n    type: alertmanager\n    urls:\n      - http://ok/\n      - gopher://x/\n"),
            "config.yaml:6: notifiers[0].urls[1]: expected a URL starting with http:// or https://");
  EXPECT_EQ(error_of("notifiers:\n  - name: a\n    type: alertmanager\n    urls: [http://x/]\n    resend_interval: 0s\n"),
            "config.yaml:5: notifiers[0].resend_interval: must be from 1s to 1h (keep it below Alertmanager's resolve_timeout)");
  EXPECT_EQ(error_of("notifiers:\n  - name: w\n    type: webhook\n    url: http://x/\n    ca_file: nope.pem\n"),
            "config.yaml:5: notifiers[0].ca_file: cannot read " + dir_ + "/nope.pem: No such file or directory");
  EXPECT_EQ(error_of("notifiers:\n  - name: w\n    type: webhook\n    url: http://x/\n    secret: a\n    secret_env: B\n"),
            "config.yaml:6: notifiers[0].secret_env: give only one of secret, secret_file and secret_env");
  EXPECT_EQ(error_of("notifiers:\n  - name: w\n    type: webhook\n    url: http://x/\n    rate_limit: -1\n"),
            "config.yaml:5: notifiers[0].rate_limit: must be from 0 (no limit) to 1000000");
  // A URL read from a file is checked, and named by the key that pointed at it, not shown.
  write("bad.url", "ftp://secret-token@x/\n");
  EXPECT_EQ(error_of("notifiers:\n  - name: w\n    type: webhook\n    url_file: bad.url\n"),
            "config.yaml:4: notifiers[0].url_file: expected a URL starting with http:// or https://");
}

TEST_F(ConfigTest, KubernetesPods) {
  const std::string kc = write("kube/config",
                               "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
                               "clusters: [{name: k, cluster: {server: 'https://10.0.0.1:6443', certificate-authority: ca.pem}}]\n"
                               "contexts: [{name: c, context: {cluster: k, user: u}}]\nusers: [{name: u, user: {token: t}}]\n");
  write("kube/ca.pem", "x");
  write("sa/token", "t\n");
  auto c = parse("node: worker-1\npods:\n  source: kubernetes\n  kubernetes:\n    kubeconfig: kube/config\n"
                 "    api_server: https://127.0.0.1:6443\n    ca_file: kube/ca.pem\n    token_file: sa/token\n"
                 "    namespaces:\n      include: [default, team-a]\n      exclude: [kube-system]\n"
                 "    observe: annotated\n    label_allowlist: [app, app.kubernetes.io/name]\n    watch_timeout: 2m\n"
                 "    resync: 0\n    request_timeout: 3s\n    backoff_initial: 100ms\n    backoff_max: 5s\n    owner_cache_size: 10\n");
  ASSERT_TRUE(c.ok()) << c.error().message;
  const auto& k = c->pods.kubernetes;
  EXPECT_EQ(c->pods.source, "kubernetes");
  EXPECT_EQ(k.node, "worker-1");
  EXPECT_EQ(k.kubeconfig, kc);
  EXPECT_EQ(k.api_server, "https://127.0.0.1:6443");
  EXPECT_EQ(k.ca_file, dir_ + "/kube/ca.pem");
  EXPECT_EQ(k.token_file, dir_ + "/sa/token");
  EXPECT_EQ(k.include_namespaces, (std::vector<std::string>{"default", "team-a"}));
  EXPECT_EQ(k.exclude_namespaces, (std::vector<std::string>{"kube-system"}));
  EXPECT_EQ(k.observe, "annotated");
  EXPECT_EQ(k.label_allowlist, (std::vector<std::string>{"app", "app.kubernetes.io/name"}));
  EXPECT_DOUBLE_EQ(k.watch_timeout_seconds, 120);
  EXPECT_DOUBLE_EQ(k.resync_seconds, 0);
  EXPECT_DOUBLE_EQ(k.request_timeout_seconds, 3);
  EXPECT_DOUBLE_EQ(k.backoff_initial_seconds, 0.1);
  EXPECT_DOUBLE_EQ(k.backoff_max_seconds, 5);
  EXPECT_EQ(k.owner_cache_size, 10u);

  // Defaults: in-cluster, everything observed.
  auto d = parse("node: n\npods: {source: kubernetes}\n");
  ASSERT_TRUE(d.ok()) << d.error().message;
  EXPECT_EQ(d->pods.kubernetes.kubeconfig, "");
  EXPECT_EQ(d->pods.kubernetes.node, "n");
  EXPECT_EQ(d->pods.kubernetes.observe, "all");
  EXPECT_EQ(d->pods.kubernetes.service_account_dir, "/var/run/secrets/kubernetes.io/serviceaccount");
  EXPECT_DOUBLE_EQ(d->pods.kubernetes.watch_timeout_seconds, 300);
  EXPECT_EQ(d->pods.kubernetes.label_allowlist.front(), "app");

  const std::string pre = "pods:\n  source: kubernetes\n  kubernetes:\n";
  EXPECT_EQ(error_of("pods:\n  source: netns\n  kubernetes: {}\n"), "config.yaml:3: pods.kubernetes: only used with source: kubernetes");
  EXPECT_EQ(error_of(pre + "    kubeconf: x\n"),
            "config.yaml:4: pods.kubernetes: unknown key 'kubeconf' (known: kubeconfig, api_server, ca_file, token_file, "
            "allow_insecure, namespaces, observe, label_allowlist, watch_timeout, resync, request_timeout, backoff_initial, "
            "backoff_max, owner_cache_size)");
  EXPECT_EQ(error_of("pods:\n  source: kubernetes\n  kubernetes: [a]\n"),
            "config.yaml:3: pods.kubernetes: expected a map with keys kubeconfig, api_server, ca_file, token_file, allow_insecure, "
            "namespaces, observe, label_allowlist, watch_timeout, resync, request_timeout, backoff_initial, backoff_max, "
            "owner_cache_size");
  EXPECT_EQ(error_of(pre + "    kubeconfig: nope\n"),
            "config.yaml:4: pods.kubernetes.kubeconfig: '" + dir_ + "/nope': No such file or directory");
  EXPECT_EQ(error_of(pre + "    token_file: kube\n"), "config.yaml:4: pods.kubernetes.token_file: '" + dir_ + "/kube' is a directory");
  EXPECT_EQ(error_of(pre + "    api_server: http://10.0.0.1\n"),
            "config.yaml:4: pods.kubernetes.api_server: server 'http://10.0.0.1': only https:// API servers are supported");
  EXPECT_EQ(error_of(pre + "    api_server: https://10.0.0.1:99999\n"),
            "config.yaml:4: pods.kubernetes.api_server: server 'https://10.0.0.1:99999': port is not a number from 1 to 65535");
  EXPECT_EQ(error_of(pre + "    observe: some\n"), "config.yaml:4: pods.kubernetes.observe: unknown value 'some' (known: all, annotated)");
  EXPECT_EQ(error_of(pre + "    label_allowlist: [app, example.com/tier, example.com-tier]\n"),
            "config.yaml:4: pods.kubernetes.label_allowlist: 'example.com/tier' and 'example.com-tier' are both "
            "label_example_com_tier in series; keep one");
  EXPECT_EQ(error_of(pre + "    namespaces: [a]\n"),
            "config.yaml:4: pods.kubernetes.namespaces: expected a map with keys include, exclude");
  EXPECT_EQ(error_of(pre + "    namespaces:\n      include: default\n"),
            "config.yaml:5: pods.kubernetes.namespaces.include: expected a list of namespace names");
  EXPECT_EQ(error_of(pre + "    namespaces:\n      exclude: [ok, Bad_Name]\n"),
            "config.yaml:5: pods.kubernetes.namespaces.exclude[1]: 'Bad_Name' is not a valid namespace name");
  EXPECT_EQ(error_of(pre + "    label_allowlist: [app, 'a b']\n"),
            "config.yaml:4: pods.kubernetes.label_allowlist[1]: 'a b' is not a valid label key");
  EXPECT_EQ(error_of(pre + "    allow_insecure: yes\n"), "config.yaml:4: pods.kubernetes.allow_insecure: expected true or false");
  EXPECT_EQ(error_of(pre + "    watch_timeout: 0s\n"), "config.yaml:4: pods.kubernetes.watch_timeout: must be from 1s to 1h");
  EXPECT_EQ(error_of(pre + "    resync: 5s\n"), "config.yaml:4: pods.kubernetes.resync: must be 0 (off) or from 10s to 24h");
  EXPECT_EQ(error_of(pre + "    backoff_initial: 2s\n    backoff_max: 1s\n"),
            "config.yaml:5: pods.kubernetes.backoff_max: must be at least backoff_initial");
  EXPECT_EQ(error_of(pre + "    owner_cache_size: -1\n"), "config.yaml:4: pods.kubernetes.owner_cache_size: must be from 0 to 1000000");
  write("kube/insecure", "current-context: c\nclusters: [{name: k, cluster: {server: 'https://h', insecure-skip-tls-verify: true}}]\n"
                         "contexts: [{name: c, context: {cluster: k}}]\n");
  EXPECT_EQ(error_of(pre + "    kubeconfig: kube/insecure\n"),
            "config.yaml:4: pods.kubernetes.kubeconfig: kubeconfig " + dir_ +
                "/kube/insecure: cluster 'k' sets insecure-skip-tls-verify; refused (set pods.kubernetes.allow_insecure: true to accept)");
  EXPECT_TRUE(parse(pre + "    kubeconfig: kube/insecure\n    allow_insecure: true\n").ok());
}

}  // namespace
}  // namespace vigil
