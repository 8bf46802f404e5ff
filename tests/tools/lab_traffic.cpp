// vigil-lab-traffic: traffic for lab pods, with exact counts the tests can compare against.
//   httpd PORT [ADDRESS]               serve GET /bytes/N (N bytes) until killed, on ADDRESS
//                                      (0.0.0.0 unless given; :: is both IPv6 and IPv4)
//   http-load URL RATE SECONDS [CONNS] GET at a fixed total rate over CONNS connections;
//                                      prints "ok=N failed=M"
//   udp-send IP PORT COUNT SIZE        send exactly COUNT datagrams; prints "sent=N". IP may be
//                                      IPv6, multicast or broadcast; IP%IFNAME sends out of IFNAME
//   udp-blast IP PORT COUNT SIZE       send COUNT datagrams with sendmmsg, 64 a call, no pauses
//                                      (a flood: some may be dropped on the way); prints "sent=N"
//   udp-sink PORT SECONDS              count datagrams received; prints "received=N"
//   udp-from-many DST PORT COUNT BASE  COUNT datagrams to DST, each from its own source address
//                                      BASE+i (raw socket): many remote peers for one lab pod
//   ip-proto DST PROTO COUNT           COUNT IPv4 packets of protocol number PROTO (raw socket, 16
//                                      bytes of payload): e.g. a protocol the peer has no handler for
//   tcp-silent PORT SECONDS            accept TCP connections and never answer, for SECONDS
//   tcp-late PORT DELAY_MS SECONDS     accept TCP connections one at a time, for SECONDS: read the
//                                      request, answer DELAY_MS later, wait (2 s at most) for the
//                                      client to close
//   tcp-hangup PORT SECONDS            the same, but closes each connection at once after the
//                                      request, without an answer (a FIN and no data)
//   tcp-requests IP PORT COUNT TIMEOUT [HOLD_MS]
//                                      COUNT connections one after the other, each sending one
//                                      request and waiting up to TIMEOUT seconds for a first byte
//                                      back, then holding the connection HOLD_MS (default 0)
//                                      without a word before closing; prints "connected=N answered=M"
//   dns-tcp IP COUNT MODE              COUNT DNS queries over one TCP connection to IP port 53,
//                                      cycling ok.lab.test A, nx.lab.test A, example.com A (the
//                                      lab's dnsmasq: NOERROR, NXDOMAIN, REFUSED). MODE pipeline:
//                                      all in one write, then the answers; split: each query's
//                                      2-byte length in a segment of its own (TCP_NODELAY, 20 ms
//                                      apart), then its message, then its answer; fastopen: the
//                                      first query in the SYN (TCP Fast Open: MSG_FASTOPEN; the
//                                      namespaces' net.ipv4.tcp_fastopen must allow it), the rest
//                                      one after the other. Waits 20 s at
//                                      most in all; prints "answered=N NOERROR=a NXDOMAIN=b REFUSED=c"
//   big-tcp IFNAME SIZE                let IFNAME (in the calling namespace) send and take IPv4 and
//                                      IPv6 GSO/GRO packets of up to SIZE bytes: BIG TCP over
//                                      64 KiB (rtnetlink IFLA_GSO_IPV4_MAX_SIZE, Linux 6.3+, which
//                                      Debian 12's iproute2 cannot set; IFLA_GSO_MAX_SIZE for IPv6)
// Every loop is bounded by its arguments.
#include <arpa/inet.h>
#include <fcntl.h>
#include <net/if.h>
#include <netinet/in.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>
#include <algorithm>

#include <httplib.h>

