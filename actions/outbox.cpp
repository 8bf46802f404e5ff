// The durable outbox: <dir>/<seq as 16 hex digits>.json, one message per file. A message is
// written to .tmp-<seq>, fsync'd, renamed into place and the directory fsync'd before append()
// returns, so after a crash a file is either a whole message or absent. Delivered messages
// are unlinked; a crash between the 2xx and the unlink re-sends the message with the same
// idempotency key, which receivers can recognise.
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <spdlog/spdlog.h>

#include "actions/notifier_impl.h"

namespace vigil::actions {
namespace {

std::string errno_text(int e) { return std::strerror(e); }

bool write_all(int fd, const std::string& data) {
  size_t done = 0;
  while (done < data.size()) {
    const ssize_t n = ::write(fd, data.data() + done, data.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    done += static_cast<size_t>(n);
  }
  return true;
}

}  // namespace

Outbox::~Outbox() {
  if (dir_fd_ >= 0) ::close(dir_fd_);
}

std::string Outbox::path_of(uint64_t seq) const {
  char name[32];
  std::snprintf(name, sizeof name, "%016llx.json", static_cast<unsigned long long>(seq));
  return dir_ + "/" + name;
}

Result<std::unique_ptr<Outbox>> Outbox::open(const std::string& dir, std::vector<Message>& pending) {
  auto box = std::unique_ptr<Outbox>(new Outbox());
  pending.clear();
  if (dir.empty()) return box;
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return make_error("outbox: cannot create " + dir + ": " + ec.message());
  box->dir_ = dir;
  box->dir_fd_ = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (box->dir_fd_ < 0) return make_error("outbox: cannot open " + dir + ": " + errno_text(errno));
  if (::access(dir.c_str(), W_OK) != 0) return make_error("outbox: " + dir + " is not writable: " + errno_text(errno));

  for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
    const std::string name = entry.path().filename().string();
    if (name.starts_with(".tmp-")) {  // a write the crash interrupted: never acknowledged
      std::filesystem::remove(entry.path(), ec);
      continue;
    }
    if (name.size() != 21 || !name.ends_with(".json")) continue;
    std::ifstream in(entry.path());
    std::stringstream text;
    text << in.rdbuf();
    auto parsed = nlohmann::json::parse(text.str(), nullptr, false);
    auto m = parsed.is_discarded() ? Result<Message>(make_error("not JSON")) : message_from_json(parsed);
    if (!m) {
      ++box->corrupt_;
      spdlog::error("outbox {}: skipping unreadable {}: {}", dir, name, m.error().message);
      std::filesystem::rename(entry.path(), entry.path().string() + ".corrupt", ec);
      continue;
    }
    pending.push_back(std::move(*m));
  }
  if (ec) return make_error("outbox: cannot list " + dir + ": " + ec.message());
  std::sort(pending.begin(), pending.end(), [](const Message& a, const Message& b) { return a.seq < b.seq; });
  return box;
}

Result<void> Outbox::append(const Message& m) {
  if (dir_.empty()) return {};
  const std::string final_path = path_of(m.seq);
  const std::string tmp = dir_ + "/.tmp-" + final_path.substr(dir_.size() + 1);
  const std::string text = message_to_json(m).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return make_error("outbox: cannot create " + tmp + ": " + errno_text(errno));
  const bool ok = write_all(fd, text) && ::fsync(fd) == 0;
  const int saved = errno;
  ::close(fd);
  if (!ok) {
    ::unlink(tmp.c_str());
    return make_error("outbox: cannot write " + tmp + ": " + errno_text(saved));
  }
  if (::rename(tmp.c_str(), final_path.c_str()) != 0) {
    const int e = errno;
    ::unlink(tmp.c_str());
    return make_error("outbox: cannot rename " + tmp + ": " + errno_text(e));
  }
  if (::fsync(dir_fd_) != 0) return make_error("outbox: cannot fsync " + dir_ + ": " + errno_text(errno));
  return {};
}

void Outbox::remove(uint64_t seq) {
  if (dir_.empty()) return;
  const std::string p = path_of(seq);
  if (::unlink(p.c_str()) != 0 && errno != ENOENT) spdlog::warn("outbox: cannot remove {}: {}", p, errno_text(errno));
}

}  // namespace vigil::actions
