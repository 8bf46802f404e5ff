// CaptureManager (actions/capture.h) with real files, read back by the real tshark: lookback
// rings and their limits, the window, filters, snaplen, losses and completeness, ending by limits,
// the disk quota and retention, refusals, file modes, restart recovery and removal.
// Unprivileged; every wait is bounded; every temp dir is removed, also when a test fails.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "actions/capture.h"
#include "actions/capture_ring.h"

namespace vigil::actions {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using namespace std::chrono_literals;

uint64_t now_ns() {
  return static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::system_clock::now().time_since_epoch()).count());
}

// Ethernet + IPv4 + UDP (proto 17) or TCP (proto 6), 10.0.0.<src> -> 10.0.0.<dst>, with `payload` bytes.
std::vector<uint8_t> frame(uint8_t proto, int src, int dst, uint16_t sport, uint16_t dport, size_t payload) {
  std::vector<uint8_t> f = {0x02, 0, 0, 0, 0, static_cast<uint8_t>(dst), 0x02, 0, 0, 0, 0, static_cast<uint8_t>(src),
                            0x08, 0x00};
  const size_t l4 = proto == 17 ? 8 : 20;
  const uint16_t ip_len = static_cast<uint16_t>(20 + l4 + payload);
  std::vector<uint8_t> ip = {0x45, 0, static_cast<uint8_t>(ip_len >> 8), static_cast<uint8_t>(ip_len), 0, 1, 0x40, 0,
                             64,   proto, 0, 0, 10, 0, 0, static_cast<uint8_t>(src), 10, 0, 0, static_cast<uint8_t>(dst)};
  uint32_t sum = 0;
  for (size_t i = 0; i < ip.size(); i += 2) sum += (ip[i] << 8) | ip[i + 1];
  while (sum >> 16) sum = (sum & 0xFFFF) + (sum >> 16);
  ip[10] = static_cast<uint8_t>(~sum >> 8);
  ip[11] = static_cast<uint8_t>(~sum);
  f.insert(f.end(), ip.begin(), ip.end());
  f.push_back(static_cast<uint8_t>(sport >> 8));
  f.push_back(static_cast<uint8_t>(sport));
  f.push_back(static_cast<uint8_t>(dport >> 8));
  f.push_back(static_cast<uint8_t>(dport));
  if (proto == 17) {
    const uint16_t udp_len = static_cast<uint16_t>(8 + payload);
    f.insert(f.end(), {static_cast<uint8_t>(udp_len >> 8), static_cast<uint8_t>(udp_len), 0, 0});
  } else {
    f.insert(f.end(), {0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x18, 0xFF, 0xFF, 0, 0, 0, 0});  // seq 1, PSH|ACK
  }
  for (size_t i = 0; i < payload; ++i) f.push_back(static_cast<uint8_t>('a' + i % 26));
  return f;
}
std::vector<uint8_t> udp(int src, int dst, uint16_t dport, size_t payload) { return frame(17, src, dst, 40000, dport, payload); }
std::vector<uint8_t> tcp(int src, int dst, uint16_t dport, size_t payload) { return frame(6, src, dst, 40000, dport, payload); }

struct Tshark {
  int status = -1;
  std::vector<std::vector<std::string>> rows;  // tab-separated fields
  std::string stderr_text;                     // without tshark's "running as root" warning
};

// tshark -r FILE -T fields ...: its exit status, rows, and anything it said on stderr other than
// the warning it prints when run as root.
Tshark tshark(const std::string& file, const std::string& fields, const std::string& scratch) {
  Tshark t;
  const std::string err = scratch + "/tshark.err";
  FILE* p = popen(("tshark -r '" + file + "' -T fields -E separator=/t " + fields + " 2>'" + err + "'").c_str(), "r");
  if (!p) return t;
  std::string out;
  std::array<char, 4096> buf{};
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), p)) > 0) out.append(buf.data(), n);
  const int rc = pclose(p);
  t.status = WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
  std::istringstream lines(out);
  for (std::string line; std::getline(lines, line);) {
    std::vector<std::string> row;
    std::string field;
    std::istringstream fl(line);
    while (std::getline(fl, field, '\t')) row.push_back(field);
    if (!line.empty() && line.back() == '\t') row.push_back("");
    t.rows.push_back(row);
  }
  std::ifstream e(err);
  for (std::string line; std::getline(e, line);)
    if (!line.empty() && line.find("Running as user") == std::string::npos && line.find("could be dangerous") == std::string::npos)
      t.stderr_text += line + "\n";
  ::unlink(err.c_str());
  return t;
}

std::string epoch(uint64_t ns) {
  char buf[40];
  std::snprintf(buf, sizeof buf, "%llu.%09llu", static_cast<unsigned long long>(ns / 1000000000ull),
                static_cast<unsigned long long>(ns % 1000000000ull));
  return buf;
}

mode_t mode_of(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return 0;
  return st.st_mode & 0777;
}

// What du counts under `dir` (allocated blocks of everything in it, not `dir` itself).
uint64_t du_children(const std::string& dir) {
  uint64_t total = 0;
  std::error_code ec;
  for (fs::recursive_directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    struct stat st {};
    if (::lstat(it->path().c_str(), &st) == 0) total += static_cast<uint64_t>(st.st_blocks) * 512;
  }
  return total;
}

CapturePod pod(uint32_t ifindex, const std::string& name, const std::string& ns = "shop") {
  CapturePod p;
  p.ifindex = ifindex;
  p.namespace_ = ns;
  p.name = name;
  p.interface = "veth" + std::to_string(ifindex);
  p.ips = {"10.0.0." + std::to_string(ifindex)};
  return p;
}

class CaptureTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/vigil-capture-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    tmp_ = tmpl;
    cfg_.dir = tmp_ + "/captures";
    cfg_.lookback_seconds = 10;
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(tmp_, ec);
  }
  // Waits (real time, bounded) until the window of a capture triggered at `trigger_s` with
  // `after` seconds has passed with the manager's grace, then polls.
  static void end_window(CaptureManager& m, double trigger_s, double after) {
    const double until = trigger_s + after + 0.3;
    for (int i = 0; i < 100 && static_cast<double>(now_ns()) / 1e9 < until; ++i) std::this_thread::sleep_for(20ms);
    m.poll();
  }
  // Polls (bounded) until the capture is no longer running.
  static json wait_ended(CaptureManager& m, const std::string& id) {
    json last;
    for (int i = 0; i < 200; ++i) {
      m.poll();
      auto j = m.manifest(id);
      if (!j) return json();
      last = *j;
      if (last.value("status", "") != "running") return last;
      std::this_thread::sleep_for(20ms);
    }
    return last;
  }

  std::string tmp_;
  CaptureConfig cfg_;
};

// Two pods, lookback for both, a window of 1 s before and 0.6 s after: the file holds exactly the
// ring's packets from trigger - 1 s, then the live ones until trigger + 0.6 s, in timestamp order
// across pods, with nanosecond timestamps and an interface per pod; the capture is complete.
TEST_F(CaptureTest, LookbackThenLiveInTimestampOrderReadByTshark) {
  std::vector<json> completed;
  std::mutex completed_mu;
  CaptureManager m(cfg_, [&](const json& j) {
    std::lock_guard lock(completed_mu);
    completed.push_back(j);
  });
  m.watch(pod(11, "web-1"));
  m.watch(pod(12, "db-1"));
  const uint64_t watched_at = now_ns();
  std::this_thread::sleep_for(1600ms);  // the rings must cover the whole `before`
  // The trigger on an exact millisecond; packets 25 ms off the 50 ms grid, never on a boundary.
  const uint64_t trig = (now_ns() / 1000000) * 1000000;
  std::vector<uint64_t> expected;  // timestamps, sorted, that the file must hold
  auto a = udp(11, 12, 9000, 30);
  auto b = udp(12, 11, 9000, 60);
  // Ring: web-1 first, then db-1 (so the write must merge), 1.5 s back, +123 ns to see all nine digits.
  for (int pass = 0; pass < 2; ++pass) {
    for (int i = 0; i < 30; ++i) {
      const uint64_t ts = trig - 1500000000ull + static_cast<uint64_t>(i) * 50000000ull + 25000000ull + 123 +
                          (pass ? 10000000ull : 0);
      ASSERT_GT(ts, watched_at);
      m.on_packet(pass ? 12 : 11, ts, pass, pass ? 60 + 42 : 30 + 42, pass ? b : a);
      if (ts >= trig - 1000000000ull) expected.push_back(ts);
    }
  }
  m.on_packet(99, trig, 0, 60, a);  // nobody watches interface 99
  CaptureRequest req;
  req.pods = {pod(11, "web-1"), pod(12, "db-1")};
  req.before_seconds = 1;
  req.after_seconds = 0.6;
  req.trigger_time = static_cast<double>(trig) / 1e9;
  req.snaplen = 1500;
  req.anomaly_id = "a-123";
  req.trigger = "rule";
  req.rule = "pod-drop-surge";
  req.reason = "drops up";
  auto s = m.start(req);
  ASSERT_TRUE(s.ok()) << s.refused->message;
  EXPECT_FALSE(m.pcap_path(s.id)) << "no pcap while running";
  auto running = m.manifest(s.id);
  ASSERT_TRUE(running);
  EXPECT_EQ((*running)["status"], "running");
  EXPECT_EQ((*running)["packets"], expected.size()) << "the lookback is written by start()";
  // Live packets, one after the window (left out).
  for (int i = 0; i < 10; ++i) {
    const uint64_t ts = trig + 20000000ull + static_cast<uint64_t>(i) * 50000000ull + 7;
    m.on_packet(i % 2 ? 12 : 11, ts, 0, 72, i % 2 ? b : a);
    expected.push_back(ts);
  }
  m.on_packet(11, trig + 900000000ull, 0, 72, a);
  end_window(m, req.trigger_time, req.after_seconds);
  auto j = m.manifest(s.id);
  ASSERT_TRUE(j);
  EXPECT_EQ((*j)["status"], "complete") << j->dump(2);
  EXPECT_EQ((*j)["ended_by"], "after_elapsed");
  EXPECT_EQ((*j)["complete"], true);
  EXPECT_EQ((*j)["packets"], expected.size());
  EXPECT_EQ((*j)["packets_lost"], 0);
  EXPECT_EQ((*j)["rule"], "pod-drop-surge");
  EXPECT_EQ((*j)["anomaly_id"], "a-123");
  EXPECT_EQ((*j)["trigger"], "rule");
  EXPECT_EQ((*j)["lookback"]["watched"]["shop/web-1"], true);
  EXPECT_LE((*j)["lookback"]["covered_from"].get<double>(), (*j)["window"]["start"].get<double>());
  EXPECT_NEAR((*j)["window"]["start"].get<double>(), req.trigger_time - 1, 1e-6);
  EXPECT_NEAR((*j)["window"]["end"].get<double>(), req.trigger_time + 0.6, 1e-6);
  ASSERT_EQ((*j)["pods"].size(), 2u);
  EXPECT_EQ((*j)["pods"][0]["name"], "web-1");
  EXPECT_EQ((*j)["pods"][0]["packets"].get<uint64_t>() + (*j)["pods"][1]["packets"].get<uint64_t>(), expected.size());
  EXPECT_EQ((*j)["files"]["pcap"], "capture.pcapng");

  auto path = m.pcap_path(s.id);
  ASSERT_TRUE(path);
  const std::string dir = cfg_.dir + "/" + s.id;
  EXPECT_EQ(*path, dir + "/capture.pcapng");
  EXPECT_EQ(mode_of(cfg_.dir), 0700u);
  EXPECT_EQ(mode_of(dir), 0700u);
  EXPECT_EQ(mode_of(*path), 0600u);
  EXPECT_EQ(mode_of(dir + "/manifest.json"), 0600u);
  std::ifstream mf(dir + "/manifest.json");
  EXPECT_EQ(json::parse(mf, nullptr, false), *j) << "the file and manifest(id) agree";

  auto t = tshark(*path, "-e frame.time_epoch -e frame.interface_name -e frame.interface_description -e frame.len",
                  tmp_);
  EXPECT_EQ(t.status, 0);
  EXPECT_EQ(t.stderr_text, "");
  std::sort(expected.begin(), expected.end());
  ASSERT_EQ(t.rows.size(), expected.size());
  for (size_t i = 0; i < expected.size(); ++i) {
    ASSERT_EQ(t.rows[i].size(), 4u);
    EXPECT_EQ(t.rows[i][0], epoch(expected[i])) << "row " << i;
    const bool web = t.rows[i][1] == "web-1";
    EXPECT_TRUE(web || t.rows[i][1] == "db-1") << t.rows[i][1];
    EXPECT_EQ(t.rows[i][2], web ? "shop/web-1" : "shop/db-1");
  }
  std::lock_guard lock(completed_mu);
  ASSERT_EQ(completed.size(), 1u);
  EXPECT_EQ(completed[0], *j);
  auto st = m.stats();
  EXPECT_EQ(st.started, 1u);
  EXPECT_EQ(st.completed, 1u);
  EXPECT_EQ(st.packets_written, expected.size());
  EXPECT_EQ(st.unknown_interface, 1u);
  EXPECT_EQ(st.lookback_pods, 2u);
  EXPECT_EQ(st.lookback_packets, 71u) << "60 before the start, 11 live ones (watched pods keep their ring)";
}

