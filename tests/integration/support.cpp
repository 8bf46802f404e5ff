#include "support.h"

#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <fcntl.h>
#include <net/if.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <netinet/in.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <regex>
#include <set>
#include <sstream>
#include <stdexcept>
#include <thread>
#include <tuple>

#include <httplib.h>

namespace vigil::test {

std::optional<std::string> privileged_unavailable() {
  if (geteuid() != 0) return "needs root (eBPF and network namespaces)";
  if (!std::filesystem::exists("/sys/kernel/btf/vmlinux")) return "kernel has no BTF";
  return std::nullopt;
}

bool privileged_required() {
  const char* v = std::getenv("VIGIL_REQUIRE_PRIVILEGED");
  return v && std::string(v) == "1";
}

CommandResult run(const std::string& command) {
  CommandResult r;
  FILE* p = popen((command + " 2>&1").c_str(), "r");
  if (!p) return r;
  std::array<char, 4096> buf{};
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), p)) > 0) r.output.append(buf.data(), n);
  int st = pclose(p);
  r.status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  return r;
}

std::string source_path(const std::string& rel) { return std::string(VIGIL_SOURCE_DIR) + "/" + rel; }
std::string binary_path(const std::string& rel) { return std::string(VIGIL_BINARY_DIR) + "/" + rel; }

Process::Process(std::vector<std::string> argv, const std::string& log_file) : log_file_(log_file) {
  pid_ = fork();
  if (pid_ == 0) {
    int fd = open(log_file.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd >= 0) {
      dup2(fd, 1);
      dup2(fd, 2);
    }
    std::vector<char*> args;
    for (auto& a : argv) args.push_back(a.data());
    args.push_back(nullptr);
    execv(args[0], args.data());
    _exit(127);
  }
}

Process::~Process() {
  if (pid_ > 0 && !status_) terminate(std::chrono::milliseconds(2000));
}

bool Process::running() {
  if (status_) return false;
  int st = 0;
  pid_t r = waitpid(pid_, &st, WNOHANG);
  if (r == pid_) {
    status_ = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    return false;
  }
  return true;
}

int Process::terminate(std::chrono::milliseconds grace) {
  if (status_) return *status_;
  kill(pid_, SIGTERM);
  auto deadline = std::chrono::steady_clock::now() + grace;
  while (std::chrono::steady_clock::now() < deadline) {
    if (!running()) return *status_;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  kill(pid_, SIGKILL);
  int st = 0;
  waitpid(pid_, &st, 0);
  status_ = 128 + SIGKILL;
  return *status_;
}

std::string Process::log() const {
  std::ifstream in(log_file_);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

Lab::Lab(int pods) {
  // Unique per test process so that concurrent or leftover labs never collide.
  prefix_ = "t" + std::to_string(getpid() % 100000);
  cmd("down");
  cmd("up " + std::to_string(pods));
}

Lab::~Lab() { run(source_path("tests/lab/vigil-lab") + " --prefix " + prefix_ + " down"); }

std::string Lab::cmd(const std::string& args) const {
  auto r = run("VIGIL_LAB_TRAFFIC=" + binary_path("tests/tools/vigil-lab-traffic") + " " +
               source_path("tests/lab/vigil-lab") + " --prefix " + prefix_ + " " + args);
  EXPECT_EQ(r.status, 0) << "vigil-lab " << args << ": " << r.output;
  return r.output;
}

static std::string trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

std::string Lab::pods_file() const { return trim(cmd("pods-file")); }
std::string Lab::ip(int pod) const { return trim(cmd("ip " + std::to_string(pod))); }
std::string Lab::veth(int pod) const { return trim(cmd("veth " + std::to_string(pod))); }

WebhookReceiver::WebhookReceiver(int port) : server_(std::make_unique<httplib::Server>()) {
  server_->Post("/hook", [this](const httplib::Request& req, httplib::Response& res) {
    std::lock_guard lock(mu_);
    bodies_.push_back(nlohmann::json::parse(req.body, nullptr, false));
    keys_.push_back(req.get_header_value("Idempotency-Key"));
    res.status = 200;
  });
  if (port == 0) {
    port_ = server_->bind_to_any_port("127.0.0.1");
  } else if (server_->bind_to_port("127.0.0.1", port)) {
    port_ = port;
  } else {
    throw std::runtime_error("webhook receiver: cannot listen on 127.0.0.1:" + std::to_string(port));
  }
  thread_ = std::thread([this] { server_->listen_after_bind(); });
}

WebhookReceiver::~WebhookReceiver() {
  server_->stop();
  thread_.join();
}

std::string WebhookReceiver::url() const { return "http://127.0.0.1:" + std::to_string(port_) + "/hook"; }

std::vector<nlohmann::json> WebhookReceiver::bodies() const {
  std::lock_guard lock(mu_);
  return bodies_;
}

std::vector<std::string> WebhookReceiver::idempotency_keys() const {
  std::lock_guard lock(mu_);
  return keys_;
}

bool WebhookReceiver::wait_for(const std::function<bool(const std::vector<nlohmann::json>&)>& pred,
                               std::chrono::seconds timeout) const {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (pred(bodies())) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return pred(bodies());
}

int free_port() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a));
  socklen_t len = sizeof(a);
  getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  close(fd);
  return ntohs(a.sin_port);
}

