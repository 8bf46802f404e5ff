-- Hostile rule: backtracking matches each just under the per-call bound, in a loop: their
-- worst cases are charged to the budget, so the loop ends within it.
rule {
  name = "hostile",
  metric = "vigil_probe",
  by = {},
  detect = threshold { above = 0 },
  resolve_after = "0s",
  on_anomaly = function(a)
    local s = string.rep("a", 50)
    while true do s:find(".-.-b") end
    notify("default", a)  -- reached only if the attack was not stopped
  end,
}
