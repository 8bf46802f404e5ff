// Pins the kernel/user ABI (bpf/vigil_abi.h): a layout change that one side does not expect
// fails the build instead of corrupting counters.
#include <linux/types.h>

#include <cstddef>

#include "vigil_abi.h"

static_assert(sizeof(vigil_traffic_key) == 4);
static_assert(sizeof(vigil_traffic_value) == 32 + 2 * VIGIL_TCP_FLAG_MAX * 8 + 2 * VIGIL_MALFORMED_MAX * 8);
static_assert(offsetof(vigil_traffic_value, tcp_flags) == 32);
static_assert(sizeof(vigil_tcp_value) == (VIGIL_TCP_EV_MAX + VIGIL_TCP_STATE_MAX + VIGIL_RTT_BUCKETS + 1) * 8);
static_assert(offsetof(vigil_traffic_value, bytes) == 16);
static_assert(sizeof(vigil_drop_key) == 8);
static_assert(offsetof(vigil_drop_key, reason) == 4);
static_assert(offsetof(vigil_drop_key, direction) == 6);
static_assert(sizeof(vigil_drop_value) == 16);
static_assert(sizeof(vigil_ip_key) == 16);
static_assert(VIGIL_ERR_MAX == 8);
