-- Not hostile: the shape of rawset_notify.lua without its rawsets. A hostile rule that raises
-- no error is never quarantined and runs every tick, so its tick time is compared with this one's.
rule {
  name = "hostile",
  metric = "vigil_probe",
  by = {},
  detect = threshold { above = 0 },
  resolve_after = "0s",
  on_anomaly = function(a)
    local x = a.value
  end,
}
