-- Hostile rule: require gives Vigil's built-in modules only (vigil.stats), never a file or os.
rule {
  name = "hostile",
  metric = "vigil_probe",
  by = {},
  detect = threshold { above = 0 },
  resolve_after = "0s",
  on_anomaly = function(a)
    local os = require("os")
    os.execute("touch /tmp/vigil-hostile-os")
    notify("default", a)  -- reached only if the attack was not stopped
  end,
}