// "udp port 53" keeps only DNS, from the ring and live; the snaplen cuts what is kept (caplen)
// but not the length on the wire.
TEST_F(CaptureTest, FilterAndSnaplen) {
  CaptureManager m(cfg_);
  m.watch(pod(21, "api"));
  const uint64_t now = now_ns();
  auto dns = udp(21, 53, 53, 200);
  auto other = udp(21, 9, 9000, 200);
  auto web = tcp(21, 80, 80, 200);
  for (int i = 0; i < 6; ++i) {
    const uint64_t ts = now - 400000000ull + static_cast<uint64_t>(i) * 10000000ull;
    const auto& f = i % 3 == 0 ? dns : i % 3 == 1 ? other : web;
    m.on_packet(21, ts, 1, static_cast<uint32_t>(f.size()), f);
  }
  CaptureRequest req;
  req.pods = {pod(21, "api")};
  req.before_seconds = 1;
  req.after_seconds = 0.3;
  req.filter = "udp port 53";
  req.snaplen = 64;
  auto s = m.start(req);
  ASSERT_TRUE(s.ok()) << s.refused->message;
  for (int i = 0; i < 6; ++i) {
    const auto& f = i % 3 == 0 ? dns : i % 3 == 1 ? other : web;
    m.on_packet(21, now_ns(), 0, static_cast<uint32_t>(f.size()), f);
  }
  auto j = wait_ended(m, s.id);
  EXPECT_EQ(j["packets"], 4) << j.dump(2);
  EXPECT_EQ(j["filter"], "udp port 53");
  EXPECT_EQ(j["snaplen"], 64);
  auto t = tshark(*m.pcap_path(s.id), "-e udp.dstport -e frame.len -e frame.cap_len -e frame.interface_name", tmp_);
  EXPECT_EQ(t.status, 0);
  EXPECT_EQ(t.stderr_text, "");
  ASSERT_EQ(t.rows.size(), 4u);
  for (const auto& r : t.rows) {
    EXPECT_EQ(r[0], "53");
    EXPECT_EQ(r[1], std::to_string(dns.size()));
    EXPECT_EQ(r[2], "64");
    EXPECT_EQ(r[3], "api");
  }
}

// Losses (the kernel's ring was full) inside the window count and make the capture incomplete;
// losses before the window do not count.
TEST_F(CaptureTest, LossesInsideTheWindowCountAndBeforeDoNot) {
  CaptureManager m(cfg_);
  m.watch(pod(31, "a"));
  m.watch(pod(32, "b"));
  const uint64_t trig = now_ns();
  m.on_lost(31, trig - 3000000000ull, 7);  // before the window: not counted
  m.on_lost(31, trig - 500000000ull, 2);   // inside (lookback)
  m.on_lost(33, trig, 100);                // an interface of no capture
  CaptureRequest req;
  req.pods = {pod(31, "a"), pod(32, "b")};
  req.before_seconds = 1;
  req.after_seconds = 0.3;
  req.trigger_time = static_cast<double>(trig) / 1e9;
  auto s = m.start(req);
  ASSERT_TRUE(s.ok()) << s.refused->message;
  m.on_lost(32, trig + 100000000ull, 3);   // inside (live)
  m.on_lost(32, trig + 2000000000ull, 50);  // after the window
  m.on_packet(31, trig + 1000, 0, 42, udp(31, 32, 9000, 0));
  end_window(m, req.trigger_time, req.after_seconds);
  auto j = *m.manifest(s.id);
  EXPECT_EQ(j["packets_lost"], 5) << j.dump(2);
  EXPECT_EQ(j["pods"][0]["lost"], 2);
  EXPECT_EQ(j["pods"][1]["lost"], 3);
  EXPECT_EQ(j["complete"], false);
  EXPECT_EQ(j["status"], "incomplete");
  EXPECT_EQ(j["ended_by"], "after_elapsed");
  EXPECT_EQ(m.stats().packets_lost, 5u);
}

