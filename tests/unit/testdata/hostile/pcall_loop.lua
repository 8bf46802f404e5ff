-- Hostile rule: pcall and xpcall around an endless loop: the budget's error must not be swallowed.
rule {
  name = "hostile",
  metric = "vigil_probe",
  by = {},
  detect = threshold { above = 0 },
  resolve_after = "0s",
  on_anomaly = function(a)
    for i = 1, 1000 do
      pcall(function() while true do end end)
      xpcall(function() while true do end end, function() while true do end end)
    end
    notify("default", a)  -- reached only if the attack was not stopped
  end,
}
