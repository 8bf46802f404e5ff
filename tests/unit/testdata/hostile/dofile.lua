-- Hostile rule: dofile and loadfile are not in the sandbox.
rule {
  name = "hostile",
  metric = "vigil_probe",
  by = {},
  detect = threshold { above = 0 },
  resolve_after = "0s",
  on_anomaly = function(a)
    local ok = pcall(loadfile, "/etc/passwd")
    dofile("/etc/passwd")
    notify("default", a)  -- reached only if the attack was not stopped
  end,
}