// A lookback shorter than `before` (the ring was started just now, or `before` is more than
// lookback_seconds, or the pod has no ring) means the capture cannot be complete.
TEST_F(CaptureTest, LookbackShorterThanBeforeIsIncomplete) {
  cfg_.lookback_seconds = 2;
  CaptureManager m(cfg_);
  m.watch(pod(41, "fresh"));
  CaptureRequest req;
  req.pods = {pod(41, "fresh")};
  req.before_seconds = 1;  // the ring is younger than that
  req.after_seconds = 0.2;
  auto fresh = m.start(req);
  ASSERT_TRUE(fresh.ok());
  req.pods = {pod(42, "unwatched")};
  auto unwatched = m.start(req);
  ASSERT_TRUE(unwatched.ok());
  req.pods = {pod(41, "fresh")};
  req.before_seconds = 5;  // capped to lookback_seconds
  auto capped = m.start(req);
  ASSERT_TRUE(capped.ok());
  auto a = wait_ended(m, fresh.id), b = wait_ended(m, unwatched.id), c = wait_ended(m, capped.id);
  EXPECT_EQ(a["complete"], false);
  EXPECT_EQ(a["status"], "incomplete");
  EXPECT_GT(a["lookback"]["covered_from"].get<double>(), a["window"]["start"].get<double>());
  EXPECT_EQ(b["complete"], false);
  EXPECT_TRUE(b["lookback"]["covered_from"].is_null());
  EXPECT_EQ(b["lookback"]["watched"]["shop/unwatched"], false);
  EXPECT_EQ(c["complete"], false);
  EXPECT_EQ(c["before_seconds"], 2);
  EXPECT_EQ(c["lookback"]["requested_seconds"], 5);
  // With no `before` there is nothing to cover: a quiet window without losses is complete.
  req.before_seconds = 0;
  req.pods = {pod(42, "unwatched")};
  auto after_only = m.start(req);
  ASSERT_TRUE(after_only.ok());
  auto d = wait_ended(m, after_only.id);
  EXPECT_EQ(d["complete"], true) << d.dump(2);
}

// max_packets ends a capture with exactly that many packets.
TEST_F(CaptureTest, MaxPacketsEndsIt) {
  CaptureManager m(cfg_);
  CaptureRequest req;
  req.pods = {pod(51, "p")};
  req.before_seconds = 0;
  req.after_seconds = 20;
  req.max_packets = 10;
  auto s = m.start(req);
  ASSERT_TRUE(s.ok());
  auto f = udp(51, 52, 9000, 10);
  for (int i = 0; i < 30; ++i) m.on_packet(51, now_ns(), 0, static_cast<uint32_t>(f.size()), f);
  auto j = wait_ended(m, s.id);
  EXPECT_EQ(j["ended_by"], "max_packets") << j.dump(2);
  EXPECT_EQ(j["packets"], 10);
  EXPECT_EQ(j["complete"], false);
  auto t = tshark(*m.pcap_path(s.id), "-e frame.number", tmp_);
  EXPECT_EQ(t.status, 0);
  EXPECT_EQ(t.rows.size(), 10u);
}

// max_bytes ends a capture before the pcapng would exceed it.
TEST_F(CaptureTest, MaxBytesEndsItBeforeTheFileExceedsIt) {
  CaptureManager m(cfg_);
  CaptureRequest req;
  req.pods = {pod(53, "p")};
  req.before_seconds = 0;
  req.after_seconds = 20;
  req.max_bytes = 8192;
  req.snaplen = 1500;
  auto s = m.start(req);
  ASSERT_TRUE(s.ok());
  auto f = udp(53, 54, 9000, 500);
  for (int i = 0; i < 40; ++i) m.on_packet(53, now_ns(), 0, static_cast<uint32_t>(f.size()), f);
  auto j = wait_ended(m, s.id);
  EXPECT_EQ(j["ended_by"], "max_bytes") << j.dump(2);
  EXPECT_LE(fs::file_size(*m.pcap_path(s.id)), 8192u);
  EXPECT_EQ(j["bytes_written"], fs::file_size(*m.pcap_path(s.id)));
  EXPECT_GT(j["packets"], 10);
}

