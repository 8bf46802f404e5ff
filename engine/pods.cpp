#include "engine/pods.h"

#include <yaml-cpp/yaml.h>

#include <dirent.h>

#include <algorithm>
#include <fstream>
#include <regex>
#include <set>
#include <sstream>

#include "engine/netns.h"

namespace vigil {
namespace {

std::string where(const std::string& origin, const YAML::Node& n) {
  return origin + ":" + std::to_string(n.Mark().line + 1);
}

// Kubernetes names: DNS-1123 labels/subdomains.
bool valid_k8s_name(const std::string& s) {
  static const std::regex re("[a-z0-9]([-a-z0-9.]*[a-z0-9])?");
  return !s.empty() && s.size() <= 253 && std::regex_match(s, re);
}

}  // namespace

namespace {

Result<std::vector<PodSpec>> parse_pods_checked(const std::string& text, const std::string& origin) {
  const YAML::Node root = YAML::Load(text);  // a syntax error: parse_pods turns it into one of ours
  std::vector<PodSpec> pods;
  if (!root || root.IsNull()) return pods;  // an empty file means no pods
  if (!root.IsSequence()) return make_error(where(origin, root) + ": expected a list of pods");
  std::set<std::string> seen;
  for (size_t i = 0; i < root.size(); ++i) {
    const YAML::Node& n = root[i];
    const std::string at = where(origin, n);
    const std::string item = "pods[" + std::to_string(i) + "]";
    if (!n.IsMap()) return make_error(at + ": " + item + ": expected a map with namespace, name and netns or ip");
    PodSpec pod;
    for (const auto& kv : n) {
      if (!kv.first.IsScalar()) return make_error(where(origin, kv.first) + ": " + item + ": a key must be a plain name");
      const std::string key = kv.first.as<std::string>();
      const YAML::Node& v = kv.second;
      const std::string vat = where(origin, kv.first);
      auto scalar = [&](std::string& out) -> Result<void> {
        if (v.IsNull()) return {};  // `netns:` with no value is the same as leaving it out
        if (!v.IsScalar()) return make_error(vat + ": " + item + "." + key + ": expected a string");
        out = v.as<std::string>();
        return {};
      };
      Result<void> r;
      if (key == "namespace") r = scalar(pod.namespace_);
      else if (key == "name") r = scalar(pod.name);
      else if (key == "netns") r = scalar(pod.netns);
      else if (key == "ip") r = scalar(pod.ip);
      else if (key == "labels") {
        if (!v.IsMap() && !v.IsNull()) return make_error(vat + ": " + item + ".labels: expected a map of strings");
        for (const auto& l : v) {
          if (!l.first.IsScalar())
            return make_error(where(origin, l.first) + ": " + item + ".labels: a label name must be a plain string");
          if (!l.second.IsScalar())
            return make_error(where(origin, l.first) + ": " + item + ".labels." + l.first.as<std::string>() + ": expected a string");
          pod.labels[l.first.as<std::string>()] = l.second.as<std::string>();
        }
        std::vector<std::string> keys;
        for (const auto& [k, value] : pod.labels) keys.push_back(k);
        if (auto clash = series_label_clash(keys)) return make_error(vat + ": " + item + ".labels: " + *clash);
      } else if (key == "packet_level") {
        const std::string b = v.IsScalar() ? v.as<std::string>() : "";
        if (b != "true" && b != "false") return make_error(vat + ": " + item + ".packet_level: expected true or false");
        pod.packet_level = b == "true";
      } else {
        return make_error(vat + ": " + item + ": unknown key '" + key +
                          "' (known: namespace, name, labels, netns, ip, packet_level)");
      }
      if (!r) return r.error();
    }
    if (pod.namespace_.empty()) pod.namespace_ = "default";
    if (!valid_k8s_name(pod.name)) return make_error(at + ": " + item + ".name: missing or not a valid Kubernetes name");
    if (!valid_k8s_name(pod.namespace_)) return make_error(at + ": " + item + ".namespace: not a valid Kubernetes name");
    if (pod.netns.empty() == pod.ip.empty())
      return make_error(at + ": " + item + ": give exactly one of netns or ip");
    if (!pod.ip.empty()) {
      uint8_t key[16];
      if (!ip_to_key(pod.ip, key)) return make_error(at + ": " + item + ".ip: '" + pod.ip + "' is not an IP address");
    }
    if (!pod.netns.empty() && pod.netns.front() != '/') {
      if (pod.netns.find('/') != std::string::npos)
        return make_error(at + ": " + item + ".netns: a name under /run/netns or an absolute path");
      pod.netns = "/run/netns/" + pod.netns;
    }
    if (!seen.insert(pod.key()).second) return make_error(at + ": " + item + ": duplicate pod " + pod.key());
    pods.push_back(std::move(pod));
  }
  return pods;
}

}  // namespace

Result<std::vector<PodSpec>> parse_pods(const std::string& text, const std::string& origin) {
  try {
    return parse_pods_checked(text, origin);
  } catch (const YAML::Exception& e) {  // bad YAML, or a shape the checks missed: an error, not a crash
    return make_error(origin + ":" + std::to_string(e.mark.line + 1) + ": " + e.msg);
  } catch (const std::exception& e) {
    return make_error(origin + ": " + e.what());
  }
}

Result<std::vector<PodSpec>> load_pods_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) return make_error("pods file " + path + ": cannot be read");
  std::stringstream ss;
  ss << in.rdbuf();
  return parse_pods(ss.str(), path);
}

}  // namespace vigil

namespace vigil {

std::vector<PodSpec> pods_from_named_netns(const std::string& dir) {
  std::vector<PodSpec> pods;
  DIR* d = opendir(dir.c_str());
  if (!d) return pods;
  while (dirent* e = readdir(d)) {
    std::string name = e->d_name;
    if (name == "." || name == ".." || !valid_k8s_name(name)) continue;
    PodSpec pod;
    pod.namespace_ = "default";
    pod.name = name;
    pod.netns = dir + "/" + name;
    pods.push_back(std::move(pod));
  }
  closedir(d);
  std::sort(pods.begin(), pods.end(), [](const PodSpec& a, const PodSpec& b) { return a.name < b.name; });
  return pods;
}

}  // namespace vigil
