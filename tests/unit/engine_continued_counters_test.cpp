// ContinuedCounters: a series keeps its value when its source changes and adds what the new one
// counts after the change.
#include "engine/families/continued_counters.h"

#include <gtest/gtest.h>

#include <optional>

namespace vigil {
namespace {

using Source = ContinuedCounters::Source;

const Source kPrograms1{1, 7, 0, true};   // the programs of one attach
const Source kPrograms2{1, 8, 0, true};   // of the next
const Source kHostSide{2, 12, 0, false};  // an interface's statistics
const Source kOwnEnd{3, 4026532000, 2, false};

TEST(ContinuedCounters, AFirstReadIsTheSourcesValueWithItsHistory) {
  ContinuedCounters c;
  EXPECT_EQ(c.next({"lab/pod-1", 0}, kHostSide, 500), 500);
  EXPECT_EQ(c.next({"lab/pod-1", 0}, kHostSide, 530), 530);
  EXPECT_EQ(c.next({"lab/pod-2", 0}, kPrograms1, 3), 3);
}

TEST(ContinuedCounters, FromTheProgramsToStatisticsItGoesOnInsteadOfTakingTheirHistory) {
  ContinuedCounters c;
  const ContinuedCounters::Key k{"lab/pod-1", 0};
  EXPECT_EQ(c.next(k, kPrograms1, 40), 40);
  // The interface has counted 1,000 since its creation: only what it counts from here is added.
  EXPECT_EQ(c.next(k, kHostSide, 1000), 40);
  EXPECT_EQ(c.next(k, kHostSide, 1025), 65);
  // Its own end instead (ingress_hook: auto moved it): again from where the series is.
  EXPECT_EQ(c.next(k, kOwnEnd, 2000), 65);
  EXPECT_EQ(c.next(k, kOwnEnd, 2010), 75);
}

TEST(ContinuedCounters, ProgramsAttachedAgainCountFromZeroAndAllOfItIsAdded) {
  ContinuedCounters c;
  const ContinuedCounters::Key k{"lab/pod-1", 1};
  EXPECT_EQ(c.next(k, kHostSide, 900), 900);
  // Programs attached since the last read: what they counted came after it.
  EXPECT_EQ(c.next(k, kPrograms1, 15), 915);
  EXPECT_EQ(c.next(k, kPrograms1, 20), 920);
  // Attached again (a new serial), even if they counted past the old value before the read.
  EXPECT_EQ(c.next(k, kPrograms2, 30), 950);
}

TEST(ContinuedCounters, TheSameSourceStartedAgainIsNotAFallBack) {
  ContinuedCounters c;
  const ContinuedCounters::Key k{"lab/pod-1", 0};
  EXPECT_EQ(c.next(k, kHostSide, 100), 100);
  EXPECT_EQ(c.next(k, kHostSide, 4), 104);  // a new interface with the old one's ifindex
  EXPECT_EQ(c.next(k, kHostSide, 10), 110);
}

TEST(ContinuedCounters, ASeriesThatStillHasAValueGoesOnFromIt) {
  ContinuedCounters c;
  int asked = 0;
  auto had = [&] {
    ++asked;
    return std::optional<double>(70);
  };
  // A pod that left and came back within the grace time: statistics from now on, programs all.
  EXPECT_EQ(c.next({"lab/pod-1", 0}, kHostSide, 1000, had), 70);
  EXPECT_EQ(c.next({"lab/pod-1", 0}, kHostSide, 1001, had), 71);
  EXPECT_EQ(c.next({"lab/pod-2", 0}, kPrograms1, 5, had), 75);
  EXPECT_EQ(asked, 2) << "asked only for series not yet known";
}

TEST(ContinuedCounters, OwnersNotKeptAreForgotten) {
  ContinuedCounters c;
  c.next({"lab/pod-1", 0}, kPrograms1, 40);
  c.next({"lab/pod-1", 1}, kPrograms1, 40);
  c.next({"lab/pod-2", 0}, kPrograms1, 50);
  c.keep_only([](const std::string& pod) { return pod == "lab/pod-2"; });
  EXPECT_EQ(c.size(), 1u);
  // Back later, after its series went: a new series from the source's value.
  EXPECT_EQ(c.next({"lab/pod-1", 0}, kHostSide, 1000), 1000);
}

}  // namespace
}  // namespace vigil