// 50 captures asked for in a burst with a small quota: never more than max_concurrent running,
// never more on disk than the quota (walked after every start), refusals counted by reason.
TEST_F(CaptureTest, BurstOf50StaysWithinQuotaAndConcurrency) {
  cfg_.max_concurrent = 4;
  cfg_.max_bytes_per_capture = 16 * 1024;
  // Reservations (max_bytes + 20 KiB + 4 KiB a pod + max_bytes/256): 28,688 bytes for 4 KiB,
  // 41,024 for 16 KiB. Four small ones fit, three small ones and a large one do not.
  cfg_.disk_quota_bytes = 120 * 1024;
  cfg_.default_snaplen = 256;
  CaptureManager m(cfg_);
  m.watch(pod(61, "busy"));
  auto f = udp(61, 62, 9000, 200);
  uint64_t ts = now_ns() - 2000000000ull;
  for (int i = 0; i < 400; ++i) m.on_packet(61, ts + static_cast<uint64_t>(i) * 5000000ull, 0, 242, f);
  std::map<std::string, uint64_t> refused;
  uint64_t ok = 0, max_running = 0, max_du = 0;
  const auto deadline = std::chrono::steady_clock::now() + 30s;
  for (int i = 0; i < 50 && std::chrono::steady_clock::now() < deadline; ++i) {
    CaptureRequest req;
    req.pods = {pod(61, "busy")};
    req.before_seconds = 0.02;
    req.after_seconds = 0.3;
    // In each burst of 10: three small ones run, the large 4th does not fit the quota, the small
    // 5th does, the rest find max_concurrent running (until some fill their 4 KiB and end).
    req.max_bytes = i % 10 == 3 ? 16 * 1024 : 4 * 1024;
    req.trigger = i % 2 ? "manual" : "rule";
    req.rule = "r" + std::to_string(i % 7);
    auto s = m.start(req);
    if (s.ok()) ++ok;
    else ++refused[to_string(s.refused->reason)];
    m.on_packet(61, now_ns(), 1, 242, f);  // running captures fill up and end by max_bytes
    const auto st = m.stats();
    max_running = std::max(max_running, st.running);
    const uint64_t du = du_children(cfg_.dir);
    max_du = std::max(max_du, du);
    ASSERT_LE(st.running, 4u) << "start " << i;
    ASSERT_LE(du, cfg_.disk_quota_bytes) << "start " << i;
    if (i % 3 == 2) m.poll();
    if (i % 10 == 9) {  // bursts of 10, then (bounded) until they have ended
      for (int k = 0; k < 100 && m.stats().running > 0; ++k) {
        std::this_thread::sleep_for(20ms);
        ASSERT_LE(du_children(cfg_.dir), cfg_.disk_quota_bytes);
      }
    }
  }
  const auto st = m.stats();
  EXPECT_EQ(st.started, ok);
  uint64_t refused_total = 0;
  for (const auto& [reason, n] : refused) {
    EXPECT_EQ(st.refused.at(reason), n) << reason;
    refused_total += n;
  }
  EXPECT_EQ(ok + refused_total, 50u);
  EXPECT_GT(ok, 4u) << "finished captures made room for more";
  EXPECT_GT(refused["concurrency"], 0u);
  EXPECT_GT(refused["quota"], 0u);
  std::printf("burst: %llu started, %llu concurrency, %llu quota refusals; at most %llu running, %llu of %llu bytes on disk\n",
              static_cast<unsigned long long>(ok), static_cast<unsigned long long>(refused["concurrency"]),
              static_cast<unsigned long long>(refused["quota"]), static_cast<unsigned long long>(max_running),
              static_cast<unsigned long long>(max_du), static_cast<unsigned long long>(cfg_.disk_quota_bytes));
  // Every capture left on disk is listed, and only those.
  std::set<std::string> on_disk, listed;
  for (const auto& e : fs::directory_iterator(cfg_.dir)) on_disk.insert(e.path().filename().string());
  for (const auto& j : m.list()) listed.insert(j["id"].get<std::string>());
  EXPECT_EQ(on_disk, listed);
}

// A quota that cannot hold even one capture's directory refuses it, naming the quota; nothing is
// written. A quota smaller than max_bytes cuts the pcapng to fit.
TEST_F(CaptureTest, QuotaTooSmallForOneCaptureIsRefused) {
  {
    cfg_.disk_quota_bytes = 256 * 1024;
    CaptureManager m(cfg_);
    CaptureRequest req;
    req.pods = {pod(72, "p")};
    req.before_seconds = 0;
    req.after_seconds = 0.01;
    auto s = m.start(req);
    ASSERT_TRUE(s.ok()) << s.refused->message;
    const uint64_t max_bytes = wait_ended(m, s.id)["max_bytes"];
    EXPECT_LT(max_bytes, 256u * 1024) << "the pcapng's limit is what the quota holds";
    EXPECT_GT(max_bytes, 200u * 1024);
    ASSERT_TRUE(m.remove(s.id).ok());
  }
  cfg_.disk_quota_bytes = 16 * 1024;
  CaptureManager m(cfg_);
  CaptureRequest req;
  req.pods = {pod(71, "p")};
  auto s = m.start(req);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.refused->reason, CaptureRefusal::Quota);
  EXPECT_NE(s.refused->message.find("disk_quota_bytes"), std::string::npos) << s.refused->message;
  EXPECT_TRUE(fs::is_empty(cfg_.dir));
  EXPECT_EQ(m.stats().refused.at("quota"), 1u);
}

// Retention deletes the oldest finished capture first; an agent started on the same directory
// lists the captures already there and counts them against the quota.
TEST_F(CaptureTest, RestartListsEarlierCapturesAndRetentionDeletesTheOldest) {
  CaptureRequest req;
  req.pods = {pod(81, "p")};
  req.before_seconds = 0;
  req.after_seconds = 0.05;
  req.max_bytes = 4096;
  std::string first, second;
  uint64_t second_du = 0;
  {
    CaptureManager m(cfg_);
    auto a = m.start(req);
    ASSERT_TRUE(a.ok());
    m.on_packet(81, now_ns(), 0, 42, udp(81, 82, 9000, 0));
    std::this_thread::sleep_for(20ms);  // a later created_at
    auto b = m.start(req);
    ASSERT_TRUE(b.ok());
    first = a.id;
    second = b.id;
    EXPECT_EQ(wait_ended(m, first)["status"], "complete");
    EXPECT_EQ(wait_ended(m, second)["status"], "complete");
    auto l = m.list();
    ASSERT_EQ(l.size(), 2u);
    EXPECT_EQ(l[0]["id"], second) << "newest first";
    second_du = du_children(cfg_.dir + "/" + second) + 4096;
  }
  // Room for the second and one new capture, not for the first too.
  CaptureConfig c2 = cfg_;
  c2.disk_quota_bytes = (4096 + 4096 / 256 + 20 * 1024 + 4 * 1024) + second_du;
  CaptureManager m(c2);
  auto l = m.list();
  ASSERT_EQ(l.size(), 2u);
  EXPECT_EQ(l[0]["id"], second);
  EXPECT_EQ(l[1]["id"], first);
  EXPECT_EQ(l[1]["status"], "complete");
  EXPECT_GT(m.stats().disk_bytes, 0u);
  EXPECT_TRUE(m.pcap_path(first));
  auto c = m.start(req);
  ASSERT_TRUE(c.ok()) << c.refused->message;
  EXPECT_FALSE(fs::exists(cfg_.dir + "/" + first)) << "the oldest finished capture was deleted";
  EXPECT_TRUE(fs::exists(cfg_.dir + "/" + second));
  EXPECT_FALSE(m.manifest(first));
  EXPECT_TRUE(m.manifest(second));
}

