// One netlink dump: send a request, hand every answer message to a callback until NLMSG_DONE.
// Shared by the pod resolution (rtnetlink links and addresses, engine/netns.cpp) and the netstat
// family (sock_diag and link statistics, engine/netns_stats.cpp). The socket belongs to the
// calling thread's network namespace and is closed before returning.
#pragma once

#include <linux/netlink.h>

#include <cstddef>
#include <functional>
#include <string>

#include "rules/core/result.h"

namespace vigil {

// `request` starts with its nlmsghdr (the flags and length already set); `what` names the
// protocol in errors ("rtnetlink", "sock_diag").
Result<void> netlink_dump(int protocol, const void* request, size_t size, const std::string& what,
                          const std::function<void(const nlmsghdr*)>& each);

}  // namespace vigil
