-- Hostile rule: the heap kept near the limit, then refused allocations caught in a loop (each one a full GC).
local keep = {}
for i = 1, 24 do keep[i] = string.rep("k", 16384) .. i end
rule {
  name = "hostile",
  metric = "vigil_probe",
  by = {},
  detect = threshold { above = 0 },
  resolve_after = "0s",
  on_anomaly = function(a)
    while #keep > 0 do pcall(string.rep, "x", 1 << 30) end
    notify("default", a)  -- reached only if the attack was not stopped
  end,
}