// A capture running when its agent died: the next agent marks it incomplete (agent_stop) and
// keeps the packets the file holds. An agent that stops cleanly ends its captures the same way.
TEST_F(CaptureTest, RunningCaptureOfADeadAgentBecomesIncomplete) {
  const std::string crashed = tmp_ + "/crashed";
  std::string id;
  std::vector<json> completed;
  {
    CaptureManager m(cfg_, [&](const json& j) { completed.push_back(j); });
    m.watch(pod(91, "p"));
    for (int i = 0; i < 5; ++i) m.on_packet(91, now_ns() - 1000000ull * (5 - i), 0, 42, udp(91, 92, 9000, 0));
    CaptureRequest req;
    req.pods = {pod(91, "p")};
    req.before_seconds = 1;
    req.after_seconds = 60;
    auto s = m.start(req);
    ASSERT_TRUE(s.ok());
    id = s.id;
    // What a crash leaves: the running manifest and the .part file, copied while it runs.
    fs::create_directories(crashed);
    fs::copy(cfg_.dir + "/" + id, crashed + "/" + id, fs::copy_options::recursive);
    ASSERT_TRUE(fs::exists(crashed + "/" + id + "/capture.pcapng.part"));
  }
  ASSERT_EQ(completed.size(), 1u);
  EXPECT_EQ(completed[0]["ended_by"], "agent_stop");
  EXPECT_EQ(completed[0]["status"], "incomplete");
  EXPECT_EQ(completed[0]["packets"], 5);

  CaptureConfig c2 = cfg_;
  c2.dir = crashed;
  CaptureManager m(c2);
  auto j = m.manifest(id);
  ASSERT_TRUE(j);
  EXPECT_EQ((*j)["status"], "incomplete") << j->dump(2);
  EXPECT_EQ((*j)["ended_by"], "agent_stop");
  EXPECT_EQ((*j)["complete"], false);
  EXPECT_EQ((*j)["packets"], 5);
  auto path = m.pcap_path(id);
  ASSERT_TRUE(path);
  auto t = tshark(*path, "-e frame.number", tmp_);
  EXPECT_EQ(t.status, 0);
  EXPECT_EQ(t.stderr_text, "");
  EXPECT_EQ(t.rows.size(), 5u);
  std::ifstream mf(crashed + "/" + id + "/manifest.json");
  EXPECT_EQ(json::parse(mf, nullptr, false)["status"], "incomplete") << "the manifest on disk is fixed too";
}

// Manifests of the wrong shape in the captures directory (edited by hand, left by another
// version, or not JSON at all): the next agent starts, lists each capture as incomplete with the
// reason, keeps the file it could not use beside the new one, and still serves a pcap that is
// there. Each of these threw nlohmann::json's type_error out of the manager's constructor.
TEST_F(CaptureTest, UnusableManifestsAfterARestartAreNamedNotFatal) {
  const std::string dir = tmp_ + "/odd";
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"status-number", R"({"status": 5})"},
      {"created-at-text", R"({"status": "complete", "created_at": "yesterday"})"},
      {"files-list", R"({"status": "running", "files": ["capture.pcapng"]})"},
      {"packets-text", R"({"status": "complete", "packets": "many"})"},
      {"pods-strings", R"({"status": "complete", "pods": ["default/web-1"]})"},
      {"not-json", "{\"status\": \"comp"},
      {"a-list", "[1, 2, 3]"},
  };
  // The smallest pcapng: a section header block (28 bytes), as a finished file for one case and
  // as a crashed capture's .part for the one whose files is a list.
  const uint32_t shb[7] = {0x0A0D0D0A, 28, 0x1A2B3C4D, 1, 0xFFFFFFFF, 0xFFFFFFFF, 28};
  for (const auto& [id, text] : cases) {
    fs::create_directories(dir + "/" + id);
    std::ofstream(dir + "/" + id + "/manifest.json") << text;
  }
  std::ofstream(dir + "/files-list/capture.pcapng.part", std::ios::binary).write(reinterpret_cast<const char*>(shb), sizeof shb);
  std::ofstream(dir + "/status-number/capture.pcapng", std::ios::binary).write(reinterpret_cast<const char*>(shb), sizeof shb);
  CaptureConfig c2 = cfg_;
  c2.dir = dir;
  std::unique_ptr<CaptureManager> m;
  ASSERT_NO_THROW(m = std::make_unique<CaptureManager>(c2));
  EXPECT_EQ(m->list().size(), cases.size());
  for (const auto& [id, text] : cases) {
    auto j = m->manifest(id);
    ASSERT_TRUE(j) << id;
    EXPECT_EQ((*j)["status"], "incomplete") << id << ": " << j->dump();
    EXPECT_EQ((*j)["complete"], false) << id;
    ASSERT_TRUE((*j)["error"].is_string()) << id;
    EXPECT_NE((*j)["error"].get<std::string>().find("kept as manifest.json.malformed"), std::string::npos) << id << ": " << (*j)["error"];
    std::ifstream kept(dir + "/" + id + "/manifest.json.malformed");
    std::stringstream body;
    body << kept.rdbuf();
    EXPECT_EQ(body.str(), text) << id << ": the unusable manifest is kept as it was";
  }
  EXPECT_NE((*m->manifest("status-number"))["error"].get<std::string>().find("status is not a string"), std::string::npos);
  EXPECT_TRUE(m->pcap_path("status-number")) << "a finished pcap stays downloadable";
  EXPECT_EQ((*m->manifest("status-number"))["files"]["pcap"], "capture.pcapng");
  EXPECT_TRUE(m->pcap_path("files-list")) << "the crashed capture's .part is salvaged";
}

