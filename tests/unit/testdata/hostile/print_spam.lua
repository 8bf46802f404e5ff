-- Hostile rule: print in an endless loop: at most 20 lines per call reach the log.
rule {
  name = "hostile",
  metric = "vigil_probe",
  by = {},
  detect = threshold { above = 0 },
  resolve_after = "0s",
  on_anomaly = function(a)
    local i = 0
    while true do i = i + 1; print("spam", i, string.rep("s", 4096)) end
    notify("default", a)  -- reached only if the attack was not stopped
  end,
}
