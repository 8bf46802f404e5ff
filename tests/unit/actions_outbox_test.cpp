// The durable outbox: a child process queues 100 notifications for a receiver that is down
// and is killed with SIGKILL; a new notifier on the same outbox delivers all 100, in order,
// each with the idempotency key it was given before the crash.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>

#include <gtest/gtest.h>

#include "actions/notifier_impl.h"
#include "actions_test_receiver.h"

namespace vigil::actions {
namespace {

using namespace testing;
namespace fs = std::filesystem;

size_t files_in(const std::string& dir) {
  size_t n = 0;
  for (const auto& e : fs::directory_iterator(dir)) n += e.path().extension() == ".json";
  return n;
}

TEST(Outbox, KillNineWithAHundredQueuedThenRestartDeliversAll) {
  const std::string dir = make_temp_dir();
  const std::string outbox = dir + "/outbox/hook";
  int port = 0;
  {
    HttpReceiver probe;
    port = probe.port();
  }
  NotifierConfig c = channel("webhook", "http://127.0.0.1:" + std::to_string(port) + "/hook", "hook");
  c.outbox_dir = outbox;
  c.backoff_initial_seconds = 0.05;

  int ready[2];
  ASSERT_EQ(pipe(ready), 0);
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {  // the "agent": queue 100, say so, then wait to be killed (bounded)
    close(ready[0]);
    auto made = make_notifier(c);
    if (!made) _exit(2);
    for (int i = 0; i < 100; ++i) (*made)->enqueue(sample_anomaly("k" + std::to_string(i)));
    (void)!write(ready[1], "r", 1);
    for (int i = 0; i < 300; ++i) usleep(100 * 1000);
    _exit(3);
  }
  close(ready[1]);
  char byte = 0;
  ASSERT_EQ(read(ready[0], &byte, 1), 1);
  close(ready[0]);
  ASSERT_EQ(kill(pid, SIGKILL), 0);
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFSIGNALED(status));

  // Every message is on disk, whole, with its key.
  ASSERT_EQ(files_in(outbox), 100u);
  std::map<std::string, std::string> key_of;  // anomaly id -> key written before the crash
  for (const auto& e : fs::directory_iterator(outbox)) {
    std::ifstream in(e.path());
    auto m = message_from_json(nlohmann::json::parse(in));
    ASSERT_TRUE(m.ok());
    key_of[m->anomaly.id] = m->key;
  }
  ASSERT_EQ(key_of.size(), 100u);

