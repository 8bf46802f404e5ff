-- Hostile rule: a memory bomb in one call.
rule {
  name = "hostile",
  metric = "vigil_probe",
  by = {},
  detect = threshold { above = 0 },
  resolve_after = "0s",
  on_anomaly = function(a)
    local s = string.rep("x", 1e9)
    notify("default", a)  -- reached only if the attack was not stopped
  end,
}
