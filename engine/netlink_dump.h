// One netlink dump: send a request, hand every answer message to a callback until NLMSG_DONE.
// Shared by the pod resolution (rtnetlink links and addresses, engine/netns.cpp) and the netstat
// family (sock_diag and link statistics, engine/netns_stats.cpp). The socket belongs to the
// calling thread's network namespace and is closed before returning.
#pragma once

#include <linux/netlink.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>

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

}  // namespace vigil
