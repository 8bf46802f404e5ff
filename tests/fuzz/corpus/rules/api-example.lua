-- Every part of the rule API in one file; tests/unit/rules_pack_test.cpp loads it and drives it
-- with series, so this example stays true. See docs/rules.md.

-- A helper shared by the rules of this file (each file has its own globals).
local function page(a)
  if a.severity == "critical" then
    notify("oncall", a)
  end
  notify("default", a)
end

rule {
  name = "example-egress-drops",
  metric = "vigil_drop_packets_total",
  where = { direction = "egress", reason = { "NETFILTER_DROP", "TC_EGRESS" } },
  by = { "namespace", "pod" },
  detect = baseline.zscore { window = "1m", threshold = 5, min_rate = 2, warmup = "30s", direction = "up" },
  severity = "critical",
  pending = "2s",
  resolve_after = "5s",
  summary = "{namespace}/{pod} drops {value}/s on egress, usually {baseline}/s (z={score})",
  on_anomaly = function(a)
    if a.scope.labels.team then
      a.summary = a.summary .. " [team " .. a.scope.labels.team .. "]"
    end
    page(a)
  end,
  on_resolve = function(a)
    print("resolved " .. a.id .. " after " .. (a.ended_at - a.started_at) .. "s")
  end,
}

rule {
  name = "example-node-egress-bytes",
  metric = "vigil_forward_bytes_total",
  where = { direction = "egress" },
  by = {},  -- one group for the whole node
  detect = threshold { above = 50e6 },
  severity = "warning",
  on_anomaly = page,
}
