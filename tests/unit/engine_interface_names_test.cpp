#include <gtest/gtest.h>
#include <net/if.h>

#include "engine/netns.h"

namespace vigil {
namespace {

// The loopback interface is in every namespace the tests run in, under its one name.
TEST(InterfaceNames, TellsWhetherAnIfindexHasThatNameNow) {
  const unsigned lo = if_nametoindex("lo");
  ASSERT_NE(lo, 0u);
  InterfaceNames names;
  EXPECT_TRUE(names.is(lo, "lo"));
  EXPECT_FALSE(names.is(lo, "lo0"));
  EXPECT_FALSE(names.is(lo, "l"));
  EXPECT_FALSE(names.is(lo, ""));
  // No interface has this index: as for an interface deleted since.
  EXPECT_FALSE(names.is(0x7ffffff0u, "lo"));
  EXPECT_FALSE(names.is(0, ""));
  // The same socket serves many checks.
  for (int i = 0; i < 100; ++i) ASSERT_TRUE(names.is(lo, "lo"));
}

}  // namespace
}  // namespace vigil
