#!/usr/bin/env python3
"""Checks of charts/vigil that run without a cluster (ctest label `unit`).

  check_chart.py values      values.yaml against values.schema.json; bad values are refused
  check_chart.py templates   helm lint/template when helm is on the PATH (else SKIPPED-PART);
                             always: template actions balanced, every .Values path exists, the
                             agent config the chart renders passes `vigil rules check --config`
  check_chart.py dashboards  valid JSON, and every metric in every query is one the agent exports
  check_chart.py rules-sync  charts/vigil/rules/ equals rules/pack/*.lua byte for byte

Options: --vigil PATH (the built agent, for the config check).
A part that cannot run here prints a line starting with SKIPPED-PART and says why; nothing is
skipped silently.
"""
import argparse
import copy
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "vigil"
failures = []


def fail(msg):
    failures.append(msg)
    print(f"FAIL: {msg}")


def ok(msg):
    print(f"ok: {msg}")


# ---------------------------------------------------------------- values

def schema_errors(values):
    import jsonschema
    schema = json.loads((CHART / "values.schema.json").read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    v = jsonschema.Draft7Validator(schema)
    return [f"{'.'.join(str(p) for p in e.absolute_path) or '(root)'}: {e.message}"
            for e in sorted(v.iter_errors(values), key=lambda e: list(map(str, e.absolute_path)))]


BAD_VALUES = [
    # (what, patch applied to the defaults, text expected in an error)
    ("misspelt top-level key", {"serviceMonitr": {"enabled": True}}, "serviceMonitr"),
    ("bad tick duration", {"agent": {"tick": "1 second"}}, "agent.tick"),
    ("port out of range", {"agent": {"port": 70000}}, "agent.port"),
    ("unknown observe mode", {"agent": {"kubernetes": {"observe": "some"}}}, "agent.kubernetes.observe"),
    ("unknown notifier type", {"notifiers": [{"name": "default", "type": "email"}]}, "notifiers.0.type"),
    ("notifier without name", {"notifiers": [{"type": "log"}]}, "'name' is a required property"),
    ("short api token", {"api": {"token": {"value": "short"}}}, "api.token.value"),
    ("custom rule not .lua", {"rules": {"custom": {"x.txt": "rule {}"}}}, "rules.custom"),
    ("chart-managed key in extraConfig", {"agent": {"extraConfig": {"listen": "127.0.0.1:1"}}}, "agent.extraConfig"),
    ("capability with CAP_ prefix", {"capabilities": ["CAP_BPF"]}, "capabilities.0"),
    ("bad snaplen", {"agent": {"captures": {"snaplen": 10}}}, "agent.captures.snaplen"),
    ("conntrack_by_pod not a share", {"agent": {"metrics": {"netstat": {"conntrack_by_pod": "half"}}}},
     "agent.metrics.netstat.conntrack_by_pod"),
    ("unknown netstat sockets mode", {"agent": {"metrics": {"netstat": {"sockets": "pods"}}}}, "agent.metrics.netstat.sockets"),
    ("bad dns_timeout duration", {"agent": {"metrics": {"dns_timeout": "5 seconds"}}}, "agent.metrics.dns_timeout"),
    ("dns_max_pending too small", {"agent": {"metrics": {"dns_max_pending": 8}}}, "agent.metrics.dns_max_pending"),
    ("unknown packet_level mode", {"agent": {"metrics": {"packet_level": {"pods": "some"}}}}, "agent.metrics.packet_level.pods"),
]


def merge(base, patch):
    out = copy.deepcopy(base)
    for k, v in patch.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = merge(out[k], v)
        else:
            out[k] = v
    return out


def check_values():
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    errs = schema_errors(values)
    if errs:
        fail("values.yaml does not validate against values.schema.json:\n  " + "\n  ".join(errs))
    else:
        ok("values.yaml validates against values.schema.json (draft-07)")
    for what, patch, expect in BAD_VALUES:
        errs = schema_errors(merge(values, patch))
        if not errs:
            fail(f"bad values accepted: {what} ({patch})")
        elif not any(expect in e for e in errs):
            fail(f"bad values ({what}) refused, but no error mentions {expect!r}: {errs}")
        else:
            ok(f"refused {what}: {[e for e in errs if expect in e][0]}")
    # Every values key has a comment in values.yaml (commented throughout).
    lines = (CHART / "values.yaml").read_text().splitlines()
    for i, line in enumerate(lines):
        m = re.match(r"^([a-zA-Z][a-zA-Z0-9]*):", line)
        if m and not (i > 0 and lines[i - 1].lstrip().startswith("#")):
            fail(f"values.yaml:{i + 1}: top-level key {m.group(1)} has no comment above it")


# ---------------------------------------------------------------- templates

ACTION = re.compile(r"\{\{(-?)\s*(.*?)\s*(-?)\}\}", re.S)


def tokens(text):
    """Text and actions, with Go template whitespace trimming applied."""
    out = []
    pos = 0
    for m in ACTION.finditer(text):
        out.append(["text", text[pos:m.start()]])
        if m.group(1) == "-" and out[-1][0] == "text":
            out[-1][1] = out[-1][1].rstrip()
        out.append(["action", m.group(2), m.group(3) == "-"])
        pos = m.end()
    out.append(["text", text[pos:]])
    for i, t in enumerate(out):
        if t[0] == "action" and t[2] and i + 1 < len(out):
            out[i + 1][1] = out[i + 1][1].lstrip()
    return out


BLOCK_OPEN = re.compile(r"^(if|range|with|define|block)\b")


def check_balance(path):
    depth = 0
    for t in tokens(path.read_text()):
        if t[0] != "action" or t[1].startswith("/*"):
            continue
        if BLOCK_OPEN.match(t[1]):
            depth += 1
        elif re.match(r"^end\b", t[1]):
            depth -= 1
            if depth < 0:
                fail(f"{path.relative_to(ROOT)}: `end` without an open block")
                return
    if depth:
        fail(f"{path.relative_to(ROOT)}: {depth} block(s) not closed with `end`")


def lookup(values, dotted):
    cur = values
    for part in dotted.split("."):
        if not isinstance(cur, dict) or part not in cur:
            raise KeyError(dotted)
        cur = cur[part]
    return cur


def to_yaml(v):
    return yaml.safe_dump(v, default_flow_style=False, sort_keys=True).rstrip("\n") if v not in ({}, []) else \
        ("{}" if v == {} else "[]")


def eval_pipeline(expr, values):
    stages = [s.strip() for s in expr.split("|")]
    val = None
    for i, st in enumerate(stages):
        words = st.split()
        if words[0].startswith(".Values."):
            val = lookup(values, words[0][len(".Values."):])
        elif words[0] == "toYaml":
            val = to_yaml(lookup(values, words[1][len(".Values."):]) if len(words) > 1 else val)
        elif words[0] == "quote":
            val = json.dumps(str(val))
        elif words[0] == "nindent":
            n = int(words[1])
            val = "\n" + "\n".join((" " * n + l) if l else l for l in str(val).split("\n"))
        else:
            raise ValueError(f"the config renderer does not know `{st}` (keep vigil.config simple)")
    if isinstance(val, bool):
        return "true" if val else "false"
    return str(val)


def truthy(v):
    return bool(v)


def render_subset(text, values):
    """Renders the subset of Go templates that vigil.config uses."""
    toks = tokens(text)
    out = []
    stack = []  # each: [taken_any, active_now, parent_active]
    active = True
    for t in toks:
        if t[0] == "text":
            if active:
                out.append(t[1])
            continue
        a = t[1]
        if a.startswith("/*"):
            continue
        m = re.match(r"^(if|else if)\s+(\.Values\.[\w.]+)$", a)
        if a.startswith("if "):
            cond = truthy(lookup(values, m.group(2)[len(".Values."):]))
            stack.append([cond, active])
            active = active and cond
        elif a.startswith("else if "):
            taken, parent = stack[-1]
            cond = (not taken) and truthy(lookup(values, m.group(2)[len(".Values."):]))
            stack[-1][0] = taken or cond
            active = parent and cond
        elif a == "else":
            taken, parent = stack[-1]
            stack[-1][0] = True
            active = parent and not taken
        elif a == "end":
            _, parent = stack.pop()
            active = parent
        elif active:
            out.append(eval_pipeline(a, values))
    return "".join(out)


def config_define():
    text = (CHART / "templates" / "_helpers.tpl").read_text()
    m = re.search(r'\{\{-? define "vigil\.config" -?\}\}(.*?)\{\{-? end -?\}\}\s*\n\s*\{\{/\* Checks', text, re.S)
    if not m:
        raise SystemExit("check_chart: cannot find the vigil.config define in _helpers.tpl")
    return m.group(1)


VALUE_REF = re.compile(r"\.Values\.([A-Za-z0-9_.]+)")


def check_templates(vigil):
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    templates = sorted((CHART / "templates").glob("*"))
    for p in templates:
        check_balance(p)
        for ref in VALUE_REF.findall(p.read_text()):
            try:
                lookup(values, ref.rstrip("."))
            except KeyError:
                fail(f"{p.relative_to(ROOT)}: .Values.{ref} is not in values.yaml")
    ok(f"{len(templates)} template files: blocks balanced, every .Values path exists in values.yaml")
    # The alert rules the PrometheusRule renders are the file promtool checks.
    if '.Files.Get "prometheus/vigil-alerts.yaml"' not in (CHART / "templates" / "prometheusrule.yaml").read_text():
        fail("prometheusrule.yaml does not render prometheus/vigil-alerts.yaml")

    helm = shutil.which("helm")
    if helm:
        check_with_helm(helm)
    else:
        print("SKIPPED-PART: helm is not on the PATH: `helm lint` and `helm template` were not run, "
              "so the chart's templates as a whole were not rendered (only vigil.config, below)")

    # The agent config, rendered for several value sets and checked by the agent itself.
    cases = {
        "defaults": values,
        "everything on": merge(values, {
            "agent": {"remoteContext": {"namespaces": ["payments"], "max_peers": 50},
                      "apiserver": {"addresses": ["10.96.0.1:443", "[fd00::1]:6443"]},
                      "metrics": {"retina_compat": True},
                      "kubernetes": {"namespaces": {"include": ["a", "b"], "exclude": ["kube-system"]},
                                     "observe": "annotated", "resync": "5m"},
                      "captures": {"before": "5s", "after": "20s", "snaplen": 96}},
            "rules": {"custom": {"mine.lua": 'rule { name = "mine", metric = "vigil_drop_packets_total", '
                                             'detect = threshold { above = 1 }, '
                                             'on_anomaly = function(a) notify("default", a) end }\n'}},
            "notifiers": [{"name": "default", "type": "log"},
                          {"name": "chat", "type": "slack", "url_file": "secrets/notifiers/slack-url"}],
            "notifierSecrets": {"data": {"slack-url": "https://hooks.slack.com/services/T/B/x"}}}),
        "no rules, no notifiers": merge(values, {"rules": {"pack": False}, "notifiers": []}),
    }
    define = config_define()
    for name, vals in cases.items():
        errs = schema_errors(vals)
        if errs:
            fail(f"config case {name!r}: its values do not validate: {errs}")
            continue
        try:
            text = render_subset(define, vals)
            cfg = yaml.safe_load(text)
        except Exception as e:  # noqa: BLE001 - report any renderer or YAML failure
            fail(f"config case {name!r}: vigil.config does not render to YAML: {e}")
            continue
        check_rendered_config(name, text, cfg, vals, vigil)


def check_rendered_config(name, text, cfg, vals, vigil):
    if cfg.get("node") != "@NODE_NAME@" or cfg.get("pods", {}).get("source") != "kubernetes":
        fail(f"config case {name!r}: node/pods.source not as the init container expects: {cfg}")
    if not vigil:
        print(f"SKIPPED-PART: config case {name!r} rendered and parsed, but not checked by the agent "
              "(no --vigil binary given or built)")
        return
    with tempfile.TemporaryDirectory(prefix="vigil-chart-") as tmp:
        t = Path(tmp)
        # The pod's /etc/vigil: the config, the rule ConfigMaps and the secrets.
        (t / "vigil.yaml").write_text(text.replace("@NODE_NAME@", "worker-1").replace(
            "state_dir: /var/lib/vigil", f"state_dir: {t / 'state'}"))
        (t / "rules" / "pack").mkdir(parents=True)
        if vals["rules"]["pack"]:
            for f in sorted((CHART / "rules").glob("*.lua")):
                shutil.copy(f, t / "rules" / "pack" / f.name)
        (t / "rules" / "custom").mkdir()
        for f, src in vals["rules"]["custom"].items():
            (t / "rules" / "custom" / f).write_text(src)
        (t / "secrets" / "api").mkdir(parents=True)
        (t / "secrets" / "api" / "token").write_text("0123456789abcdef0123456789abcdef")
        (t / "secrets" / "notifiers").mkdir()
        for k, v in vals["notifierSecrets"]["data"].items():
            (t / "secrets" / "notifiers" / k).write_text(v)
        rule_files = sorted(str(p) for p in (t / "rules").glob("*/*.lua"))
        # The config as the agent reads it at start: its keys, the secrets its notifiers name,
        # the rule files its `rules:` globs find, under its limits and against its notifiers.
        r = subprocess.run([vigil, "config", "check", str(t / "vigil.yaml")],
                           capture_output=True, text=True, timeout=60)
        if r.returncode != 0:
            fail(f"config case {name!r}: `vigil config check` refused the rendered config:\n"
                 f"{r.stdout}{r.stderr}\n--- config ---\n{text}")
        elif f"ok ({len(rule_files)} rule files" not in r.stdout:
            fail(f"config case {name!r}: the rendered config should load the {len(rule_files)} rule file(s) "
                 f"mounted for it:\n{r.stdout}")
        else:
            ok(f"config case {name!r}: the agent accepts the rendered config and {len(rule_files)} rule file(s)")


def check_with_helm(helm):
    def run(*args):
        return subprocess.run([helm, *args], capture_output=True, text=True, timeout=120)
    r = run("lint", str(CHART))
    if r.returncode != 0:
        fail(f"helm lint:\n{r.stdout}{r.stderr}")
    else:
        ok("helm lint")
    for name, sets in {"defaults": [], "everything on": [
            "--set", "serviceMonitor.enabled=true", "--set", "prometheusRule.enabled=true",
            "--set", "dashboards.enabled=true", "--set", "bpffs.mount=true",
            "--set", "agent.apiserver.addresses={10.96.0.1:443}", "--set", "rbac.services=true"]}.items():
        r = run("template", "t", str(CHART), "--namespace", "vigil", *sets)
        if r.returncode != 0:
            fail(f"helm template ({name}):\n{r.stderr}")
            continue
        docs = [d for d in yaml.safe_load_all(r.stdout) if d]
        kinds = sorted({d["kind"] for d in docs})
        ok(f"helm template ({name}): {len(docs)} objects: {', '.join(kinds)}")
        ds = [d for d in docs if d["kind"] == "DaemonSet"][0]
        c = ds["spec"]["template"]["spec"]["containers"][0]
        if c["securityContext"].get("privileged"):
            fail("the agent container is privileged")
    r = run("template", "t", str(CHART), "--set", "agent.tick=soon")
    if r.returncode == 0 or "agent.tick" not in r.stderr:
        fail(f"helm template accepted agent.tick=soon (schema not applied?): {r.stderr}")
    else:
        ok("helm template refuses values the schema rejects")


# ---------------------------------------------------------------- dashboards

def exported_names():
    """Every metric name the agent can export: describe() and histogram names in the sources."""
    names = set()
    for p in list((ROOT / "engine").rglob("*.cpp")) + list((ROOT / "actions").rglob("*.cpp")):
        text = p.read_text(errors="replace")
        names.update(re.findall(r'\bdescribe\(\s*"(vigil_[a-z0-9_]+)"', text))
        names.update(re.findall(r'\.Name\(\s*"(vigil_[a-z0-9_]+)"\s*\)', text))
    return names


PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or",
                "unless", "bool", "offset", "inf", "nan"}


