// The namespaces and addresses the drop program attributes to pods (vigil_pod_netns,
// vigil_pod_ip), in the kernel's maps: a pod that goes takes out only what is still its own.
#include <gtest/gtest.h>

#include "engine/datapath.h"
#include "support.h"

namespace vigil::test {
namespace {

// Kubernetes gives a gone pod's address to the next pod, and the kernel reuses a gone
// namespace's inode number; the agent can hear of the new pod before it hears that the old one
// went. Taking the old one out then must leave the new one's entries.
TEST(DatapathPods, APodThatGoesLeavesWhatANewerPodTookOver) {
  VIGIL_REQUIRE_ROOT();
  auto loaded = Datapath::open_and_load();
  ASSERT_TRUE(loaded) << loaded.error().message;
  Datapath& dp = **loaded;
  const uint32_t inode = 4026539999u;
  ASSERT_TRUE(dp.set_pod(7, inode, {"10.77.0.5", "fd77::5"}));
  ASSERT_TRUE(dp.set_pod(8, inode, {"10.77.0.5"}));  // the newer pod: same inode, one same address
  EXPECT_EQ(dp.pod_of_netns(inode), 8u);
  EXPECT_EQ(dp.pod_of_ip("10.77.0.5"), 8u);
  EXPECT_EQ(dp.pod_of_ip("fd77::5"), 7u);
  dp.forget_pod(7, inode, {"10.77.0.5", "fd77::5"});
  EXPECT_EQ(dp.pod_of_netns(inode), 8u);
  EXPECT_EQ(dp.pod_of_ip("10.77.0.5"), 8u);
  EXPECT_EQ(dp.pod_of_ip("fd77::5"), std::nullopt);  // still pod 7's: it went with it
  dp.forget_pod(8, inode, {"10.77.0.5"});
  EXPECT_EQ(dp.pod_of_netns(inode), std::nullopt);
  EXPECT_EQ(dp.pod_of_ip("10.77.0.5"), std::nullopt);
}

}  // namespace
}  // namespace vigil::test