namespace {

int httpd(int port, const std::string& host) {
  httplib::Server srv;
  srv.set_tcp_nodelay(true);  // headers and body are separate writes: avoid Nagle + delayed ACK stalls
  // A connection serves up to 1000 requests, as nginx's keepalive_requests does by default
  // (cpp-httplib closes after 5: wrk then spends a connect and a close every 5 requests, which
  // no production web server does).
  srv.set_keep_alive_max_count(1000);
  srv.Get(R"(/bytes/(\d+))", [](const httplib::Request& req, httplib::Response& res) {
    size_t n = std::min<size_t>(std::stoul(req.matches[1]), 64u << 20);
    res.set_content(std::string(n, 'v'), "application/octet-stream");
  });
  srv.Get("/", [](const httplib::Request&, httplib::Response& res) { res.set_content("vigil lab\n", "text/plain"); });
  return srv.listen(host.c_str(), port) ? 0 : 1;
}

struct LoadResult {
  long ok = 0, failed = 0;
};

// One keep-alive connection sending GETs at `rate` per second until `seconds` pass.
LoadResult http_load_one(const std::string& base, const std::string& path, double rate, double seconds) {
  httplib::Client cli(base);
  cli.set_keep_alive(true);
  cli.set_tcp_nodelay(true);
  cli.set_connection_timeout(1, 0);
  cli.set_read_timeout(1, 0);
  using clock = std::chrono::steady_clock;
  const auto end = clock::now() + std::chrono::duration<double>(seconds);
  const auto period = std::chrono::duration_cast<clock::duration>(std::chrono::duration<double>(1.0 / rate));
  auto next = clock::now();
  LoadResult r;
  const long max_requests = static_cast<long>(rate * seconds) + 1;
  for (long i = 0; i < max_requests && clock::now() < end; ++i) {
    auto res = cli.Get(path);
    if (res && res->status == 200) ++r.ok;
    else ++r.failed;
    next += period;
    if (next > clock::now()) std::this_thread::sleep_until(next);
  }
  return r;
}

// `connections` parallel connections share the rate, like a real client pool: one stalled
// connection (a lost segment waits for its retransmission) does not stop the others.
int http_load(const std::string& url, double rate, double seconds, int connections) {
  auto scheme_end = url.find("://");
  auto path_start = url.find('/', scheme_end + 3);
  std::string base = url.substr(0, path_start), path = path_start == std::string::npos ? "/" : url.substr(path_start);
  connections = std::clamp(connections, 1, 64);
  std::vector<LoadResult> results(connections);
  std::vector<std::thread> threads;
  for (int c = 0; c < connections; ++c)
    threads.emplace_back([&, c] { results[c] = http_load_one(base, path, rate / connections, seconds); });
  LoadResult total;
  for (int c = 0; c < connections; ++c) {
    threads[c].join();
    total.ok += results[c].ok;
    total.failed += results[c].failed;
  }
  std::printf("ok=%ld failed=%ld\n", total.ok, total.failed);
  return 0;
}

// IP is IPv4 or IPv6, unicast, multicast or broadcast; ADDRESS%IFNAME sends a multicast (or an
// IPv6 link-local) datagram out of IFNAME.
int udp_send(const std::string& ip, int port, long count, size_t size) {
  std::string host = ip, ifname;
  if (auto at = ip.find('%'); at != std::string::npos) host = ip.substr(0, at), ifname = ip.substr(at + 1);
  const unsigned ifindex = ifname.empty() ? 0 : if_nametoindex(ifname.c_str());
  if (!ifname.empty() && !ifindex) {
    std::fprintf(stderr, "udp-send: no interface %s\n", ifname.c_str());
    return 2;
  }
  sockaddr_storage to{};
  socklen_t to_len = 0;
  int fd = -1;
  const int one = 1;
  if (auto* v4 = reinterpret_cast<sockaddr_in*>(&to); inet_pton(AF_INET, host.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(port);
    to_len = sizeof(*v4);
    fd = socket(AF_INET, SOCK_DGRAM, 0);
    if (fd < 0) return 2;
    setsockopt(fd, SOL_SOCKET, SO_BROADCAST, &one, sizeof(one));
    if (ifindex) {
      ip_mreqn via{};
      via.imr_ifindex = static_cast<int>(ifindex);
      setsockopt(fd, IPPROTO_IP, IP_MULTICAST_IF, &via, sizeof(via));
    }
  } else if (auto* v6 = reinterpret_cast<sockaddr_in6*>(&to); inet_pton(AF_INET6, host.c_str(), &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(port);
    v6->sin6_scope_id = ifindex;
    to_len = sizeof(*v6);
    fd = socket(AF_INET6, SOCK_DGRAM, 0);
    if (fd < 0) return 2;
    if (ifindex) setsockopt(fd, IPPROTO_IPV6, IPV6_MULTICAST_IF, &ifindex, sizeof(ifindex));
  } else {
    std::fprintf(stderr, "udp-send: not an IPv4 or IPv6 address: %s\n", host.c_str());
    return 2;
  }
  std::string payload(size, 'u');
  long sent = 0;
  for (long i = 0; i < count; ++i) {
    if (sendto(fd, payload.data(), payload.size(), 0, reinterpret_cast<sockaddr*>(&to), to_len) == static_cast<ssize_t>(size)) ++sent;
    if (i % 64 == 63) std::this_thread::sleep_for(std::chrono::microseconds(200));  // stay below socket buffer limits
  }
  close(fd);
  std::printf("sent=%ld\n", sent);
  return sent == count ? 0 : 1;
}

int udp_blast(const std::string& ip, int port, long count, size_t size) {
  int fd = socket(AF_INET, SOCK_DGRAM, 0);
  sockaddr_in to{};
  to.sin_family = AF_INET;
  to.sin_port = htons(port);
  if (fd < 0 || inet_pton(AF_INET, ip.c_str(), &to.sin_addr) != 1) return 2;
  if (connect(fd, reinterpret_cast<sockaddr*>(&to), sizeof(to)) != 0) return 2;
  std::string payload(size, 'b');
  constexpr int kBatch = 64;
  iovec iov[kBatch];
  mmsghdr msgs[kBatch] = {};
  for (int i = 0; i < kBatch; ++i) {
    iov[i] = {payload.data(), payload.size()};
    msgs[i].msg_hdr.msg_iov = &iov[i];
    msgs[i].msg_hdr.msg_iovlen = 1;
  }
  long sent = 0;
  for (long attempts = 0; sent < count && attempts < count * 4 / kBatch + 1000; ++attempts) {
    int n = sendmmsg(fd, msgs, static_cast<unsigned>(std::min<long>(kBatch, count - sent)), 0);
    if (n > 0) sent += n;
  }
  close(fd);
  std::printf("sent=%ld\n", sent);
  return sent == count ? 0 : 1;
}

int udp_sink(int port, double seconds) {
  int fd = socket(AF_INET6, SOCK_DGRAM, 0);
  int off = 0;
  setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &off, sizeof(off));
  int rcvbuf = 8 << 20;
  setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
  sockaddr_in6 addr{};
  addr.sin6_family = AF_INET6;
  addr.sin6_port = htons(port);
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) return 2;
  timeval tv{0, 100000};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  const auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  long received = 0;
  char buf[65536];
  while (std::chrono::steady_clock::now() < end)
    if (recv(fd, buf, sizeof(buf), 0) >= 0) ++received;
  std::printf("received=%ld\n", received);
  return 0;
}

// A TCP socket listening on PORT of every address, IPv6 and IPv4; -1 when it cannot.
int listen_any(int port) {
  int fd = socket(AF_INET6, SOCK_STREAM, 0);
  if (fd < 0) return -1;
  int off = 0, on = 1;
  setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &off, sizeof(off));
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on));
  sockaddr_in6 addr{};
  addr.sin6_family = AF_INET6;
  addr.sin6_port = htons(port);
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 || listen(fd, 64) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