def metric_names(expr):
    e = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)       # strings
    e = re.sub(r"\{[^}]*\}", "", e)                     # label matchers
    e = re.sub(r"\[[^\]]*\]", "", e)                    # ranges
    e = re.sub(r"\$\{?\w+\}?", "", e)                   # Grafana variables
    e = re.sub(r"(?<![\w:])\d[\d.]*(e[+-]?\d+)?[a-z]*", "", e)  # numbers and durations (5m, 1e3)
    e = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", e)
    found = []
    for m in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", e):
        word = m.group(0)
        after = e[m.end():].lstrip()
        if after.startswith("(") or word.lower() in PROMQL_WORDS:
            continue
        if re.match(r"^\d", word):
            continue
        found.append(word)
    return found


def label_values_metric(query):
    m = re.match(r"\s*label_values\(\s*([A-Za-z_:][A-Za-z0-9_:]*)", query)
    return [m.group(1)] if m else []


def check_dashboards():
    # The extractor itself: a name it cannot see would pass unchecked.
    probe = 'sum by (namespace) (rate(vigil_fake_total{a="b"}[5m])) / on(pod) group_left up offset 5m'
    if metric_names(probe) != ["vigil_fake_total", "up"]:
        fail(f"metric name extractor: {metric_names(probe)} from {probe!r}")
    known = exported_names()
    live_file = ROOT / "tests" / "charts" / "data" / "live-metric-names.txt"
    live = {l.strip() for l in live_file.read_text().splitlines() if l.strip() and not l.startswith("#")}
    missing_live = sorted(live - known)
    if missing_live:
        fail(f"names a live agent served are not found by the source scan (regex out of date?): {missing_live}")
    else:
        ok(f"{len(known)} exported names from engine/ and actions/ sources; the {len(live)} a live agent served are among them")
    allowed = known | {"up"}
    files = sorted((CHART / "dashboards").glob("*.json"))
    if len(files) < 6:
        fail(f"expected 6 dashboards, found {len(files)}")
    uids = set()
    for f in files:
        try:
            d = json.loads(f.read_text())
        except json.JSONDecodeError as e:
            fail(f"{f.name}: not valid JSON: {e}")
            continue
        for key in ("uid", "title", "panels", "templating"):
            if key not in d:
                fail(f"{f.name}: no {key!r}")
        if d.get("uid") in uids:
            fail(f"{f.name}: uid {d.get('uid')} used twice")
        uids.add(d.get("uid"))
        exprs = [t["expr"] for p in d.get("panels", []) for t in p.get("targets", []) if "expr" in t]
        exprs += [v["query"]["query"] if isinstance(v.get("query"), dict) else v.get("query", "")
                  for v in d.get("templating", {}).get("list", []) if v.get("type") == "query"]
        used = set()
        for expr in exprs:
            names = label_values_metric(expr) if expr.lstrip().startswith("label_values") else metric_names(expr)
            if not names and not expr.startswith("label_values"):
                fail(f"{f.name}: no metric found in {expr!r}")
            for n in names:
                base = re.sub(r"_(bucket|sum|count)$", "", n) if n not in allowed else n
                if base not in allowed:
                    fail(f"{f.name}: {n!r} is not a metric the agent exports (in {expr!r})")
                used.add(base)
        ok(f"{f.name}: valid JSON, {len(exprs)} queries over {len(used)} metrics, all exported")


