{{/* Names and labels. */}}
{{- define "vigil.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "vigil.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "vigil.selectorLabels" -}}
app.kubernetes.io/name: {{ include "vigil.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "vigil.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "vigil.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: node-agent
{{- end -}}

{{- define "vigil.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "vigil.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "vigil.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{- define "vigil.apiSecretName" -}}
{{- default (printf "%s-api" (include "vigil.fullname" .)) .Values.api.token.existingSecret -}}
{{- end -}}

{{- define "vigil.notifierSecretName" -}}
{{- default (printf "%s-notifiers" (include "vigil.fullname" .)) .Values.notifierSecrets.existingSecret -}}
{{- end -}}

{{/*
The agent's config file (docs/config.md). It lives at /etc/vigil/vigil.yaml in the pod; the
relative paths below resolve against /etc/vigil (rules/, secrets/ are mounted there). The agent
takes `node` only as a literal, so the init container "config" replaces @NODE_NAME@ with the
downward API's spec.nodeName when it copies this file to /etc/vigil.
Keep this block to plain `.Values` references, `if`/`else`/`end`, `toYaml`, `quote` and
`nindent`: tests/charts/check_chart.py renders it with a small renderer of that subset and
checks the result with `vigil rules check --config`.
*/}}
{{- define "vigil.config" -}}
node: "@NODE_NAME@"
listen: "0.0.0.0:{{ .Values.agent.port }}"
tick: {{ .Values.agent.tick | quote }}
state_dir: /var/lib/vigil
max_pods: {{ .Values.agent.maxPods }}
pods:
  source: kubernetes
  kubernetes:
    {{- toYaml .Values.agent.kubernetes | nindent 4 }}
{{- if .Values.rules.pack }}
rules:
  - rules/pack/*.lua
{{- if .Values.rules.custom }}
  - rules/custom/*.lua
{{- end }}
{{- else if .Values.rules.custom }}
rules:
  - rules/custom/*.lua
{{- else }}
rules: []
{{- end }}
{{- if .Values.notifiers }}
notifiers:
  {{- toYaml .Values.notifiers | nindent 2 }}
{{- else }}
notifiers: []
{{- end }}
metrics:
  {{- toYaml .Values.agent.metrics | nindent 2 }}
{{- if .Values.agent.remoteContext }}
remote_context:
  {{- toYaml .Values.agent.remoteContext | nindent 2 }}
{{- end }}
{{- if .Values.agent.apiserver.addresses }}
apiserver:
  addresses:
    {{- toYaml .Values.agent.apiserver.addresses | nindent 4 }}
  no_response_after: {{ .Values.agent.apiserver.no_response_after | quote }}
  cgroup: /host/cgroup
{{- end }}
captures:
  {{- toYaml .Values.agent.captures | nindent 2 }}
api:
  token_file: secrets/api/token
{{- if .Values.agent.extraConfig }}
{{ toYaml .Values.agent.extraConfig }}
{{- end }}
{{- end -}}

{{/* Checks the values cannot express in the schema. */}}
{{- define "vigil.validate" -}}
{{- if .Values.rules.pack -}}
{{- $hasDefault := false -}}
{{- range .Values.notifiers -}}
{{- if eq (toString .name) "default" -}}{{- $hasDefault = true -}}{{- end -}}
{{- end -}}
{{- if not $hasDefault -}}
{{- fail "rules.pack is true and the shipped rules notify the channel `default`: keep a notifier named default (e.g. {name: default, type: log}) or set rules.pack=false" -}}
{{- end -}}
{{- end -}}
{{- end -}}
