-- Hostile rule: an endless loop in a handler.
rule {
  name = "hostile",
  metric = "vigil_probe",
  by = {},
  detect = threshold { above = 0 },
  resolve_after = "0s",
  on_anomaly = function(a)
    while true do end
    notify("default", a)  -- reached only if the attack was not stopped
  end,
}
