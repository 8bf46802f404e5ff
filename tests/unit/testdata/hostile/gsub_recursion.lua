-- Hostile rule: unbounded recursion through a C function (string.gsub calling back).
rule {
  name = "hostile",
  metric = "vigil_probe",
  by = {},
  detect = threshold { above = 0 },
  resolve_after = "0s",
  on_anomaly = function(a)
    local function f(s) return (string.gsub(s, ".", f)) end
    f("ab")
    notify("default", a)  -- reached only if the attack was not stopped
  end,
}
