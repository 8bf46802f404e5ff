// The immediates written into the TC programs before load (engine/bpf_immediates.h): every
// marker replaced by its value, none left, and an object without the markers refused by name.
// Opening the skeleton needs no privileges; nothing is loaded into the kernel.
#include <gtest/gtest.h>

#include <linux/bpf.h>

#include <memory>

#include "counters.skel.h"
#include "engine/bpf_immediates.h"

namespace vigil {
namespace {

// How many `rX = imm` (64-bit move of a 32-bit immediate) instructions of prog hold imm.
int moves_of(const bpf_program* prog, int32_t imm) {
  const bpf_insn* insns = bpf_program__insns(prog);
  int n = 0;
  for (size_t i = 0; i < bpf_program__insn_cnt(prog); ++i)
    if (insns[i].code == (BPF_ALU64 | BPF_MOV | BPF_K) && insns[i].imm == imm) ++n;
  return n;
}

TEST(BpfImmediates, SlotGuessMaskIsTheLargestPowerOfTwoNotAboveMaxPodsMinusOne) {
  EXPECT_EQ(slot_guess_mask(1), 0u);
  EXPECT_EQ(slot_guess_mask(2), 1u);
  EXPECT_EQ(slot_guess_mask(3), 1u);
  EXPECT_EQ(slot_guess_mask(110), 63u);
  EXPECT_EQ(slot_guess_mask(256), 255u);
  EXPECT_EQ(slot_guess_mask(257), 255u);
  EXPECT_EQ(slot_guess_mask(VIGIL_MAX_PODS), VIGIL_MAX_PODS - 1u);
}

TEST(BpfImmediates, EveryTcProgramGetsItsValuesAndNoMarkerIsLeft) {
  std::unique_ptr<vigil_counters, void (*)(vigil_counters*)> skel(vigil_counters__open(), vigil_counters__destroy);
  ASSERT_TRUE(skel);
  for (bpf_program* prog :
       {skel->progs.vigil_tc, skel->progs.vigil_tc_ingress, skel->progs.vigil_tc_egress, skel->progs.vigil_tc_pod,
        skel->progs.vigil_tc_podcls}) {
    SCOPED_TRACE(bpf_program__name(prog));
    const int per_cpu = moves_of(prog, VIGIL_IMM_PODS_PER_CPU), mask = moves_of(prog, VIGIL_IMM_SLOT_GUESS_MASK);
    EXPECT_GE(per_cpu, 1);
    EXPECT_GE(mask, 1);
    const int before_110 = moves_of(prog, 110), before_63 = moves_of(prog, 63);
    ASSERT_EQ(write_tc_immediates(prog, 110), "");
    EXPECT_EQ(moves_of(prog, VIGIL_IMM_PODS_PER_CPU), 0);
    EXPECT_EQ(moves_of(prog, VIGIL_IMM_SLOT_GUESS_MASK), 0);
    EXPECT_EQ(moves_of(prog, 110), before_110 + per_cpu);
    EXPECT_EQ(moves_of(prog, 63), before_63 + mask);
    // A second time finds no marker: refused, naming the program and the marker.
    const std::string again = write_tc_immediates(prog, 110);
    EXPECT_NE(again.find(bpf_program__name(prog)), std::string::npos) << again;
    EXPECT_NE(again.find("0x56504f44"), std::string::npos) << again;
  }
  // Programs that compute no counter address hold no marker.
  EXPECT_EQ(moves_of(skel->progs.vigil_kfree_skb, VIGIL_IMM_PODS_PER_CPU), 0);
  EXPECT_NE(write_tc_immediates(skel->progs.vigil_kfree_skb, 110), "");
}

}  // namespace
}  // namespace vigil
