// Agent configuration (YAML). Every key is checked: an unknown key, a wrong type or a
// missing file is an error naming the file, line and key. Defaults live here.
#pragma once

#include <string>
#include <vector>

#include "actions/notifier.h"
#include "rules/core/result.h"

namespace vigil {

struct PodsSourceConfig {
  std::string source = "none";  // "file" | "none" (kubernetes comes later)
  std::string file;             // for source: file; resolved relative to the config file
};

struct Config {
  std::string path;                      // the file this came from ("" for defaults)
  std::string node;                      // default: the host name
  std::string listen = "127.0.0.1:9965";  // host:port of /metrics, /healthz and the API
  double tick_seconds = 1.0;             // `tick`: "1s", "500ms" or a number of seconds
  std::string state_dir = "/var/lib/vigil";
  PodsSourceConfig pods;
  std::vector<std::string> rules;        // rule files after glob expansion, in order
  std::vector<actions::NotifierConfig> notifiers;
};

// Parses durations such as "500ms", "2s", "2m", "1h", "1h30m" or a plain number of seconds.
Result<double> parse_duration(const std::string& text);

// Loads and validates a config file. Relative paths (pods file, rule globs) resolve against
// the config file's directory. Rule globs that match nothing are errors.
Result<Config> load_config(const std::string& path);

// Parses config text (for tests); `origin` names the file in error messages and `base_dir`
// resolves relative paths.
Result<Config> parse_config(const std::string& text, const std::string& origin, const std::string& base_dir);

// The configuration used when the agent is started without --config.
Config default_config();

}  // namespace vigil
