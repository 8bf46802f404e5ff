-- Hostile rule: os is not in the sandbox.
rule {
  name = "hostile",
  metric = "vigil_probe",
  by = {},
  detect = threshold { above = 0 },
  resolve_after = "0s",
  on_anomaly = function(a)
    os.execute("touch /tmp/vigil-hostile-os")
    notify("default", a)  -- reached only if the attack was not stopped
  end,
}
