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

NetlinkMessage::NetlinkMessage(uint16_t type, uint16_t flags, const void* body, size_t size) {
  buf_.resize(NLMSG_HDRLEN);
  auto* nh = reinterpret_cast<nlmsghdr*>(buf_.data());
  nh->nlmsg_type = type;
  nh->nlmsg_flags = flags;
  nh->nlmsg_seq = 1;
  buf_.insert(buf_.end(), static_cast<const char*>(body), static_cast<const char*>(body) + size);
  align();
}

void NetlinkMessage::align() {
  buf_.resize(NLMSG_ALIGN(buf_.size()));
  reinterpret_cast<nlmsghdr*>(buf_.data())->nlmsg_len = static_cast<uint32_t>(buf_.size());
}

void NetlinkMessage::put(uint16_t type, const void* data, size_t size) {
  nlattr a{};
  a.nla_len = static_cast<uint16_t>(NLA_HDRLEN + size);
  a.nla_type = type;
  const auto* head = reinterpret_cast<const char*>(&a);
  buf_.insert(buf_.end(), head, head + sizeof(a));
  buf_.resize(buf_.size() + NLA_HDRLEN - sizeof(a));
  if (size) buf_.insert(buf_.end(), static_cast<const char*>(data), static_cast<const char*>(data) + size);
  align();
}

size_t NetlinkMessage::begin_nested(uint16_t type) {
  const size_t at = buf_.size();
  put(type | NLA_F_NESTED, nullptr, 0);
  return at;
}

void NetlinkMessage::end_nested(size_t at) {
  reinterpret_cast<nlattr*>(buf_.data() + at)->nla_len = static_cast<uint16_t>(buf_.size() - at);
}

Result<void> netlink_request(int protocol, NetlinkMessage& message, const std::string& what) {
  auto* nh = reinterpret_cast<nlmsghdr*>(const_cast<void*>(message.data()));
  nh->nlmsg_flags |= NLM_F_REQUEST | NLM_F_ACK;
  int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, protocol);
  if (fd < 0) return make_error(what + " socket: " + std::strerror(errno));
  // The kernel's own words for what it refused, where it has them, without the request echoed.
  const int on = 1;
  setsockopt(fd, SOL_NETLINK, NETLINK_EXT_ACK, &on, sizeof(on));
  setsockopt(fd, SOL_NETLINK, NETLINK_CAP_ACK, &on, sizeof(on));
  auto fail = [&](const std::string& step, int err, const std::string& detail = "") {
    close(fd);
    return make_error(what + " " + step + ": " + std::strerror(err) + (detail.empty() ? "" : " (" + detail + ")"));
  };
  if (send(fd, message.data(), message.size(), 0) < 0) return fail("send", errno);
  std::vector<char> buf(1 << 16);
  for (int rounds = 0; rounds < 64; ++rounds) {  // the answer is one message; others are skipped
    ssize_t n = recv(fd, buf.data(), buf.size(), 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      return fail("recv", errno);
    }
    for (auto* h = reinterpret_cast<nlmsghdr*>(buf.data()); NLMSG_OK(h, n); h = NLMSG_NEXT(h, n)) {
      if (h->nlmsg_type != NLMSG_ERROR) continue;
      const auto* e = static_cast<const nlmsgerr*>(NLMSG_DATA(h));
      if (e->error == 0) {
        close(fd);
        return {};
      }
      // NLMSGERR_ATTR_MSG after the request's header, or after the whole request where the
      // kernel echoed it.
      std::string detail;
      if (h->nlmsg_flags & NLM_F_ACK_TLVS) {
        size_t off = NLMSG_HDRLEN + sizeof(nlmsgerr);
        if (!(h->nlmsg_flags & NLM_F_CAPPED)) off += NLMSG_ALIGN(e->msg.nlmsg_len - NLMSG_HDRLEN);
        int len = static_cast<int>(h->nlmsg_len) - static_cast<int>(off);
        if (len > 0)
          for (auto* a = reinterpret_cast<const nlattr*>(reinterpret_cast<const char*>(h) + off);
               len >= static_cast<int>(NLA_HDRLEN) && a->nla_len >= NLA_HDRLEN && a->nla_len <= len;
               len -= NLA_ALIGN(a->nla_len), a = reinterpret_cast<const nlattr*>(reinterpret_cast<const char*>(a) + NLA_ALIGN(a->nla_len)))
            if ((a->nla_type & NLA_TYPE_MASK) == NLMSGERR_ATTR_MSG && a->nla_len > NLA_HDRLEN)
              detail.assign(reinterpret_cast<const char*>(a) + NLA_HDRLEN,
                            strnlen(reinterpret_cast<const char*>(a) + NLA_HDRLEN, a->nla_len - NLA_HDRLEN));
      }
      return fail("request", -e->error, detail);
    }
  }
  close(fd);
  return make_error(what + " request got no answer");
}

}  // namespace vigil
