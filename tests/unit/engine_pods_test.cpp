#include <gtest/gtest.h>

#include <set>

#include "engine/pod_manager.h"
#include "engine/pods.h"

namespace vigil {
namespace {

TEST(PodsFile, ParsesNetnsAndIpPods) {
  auto pods = parse_pods(R"(
- namespace: shop
  name: web-1
  labels: {app: web, team: payments}
  netns: web-1
- name: db-0
  ip: 10.0.0.7
- name: v6
  ip: fd00::7
  netns:
  packet_level: false
)", "pods.yaml");
  // The last entry has both (netns empty): still exactly one given, so it is valid.
  ASSERT_TRUE(pods) << pods.error().message;
  ASSERT_EQ(pods->size(), 3u);
  EXPECT_EQ((*pods)[0].key(), "shop/web-1");
  EXPECT_EQ((*pods)[0].netns, "/run/netns/web-1");
  EXPECT_EQ((*pods)[0].labels.at("team"), "payments");
  EXPECT_EQ((*pods)[1].namespace_, "default");
  EXPECT_EQ((*pods)[1].ip, "10.0.0.7");
  EXPECT_EQ((*pods)[2].ip, "fd00::7");
  // A pod's own say on its packets' programs; unsaid for the others.
  EXPECT_EQ((*pods)[2].packet_level, std::optional<bool>(false));
  EXPECT_FALSE((*pods)[0].packet_level.has_value());
}

TEST(PodsFile, EmptyFileMeansNoPods) {
  auto pods = parse_pods("", "pods.yaml");
  ASSERT_TRUE(pods);
  EXPECT_TRUE(pods->empty());
}

struct BadCase {
  const char* text;
  const char* error;
};

class PodsFileErrors : public ::testing::TestWithParam<BadCase> {};

TEST_P(PodsFileErrors, NameFileLineAndField) {
  auto pods = parse_pods(GetParam().text, "pods.yaml");
  ASSERT_FALSE(pods);
  EXPECT_EQ(pods.error().message, GetParam().error);
}

INSTANTIATE_TEST_SUITE_P(
    All, PodsFileErrors,
    ::testing::Values(
        BadCase{"- name: a\n  netns: a\n  nets: b\n", "pods.yaml:3: pods[0]: unknown key 'nets' (known: namespace, name, labels, netns, ip, packet_level)"},
        BadCase{"- name: a\n  netns: a\n  packet_level: maybe\n", "pods.yaml:3: pods[0].packet_level: expected true or false"},
        BadCase{"- name: a\n", "pods.yaml:1: pods[0]: give exactly one of netns or ip"},
        BadCase{"- name: a\n  netns: a\n  ip: 10.0.0.1\n", "pods.yaml:1: pods[0]: give exactly one of netns or ip"},
        BadCase{"- name: a\n  ip: 10.0.0.300\n", "pods.yaml:1: pods[0].ip: '10.0.0.300' is not an IP address"},
        BadCase{"- name: Bad_Name\n  netns: a\n", "pods.yaml:1: pods[0].name: missing or not a valid Kubernetes name"},
        BadCase{"- name: a\n  netns: a\n- name: a\n  netns: b\n", "pods.yaml:3: pods[1]: duplicate pod default/a"},
        BadCase{"- name: a\n  netns: x/y\n", "pods.yaml:1: pods[0].netns: a name under /run/netns or an absolute path"},
        BadCase{"- name: a\n  netns: a\n  labels: [x]\n", "pods.yaml:3: pods[0].labels: expected a map of strings"},
        BadCase{"name: a\n", "pods.yaml:1: expected a list of pods"},
        BadCase{"- name: a\n  netns: [a\n", "pods.yaml:3: end of sequence flow not found"},
        // Found by tests/fuzz (corpus/pods/regression-map-as-key.yaml): a map or list as a key
        // threw yaml-cpp's BadConversion out of parse_pods.
        BadCase{"- name: a\n  netns: a\n- {name: b, ip: \"fd00::2\"}: x\n", "pods.yaml:3: pods[1]: a key must be a plain name"},
        BadCase{"- name: a\n  netns: a\n  labels: {[x]: y}\n", "pods.yaml:3: pods[0].labels: a label name must be a plain string"},
        // Two keys with one name in series: a series with a label twice breaks the whole scrape.
        BadCase{"- name: a\n  netns: a\n  labels: {a.b: x, a-b: y}\n",
                "pods.yaml:3: pods[0].labels: 'a-b' and 'a.b' are both label_a_b in series; keep one"}));

TEST(PodsFile, NoSeriesHasALabelTwice) {
  PodSpec spec;
  spec.namespace_ = "lab";
  spec.name = "a";
  spec.labels = {{"a-b", "x"}, {"a.b", "y"}, {"app", "web"}};  // as another source could give them
  const Labels l = metric_labels_of(spec);
  std::set<std::string> names;
  for (const auto& [k, v] : l) EXPECT_TRUE(names.insert(k).second) << k << " twice";
  EXPECT_EQ(l, make_labels({{"label_a_b", "x"}, {"label_app", "web"}, {"namespace", "lab"}, {"pod", "a"}}));
}

TEST(PodsFile, MissingFileIsNamed) {
  auto pods = load_pods_file("/nonexistent/pods.yaml");
  ASSERT_FALSE(pods);
  EXPECT_EQ(pods.error().message, "pods file /nonexistent/pods.yaml: cannot be read");
}

}  // namespace
}  // namespace vigil
