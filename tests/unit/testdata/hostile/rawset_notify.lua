-- Hostile rule: notify and the detector tables replaced with rawset: this file only, the other files keep theirs.
rawset(_ENV, "notify", function() end)
rawset(baseline, "zscore", function() return threshold { above = -1 } end)
rule {
  name = "hostile",
  metric = "vigil_probe",
  by = {},
  detect = threshold { above = 0 },
  resolve_after = "0s",
  on_anomaly = function(a)
    local x = a.value
    notify("default", a)  -- reached only if the attack was not stopped
  end,
}
