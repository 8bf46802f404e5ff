// HTTPS receivers verified against `ca_file`, with certificates the test makes with the
// openssl CLI in a temp dir: a good one is delivered; a wrong CA or an expired certificate is
// refused with a clear error, counted, and the message stays queued.
#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>

#include "actions_test_receiver.h"

namespace vigil::actions {
namespace {

using namespace testing;
namespace fs = std::filesystem;

// A CA, a second CA, a good server certificate for 127.0.0.1 and an expired one.
class Pki {
 public:
  Pki() : dir_(make_temp_dir()) {
    const std::string d = dir_;
    std::ofstream(d + "/ca.cnf") << "[ca]\ndefault_ca=d\n[d]\ndir=" << d
                                 << "\ndatabase=$dir/index.txt\nserial=$dir/serial\nnew_certs_dir=$dir\n"
                                    "default_md=sha256\npolicy=p\ncopy_extensions=copy\nunique_subject=no\n[p]\ncommonName=supplied\n";
    std::ofstream(d + "/index.txt");
    std::ofstream(d + "/serial") << "1000\n";
    const std::string q = " >>" + d + "/openssl.log 2>&1";
    ok_ = run("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout " + d + "/ca.key -out " + d +
              "/ca.pem -days 2 -subj /CN=vigil-test-ca" + q) &&
          run("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout " + d + "/other.key -out " + d +
              "/other.pem -days 2 -subj /CN=vigil-other-ca" + q) &&
          run("openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout " + d + "/server.key -out " + d +
              "/server.csr -subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1" + q) &&
          run("openssl x509 -req -in " + d + "/server.csr -CA " + d + "/ca.pem -CAkey " + d + "/ca.key -CAcreateserial -out " +
              d + "/good.pem -days 2 -copy_extensions copy" + q) &&
          run("openssl ca -batch -config " + d + "/ca.cnf -cert " + d + "/ca.pem -keyfile " + d + "/ca.key -in " + d +
              "/server.csr -out " + d + "/expired.pem -startdate 20200101000000Z -enddate 20200102000000Z -notext" + q);
  }
  ~Pki() { fs::remove_all(dir_); }
  bool ok() const { return ok_; }
  std::string log() const {
    std::ifstream in(dir_ + "/openssl.log");
    return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  }
  std::string path(const std::string& name) const { return dir_ + "/" + name; }

 private:
  static bool run(const std::string& cmd) { return std::system(cmd.c_str()) == 0; }
  std::string dir_;
  bool ok_ = false;
};

class TlsReceiver {
 public:
  TlsReceiver(const std::string& cert, const std::string& key) : server_(cert.c_str(), key.c_str()) {
    server_.Post(".*", [this](const httplib::Request& req, httplib::Response&) {
      std::lock_guard lock(mu_);
      ids_.push_back(nlohmann::json::parse(req.body)["id"]);
    });
    port_ = server_.bind_to_any_port("127.0.0.1");
    thread_ = std::thread([this] { server_.listen_after_bind(); });
    const auto deadline = Clock::now() + 2s;
    while (!server_.is_running() && Clock::now() < deadline) std::this_thread::sleep_for(1ms);
  }
  ~TlsReceiver() {
    server_.stop();
    thread_.join();
  }
  bool valid() const { return server_.is_valid() && port_ > 0; }
  std::string url() const { return "https://127.0.0.1:" + std::to_string(port_) + "/hook"; }
  std::vector<std::string> ids() const {
    std::lock_guard lock(mu_);
    return ids_;
  }

 private:
  httplib::SSLServer server_;
  int port_ = -1;
  std::thread thread_;
  mutable std::mutex mu_;
  std::vector<std::string> ids_;
};

class Tls : public ::testing::Test {
 protected:
  void SetUp() override {
    if (std::system("command -v openssl >/dev/null") != 0) GTEST_SKIP() << "openssl CLI missing";
    ASSERT_TRUE(pki_.ok()) << pki_.log();
  }
  NotifierConfig config(const std::string& url, const std::string& ca) {
    auto c = channel("webhook", url, "secure");
    c.ca_file = ca;
    c.backoff_initial_seconds = 0.1;
    return c;
  }
  Pki pki_;
};

TEST_F(Tls, GoodCertificateIsDelivered) {
  TlsReceiver rx(pki_.path("good.pem"), pki_.path("server.key"));
  ASSERT_TRUE(rx.valid());
  auto n = must_make(config(rx.url(), pki_.path("ca.pem")));
  n->enqueue(sample_anomaly("tls-ok"));
  ASSERT_TRUE(eventually([&] { return n->stats().sent == 1u; }));
  EXPECT_EQ(rx.ids(), std::vector<std::string>{"tls-ok"});
  EXPECT_EQ(n->stats().tls_errors, 0u);
}

TEST_F(Tls, WrongCaIsRefusedCountedAndKeptQueued) {
  TlsReceiver rx(pki_.path("good.pem"), pki_.path("server.key"));
  ASSERT_TRUE(rx.valid());
  auto n = must_make(config(rx.url(), pki_.path("other.pem")));
  n->enqueue(sample_anomaly("tls-wrong-ca"));
  ASSERT_TRUE(eventually([&] { return n->stats().tls_errors >= 2u; }));
  const auto st = n->stats();
  EXPECT_EQ(st.sent, 0u);
  EXPECT_EQ(st.dropped, 0u);
  EXPECT_GE(st.failed, st.tls_errors);
  EXPECT_TRUE(rx.ids().empty());
  n->enqueue(sample_anomaly("behind"));
  EXPECT_EQ(n->stats().queue_depth, 1u);  // the refused one is in flight, the next waits
}

TEST_F(Tls, ExpiredCertificateIsRefusedCountedAndKeptQueued) {
  TlsReceiver rx(pki_.path("expired.pem"), pki_.path("server.key"));
  ASSERT_TRUE(rx.valid());
  const std::string dir = make_temp_dir();
  auto c = config(rx.url(), pki_.path("ca.pem"));
  c.outbox_dir = dir + "/secure";
  {
    auto n = must_make(c);
    n->enqueue(sample_anomaly("tls-expired"));
    ASSERT_TRUE(eventually([&] { return n->stats().tls_errors >= 2u; }));
    EXPECT_EQ(n->stats().sent, 0u);
    EXPECT_TRUE(rx.ids().empty());
    n->stop();
  }
  size_t queued = 0;
  for (const auto& e : fs::directory_iterator(dir + "/secure")) queued += e.path().extension() == ".json";
  EXPECT_EQ(queued, 1u);  // still on disk, for when the certificate is renewed
  fs::remove_all(dir);
}

}  // namespace
}  // namespace vigil::actions
