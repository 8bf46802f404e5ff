// A full disk mid-capture (ENOSPC on a 1 MiB tmpfs, root only): that capture ends "failed" with
// the kernel's reason in its manifest, stats().failed counts it, and captures elsewhere, and on
// the same disk once it has room again, go on. The CaptureManager is driven directly (no agent).
#include <gtest/gtest.h>
#include <sys/mount.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <thread>
#include <vector>

#include "actions/capture.h"
#include "support.h"

namespace vigil::test {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;

uint64_t now_ns() {
  return static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::system_clock::now().time_since_epoch()).count());
}

// Ethernet + IPv4 + UDP, `size` bytes in all.
std::vector<uint8_t> udp_frame(size_t size) {
  std::vector<uint8_t> f = {0x02, 0, 0, 0, 0, 2, 0x02, 0, 0, 0, 0, 1, 0x08, 0x00};
  const uint16_t ip_len = static_cast<uint16_t>(size - 14);
  std::vector<uint8_t> rest = {0x45, 0, static_cast<uint8_t>(ip_len >> 8), static_cast<uint8_t>(ip_len), 0, 1, 0x40, 0, 64, 17, 0,
                               0, 10, 0, 0, 1, 10, 0, 0, 2, 0x9C, 0x40, 0x23, 0x28,
                               static_cast<uint8_t>((ip_len - 20) >> 8), static_cast<uint8_t>(ip_len - 20), 0, 0};
  f.insert(f.end(), rest.begin(), rest.end());
  f.resize(size, 'x');
  return f;
}

actions::CapturePod pod(uint32_t ifindex) {
  actions::CapturePod p;
  p.ifindex = ifindex;
  p.namespace_ = "lab";
  p.name = "pod-" + std::to_string(ifindex);
  p.interface = "veth" + std::to_string(ifindex);
  return p;
}

// Feeds live packets and polls until the capture has ended (bounded); its manifest.
json feed_until_ended(actions::CaptureManager& m, const std::string& id, uint32_t ifindex, int packets_per_round) {
  const auto frame = udp_frame(1500);
  json last;
  for (int round = 0; round < 200; ++round) {
    for (int i = 0; i < packets_per_round; ++i) m.on_packet(ifindex, now_ns(), 0, 1500, frame);
    m.poll();
    auto j = m.manifest(id);
    if (!j) return json();
    last = *j;
    if (last.value("status", "") != "running") return last;
    std::this_thread::sleep_for(20ms);
  }
  return last;
}

TEST(CaptureDisk, FullDiskFailsThatCaptureOnly) {
  VIGIL_REQUIRE_ROOT();
  ScopedTempDir tmp;
  const std::string mnt = tmp.path() + "/small";
  std::filesystem::create_directories(mnt);
  ASSERT_EQ(mount("tmpfs", mnt.c_str(), "tmpfs", 0, "size=1m,mode=0700"), 0) << std::strerror(errno);
  struct Unmount {  // before `tmp` is removed, also when an assertion fails
    std::string path;
    ~Unmount() { umount2(path.c_str(), MNT_DETACH); }
  } unmount{mnt};

  actions::CaptureConfig cfg;
  cfg.dir = mnt + "/captures";
  cfg.disk_quota_bytes = 64ull << 20;  // more than the disk has: the disk fills first
  cfg.default_snaplen = 1500;
  actions::CaptureManager full(cfg);
  actions::CaptureConfig other_cfg = cfg;
  other_cfg.dir = tmp.path() + "/captures";
  actions::CaptureManager other(other_cfg);

  actions::CaptureRequest req;
  req.pods = {pod(7)};
  req.before_seconds = 0;
  req.after_seconds = 20;
  auto s = full.start(req);
  ASSERT_TRUE(s.ok()) << s.refused->message;
  // 3 MiB of packets into a 1 MiB disk.
  auto m = feed_until_ended(full, s.id, 7, 100);
  EXPECT_EQ(m.value("status", ""), "failed") << m.dump(2);
  EXPECT_EQ(m.value("ended_by", ""), "error") << m.dump(2);
  EXPECT_NE(m.value("error", json()).dump().find("No space left on device"), std::string::npos) << m.dump(2);
  EXPECT_FALSE(m.value("complete", true));
  EXPECT_TRUE(m["files"]["pcap"].is_null()) << "the partial file is removed to give the disk back";
  EXPECT_FALSE(full.pcap_path(s.id));
  EXPECT_EQ(full.stats().failed, 1u);
  EXPECT_EQ(full.stats().completed, 0u);

  // Another capture on another disk is unaffected.
  req.after_seconds = 0.3;
  req.pods = {pod(8)};
  auto o = other.start(req);
  ASSERT_TRUE(o.ok()) << o.refused->message;
  auto om = feed_until_ended(other, o.id, 8, 5);
  EXPECT_EQ(om.value("status", ""), "complete") << om.dump(2);
  EXPECT_GT(om.value("packets", 0ull), 0u);
  EXPECT_TRUE(other.pcap_path(o.id));

  // And the full disk takes a small capture again once the failed one is deleted.
  ASSERT_TRUE(full.remove(s.id).ok());
  req.pods = {pod(7)};
  req.max_bytes = 64 * 1024;
  auto again = full.start(req);
  ASSERT_TRUE(again.ok()) << again.refused->message;
  auto am = feed_until_ended(full, again.id, 7, 5);
  EXPECT_NE(am.value("status", ""), "failed") << am.dump(2);
  EXPECT_EQ(full.stats().failed, 1u);
}

}  // namespace
}  // namespace vigil::test