// Refusals name the field: pods, the window against max_duration_seconds, snaplen, the filter.
TEST_F(CaptureTest, BadRequestsAreRefusedNamingTheField) {
  cfg_.max_duration_seconds = 60;
  CaptureManager m(cfg_);
  auto refused = [&](CaptureRequest r, const std::string& needle) {
    auto s = m.start(r);
    EXPECT_FALSE(s.ok()) << needle;
    if (s.ok()) return;
    EXPECT_EQ(s.refused->reason, CaptureRefusal::BadRequest);
    EXPECT_NE(s.refused->message.find(needle), std::string::npos) << s.refused->message;
  };
  CaptureRequest r;
  refused(r, "pods");
  r.pods = {pod(101, "p")};
  CaptureRequest w = r;
  w.before_seconds = 10;
  w.after_seconds = 55;
  refused(w, "max_duration_seconds (60 s)");
  w = r;
  w.snaplen = 8;
  refused(w, "snaplen: 8");
  w = r;
  w.filter = "tcp prot 80";
  refused(w, "filter 'tcp prot 80': ");
  w = r;
  w.after_seconds = std::nan("");
  refused(w, "after_seconds");
  w = r;
  w.trigger = "rule";
  refused(w, "rule");
  w = r;
  w.pods = {pod(101, "p"), pod(101, "q")};
  refused(w, "given twice");
  EXPECT_EQ(m.stats().refused.at("bad_request"), 7u);
  EXPECT_EQ(m.stats().started, 0u);
  EXPECT_NE(check_capture_filter("tcp prot 80", 128), "");
  EXPECT_EQ(check_capture_filter("udp port 53 or (tcp and port 80)", 128), "");
  EXPECT_EQ(check_capture_filter("", 128), "");
}

// Concurrency and the per-rule budget.
TEST_F(CaptureTest, ConcurrencyAndRuleBudget) {
  cfg_.max_concurrent = 2;
  cfg_.max_per_rule_per_hour = 3;
  CaptureManager m(cfg_);
  CaptureRequest r;
  r.pods = {pod(111, "p")};
  r.before_seconds = 0;
  r.after_seconds = 30;
  ASSERT_TRUE(m.start(r).ok());
  ASSERT_TRUE(m.start(r).ok());
  auto third = m.start(r);
  ASSERT_FALSE(third.ok());
  EXPECT_EQ(third.refused->reason, CaptureRefusal::Concurrency);
  EXPECT_NE(third.refused->message.find("max_concurrent (2)"), std::string::npos);
  for (const auto& j : m.list()) ASSERT_TRUE(m.remove(j["id"]).ok());
  r.trigger = "rule";
  r.rule = "noisy";
  r.after_seconds = 0.01;
  for (int i = 0; i < 3; ++i) {
    auto s = m.start(r);
    ASSERT_TRUE(s.ok()) << i << ": " << s.refused->message;
    wait_ended(m, s.id);
  }
  auto over = m.start(r);
  ASSERT_FALSE(over.ok());
  EXPECT_EQ(over.refused->reason, CaptureRefusal::RuleBudget);
  EXPECT_NE(over.refused->message.find("'noisy'"), std::string::npos);
  r.rule = "quiet";
  EXPECT_TRUE(m.start(r).ok()) << "the budget is per rule";
}

// A directory that cannot be created (a regular file in its path: ENOTDIR, even for root) is
// not fatal; starts are refused with Storage, naming the path.
TEST_F(CaptureTest, UnwritableDirectoryIsRefusedAsStorage) {
  { std::ofstream(tmp_ + "/file") << "x"; }
  cfg_.dir = tmp_ + "/file/captures";
  CaptureManager m(cfg_);
  CaptureRequest r;
  r.pods = {pod(121, "p")};
  auto s = m.start(r);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.refused->reason, CaptureRefusal::Storage);
  EXPECT_NE(s.refused->message.find(tmp_ + "/file"), std::string::npos) << s.refused->message;
  EXPECT_NE(s.refused->message.find("Not a directory"), std::string::npos) << s.refused->message;
  EXPECT_EQ(m.stats().refused.at("storage"), 1u);
  EXPECT_TRUE(m.list().empty());
}

// remove(): a running capture is stopped and deleted, a finished one deleted; unknown ids and
// paths are refused.
TEST_F(CaptureTest, RemoveDeletesRunningAndFinished) {
  CaptureManager m(cfg_);
  CaptureRequest r;
  r.pods = {pod(131, "p")};
  r.before_seconds = 0;
  r.after_seconds = 30;
  auto running = m.start(r);
  ASSERT_TRUE(running.ok());
  r.after_seconds = 0.01;
  auto done = m.start(r);
  ASSERT_TRUE(done.ok());
  wait_ended(m, done.id);
  ASSERT_TRUE(fs::exists(cfg_.dir + "/" + running.id + "/capture.pcapng.part"));
  // Only the running capture's pod needs the kernel's copies, at the capture's snaplen.
  EXPECT_EQ(m.capturing(), (std::map<uint32_t, uint32_t>{{131u, m.manifest(running.id)->value("snaplen", 0u)}}));
  EXPECT_TRUE(m.remove(running.id).ok());
  EXPECT_TRUE(m.capturing().empty());
  EXPECT_TRUE(m.remove(done.id).ok());
  EXPECT_FALSE(fs::exists(cfg_.dir + "/" + running.id));
  EXPECT_FALSE(fs::exists(cfg_.dir + "/" + done.id));
  EXPECT_FALSE(m.manifest(running.id));
  EXPECT_TRUE(m.list().empty());
  EXPECT_EQ(m.stats().running, 0u);
  m.on_packet(131, now_ns(), 0, 42, udp(131, 1, 9000, 0));  // nothing listens any more
  EXPECT_FALSE(m.remove("nope").ok());
  EXPECT_FALSE(m.remove("../captures").ok());
  EXPECT_TRUE(fs::exists(cfg_.dir));
}

