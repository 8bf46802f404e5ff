#include "engine/bundle.h"

#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <thread>
#include <vector>

namespace vigil {
namespace {

namespace fs = std::filesystem;

struct Command {
  const char* file;  // written in the bundle directory
  std::vector<std::string> argv;
  bool optional;  // not an error when the tool is not installed (iptables on an nft-only node)
};

const std::vector<Command>& commands() {
  static const std::vector<Command> list = {
      {"addresses.json", {"ip", "-j", "address", "show"}, false},
      {"links.json", {"ip", "-j", "-s", "link", "show"}, false},
      {"routes.json", {"ip", "-j", "route", "show", "table", "all"}, false},
      {"routes6.json", {"ip", "-6", "-j", "route", "show", "table", "all"}, false},
      {"rules.json", {"ip", "-j", "rule", "show"}, false},
      {"neighbours.json", {"ip", "-j", "neigh", "show"}, false},
      {"sockets.txt", {"ss", "-t", "-u", "-a", "-n", "-i", "-e", "-m"}, false},
      {"nftables.txt", {"nft", "list", "ruleset"}, false},
      {"iptables.txt", {"iptables-save"}, true},
      {"ip6tables.txt", {"ip6tables-save"}, true},
  };
  return list;
}

std::string find_tool(const std::string& name) {
  for (const char* dir : {"/usr/sbin", "/usr/bin", "/sbin", "/bin", "/usr/local/sbin", "/usr/local/bin"}) {
    std::string p = std::string(dir) + "/" + name;
    if (access(p.c_str(), X_OK) == 0) return p;
  }
  return "";
}

std::string first_line(const std::string& path) {
  std::ifstream in(path);
  std::string line;
  std::getline(in, line);
  return line;
}

// Runs `argv` inside the namespace open at `netns_fd`, stdout to `out_path`, stderr to
// `err_path`. Returns "" or what went wrong.
std::string run_in_netns(int netns_fd, const std::string& tool, const std::vector<std::string>& argv,
                         const std::string& out_path, const std::string& err_path, double timeout_seconds) {
  // Everything the child needs is prepared before fork(): after it, only async-signal-safe calls.
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  int out = open(out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (out < 0) return "cannot create " + out_path + ": " + std::strerror(errno);
  int err = open(err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (err < 0) {
    close(out);
    return "cannot create " + err_path + ": " + std::strerror(errno);
  }
  char* const env[] = {const_cast<char*>("PATH=/usr/sbin:/usr/bin:/sbin:/bin"), const_cast<char*>("LC_ALL=C"), nullptr};
  pid_t pid = fork();
  if (pid < 0) {
    close(out);
    close(err);
    return std::string("fork: ") + std::strerror(errno);
  }
  if (pid == 0) {
    if (setns(netns_fd, CLONE_NEWNET) != 0) _exit(125);
    int devnull = open("/dev/null", O_RDONLY);
    if (devnull >= 0) dup2(devnull, 0);
    dup2(out, 1);
    dup2(err, 2);
    execve(tool.c_str(), args.data(), env);
    _exit(127);
  }
  close(out);
  close(err);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_seconds);
  int status = 0;
  for (;;) {
    pid_t r = waitpid(pid, &status, WNOHANG);
    if (r == pid) break;
    if (r < 0 && errno != EINTR) return std::string("waitpid: ") + std::strerror(errno);
    if (std::chrono::steady_clock::now() >= deadline) {
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
      return "timed out after " + std::to_string(timeout_seconds) + " s";
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  if (WIFEXITED(status) && WEXITSTATUS(status) == 125) return "cannot enter the pod's network namespace";
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return "";
  std::string why = first_line(err_path);
  if (WIFSIGNALED(status)) return "killed by signal " + std::to_string(WTERMSIG(status));
  return "exit status " + std::to_string(WEXITSTATUS(status)) + (why.empty() ? "" : ": " + why);
}

}  // namespace

nlohmann::json collect_bundle(const actions::CapturePod& pod, const std::string& dir, double timeout_seconds) {
  nlohmann::json files = nlohmann::json::array();
  nlohmann::json errors = nlohmann::json::array();
  auto result = [&] { return nlohmann::json{{"files", files}, {"errors", errors}}; };
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) {
    errors.push_back("cannot create " + dir + ": " + ec.message());
    return result();
  }
  chmod(dir.c_str(), 0700);
  if (pod.netns_path.empty()) {
    errors.push_back("the pod's network namespace is not known");
    return result();
  }
  int ns = open(pod.netns_path.c_str(), O_RDONLY | O_CLOEXEC);
  if (ns < 0) {
    errors.push_back("cannot open the pod's network namespace " + pod.netns_path + ": " + std::strerror(errno));
    return result();
  }
  for (const auto& c : commands()) {
    const std::string tool = find_tool(c.argv[0]);
    if (tool.empty()) {
      if (!c.optional) errors.push_back(c.argv[0] + ": not installed");
      continue;
    }
    const std::string out = dir + "/" + c.file;
    const std::string err = out + ".stderr";
    std::string cmdline;
    for (const auto& a : c.argv) cmdline += (cmdline.empty() ? "" : " ") + a;
    std::string why = run_in_netns(ns, tool, c.argv, out, err, timeout_seconds);
    struct stat st {};
    const bool err_empty = stat(err.c_str(), &st) == 0 && st.st_size == 0;
    if (err_empty) unlink(err.c_str());
    if (why.empty()) {
      files.push_back(c.file);
    } else {
      errors.push_back(cmdline + ": " + why);
      unlink(out.c_str());
      if (!err_empty) files.push_back(std::string(c.file) + ".stderr");
    }
  }
  close(ns);
  return result();
}

}  // namespace vigil
