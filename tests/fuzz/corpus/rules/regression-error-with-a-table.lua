-- The smallest rule the engine takes; the fuzz target's other seeds are the shipped pack
-- (rules/pack) and the API example (tests/unit/testdata/rules), read where they are.
error{
  name = "minimal",
  metric = "vigil_pod_packets_total",
  by = { "summaryce", "pod" },
  detect = threshold { above = 100 },
}