int tcp_silent(int port, double seconds) {
  int fd = listen_any(port);
  if (fd < 0) return 2;
  std::vector<int> held;  // kept open, never written to, closed at exit
  const auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  while (std::chrono::steady_clock::now() < end && held.size() < 1024) {
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, 100) == 1) {
      int c = accept(fd, nullptr, nullptr);
      if (c >= 0) held.push_back(c);
    }
  }
  for (int c : held) close(c);
  close(fd);
  return 0;
}

// Waits up to `ms` for `events` on fd; true when they came.
bool wait_for(int fd, short events, int ms) {
  pollfd p{fd, events, 0};
  return poll(&p, 1, ms) == 1 && (p.revents & events);
}

int tcp_late(int port, int delay_ms, double seconds, bool answer) {
  delay_ms = std::clamp(delay_ms, 0, 10000);
  int fd = listen_any(port);
  if (fd < 0) return 2;
  const auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  for (int served = 0; std::chrono::steady_clock::now() < end && served < 1024;) {
    if (!wait_for(fd, POLLIN, 100)) continue;
    int c = accept(fd, nullptr, nullptr);
    if (c < 0) continue;
    ++served;
    char buf[512];
    // The request is read either way: a socket closed with unread data sends a reset, not a FIN.
    if (wait_for(c, POLLIN, 2000) && recv(c, buf, sizeof(buf), 0) > 0 && answer) {
      std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms));
      static const char kAnswer[] = "late answer\n";
      send(c, kAnswer, sizeof(kAnswer) - 1, MSG_NOSIGNAL);
      for (int i = 0; i < 20 && wait_for(c, POLLIN, 100) && recv(c, buf, sizeof(buf), 0) > 0; ++i) {
      }
    }
    close(c);
  }
  close(fd);
  return 0;
}

