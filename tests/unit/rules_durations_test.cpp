#include <gtest/gtest.h>

#include "rules/runtime/durations.h"

using vigil::rules::format_duration;
using vigil::rules::parse_duration;

TEST(RulesDurations, ParsesUnitsAndChains) {
  EXPECT_DOUBLE_EQ(*parse_duration("500ms"), 0.5);
  EXPECT_DOUBLE_EQ(*parse_duration("20s"), 20);
  EXPECT_DOUBLE_EQ(*parse_duration("2m"), 120);
  EXPECT_DOUBLE_EQ(*parse_duration("1h"), 3600);
  EXPECT_DOUBLE_EQ(*parse_duration("1h30m"), 5400);
  EXPECT_DOUBLE_EQ(*parse_duration("1.5m"), 90);
  EXPECT_DOUBLE_EQ(*parse_duration("1d"), 86400);
  EXPECT_DOUBLE_EQ(*parse_duration("0s"), 0);
}

TEST(RulesDurations, RejectsMalformed) {
  for (const char* bad : {"", "20", "2x", "-1s", "1..5s", "s", "1 m", "1e3s", "m5"}) {
    auto d = parse_duration(bad);
    ASSERT_FALSE(d.ok()) << bad;
    EXPECT_NE(d.error().message.find("bad duration '" + std::string(bad) + "'"), std::string::npos);
  }
}

TEST(RulesDurations, Formats) {
  EXPECT_EQ(format_duration(0.5), "500ms");
  EXPECT_EQ(format_duration(20), "20s");
  EXPECT_EQ(format_duration(90), "1m30s");
  EXPECT_EQ(format_duration(5400), "1h30m");
}
