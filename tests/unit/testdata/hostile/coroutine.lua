-- Hostile rule: coroutines are not in the sandbox.
rule {
  name = "hostile",
  metric = "vigil_probe",
  by = {},
  detect = threshold { above = 0 },
  resolve_after = "0s",
  on_anomaly = function(a)
    local co = coroutine.wrap(function() while true do coroutine.yield() end end)
    co()
    notify("default", a)  -- reached only if the attack was not stopped
  end,
}
