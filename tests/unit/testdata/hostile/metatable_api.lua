-- Hostile rule: metatable tricks on the API tables and the string metatable.
-- Hijacking the string metatable touches this file's state only.
getmetatable("").__index = function() error("hijacked") end
rule {
  name = "hostile",
  metric = "vigil_probe",
  by = {},
  detect = threshold { above = 0 },
  resolve_after = "0s",
  on_anomaly = function(a)
    assert(rawget(getmetatable(""), "__index") ~= string, "the hijack took")
    assert(string.dump == nil, "string.dump is reachable")
    setmetatable(baseline, { __index = function() return notify end })
    notify("default", a)  -- reached only if the attack was not stopped
  end,
}