std::string http_get(const std::string& host, int port, const std::string& path, int* status) {
  httplib::Client cli(host, port);
  cli.set_read_timeout(5, 0);
  auto res = cli.Get(path);
  if (status) *status = res ? res->status : -1;
  return res ? res->body : "";
}

namespace {
// Parses `name{a="x",b="y"} value` lines; label values in our metrics hold no escaped quotes.
bool parse_line(const std::string& line, std::string& name, std::map<std::string, std::string>& labels, double& value) {
  if (line.empty() || line[0] == '#') return false;
  auto brace = line.find('{');
  auto space = line.rfind(' ');
  if (space == std::string::npos) return false;
  labels.clear();
  if (brace != std::string::npos && brace < space) {
    name = line.substr(0, brace);
    auto close = line.rfind('}');
    static const std::regex re(R"re(([a-zA-Z_][a-zA-Z0-9_]*)="([^"]*)")re");
    std::string body = line.substr(brace + 1, close - brace - 1);
    for (std::sregex_iterator it(body.begin(), body.end(), re), end; it != end; ++it) labels[(*it)[1]] = (*it)[2];
  } else {
    name = line.substr(0, space);
  }
  value = std::strtod(line.c_str() + space + 1, nullptr);
  return true;
}
}  // namespace

std::optional<double> metric_value(const std::string& text, const std::string& name,
                                   const std::map<std::string, std::string>& want) {
  std::istringstream in(text);
  std::string line, n;
  std::map<std::string, std::string> labels;
  double v;
  while (std::getline(in, line)) {
    if (!parse_line(line, n, labels, v) || n != name) continue;
    bool match = true;
    for (const auto& [k, val] : want) match = match && labels.count(k) && labels[k] == val;
    if (match) return v;
  }
  return std::nullopt;
}

ScopedTempDir::~ScopedTempDir() {
  if (!path_.empty()) run("rm -rf '" + path_ + "'");
}

std::string metrics_after_ticks(int port, int ticks) {
  const auto count = [](const std::string& text) { return metric_sum(text, "vigil_tick_duration_seconds_count", {}); };
  std::string text = http_get("127.0.0.1", port, "/metrics");
  const double target = count(text) + ticks;
  for (int i = 0; i < 400 && count(text) < target; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    text = http_get("127.0.0.1", port, "/metrics");
  }
  return text;
}

std::set<std::string> attached_pods(int port) {
  std::set<std::string> out;
  auto j = nlohmann::json::parse(http_get("127.0.0.1", port, "/api/v1/pods"), nullptr, false);
  if (!j.is_array()) return out;
  for (const auto& p : j)
    if (p.value("attached", false)) out.insert(p.value("name", ""));
  return out;
}

bool quiet_pod_pair(const Lab& lab) {
  const std::string ns1 = lab.prefix() + "-pod-1", ns2 = lab.prefix() + "-pod-2";
  bool ok = true;
  auto step = [&](const std::string& command) {
    auto r = run(command);
    EXPECT_EQ(r.status, 0) << command << ": " << r.output;
    ok = ok && r.status == 0;
    return r.output;
  };
  auto mac = [&](const std::string& ns) {
    const std::string out = step("ip netns exec " + ns + " cat /sys/class/net/eth0/address");
    return out.substr(0, out.find('\n'));
  };
  const std::string mac1 = mac(ns1), mac2 = mac(ns2);
  for (const auto& [ns, peer_ip, peer_mac] : {std::tuple{ns1, lab.ip(2), mac2}, std::tuple{ns2, lab.ip(1), mac1}}) {
    step("ip netns exec " + ns + " sysctl -qw net.ipv6.conf.all.disable_ipv6=1");
    step("ip netns exec " + ns + " ip neigh replace " + peer_ip + " lladdr " + peer_mac + " dev eth0 nud permanent");
  }
  for (const std::string& dev : {lab.prefix() + "-br0", lab.veth(1), lab.veth(2)})
    step("sysctl -qw net.ipv6.conf." + dev + ".disable_ipv6=1");
  return ok;
}

std::vector<std::string> tcx_programs(const std::string& dev) {
  std::vector<std::string> names;
  const unsigned ifindex = if_nametoindex(dev.c_str());
  for (int type : {46, 47}) {  // BPF_TCX_INGRESS, BPF_TCX_EGRESS (newer than Debian 12's headers)
    __u32 ids[16], count = 16, flags = 0;
    if (!ifindex || bpf_prog_query(static_cast<int>(ifindex), static_cast<bpf_attach_type>(type), 0, &flags, ids, &count))
      continue;
    for (__u32 i = 0; i < count; ++i) {
      int fd = bpf_prog_get_fd_by_id(ids[i]);
      if (fd < 0) continue;
      bpf_prog_info info{};
      __u32 len = sizeof(info);
      if (bpf_obj_get_info_by_fd(fd, &info, &len) == 0) names.emplace_back(info.name);
      close(fd);
    }
  }
  return names;
}

TracepointDelivery::TracepointDelivery(const std::string& event, const std::string& program) : event_(event) {
  // The newest program of that name on that tracepoint: the one the test's agent loaded last.
  // The kernel keeps 15 characters of a name (vigil_tcp_retransmit and
  // vigil_tcp_retransmit_synack are both "vigil_tcp_retra"), so a tp_btf program's tracepoint
  // (its attach type in the kernel's BTF, btf_trace_<event>) must be the event's too.
  btf* vmlinux = btf__load_vmlinux_btf();
  const std::string traced = "btf_trace_" + event.substr(event.find('/') + 1);
  __u32 id = 0, newest = 0;
  while (bpf_prog_get_next_id(id, &id) == 0) {
    int fd = bpf_prog_get_fd_by_id(id);
    if (fd < 0) continue;
    bpf_prog_info info{};
    __u32 len = sizeof(info);
    if (bpf_obj_get_info_by_fd(fd, &info, &len) == 0 && program.compare(0, sizeof(info.name) - 1, info.name) == 0) {
      const btf_type* t = info.attach_btf_id && vmlinux ? btf__type_by_id(vmlinux, info.attach_btf_id) : nullptr;
      if (!info.attach_btf_id || (t && traced == btf__name_by_offset(vmlinux, t->name_off))) newest = id;
    }
    close(fd);
  }
  btf__free(vmlinux);
  if (!newest || (prog_fd_ = bpf_prog_get_fd_by_id(newest)) < 0) {
    error_ = "no BPF program named " + program;
    return;
  }
  stats_fd_ = bpf_enable_stats(BPF_STATS_RUN_TIME);
  if (stats_fd_ < 0) {
    error_ = "BPF_ENABLE_STATS: " + std::string(strerror(errno));
    return;
  }
  static int serial = 0;
  instance_ = "/sys/kernel/tracing/instances/vigil-test-" + std::to_string(getpid()) + "-" + std::to_string(++serial);
  std::error_code ec;
  if (!std::filesystem::create_directory(instance_, ec)) {
    error_ = "create tracefs instance " + instance_ + ": " + (ec ? ec.message() : "exists");
    instance_.clear();
    return;
  }
  std::ofstream(instance_ + "/buffer_size_kb") << 4096;
  runs_at_start_ = run_count();
  std::ofstream enable(instance_ + "/events/" + event + "/enable");
  if (!(enable << 1 << std::flush)) error_ = "enable tracefs event " + event;
}

uint64_t TracepointDelivery::run_count() const {
  bpf_prog_info info{};
  __u32 len = sizeof(info);
  return bpf_obj_get_info_by_fd(prog_fd_, &info, &len) == 0 ? info.run_cnt : 0;
}

void TracepointDelivery::stop() {
  if (stopped_ || !ok()) return;
  stopped_ = true;
  std::ofstream(instance_ + "/tracing_on") << 0;
  runs_ = run_count() - runs_at_start_;
  // "# entries-in-buffer/entries-written: 360/360": written counts what the ring overwrote too.
  std::ifstream trace(instance_ + "/trace");
  std::string line;
  std::smatch m;
  static const std::regex written(R"(entries-in-buffer/entries-written: \d+/(\d+))");
  while (std::getline(trace, line) && line.rfind('#', 0) == 0)
    if (std::regex_search(line, m, written)) hits_ = std::stoull(m[1]);
}

void expect_exact_or_undelivered(double counted, double want, const TracepointDelivery& witness, const std::string& what) {
  const double undelivered = static_cast<double>(witness.undelivered());
  EXPECT_LE(counted, want) << what;
  EXPECT_GE(counted + undelivered, want) << what << ": the kernel hit the tracepoint " << witness.hits()
                                         << " times and ran the program " << witness.runs() << " times";
  if (counted < want)
    std::fprintf(stderr, "%s: the kernel did not run the program for %.0f of %llu hits; counted %.0f of %.0f\n", what.c_str(),
                 undelivered, static_cast<unsigned long long>(witness.hits()), counted, want);
}

TracepointDelivery::~TracepointDelivery() {
  stop();
  if (!instance_.empty()) {
    std::ofstream(instance_ + "/events/" + event_ + "/enable") << 0;
    rmdir(instance_.c_str());
  }
  if (stats_fd_ >= 0) close(stats_fd_);
  if (prog_fd_ >= 0) close(prog_fd_);
}

int attached_pod_count(int port) { return static_cast<int>(attached_pods(port).size()); }

bool wait_until(const std::function<bool()>& pred, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (pred()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return pred();
}

bool wait_for_attached(int port, int count, std::chrono::milliseconds timeout) {
  const auto end = std::chrono::steady_clock::now() + timeout;
  for (int i = 0; i < 1000 && std::chrono::steady_clock::now() < end; ++i) {
    if (attached_pod_count(port) == count) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return attached_pod_count(port) == count;
}

double metric_sum(const std::string& text, const std::string& name, const std::map<std::string, std::string>& want) {
  std::istringstream in(text);
  std::string line, n;
  std::map<std::string, std::string> labels;
  double v, sum = 0;
  while (std::getline(in, line)) {
    if (!parse_line(line, n, labels, v) || n != name) continue;
    bool match = true;
    for (const auto& [k, val] : want) match = match && labels.count(k) && labels[k] == val;
    if (match) sum += v;
  }
  return sum;
}

std::string shipped_rule(const std::string& file, const std::vector<std::pair<std::string, std::string>>& replacements) {
  std::ifstream in(source_path("rules/pack/" + file));
  if (!in) return "";
  std::stringstream text;
  text << in.rdbuf();
  std::string rule = text.str();
  for (const auto& [from, to] : replacements) {
    const auto at = rule.find(from);
    if (at == std::string::npos) return "";
    rule.replace(at, from.size(), to);
  }
  return rule;
}

uint64_t read_u64(const std::string& path) {
  std::ifstream in(path);
  uint64_t v = 0;
  in >> v;
  return v;
}

std::string compile_other_tool(const std::string& name, const std::string& dir, std::string& error) {
  const std::string object = dir + "/" + name + ".bpf.o";
  auto cc = run("clang -O2 -g -target bpf -Wall -Werror -I/usr/include/$(uname -m)-linux-gnu -c " +
                source_path("tests/integration/bpf/" + name + ".bpf.c") + " -o " + object);
  error = cc.output;
  return cc.status == 0 ? object : "";
}

std::string make_temp_dir() {
  std::string tmpl = (std::filesystem::temp_directory_path() / "vigil-test-XXXXXX").string();
  char* d = mkdtemp(tmpl.data());
  return d ? std::string(d) : std::string();
}

std::string write_temp_file(const std::string& dir, const std::string& name, const std::string& content) {
  std::string path = dir + "/" + name;
  std::ofstream(path) << content;
  return path;
}

}  // namespace vigil::test
