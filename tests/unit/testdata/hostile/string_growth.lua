-- Hostile rule: a string grown one byte at a time: quadratic copying within few instructions.
rule {
  name = "hostile",
  metric = "vigil_probe",
  by = {},
  detect = threshold { above = 0 },
  resolve_after = "0s",
  on_anomaly = function(a)
    local s = "x"
    while true do s = s .. "x" end
    notify("default", a)  -- reached only if the attack was not stopped
  end,
}
