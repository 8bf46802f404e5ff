#include "engine/netlink_dump.h"

#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

namespace vigil {

Result<void> netlink_dump(int protocol, const void* request, size_t size, const std::string& what,
                          const std::function<void(const nlmsghdr*)>& each) {
  int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, protocol);
  if (fd < 0) return make_error(what + " socket: " + std::strerror(errno));
  auto fail = [&](const std::string& step, int err) {
    close(fd);
    return make_error(what + " " + step + ": " + std::strerror(err));
  };
  if (send(fd, request, size, 0) < 0) return fail("send", errno);
  std::vector<char> buf(1 << 16);
  for (int rounds = 0; rounds < 1 << 20; ++rounds) {  // a dump ends with NLMSG_DONE
    ssize_t n = recv(fd, buf.data(), buf.size(), 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      return fail("recv", errno);
    }
    for (auto* nh = reinterpret_cast<nlmsghdr*>(buf.data()); NLMSG_OK(nh, n); nh = NLMSG_NEXT(nh, n)) {
      if (nh->nlmsg_type == NLMSG_DONE) {
        close(fd);
        return {};
      }
      if (nh->nlmsg_type == NLMSG_ERROR) return fail("dump", -static_cast<const nlmsgerr*>(NLMSG_DATA(nh))->error);
      each(nh);
    }
  }
  close(fd);
  return make_error(what + " dump did not end");
}

}  // namespace vigil
