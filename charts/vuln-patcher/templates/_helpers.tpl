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
{{- if .Values.nats.url -}}{{ .Values.nats.url }}{{- else -}}{{ if .Values.nats.install.tls.enabled }}tls{{ else }}nats{{ end }}://{{ include "vp.fullname" . }}-nats.{{ .Release.Namespace }}.svc:4222{{- end -}}
{{- end -}}

{{/* The Secret (keys user, password) the components log in to NATS with: ours for our NATS, else nats.credentialsSecret. */}}
{{- define "vp.natsAuthSecret" -}}
{{- if and (not .Values.nats.url) .Values.nats.install.auth -}}{{ include "vp.fullname" . }}-nats-auth{{- else -}}{{ .Values.nats.credentialsSecret }}{{- end -}}
{{- end -}}

{{/* Every BuildKit replica by name (the StatefulSet's pods), comma-separated: the worker picks one per patch. */}}
{{- define "vp.buildkitAddr" -}}
{{- if .Values.buildkit.enabled -}}
{{- $fullname := include "vp.fullname" . -}}
{{- $addrs := list -}}
{{- range $i := until (int .Values.buildkit.replicas) -}}
{{- $addrs = append $addrs (printf "tcp://%s-buildkit-%d.%s-buildkit-headless.%s.svc:%v" $fullname $i $fullname $.Release.Namespace $.Values.buildkit.port) -}}
{{- end -}}
{{- join "," $addrs -}}
{{- else -}}{{ required "buildkit.address is required when buildkit.enabled is false" .Values.buildkit.address }}{{- end -}}
{{- end -}}

{{- define "vp.jobNamespace" -}}
{{- if eq .Values.worker.jobNamespace "-" -}}{{- else -}}{{ .Values.worker.jobNamespace | default (printf "%s-copa" .Release.Namespace) }}{{- end -}}
{{- end -}}

{{/* The namespaces whose PatchJobs the worker serves with their own Secrets and VEX ConfigMaps. */}}
{{- define "vp.tenantNamespaces" -}}
{{- $ns := .Values.worker.namespaces | default .Values.controller.namespaces -}}
{{- toJson $ns -}}
{{- end -}}

{{- define "vp.natsEnv" -}}
- name: NATS_URL
  value: {{ include "vp.natsURL" . | quote }}
{{- if .Values.nats.streamReplicas }}
- name: NATS_STREAM_REPLICAS
  value: {{ .Values.nats.streamReplicas | quote }}
{{- end }}
{{- with include "vp.natsAuthSecret" . }}
- name: NATS_USER
  valueFrom: { secretKeyRef: { name: {{ . }}, key: user } }
- name: NATS_PASSWORD
  valueFrom: { secretKeyRef: { name: {{ . }}, key: password } }
{{- end }}
{{- if and (not .Values.nats.url) .Values.nats.install.tls.enabled }}
- name: NATS_CA
  value: /nats-tls/ca.crt
{{- end }}
{{- end -}}

{{- /* Whole seconds of a duration written as Ns or Nm (shutdown timeouts). */ -}}
{{- define "vp.seconds" -}}
{{- $d := toString . -}}
{{- if hasSuffix "m" $d -}}{{ mul (trimSuffix "m" $d | atoi) 60 }}{{- else -}}{{ trimSuffix "s" $d | atoi }}{{- end -}}
{{- end -}}

{{/* What the worker may do where copa Jobs run: Jobs, and each Job's own ConfigMap and Secret (create only: it never reads a Secret there). */}}
{{- define "vp.jobRules" -}}
- apiGroups: ["batch"]
  resources: ["jobs"]
  verbs: ["get", "create", "delete"]
- apiGroups: [""]
  resources: ["configmaps", "secrets"]
  verbs: ["create"]
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["list"]
- apiGroups: [""]
  resources: ["pods/log"]
  verbs: ["get"]
{{- end -}}

{{/* The CA of our NATS's TLS, mounted where NATS_CA points (components that talk to NATS). */}}
{{- define "vp.natsCAMount" -}}
{{- if and (not .Values.nats.url) .Values.nats.install.tls.enabled }}
- { name: nats-ca, mountPath: /nats-tls, readOnly: true }
{{- end }}
{{- end -}}
{{- define "vp.natsCAVolume" -}}
{{- if and (not .Values.nats.url) .Values.nats.install.tls.enabled }}
- name: nats-ca
  secret: { secretName: {{ include "vp.fullname" . }}-nats-tls, items: [{ key: ca.crt, path: ca.crt }] }
{{- end }}
{{- end -}}