# ---------------------------------------------------------------- rules

def check_rules_sync():
    pack = {p.name: p.read_bytes() for p in (ROOT / "rules" / "pack").glob("*.lua")}
    chart = {p.name: p.read_bytes() for p in (CHART / "rules").glob("*")}
    for n in sorted(set(pack) | set(chart)):
        if n not in chart:
            fail(f"charts/vigil/rules/{n} is missing (rules/pack/{n} exists); run `make chart-rules`")
        elif n not in pack:
            fail(f"charts/vigil/rules/{n} is not in rules/pack/; run `make chart-rules`")
        elif pack[n] != chart[n]:
            fail(f"charts/vigil/rules/{n} differs from rules/pack/{n}; run `make chart-rules`")
    if not failures:
        ok(f"charts/vigil/rules/ equals rules/pack/*.lua ({len(pack)} files, byte for byte)")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("part", choices=["values", "templates", "dashboards", "rules-sync"])
    ap.add_argument("--vigil", default="")
    a = ap.parse_args()
    vigil = a.vigil if a.vigil and Path(a.vigil).is_file() else ""
    if a.vigil and not vigil:
        print(f"check_chart: --vigil {a.vigil} does not exist")
    {"values": check_values, "templates": lambda: check_templates(vigil),
     "dashboards": check_dashboards, "rules-sync": check_rules_sync}[a.part]()
    if failures:
        print(f"{len(failures)} failure(s)")
        return 1
    print("PASS")
    return 0


if __name__ == "__main__":
    sys.exit(main())
