// The pcapng writer, read back by the real tshark and capinfos (Debian's Wireshark tools):
// interface names and descriptions per pod, nanosecond timestamps, snaplen, comments, 0600,
// and no file under the final name until finish().
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <sstream>
#include <string>
#include <vector>

#include "actions/pcapng.h"

namespace vigil::actions {
namespace {

namespace fs = std::filesystem;

// stdout only: tshark warns on stderr when run as root.
std::string run(const std::string& command) {
  std::string out;
  FILE* p = popen((command + " 2>/dev/null").c_str(), "r");
  if (!p) return out;
  std::array<char, 4096> buf{};
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), p)) > 0) out.append(buf.data(), n);
  pclose(p);
  return out;
}

// Ethernet + IPv4 + UDP with `payload` bytes, from 10.0.0.<src> to 10.0.0.<dst>, port 5353 -> 9000.
std::vector<uint8_t> udp_frame(int src, int dst, size_t payload) {
  std::vector<uint8_t> f = {0x02, 0, 0, 0, 0, static_cast<uint8_t>(dst), 0x02, 0, 0, 0, 0, static_cast<uint8_t>(src),
                            0x08, 0x00};
  const uint16_t ip_len = static_cast<uint16_t>(20 + 8 + payload);
  std::vector<uint8_t> ip = {0x45, 0, static_cast<uint8_t>(ip_len >> 8), static_cast<uint8_t>(ip_len), 0, 1, 0x40, 0,
                             64,   17, 0, 0, 10, 0, 0, static_cast<uint8_t>(src), 10, 0, 0, static_cast<uint8_t>(dst)};
  uint32_t sum = 0;
  for (size_t i = 0; i < ip.size(); i += 2) sum += (ip[i] << 8) | ip[i + 1];
  while (sum >> 16) sum = (sum & 0xFFFF) + (sum >> 16);
  ip[10] = static_cast<uint8_t>(~sum >> 8);
  ip[11] = static_cast<uint8_t>(~sum);
  f.insert(f.end(), ip.begin(), ip.end());
  const uint16_t udp_len = static_cast<uint16_t>(8 + payload);
  std::vector<uint8_t> udp = {0x14, 0xE9, 0x23, 0x28, static_cast<uint8_t>(udp_len >> 8), static_cast<uint8_t>(udp_len), 0, 0};
  f.insert(f.end(), udp.begin(), udp.end());
  for (size_t i = 0; i < payload; ++i) f.push_back(static_cast<uint8_t>('a' + i % 26));
  return f;
}

class Pcapng : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("vigil-pcapng-" + std::to_string(getpid()));
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  fs::path dir_;
};

TEST_F(Pcapng, TsharkReadsPodsTimestampsLengthsAndComments) {
  const std::string path = (dir_ / "a1.pcapng").string();
  auto made = PcapngWriter::create(path, "vigil anomaly a1 rule pod-drop-surge");
  ASSERT_TRUE(made.ok()) << made.error().message;
  auto& w = **made;
  EXPECT_FALSE(fs::exists(path)) << "only the .part file exists while writing";
  struct stat st {};
  ASSERT_EQ(stat((path + ".part").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);

  auto web = w.add_interface({"web-1", "shop/web-1", 1, 0});
  auto db = w.add_interface({"db-1", "shop/db-1", 1, 64});  // a 64-byte snaplen
  ASSERT_TRUE(web.ok() && db.ok());
  const uint64_t t0 = 1764000000123456789ull;  // nanoseconds: tshark must keep all nine digits
  auto small = udp_frame(1, 2, 10);
  auto big = udp_frame(2, 1, 200);
  ASSERT_TRUE(w.write_packet(*web, t0, small, static_cast<uint32_t>(small.size())).ok());
  ASSERT_TRUE(w.write_packet(*db, t0 + 1001, big, static_cast<uint32_t>(big.size()), "dropped: NETFILTER_DROP").ok());
  // A packet the kernel already cut to 100 bytes of its 1400 on the wire.
  auto cut = udp_frame(1, 2, 1358);
  ASSERT_TRUE(w.write_packet(*web, t0 + 2000000000ull, std::span(cut).first(100), 1400).ok());
  EXPECT_FALSE(w.write_packet(7, t0, small, 10).ok()) << "an unknown interface is refused";
  EXPECT_EQ(w.packets(), 3u);
  ASSERT_TRUE(w.finish().ok());
  EXPECT_TRUE(fs::exists(path));
  EXPECT_FALSE(fs::exists(path + ".part"));

  std::string fields = run("tshark -r " + path +
                           " -T fields -E separator=/t -e frame.interface_name -e frame.interface_description"
                           " -e frame.time_epoch -e frame.len -e frame.cap_len -e ip.src -e frame.comment");
  std::istringstream lines(fields);
  std::vector<std::string> rows;
  for (std::string line; std::getline(lines, line);) rows.push_back(line);
  ASSERT_EQ(rows.size(), 3u) << fields;
  EXPECT_EQ(rows[0], "web-1\tshop/web-1\t1764000000.123456789\t" + std::to_string(small.size()) + "\t" +
                         std::to_string(small.size()) + "\t10.0.0.1\t");
  EXPECT_EQ(rows[1], "db-1\tshop/db-1\t1764000000.123457790\t" + std::to_string(big.size()) + "\t64\t10.0.0.2\t"
                     "dropped: NETFILTER_DROP");
  EXPECT_EQ(rows[2], "web-1\tshop/web-1\t1764000002.123456789\t1400\t100\t10.0.0.1\t");

  std::string info = run("capinfos " + path);
  EXPECT_NE(info.find("File type:           Wireshark/... - pcapng"), std::string::npos) << info;
  EXPECT_NE(info.find("Capture comment:     vigil anomaly a1 rule pod-drop-surge"), std::string::npos) << info;
  EXPECT_NE(info.find("Number of packets:   3"), std::string::npos) << info;
}

TEST_F(Pcapng, AnUnfinishedCaptureLeavesNothingAndAnExistingOneIsNotOverwritten) {
  const std::string path = (dir_ / "b.pcapng").string();
  {
    auto made = PcapngWriter::create(path, "");
    ASSERT_TRUE(made.ok());
    ASSERT_TRUE((*made)->add_interface({"p", "ns/p"}).ok());
    auto second = PcapngWriter::create(path, "");
    ASSERT_FALSE(second.ok());
    EXPECT_NE(second.error().message.find(path + ".part"), std::string::npos) << second.error().message;
  }
  EXPECT_FALSE(fs::exists(path));
  EXPECT_FALSE(fs::exists(path + ".part"));
  auto in_missing_dir = PcapngWriter::create((dir_ / "no/such/dir/c.pcapng").string(), "");
  ASSERT_FALSE(in_missing_dir.ok());
  EXPECT_NE(in_missing_dir.error().message.find("No such file or directory"), std::string::npos);
}

}  // namespace
}  // namespace vigil::actions
