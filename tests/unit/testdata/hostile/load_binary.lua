-- Hostile rule: load of a binary chunk: load is not in the sandbox.
rule {
  name = "hostile",
  metric = "vigil_probe",
  by = {},
  detect = threshold { above = 0 },
  resolve_after = "0s",
  on_anomaly = function(a)
    local f = load("\27Lua\84\0", "=x", "b")
    notify("default", a)  -- reached only if the attack was not stopped
  end,
}
