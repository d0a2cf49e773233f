{{- define "vp.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}{{ .Release.Name | trunc 40 | trimSuffix "-" }}{{- else -}}{{ printf "%s-%s" .Release.Name .Chart.Name | trunc 40 | trimSuffix "-" }}{{- end -}}
{{- end -}}

{{- define "vp.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "vp.selector" -}}
app.kubernetes.io/name: {{ .root.Chart.Name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "vp.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{- define "vp.natsURL" -}}
{{- if .Values.nats.url -}}{{ .Values.nats.url }}{{- else -}}nats://{{ include "vp.fullname" . }}-nats.{{ .Release.Namespace }}.svc:4222{{- end -}}
{{- end -}}

{{- define "vp.buildkitAddr" -}}
{{- if .Values.buildkit.enabled -}}tcp://{{ include "vp.fullname" . }}-buildkit.{{ .Release.Namespace }}.svc:{{ .Values.buildkit.port }}{{- else -}}{{ required "buildkit.address is required when buildkit.enabled is false" .Values.buildkit.address }}{{- end -}}
{{- end -}}

{{- define "vp.jobNamespace" -}}
{{- if eq .Values.worker.jobNamespace "-" -}}{{- else -}}{{ .Values.worker.jobNamespace | default .Release.Namespace }}{{- end -}}
{{- end -}}

{{- define "vp.natsEnv" -}}
- name: NATS_URL
  value: {{ include "vp.natsURL" . | quote }}
{{- if .Values.nats.credentialsSecret }}
- name: NATS_USER
  valueFrom: { secretKeyRef: { name: {{ .Values.nats.credentialsSecret }}, key: user } }
- name: NATS_PASSWORD
  valueFrom: { secretKeyRef: { name: {{ .Values.nats.credentialsSecret }}, key: password } }
{{- end }}
{{- end -}}

{{- /* Whole seconds of a duration written as Ns or Nm (shutdown timeouts). */ -}}
{{- define "vp.seconds" -}}
{{- $d := toString . -}}
{{- if hasSuffix "m" $d -}}{{ mul (trimSuffix "m" $d | atoi) 60 }}{{- else -}}{{ trimSuffix "s" $d | atoi }}{{- end -}}
{{- end -}}
