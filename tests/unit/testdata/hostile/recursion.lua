-- Hostile rule: unbounded Lua recursion.
rule {
  name = "hostile",
  metric = "vigil_probe",
  by = {},
  detect = threshold { above = 0 },
  resolve_after = "0s",
  on_anomaly = function(a)
    local function f(n) return f(n + 1) + 1 end
    f(1)
    notify("default", a)  -- reached only if the attack was not stopped
  end,
}
