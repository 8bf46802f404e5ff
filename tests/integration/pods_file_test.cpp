// The pods file drives attachment: pods added to it are attached, pods removed from it are
// detached and their series dropped, a broken file changes nothing, and the agent leaves no
// filter behind when it stops.
#include <bpf/bpf.h>
#include <gtest/gtest.h>
#include <net/if.h>
#include <unistd.h>

#include <fstream>
#include <set>
#include <thread>

#include "support.h"

namespace vigil::test {
namespace {

using namespace std::chrono_literals;

std::string pods_yaml(const Lab& lab, const std::vector<int>& pods) {
  std::string out;
  for (int p : pods)
    out += "- namespace: lab\n  name: pod-" + std::to_string(p) + "\n  netns: " + lab.prefix() + "-pod-" +
           std::to_string(p) + "\n";
  return out;
}

// Whether one of Vigil's TC programs is on `dev`: as a TCX link (Linux 6.6+) or a clsact filter.
bool has_vigil_filter(const std::string& dev) {
  auto r = run("tc filter show dev " + dev + " ingress; tc filter show dev " + dev + " egress");
  if (r.output.find("vigil_tc_") != std::string::npos) return true;
  const unsigned ifindex = if_nametoindex(dev.c_str());
  if (!ifindex) return false;
  for (int type : {46, 47}) {  // BPF_TCX_INGRESS, BPF_TCX_EGRESS
    __u32 ids[16], count = 16, flags = 0;
    if (bpf_prog_query(static_cast<int>(ifindex), static_cast<bpf_attach_type>(type), 0, &flags, ids, &count) != 0)
      continue;
    for (__u32 i = 0; i < count; ++i) {
      int fd = bpf_prog_get_fd_by_id(ids[i]);
      if (fd < 0) continue;
      bpf_prog_info info{};
      __u32 len = sizeof(info);
      const bool ours = bpf_obj_get_info_by_fd(fd, &info, &len) == 0 && std::string(info.name).rfind("vigil_tc_", 0) == 0;
      close(fd);
      if (ours) return true;
    }
  }
  return false;
}

std::set<std::string> attached_pods(int port) {
  std::set<std::string> out;
  auto j = nlohmann::json::parse(http_get("127.0.0.1", port, "/api/v1/pods"), nullptr, false);
  if (!j.is_array()) return out;
  for (const auto& p : j)
    if (p.value("attached", false)) out.insert(p.value("name", ""));
  return out;
}

bool wait_until(const std::function<bool()>& pred, std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (pred()) return true;
    std::this_thread::sleep_for(100ms);
  }
  return pred();
}

TEST(PodsFile, AttachesAndDetachesAsTheFileChanges) {
  VIGIL_REQUIRE_ROOT();
  Lab lab(3);
  std::string dir = make_temp_dir();
  std::string pods = write_temp_file(dir, "pods.yaml", pods_yaml(lab, {1, 2}));
  int port = free_port();
  std::string config = write_temp_file(dir, "vigil.yaml",
                                       "listen: 127.0.0.1:" + std::to_string(port) + "\ntick: 200ms\n"
                                       "pods: {source: file, file: pods.yaml}\nrules: []\nnotifiers: []\n"
                                       "metrics: {series_grace: 2s}\n");
  {
    Process agent({binary_path("vigil"), "agent", "--config", config}, dir + "/agent.log");
    ASSERT_TRUE(wait_until([&] { return attached_pods(port) == std::set<std::string>{"pod-1", "pod-2"}; }, 10s))
        << agent.log();
    EXPECT_TRUE(has_vigil_filter(lab.veth(1)));
    EXPECT_TRUE(has_vigil_filter(lab.veth(2)));
    EXPECT_FALSE(has_vigil_filter(lab.veth(3)));
    lab.cmd("udp 1 2 50");
    ASSERT_TRUE(wait_until([&] {
      return metric_value(http_get("127.0.0.1", port, "/metrics"), "vigil_forward_packets_total",
                          {{"pod", "pod-1"}, {"direction", "egress"}}).value_or(0) >= 50;
    }, 5s));

    // pod-1 leaves the file, pod-3 joins it. Written in place, not renamed: the agent must not
    // act on a half-written file.
    write_temp_file(dir, "pods.yaml", pods_yaml(lab, {2, 3}));
    ASSERT_TRUE(wait_until([&] { return attached_pods(port) == std::set<std::string>{"pod-2", "pod-3"}; }, 10s))
        << agent.log();
    EXPECT_FALSE(has_vigil_filter(lab.veth(1)));
    EXPECT_TRUE(has_vigil_filter(lab.veth(3)));
    // The removed pod's series stay for the grace period (a last scrape sees their final
    // values), then go.
    std::string text = http_get("127.0.0.1", port, "/metrics");
    EXPECT_GE(metric_value(text, "vigil_forward_packets_total", {{"pod", "pod-1"}, {"direction", "egress"}}).value_or(0), 50);
    EXPECT_TRUE(wait_until([&] {
      return !metric_value(http_get("127.0.0.1", port, "/metrics"), "vigil_forward_packets_total", {{"pod", "pod-1"}});
    }, 5s)) << "series of a removed pod outlived the grace period";

    // A broken file is reported with file and line and changes nothing.
    write_temp_file(dir, "pods.yaml", pods_yaml(lab, {2}) + "- name: x\n  netns: a\n  bogus: 1\n");
    ASSERT_TRUE(wait_until([&] { return agent.log().find("pods.yaml:6: pods[1]: unknown key 'bogus'") != std::string::npos; }, 5s))
        << agent.log();
    EXPECT_EQ(attached_pods(port), (std::set<std::string>{"pod-2", "pod-3"}));
    int status = 0;
    http_get("127.0.0.1", port, "/healthz", &status);
    EXPECT_EQ(status, 200);

    EXPECT_EQ(agent.terminate(), 0) << agent.log();
  }
  // Stopping the agent removes its filters.
  for (int p : {1, 2, 3}) EXPECT_FALSE(has_vigil_filter(lab.veth(p))) << "pod " << p;
  run("rm -rf " + dir);
}

}  // namespace
}  // namespace vigil::test
