/* Lookback captures for the TC programs: for a pod whose slot has capture_snaplen > 0, every
 * packet the TC programs see on its host-side veth (both directions, malformed and non-IP
 * included) is appended to the ring buffer vigil_capture_rb as one record: struct
 * vigil_capture_hdr, then the first min(skb->len, capture_snaplen) bytes from the Ethernet
 * header on. Other pods cost the one test of capture_snaplen in observe().
 *
 * Copy: bpf_ringbuf_reserve() needs a constant size, so the record is built in a per-CPU
 * scratch buffer (bpf_skb_load_bytes, which also reads paged data) and appended with
 * bpf_ringbuf_output() at its real length: two helper calls, no ring space wasted on size
 * classes. VIGIL_CAPTURE_MAX_SNAPLEN (1536) covers a 1500-byte MTU frame with its Ethernet and
 * two VLAN headers; the bound is ours (the scratch buffer's size), not the verifier's.
 *
 * Wakeups: records are committed with BPF_RB_NO_WAKEUP. The reader (engine/capture_source.h)
 * drains the ring on a short timer instead, so a busy pod never costs an irq_work and a
 * consumer wakeup per packet; the ring only has to hold one timer period of packets.
 *
 * Losses: when the ring is full the packet is counted in vigil_capture_lost at the pod's slot
 * on this CPU (cumulative, never reset while loaded, with the time and ifindex of the latest
 * loss) and in vigil_errors (VIGIL_ERR_CAPTURE_RING_FULL). Each record carries the counter's
 * value on its CPU when it was written, so the reader knows how many packets of the pod went
 * missing on that CPU since that CPU's previous record; losses after a CPU's last record are
 * read from the map. TC programs do not nest on a CPU, so the per-CPU counter and the record
 * that carries it cannot interleave with another writer.
 *
 * Include after vigil_abi.h and the vigil_errors map with count_error(). */
#ifndef VIGIL_LIB_CAPTURE_H
#define VIGIL_LIB_CAPTURE_H

struct {
  __uint(type, BPF_MAP_TYPE_RINGBUF);
  __uint(max_entries, VIGIL_CAPTURE_RING_DEFAULT); /* the agent sets the size before load */
} vigil_capture_rb SEC(".maps");

struct vigil_capture_record {
  struct vigil_capture_hdr hdr;
  __u8 data[VIGIL_CAPTURE_MAX_SNAPLEN];
};

struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
  __uint(max_entries, 1);
  __type(key, __u32);
  __type(value, struct vigil_capture_record);
} vigil_capture_scratch SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
  __uint(max_entries, VIGIL_MAX_PODS);
  __type(key, __u32);
  __type(value, struct vigil_capture_lost);
} vigil_capture_lost SEC(".maps");

/* Appends the packet to vigil_capture_rb, or counts it as lost. Not inlined: observe() stays
 * as small as it was for the pods that are not captured. */
static __noinline int vigil_capture(struct __sk_buff *skb, __u32 snaplen, __u32 slot, __u32 dir, __u32 ifindex) {
  __u32 zero = 0;
  struct vigil_capture_record *r = bpf_map_lookup_elem(&vigil_capture_scratch, &zero);
  struct vigil_capture_lost *l = bpf_map_lookup_elem(&vigil_capture_lost, &slot);
  if (!r || !l) return 0;
  const __u64 now = bpf_ktime_get_ns();
  const __u32 wire = skb->len;
  __u32 len = snaplen < wire ? snaplen : wire;
  /* Pin len to one register so the bounds below are on the register the helpers get. */
  asm volatile("" : "+r"(len));
  if (len > VIGIL_CAPTURE_MAX_SNAPLEN) len = VIGIL_CAPTURE_MAX_SNAPLEN;
  /* A failed read (it cannot fail inside skb->len) leaves a record without bytes: the packet
   * still counts as seen. */
  if (len == 0 || bpf_skb_load_bytes(skb, 0, r->data, len) != 0) len = 0;
  r->hdr.ts_ns = now;
  r->hdr.lost = l->lost;
  r->hdr.lost_ns = l->last_ns;
  r->hdr.ifindex = ifindex;
  r->hdr.wire_len = wire;
  r->hdr.cap_len = (__u16)len;
  r->hdr.direction = (__u8)dir;
  r->hdr.pad = 0;
  r->hdr.cpu = (__u16)bpf_get_smp_processor_id();
  r->hdr.slot = (__u16)slot;
  asm volatile("" : "+r"(len));
  if (len > VIGIL_CAPTURE_MAX_SNAPLEN) return 0;
  if (bpf_ringbuf_output(&vigil_capture_rb, r, sizeof(r->hdr) + len, BPF_RB_NO_WAKEUP) == 0) return 0;
  l->lost += 1;
  l->last_ns = now;
  l->ifindex = ifindex;
  count_error(VIGIL_ERR_CAPTURE_RING_FULL);
  return 0;
}

#endif /* VIGIL_LIB_CAPTURE_H */
