// NetlinkMessage lays out a request as the kernel parses it (4-byte aligned attributes, nested
// ones with NLA_F_NESTED and a length that covers what is inside), and netlink_request reports
// the kernel's errno and its extended message. The requests here read and change nothing and
// need no privilege: they ask for a link that does not exist, or with a name the kernel refuses.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <linux/if_link.h>
#include <linux/pkt_cls.h>
#include <linux/rtnetlink.h>
#include <sys/socket.h>

#include <cstring>
#include <string>

#include "engine/netlink_dump.h"

namespace vigil {
namespace {

const nlattr* attr_at(const NetlinkMessage& m, size_t offset) {
  return reinterpret_cast<const nlattr*>(static_cast<const char*>(m.data()) + offset);
}

TEST(NetlinkMessage, AttributesAreAlignedAndNestedOnesCoverWhatIsInside) {
  tcmsg t{};
  t.tcm_ifindex = 7;
  NetlinkMessage m(RTM_NEWTFILTER, NLM_F_CREATE, &t, sizeof(t));
  const size_t head = NLMSG_HDRLEN + NLMSG_ALIGN(sizeof(tcmsg));
  EXPECT_EQ(m.size(), head);
  m.put_string(TCA_KIND, "bpf");  // 4 + "bpf\0"
  const size_t nested = m.begin_nested(TCA_OPTIONS);
  EXPECT_EQ(nested, head + 8);
  m.put_u32(TCA_BPF_FD, 42);        // 4 + 4
  m.put_string(TCA_BPF_NAME, "ab");  // 4 + 3, padded to 8
  m.put_u32(TCA_BPF_CLASSID, 5);    // 4 + 4
  m.end_nested(nested);

  const auto* nh = static_cast<const nlmsghdr*>(m.data());
  EXPECT_EQ(nh->nlmsg_len, m.size());
  EXPECT_EQ(m.size(), head + 8 + 4 + 8 + 8 + 8);
  EXPECT_EQ(nh->nlmsg_type, RTM_NEWTFILTER);
  EXPECT_EQ(nh->nlmsg_flags, NLM_F_CREATE);
  EXPECT_EQ(static_cast<const tcmsg*>(NLMSG_DATA(nh))->tcm_ifindex, 7);

  const nlattr* kind = attr_at(m, head);
  EXPECT_EQ(kind->nla_type, TCA_KIND);
  EXPECT_EQ(kind->nla_len, NLA_HDRLEN + 4);
  EXPECT_STREQ(reinterpret_cast<const char*>(kind) + NLA_HDRLEN, "bpf");

  const nlattr* options = attr_at(m, nested);
  EXPECT_EQ(options->nla_type, TCA_OPTIONS | NLA_F_NESTED);
  EXPECT_EQ(options->nla_len, 4 + 8 + 8 + 8);
  const nlattr* fd = attr_at(m, nested + 4);
  EXPECT_EQ(fd->nla_type, TCA_BPF_FD);
  uint32_t value = 0;
  std::memcpy(&value, reinterpret_cast<const char*>(fd) + NLA_HDRLEN, 4);
  EXPECT_EQ(value, 42u);
  const nlattr* name = attr_at(m, nested + 12);
  EXPECT_EQ(name->nla_type, TCA_BPF_NAME);
  EXPECT_EQ(name->nla_len, NLA_HDRLEN + 3) << "the length without the padding";
  const nlattr* classid = attr_at(m, nested + 20);
  EXPECT_EQ(classid->nla_type, TCA_BPF_CLASSID);
  std::memcpy(&value, reinterpret_cast<const char*>(classid) + NLA_HDRLEN, 4);
  EXPECT_EQ(value, 5u);
}

TEST(NetlinkRequest, SaysTheKernelsErrnoAndItsOwnWordsWhenItHasThem) {
  ifinfomsg missing{};
  missing.ifi_family = AF_UNSPEC;
  missing.ifi_index = 0x7ffffff0;  // no such device
  NetlinkMessage get(RTM_GETLINK, 0, &missing, sizeof(missing));
  auto r = netlink_request(NETLINK_ROUTE, get, "rtnetlink");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().message, "rtnetlink request: No such device");

  // A name longer than IFNAMSIZ fails the kernel's attribute policy, which it says in words.
  ifinfomsg any{};
  NetlinkMessage named(RTM_GETLINK, 0, &any, sizeof(any));
  named.put_string(IFLA_IFNAME, std::string(40, 'x'));
  r = netlink_request(NETLINK_ROUTE, named, "rtnetlink");
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("rtnetlink request: "), std::string::npos) << r.error().message;
  EXPECT_NE(r.error().message.find(" (Attribute failed policy validation)"), std::string::npos) << r.error().message;

  // A request the kernel answers: the link lo (ifindex 1 in every namespace).
  ifinfomsg lo{};
  lo.ifi_index = 1;
  NetlinkMessage found(RTM_GETLINK, 0, &lo, sizeof(lo));
  EXPECT_TRUE(netlink_request(NETLINK_ROUTE, found, "rtnetlink"));
}

}  // namespace
}  // namespace vigil
