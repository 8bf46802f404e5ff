-- Hostile rule: a backtracking pattern over a long subject: quadratic or worse inside one C call,
-- where the instruction hook cannot see it.
rule {
  name = "hostile",
  metric = "vigil_probe",
  by = {},
  detect = threshold { above = 0 },
  resolve_after = "0s",
  on_anomaly = function(a)
    assert(("web-1"):match("^(%a+)-(%d+)$") == "web" and a.summary:find("vigil_probe", 1, true), "ordinary use")
    local s = string.rep("a", 100000)
    s:find(".-.-b")
    notify("default", a)  -- reached only if the attack was not stopped
  end,
}