int tcp_requests(const std::string& ip, int port, long count, double timeout, int hold_ms) {
  sockaddr_storage to{};
  socklen_t to_len = 0;
  auto* v4 = reinterpret_cast<sockaddr_in*>(&to);
  auto* v6 = reinterpret_cast<sockaddr_in6*>(&to);
  if (inet_pton(AF_INET, ip.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(port);
    to_len = sizeof(*v4);
  } else if (inet_pton(AF_INET6, ip.c_str(), &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(port);
    to_len = sizeof(*v6);
  } else {
    return 2;
  }
  const int ms = static_cast<int>(timeout * 1000);
  long connected = 0, answered = 0;
  for (long i = 0; i < count; ++i) {
    int fd = socket(to.ss_family, SOCK_STREAM | SOCK_NONBLOCK, 0);
    int err = 0;
    socklen_t len = sizeof(err);
    if (connect(fd, reinterpret_cast<sockaddr*>(&to), to_len) != 0 && errno != EINPROGRESS) err = errno;
    else if (!wait_for(fd, POLLOUT, ms)) err = ETIMEDOUT;
    else getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err == 0) {
      ++connected;
      static const char kRequest[] = "GET / HTTP/1.0\r\n\r\n";
      char c;
      if (send(fd, kRequest, sizeof(kRequest) - 1, MSG_NOSIGNAL) > 0 && wait_for(fd, POLLIN, ms) && recv(fd, &c, 1, 0) == 1) {
        ++answered;
        if (hold_ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(hold_ms));
      }
    }
    close(fd);
  }
  std::printf("connected=%ld answered=%ld\n", connected, answered);
  return 0;
}

// A DNS query over TCP: the 2-byte length, then the message (id, RD, one question, class IN).
std::string dns_tcp_query(uint16_t id, const std::string& name, uint16_t qtype) {
  std::string m = {static_cast<char>(id >> 8), static_cast<char>(id & 0xff), 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0};
  size_t start = 0;
  while (start < name.size()) {
    size_t dot = name.find('.', start);
    if (dot == std::string::npos) dot = name.size();
    m += static_cast<char>(dot - start);
    m += name.substr(start, dot - start);
    start = dot + 1;
  }
  m += std::string{0, static_cast<char>(qtype >> 8), static_cast<char>(qtype & 0xff), 0, 1};
  return std::string{static_cast<char>(m.size() >> 8), static_cast<char>(m.size() & 0xff)} + m;
}

int dns_tcp(const std::string& ip, long count, const std::string& mode) {
  if ((mode != "pipeline" && mode != "split" && mode != "fastopen") || count < 1 || count > 1000) return 2;
  sockaddr_in to{};
  to.sin_family = AF_INET;
  to.sin_port = htons(53);
  if (inet_pton(AF_INET, ip.c_str(), &to.sin_addr) != 1) return 2;
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  const int one = 1;
  if (mode == "split") setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  if (mode != "fastopen" && connect(fd, reinterpret_cast<sockaddr*>(&to), sizeof(to)) != 0) {
    std::perror("connect");
    return 1;
  }
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  auto left_ms = [&] {
    return static_cast<int>(std::max<long>(0, std::chrono::duration_cast<std::chrono::milliseconds>(
                                                 deadline - std::chrono::steady_clock::now()).count()));
  };
  // Reads exactly n bytes, or fails at the deadline.
  auto read_n = [&](char* buf, size_t n) {
    for (size_t got = 0; got < n;) {
      if (!wait_for(fd, POLLIN, left_ms())) return false;
      ssize_t r = recv(fd, buf + got, n - got, 0);
      if (r <= 0) return false;
      got += static_cast<size_t>(r);
    }
    return true;
  };
  long answered = 0, rcodes[16] = {};
  auto read_answer = [&] {
    unsigned char len[2];
    if (!read_n(reinterpret_cast<char*>(len), 2)) return false;
    std::string msg((len[0] << 8) | len[1], '\0');
    if (msg.size() < 12 || !read_n(msg.data(), msg.size())) return false;
    ++answered;
    ++rcodes[msg[3] & 0xf];
    return true;
  };
  static const std::pair<const char*, uint16_t> kNames[] = {{"ok.lab.test", 1}, {"nx.lab.test", 1}, {"example.com", 1}};
  std::string all;
  for (long i = 0; i < count; ++i) {
    const auto& [name, qtype] = kNames[i % 3];
    std::string q = dns_tcp_query(static_cast<uint16_t>(i + 1), name, qtype);
    if (mode == "pipeline") {
      all += q;
      continue;
    }
    if (mode == "fastopen") {
      const ssize_t sent = i == 0 ? sendto(fd, q.data(), q.size(), MSG_FASTOPEN | MSG_NOSIGNAL,
                                           reinterpret_cast<sockaddr*>(&to), sizeof(to))
                                  : send(fd, q.data(), q.size(), MSG_NOSIGNAL);
      if (sent != static_cast<ssize_t>(q.size()) || !read_answer()) break;
      continue;
    }
    if (send(fd, q.data(), 2, MSG_NOSIGNAL) != 2) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    if (send(fd, q.data() + 2, q.size() - 2, MSG_NOSIGNAL) != static_cast<ssize_t>(q.size() - 2) || !read_answer()) break;
  }
  if (mode == "pipeline" && send(fd, all.data(), all.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(all.size()))
    for (long i = 0; i < count && read_answer(); ++i) {
    }
  close(fd);
  std::printf("answered=%ld NOERROR=%ld NXDOMAIN=%ld REFUSED=%ld\n", answered, rcodes[0], rcodes[3], rcodes[5]);
  return 0;
}

uint16_t ip_checksum(const void* data, size_t len) {
  const uint8_t* p = static_cast<const uint8_t*>(data);
  uint32_t sum = 0;
  for (size_t i = 0; i + 1 < len; i += 2) sum += (p[i] << 8) | p[i + 1];
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return htons(static_cast<uint16_t>(~sum));
}

int udp_from_many(const std::string& dst, int port, long count, const std::string& base) {
  in_addr dst_addr{}, base_addr{};
  if (inet_pton(AF_INET, dst.c_str(), &dst_addr) != 1 || inet_pton(AF_INET, base.c_str(), &base_addr) != 1) return 2;
  int fd = socket(AF_INET, SOCK_RAW, IPPROTO_RAW);
  if (fd < 0) return 2;
  sockaddr_in to{};
  to.sin_family = AF_INET;
  to.sin_addr = dst_addr;
  uint8_t packet[20 + 8 + 16] = {};
  long sent = 0;
  for (long i = 0; i < count; ++i) {
    uint32_t src = htonl(ntohl(base_addr.s_addr) + static_cast<uint32_t>(i));
    std::memset(packet, 0, sizeof(packet));
    packet[0] = 0x45;                              // IPv4, 20-byte header
    packet[2] = 0;
    packet[3] = sizeof(packet);                    // total length
    packet[8] = 64;                                // TTL
    packet[9] = IPPROTO_UDP;
    std::memcpy(packet + 12, &src, 4);
    std::memcpy(packet + 16, &dst_addr, 4);
    uint16_t csum = ip_checksum(packet, 20);
    std::memcpy(packet + 10, &csum, 2);
    uint16_t sport = htons(40000), dport = htons(static_cast<uint16_t>(port)), ulen = htons(8 + 16);
    std::memcpy(packet + 20, &sport, 2);
    std::memcpy(packet + 22, &dport, 2);
    std::memcpy(packet + 24, &ulen, 2);            // UDP checksum 0: none, valid for IPv4
    if (sendto(fd, packet, sizeof(packet), 0, reinterpret_cast<sockaddr*>(&to), sizeof(to)) == sizeof(packet)) ++sent;
    if (i % 64 == 63) std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
  close(fd);
  std::printf("sent=%ld\n", sent);
  return sent == count ? 0 : 1;
}

int ip_proto(const std::string& dst, int proto, long count) {
  sockaddr_in to{};
  to.sin_family = AF_INET;
  if (inet_pton(AF_INET, dst.c_str(), &to.sin_addr) != 1 || proto < 1 || proto > 254) return 2;
  int fd = socket(AF_INET, SOCK_RAW, proto);
  if (fd < 0) return 2;
  const char payload[16] = "vigil-ip-proto";
  long sent = 0;
  for (long i = 0; i < count; ++i) {
    if (sendto(fd, payload, sizeof(payload), 0, reinterpret_cast<sockaddr*>(&to), sizeof(to)) == sizeof(payload)) ++sent;
    if (i % 64 == 63) std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
  close(fd);
  std::printf("sent=%ld\n", sent);
  return sent == count ? 0 : 1;
}

// The attributes Debian 12's headers (Linux 6.1) do not have yet; values from linux/if_link.h.
constexpr unsigned short kGsoIpv4MaxSize = 63;  // IFLA_GSO_IPV4_MAX_SIZE
constexpr unsigned short kGroIpv4MaxSize = 64;  // IFLA_GRO_IPV4_MAX_SIZE

int big_tcp(const std::string& ifname, uint32_t size) {
  const unsigned index = if_nametoindex(ifname.c_str());
  if (!index) {
    std::fprintf(stderr, "big-tcp: no interface %s\n", ifname.c_str());
    return 1;
  }
  struct {
    nlmsghdr nh;
    ifinfomsg ifi;
    char attrs[64];
  } req{};
  req.nh.nlmsg_type = RTM_NEWLINK;
  req.nh.nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK;
  req.nh.nlmsg_seq = 1;
  req.ifi.ifi_family = AF_UNSPEC;
  req.ifi.ifi_index = static_cast<int>(index);
  size_t len = NLMSG_LENGTH(sizeof(ifinfomsg));
  for (unsigned short type : {kGsoIpv4MaxSize, kGroIpv4MaxSize, static_cast<unsigned short>(IFLA_GSO_MAX_SIZE),
                              static_cast<unsigned short>(IFLA_GRO_MAX_SIZE)}) {
    auto* rta = reinterpret_cast<rtattr*>(reinterpret_cast<char*>(&req) + NLMSG_ALIGN(len));
    rta->rta_type = type;
    rta->rta_len = RTA_LENGTH(sizeof(uint32_t));
    std::memcpy(RTA_DATA(rta), &size, sizeof(size));
    len = NLMSG_ALIGN(len) + RTA_ALIGN(rta->rta_len);
  }
  req.nh.nlmsg_len = static_cast<uint32_t>(len);
  const int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
  if (fd < 0 || send(fd, &req, len, 0) != static_cast<ssize_t>(len)) {
    std::fprintf(stderr, "big-tcp: rtnetlink: %s\n", std::strerror(errno));
    if (fd >= 0) close(fd);
    return 1;
  }
  char buf[4096];
  const ssize_t n = recv(fd, buf, sizeof(buf), 0);
  close(fd);
  const auto* ack = reinterpret_cast<const nlmsghdr*>(buf);
  if (n < static_cast<ssize_t>(NLMSG_LENGTH(sizeof(nlmsgerr))) || ack->nlmsg_type != NLMSG_ERROR) {
    std::fprintf(stderr, "big-tcp: no answer from rtnetlink\n");
    return 1;
  }
  const int err = reinterpret_cast<const nlmsgerr*>(NLMSG_DATA(ack))->error;
  if (err) {
    std::fprintf(stderr, "big-tcp: %s: %s\n", ifname.c_str(), std::strerror(-err));
    return 1;
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::string mode = argc > 1 ? argv[1] : "";
  if (mode == "httpd" && (argc == 3 || argc == 4)) return httpd(std::atoi(argv[2]), argc == 4 ? argv[3] : "0.0.0.0");
  if (mode == "http-load" && (argc == 5 || argc == 6))
    return http_load(argv[2], std::atof(argv[3]), std::atof(argv[4]), argc == 6 ? std::atoi(argv[5]) : 1);
  if (mode == "udp-send" && argc == 6) return udp_send(argv[2], std::atoi(argv[3]), std::atol(argv[4]), std::stoul(argv[5]));
  if (mode == "udp-from-many" && argc == 6) return udp_from_many(argv[2], std::atoi(argv[3]), std::atol(argv[4]), argv[5]);
  if (mode == "ip-proto" && argc == 5) return ip_proto(argv[2], std::atoi(argv[3]), std::atol(argv[4]));
  if (mode == "tcp-silent" && argc == 4) return tcp_silent(std::atoi(argv[2]), std::atof(argv[3]));
  if (mode == "tcp-late" && argc == 5) return tcp_late(std::atoi(argv[2]), std::atoi(argv[3]), std::atof(argv[4]), true);
  if (mode == "tcp-hangup" && argc == 4) return tcp_late(std::atoi(argv[2]), 0, std::atof(argv[3]), false);
  if (mode == "tcp-requests" && (argc == 6 || argc == 7))
    return tcp_requests(argv[2], std::atoi(argv[3]), std::atol(argv[4]), std::atof(argv[5]), argc == 7 ? std::atoi(argv[6]) : 0);
  if (mode == "udp-blast" && argc == 6) return udp_blast(argv[2], std::atoi(argv[3]), std::atol(argv[4]), std::stoul(argv[5]));
  if (mode == "udp-sink" && argc == 4) return udp_sink(std::atoi(argv[2]), std::atof(argv[3]));
  if (mode == "dns-tcp" && argc == 5) return dns_tcp(argv[2], std::atol(argv[3]), argv[4]);
  if (mode == "big-tcp" && argc == 4) return big_tcp(argv[2], static_cast<uint32_t>(std::stoul(argv[3])));
  std::fprintf(stderr, "usage: vigil-lab-traffic httpd PORT [ADDRESS] | http-load URL RATE SECONDS [CONNECTIONS] | udp-send IP PORT COUNT SIZE | udp-blast IP PORT COUNT SIZE | udp-sink PORT SECONDS | udp-from-many DST PORT COUNT BASE | ip-proto DST PROTO COUNT | tcp-silent PORT SECONDS | tcp-late PORT DELAY_MS SECONDS | tcp-hangup PORT SECONDS | tcp-requests IP PORT COUNT TIMEOUT [HOLD_MS] | dns-tcp IP COUNT pipeline|split|fastopen | big-tcp IFNAME SIZE\n");
  return 2;
}
