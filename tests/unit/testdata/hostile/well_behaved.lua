-- The well-behaved rule loaded next to each hostile one: it must fire at every anomaly.
rule {
  name = "good",
  metric = "vigil_probe",
  by = {},
  detect = threshold { above = 0 },
  resolve_after = "0s",
  on_anomaly = function(a)
    a.summary = ("good: %s"):format(a.summary)  -- a string method: the string metatable is per file
    notify("default", a)
  end,
}
