-- Hostile rule: a huge table.
rule {
  name = "hostile",
  metric = "vigil_probe",
  by = {},
  detect = threshold { above = 0 },
  resolve_after = "0s",
  on_anomaly = function(a)
    local t = {}
    for i = 1, 1e8 do t[i] = i end
    notify("default", a)  -- reached only if the attack was not stopped
  end,
}