// The bundle collector runs once per pod on the manager's side with the pod's bundle directory;
// what it returns is in the manifest.
TEST_F(CaptureTest, BundleCollectorPerPod) {
  std::mutex mu;
  std::vector<std::string> dirs;
  CaptureManager m(cfg_, {}, [&](const CapturePod& p, const std::string& dir) {
    std::ofstream(dir + "/addresses.json") << "[\"" << p.ips[0] << "\"]";
    std::lock_guard lock(mu);
    dirs.push_back(dir);
    return json{{"files", {"addresses.json"}}, {"errors", json::array()}};
  });
  CaptureRequest r;
  r.pods = {pod(141, "a"), pod(142, "b", "other")};
  r.before_seconds = 0;
  r.after_seconds = 0.2;
  auto s = m.start(r);
  ASSERT_TRUE(s.ok());
  auto j = wait_ended(m, s.id);
  std::lock_guard lock(mu);
  ASSERT_EQ(dirs.size(), 2u);
  EXPECT_EQ(dirs[0], cfg_.dir + "/" + s.id + "/bundle/shop_a");
  EXPECT_EQ(dirs[1], cfg_.dir + "/" + s.id + "/bundle/other_b");
  EXPECT_EQ(mode_of(dirs[0]), 0700u);
  EXPECT_EQ(j["bundle"]["other/b"]["files"][0], "addresses.json") << j.dump(2);
  EXPECT_EQ(j["files"]["bundle"], "bundle");
}

// The ring: limits per pod and for the node (the largest ring gives way), evictions counted,
// memory that follows the bytes held, and coverage that moves past what was evicted.
TEST_F(CaptureTest, LookbackRingLimits) {
  cfg_.lookback_bytes_per_pod = 64 * 1024;
  cfg_.lookback_bytes_total = 128 * 1024;
  CaptureManager m(cfg_);
  m.watch(pod(151, "big"));
  m.watch(pod(152, "small"));
  m.watch(pod(153, "mid"));
  auto f = udp(151, 1, 9000, 100);
  const uint64_t t = now_ns();
  for (int i = 0; i < 2000; ++i) m.on_packet(151, t + i, 0, 142, f);
  for (int i = 0; i < 200; ++i) m.on_packet(152, t + i, 0, 142, f);
  auto st = m.stats();
  EXPECT_LE(st.lookback_bytes, 64u * 1024 + 2 * 16384);
  EXPECT_GT(st.lookback_evicted, 0u);
  for (int i = 0; i < 2000; ++i) m.on_packet(153, t + i, 0, 142, f);
  st = m.stats();
  EXPECT_LE(st.lookback_bytes, 128u * 1024);
  EXPECT_EQ(st.lookback_packets + st.lookback_evicted, 4200u);
  // The small ring kept all of its packets: the large ones gave way.
  CaptureRequest r;
  r.pods = {pod(152, "small")};
  r.before_seconds = 1;
  r.after_seconds = 0.01;
  r.trigger_time = static_cast<double>(t) / 1e9 + 0.5;
  auto s = m.start(r);
  ASSERT_TRUE(s.ok());
  EXPECT_EQ((*m.manifest(s.id))["packets"], 200);
  m.unwatch(151);
  m.unwatch(152);
  m.unwatch(153);
  EXPECT_EQ(m.stats().lookback_bytes, 0u);
  EXPECT_FALSE(m.watched(151));
}

TEST(PacketRing, MemoryFollowsBytesAndCoverageMovesPastEvictions) {
  PacketRing r(1000, 16384);
  std::vector<uint8_t> data(100, 7);
  for (uint64_t i = 0; i < 1000; ++i) r.push(2000 + i, 1, 1400, data);
  EXPECT_EQ(r.packets(), 1000u);
  // 116 bytes a packet in 16 KiB chunks: at most one partly used chunk.
  EXPECT_LE(r.memory_bytes(), 1000u * 116 + 16384);
  EXPECT_EQ(r.covered_from_ns(), 1000u);
  const uint64_t n = r.evict_before(2500);
  EXPECT_EQ(n, 500u);
  EXPECT_EQ(r.covered_from_ns(), 2500u);
  uint64_t seen = 0, first = 0;
  r.for_each_since(2600, [&](const PacketRing::Packet& p) {
    if (!seen) first = p.ts_ns;
    ++seen;
    EXPECT_EQ(p.wire_len, 1400u);
    EXPECT_EQ(p.direction, 1);
    EXPECT_EQ(p.data.size(), 100u);
  });
  EXPECT_EQ(seen, 400u);
  EXPECT_EQ(first, 2600u);
  r.add_loss(2700, 3);
  r.add_loss(2400, 1);
  EXPECT_EQ(r.lost_since(2600), 3u);
  for (int i = 0; i < 1000; ++i) r.add_loss(3000 + i, 1);  // merged beyond kMaxLossMarks, none dropped
  EXPECT_EQ(r.lost_since(0), 1004u);
  const uint64_t chunks = r.chunks();
  r.evict_chunk();
  EXPECT_EQ(r.chunks(), chunks - 1);
  EXPECT_GT(r.covered_from_ns(), 2500u);
}

}  // namespace
}  // namespace vigil::actions
