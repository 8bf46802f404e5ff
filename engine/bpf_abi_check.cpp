// Pins the kernel/user ABI (bpf/vigil_abi.h): a layout change that one side does not expect
// fails the build instead of corrupting counters.
#include <linux/types.h>

#include <cstddef>

#include "vigil_abi.h"

static_assert(sizeof(vigil_traffic_key) == 4);
static_assert(sizeof(vigil_traffic_value) == 448);
static_assert(offsetof(vigil_traffic_value, remote_cache) == 0 && sizeof(vigil_traffic_value) % 64 == 0);
static_assert(offsetof(vigil_traffic_value, tcp_plain) == 160 && offsetof(vigil_traffic_value, tcp_flags) == 192);
static_assert(sizeof(vigil_tcp_value) == (VIGIL_TCP_EV_MAX + VIGIL_TCP_STATE_MAX + VIGIL_RTT_BUCKETS + 1) * 8);
static_assert(offsetof(vigil_traffic_value, packets) == 128 && offsetof(vigil_traffic_value, bytes) == 144);
static_assert(sizeof(vigil_drop_key) == 8);
static_assert(offsetof(vigil_drop_key, reason) == 4);
static_assert(offsetof(vigil_drop_key, direction) == 6 && offsetof(vigil_drop_key, cast) == 7);
static_assert(VIGIL_CAST_MAX == 4);
static_assert(sizeof(vigil_drop_value) == 16);
static_assert(sizeof(vigil_ip_key) == 16);
static_assert(VIGIL_ERR_MAX == 12 && VIGIL_ERR_CAPTURE_RING_FULL == 8 && VIGIL_ERR_DNS_TCP_UNTRACKED == 9 &&
              VIGIL_ERR_API_PENDING_FULL == 10 && VIGIL_ERR_API_UNTRACKED == 11);
static_assert(sizeof(vigil_remote_key) == 24);
static_assert(offsetof(vigil_remote_key, addr) == 8);
static_assert(sizeof(vigil_slot) == 32);
static_assert(offsetof(vigil_slot, generation) == 16);
static_assert(offsetof(vigil_slot, capture_snaplen) == 20);
static_assert(offsetof(vigil_slot, pod_id) == 24);
static_assert(sizeof(vigil_remote_cache) == 64);
static_assert(offsetof(vigil_remote_cache, packets) == 24 && offsetof(vigil_remote_cache, seq) == 40);
static_assert((VIGIL_SLOT_TABLE & (VIGIL_SLOT_TABLE - 1)) == 0);
static_assert(sizeof(vigil_remote_value) == 48);
static_assert(sizeof(vigil_dns_key) == 8);
static_assert(sizeof(vigil_dns_stream_key) == 40);
static_assert(offsetof(vigil_dns_key, direction) == 4);
static_assert(offsetof(vigil_dns_key, qr) == 5);
static_assert(offsetof(vigil_dns_key, qtype) == 6);
static_assert(offsetof(vigil_dns_key, rcode) == 7);
static_assert(VIGIL_DNS_QTYPE_MAX == 13 && VIGIL_DNS_RCODE_MAX == 16 && VIGIL_DNS_SIDE_MAX == 2);
static_assert(sizeof(vigil_dns_latency_value) == (VIGIL_DNS_SIDE_MAX * VIGIL_DNS_LATENCY_BUCKETS + 3 * VIGIL_DNS_SIDE_MAX + 1) * 8);
static_assert(offsetof(vigil_dns_latency_value, late) == sizeof(vigil_dns_latency_value) - VIGIL_DNS_SIDE_MAX * 8);
static_assert(offsetof(vigil_dns_latency_value, sum_ns) == VIGIL_DNS_SIDE_MAX * VIGIL_DNS_LATENCY_BUCKETS * 8);
static_assert(sizeof(vigil_dns_pending_key) == 44);
static_assert(sizeof(vigil_pod_side_key) == 8 && offsetof(vigil_pod_side_key, ifindex) == 4);
static_assert(sizeof(vigil_pod_side_entry) == 16 && offsetof(vigil_pod_side_entry, host_ifindex) == 8);
static_assert(offsetof(vigil_dns_pending_key, client_addr) == 8);
static_assert(offsetof(vigil_dns_pending_key, server_addr) == 24);
static_assert(offsetof(vigil_dns_pending_key, request_dir) == 40);
static_assert(sizeof(vigil_capture_hdr) == 40);
static_assert(offsetof(vigil_capture_hdr, lost) == 8);
static_assert(offsetof(vigil_capture_hdr, lost_ns) == 16);
static_assert(offsetof(vigil_capture_hdr, ifindex) == 24);
static_assert(offsetof(vigil_capture_hdr, wire_len) == 28);
static_assert(offsetof(vigil_capture_hdr, cap_len) == 32);
static_assert(offsetof(vigil_capture_hdr, direction) == 34);
static_assert(offsetof(vigil_capture_hdr, cpu) == 36);
static_assert(offsetof(vigil_capture_hdr, slot) == 38);
static_assert(sizeof(vigil_capture_hdr) % 8 == 0);  // the data after it starts 8-byte aligned
static_assert(sizeof(vigil_capture_lost) == 24);
static_assert(offsetof(vigil_capture_lost, ifindex) == 16);
static_assert(VIGIL_CAPTURE_MAX_SNAPLEN <= 0xFFFF && VIGIL_MAX_PODS <= 0x10000);  // cap_len, slot are __u16
static_assert((VIGIL_CAPTURE_RING_DEFAULT & (VIGIL_CAPTURE_RING_DEFAULT - 1)) == 0);
