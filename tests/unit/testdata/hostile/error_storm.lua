-- Hostile rule: an error at every call.
rule {
  name = "hostile",
  metric = "vigil_probe",
  by = {},
  detect = threshold { above = 0 },
  resolve_after = "0s",
  on_anomaly = function(a)
    error("storm at " .. a.started_at)
    notify("default", a)  -- reached only if the attack was not stopped
  end,
}
