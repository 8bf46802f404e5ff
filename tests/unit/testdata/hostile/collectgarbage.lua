-- Hostile rule: collectgarbage may only count.
rule {
  name = "hostile",
  metric = "vigil_probe",
  by = {},
  detect = threshold { above = 0 },
  resolve_after = "0s",
  on_anomaly = function(a)
    assert(collectgarbage("count") > 0)
    collectgarbage("stop")
    notify("default", a)  -- reached only if the attack was not stopped
  end,
}
