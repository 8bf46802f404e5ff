// One netlink dump: send a request, hand every answer message to a callback until NLMSG_DONE.
// Shared by the pod resolution (rtnetlink links and addresses, engine/netns.cpp) and the netstat
// family (sock_diag and link statistics, engine/netns_stats.cpp). The socket belongs to the
// calling thread's network namespace and is closed before returning. Also one request that
// changes something (netlink_request), built with its attributes by NetlinkMessage.
#pragma once

#include <linux/netlink.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "rules/core/result.h"

namespace vigil {

// `request` starts with its nlmsghdr (the flags and length already set); `what` names the
// protocol in errors ("rtnetlink", "sock_diag").
Result<void> netlink_dump(int protocol, const void* request, size_t size, const std::string& what,
                          const std::function<void(const nlmsghdr*)>& each);

// The same for a request of message `type` whose body is `body` (an rtgenmsg, ifinfomsg,
// inet_diag_req, ...): the header is filled in here.
template <typename Body>
Result<void> netlink_dump(int protocol, uint16_t type, const Body& body, const std::string& what,
                          const std::function<void(const nlmsghdr*)>& each) {
  struct {
    nlmsghdr nh;
    Body body;
  } req{};
  req.nh.nlmsg_len = sizeof(req);
  req.nh.nlmsg_type = type;
  req.nh.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
  req.nh.nlmsg_seq = 1;
  req.body = body;
  return netlink_dump(protocol, &req, sizeof(req), what, each);
}

// A request message with attributes, nested ones included: the header's length follows what is
// put in.
class NetlinkMessage {
 public:
  // `body`: the message's fixed part (a tcmsg, ifinfomsg, ...), `size` bytes.
  NetlinkMessage(uint16_t type, uint16_t flags, const void* body, size_t size);
  void put(uint16_t type, const void* data, size_t size);
  void put_u32(uint16_t type, uint32_t value) { put(type, &value, sizeof(value)); }
  // With its terminating NUL, as the kernel's NLA_STRING attributes are sent.
  void put_string(uint16_t type, const std::string& value) { put(type, value.c_str(), value.size() + 1); }
  // Opens a nested attribute: what is put until end_nested(its result) goes inside it.
  size_t begin_nested(uint16_t type);
  void end_nested(size_t at);
  const void* data() const { return buf_.data(); }
  size_t size() const { return buf_.size(); }

 private:
  void align();
  std::vector<char> buf_;
};

// Sends `message` (NLM_F_ACK is added) and waits for the kernel's answer: an error names `what`
// and the kernel's errno (its extended message too, when it gives one).
Result<void> netlink_request(int protocol, NetlinkMessage& message, const std::string& what);

}  // namespace vigil