  HttpReceiver rx(nullptr, port);
  ASSERT_EQ(rx.port(), port);
  auto restarted = must_make(c);
  ASSERT_TRUE(rx.wait_ok(100, 10s)) << rx.ok_hits().size();
  std::this_thread::sleep_for(100ms);
  const auto hits = rx.ok_hits();
  ASSERT_EQ(hits.size(), 100u);
  std::set<std::string> keys;
  for (size_t i = 0; i < hits.size(); ++i) {
    const std::string id = hits[i].json()["id"];
    EXPECT_EQ(id, "k" + std::to_string(i));
    EXPECT_EQ(hits[i].header("Idempotency-Key"), key_of[id]) << id;
    keys.insert(hits[i].header("Idempotency-Key"));
  }
  EXPECT_EQ(keys.size(), 100u);
  ASSERT_TRUE(eventually([&] { return files_in(outbox) == 0; }, 2s));
  EXPECT_EQ(restarted->stats().sent, 100u);
  restarted->stop();
  fs::remove_all(dir);
}

TEST(Outbox, StopKeepsQueuedMessagesForTheNextStart) {
  const std::string dir = make_temp_dir();
  int port = 0;
  {
    HttpReceiver probe;
    port = probe.port();
  }
  NotifierConfig c = channel("slack", "http://127.0.0.1:" + std::to_string(port) + "/s", "chat");
  c.outbox_dir = dir + "/chat";
  {
    auto n = must_make(c);
    for (int i = 0; i < 3; ++i) n->enqueue(sample_anomaly("s" + std::to_string(i)));
    n->stop();
    EXPECT_EQ(n->stats().dropped, 0u);
  }
  EXPECT_EQ(files_in(dir + "/chat"), 3u);
  // A torn write (crash before the rename) is ignored, a corrupt file is set aside.
  std::ofstream(dir + "/chat/.tmp-00000000000000ff.json") << "{\"seq\":";
  std::ofstream(dir + "/chat/00000000000000fe.json") << "not json";
  HttpReceiver rx(nullptr, port);
  c.group_wait_seconds = 0;
  auto n = must_make(c);
  ASSERT_TRUE(rx.wait_ok(3, 5s));
  EXPECT_TRUE(fs::exists(dir + "/chat/00000000000000fe.json.corrupt"));
  EXPECT_FALSE(fs::exists(dir + "/chat/.tmp-00000000000000ff.json"));
  n->stop();
  fs::remove_all(dir);
}

// A record keeps what the notification links to: the recent values and the captures. Records
// written before captures existed still read.
TEST(Outbox, RecordRoundTripKeepsCapturesAndRecentValues) {
  Message m;
  m.seq = 7;
  m.key = new_uuid();
  m.enqueued_unix = 1795610100.5;
  m.anomaly = resolved(sample_anomaly("r1"));
  m.anomaly.recent = {1, 2.5, NAN, 12.5};
  m.anomaly.recent_step = 10;
  m.anomaly.captures = {"c-0001", "c-0002"};
  const nlohmann::json j = nlohmann::json::parse(message_to_json(m).dump());
  auto back = message_from_json(j);
  ASSERT_TRUE(back.ok()) << back.error().message;
  EXPECT_EQ(back->seq, 7u);
  EXPECT_EQ(back->key, m.key);
  EXPECT_EQ(back->anomaly.id, "r1");
  EXPECT_EQ(back->anomaly.status, AnomalyStatus::Resolved);
  EXPECT_EQ(back->anomaly.captures, (std::vector<std::string>{"c-0001", "c-0002"}));
  ASSERT_EQ(back->anomaly.recent.size(), 4u);
  EXPECT_TRUE(std::isnan(back->anomaly.recent[2]));
  EXPECT_EQ(back->anomaly.recent[3], 12.5);
  EXPECT_EQ(back->anomaly.recent_step, 10);
  EXPECT_EQ(back->anomaly.scope, m.anomaly.scope);

  nlohmann::json old = j;
  old["anomaly"].erase("captures");
  auto old_back = message_from_json(old);
  ASSERT_TRUE(old_back.ok()) << old_back.error().message;
  EXPECT_TRUE(old_back->anomaly.captures.empty());
}

// A queued capture follow-up survives a restart: the event and the capture are in the record,
// and it goes out with its key. Records without them are the anomaly's own notifications.
TEST(Outbox, RecordRoundTripKeepsAFollowUp) {
  Message m;
  m.seq = 8;
  m.key = followup_key("hook", capture_followup(sample_anomaly("f1")));
  m.enqueued_unix = 1795610130;
  m.anomaly = capture_followup(sample_anomaly("f1"), "c-0009");
  m.anomaly.capture_done.error = "partial";
  m.anomaly.capture_done.window_end = NAN;
  const nlohmann::json j = nlohmann::json::parse(message_to_json(m).dump());
  auto back = message_from_json(j);
  ASSERT_TRUE(back.ok()) << back.error().message;
  const auto& d = back->anomaly.capture_done;
  EXPECT_EQ(back->anomaly.event, "capture.completed");
  EXPECT_EQ(d.id, "c-0009");
  EXPECT_EQ(d.status, "incomplete");
  EXPECT_EQ(d.ended_by, "after_elapsed");
  EXPECT_EQ(d.error, "partial");
  EXPECT_FALSE(d.complete);
  EXPECT_EQ(d.packets, 1234u);
  EXPECT_EQ(d.packets_lost, 3u);
  EXPECT_EQ(d.bytes, 190000u);
  EXPECT_EQ(d.window_start, m.anomaly.capture_done.window_start);
  EXPECT_TRUE(std::isnan(d.window_end));
  EXPECT_EQ(back->anomaly.captures, (std::vector<std::string>{"c-0009"}));
  EXPECT_EQ(back->key, m.key);

  Message plain;
  plain.anomaly = sample_anomaly("p1");
  const nlohmann::json pj = message_to_json(plain);
  EXPECT_FALSE(pj["anomaly"].contains("event")) << "only follow-ups carry the event";
  auto plain_back = message_from_json(pj);
  ASSERT_TRUE(plain_back.ok());
  EXPECT_EQ(plain_back->anomaly.event, "");
  EXPECT_EQ(plain_back->anomaly.capture_done.id, "");
}

TEST(Outbox, QueuedFollowUpIsDeliveredAfterARestart) {
  const std::string dir = make_temp_dir();
  int port = 0;
  {
    HttpReceiver probe;
    port = probe.port();
  }
  NotifierConfig c = channel("webhook", "http://127.0.0.1:" + std::to_string(port) + "/hook", "hook");
  c.outbox_dir = dir + "/hook";
  const Anomaly f = capture_followup(sample_anomaly("f2"));
  {
    auto n = must_make(c);
    n->enqueue(f);
    n->stop();
  }
  EXPECT_EQ(files_in(dir + "/hook"), 1u);
  HttpReceiver rx(nullptr, port);
  auto n = must_make(c);
  ASSERT_TRUE(rx.wait_ok(1, 5s));
  const auto hit = rx.ok_hits()[0];
  EXPECT_EQ(hit.json()["event"], "capture.completed");
  EXPECT_EQ(hit.json()["capture"]["packets"], 1234);
  EXPECT_EQ(hit.header("Idempotency-Key"), followup_key("hook", f));
  n->stop();
  fs::remove_all(dir);
}

TEST(Outbox, UnwritableDirectoryIsAnErrorNamingIt) {
  NotifierConfig c = channel("webhook", "http://127.0.0.1:9/", "hook");
  c.outbox_dir = "/proc/vigil-no-such/outbox";
  auto n = make_notifier(c);
  ASSERT_FALSE(n.ok());
  EXPECT_EQ(n.error().message.rfind("notifier 'hook': outbox: cannot create /proc/vigil-no-such/outbox: ", 0), 0u)
      << n.error().message;
}

}  // namespace
}  // namespace vigil::actions
