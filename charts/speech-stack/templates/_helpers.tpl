{{/* Chart name, truncated to the 63 characters a label allows. */}}
{{- define "speech-stack.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Release-qualified name; a component suffix is added by the callers, so keep room for it. */}}
{{- define "speech-stack.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "speech-stack.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Standard labels; templated values are quoted (a release named "y" must stay a string). */}}
{{- define "speech-stack.labels" -}}
helm.sh/chart: {{ include "speech-stack.chart" . | quote }}
{{ include "speech-stack.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service | quote }}
{{- end }}

{{- define "speech-stack.selectorLabels" -}}
app.kubernetes.io/name: {{ include "speech-stack.name" . | quote }}
app.kubernetes.io/instance: {{ .Release.Name | quote }}
{{- end }}

{{/* Labels of one component: (dict "root" $ "component" "asr") */}}
{{- define "speech-stack.componentLabels" -}}
{{ include "speech-stack.labels" .root }}
app.kubernetes.io/component: {{ .component | quote }}
{{- end }}

{{- define "speech-stack.componentSelector" -}}
{{ include "speech-stack.selectorLabels" .root }}
app.kubernetes.io/component: {{ .component | quote }}
{{- end }}

{{- define "speech-stack.image" -}}
{{- printf "%s:%s" .image.repository (default .root.Chart.AppVersion .image.tag) }}
{{- end }}

{{/* InferenceService names, and the URL of the predictor Service KServe creates for each:
     <isvc>-predictor, port 80 (RawDeployment Service or Knative Service alike). */}}
{{- define "speech-stack.isvcName" -}}
{{- printf "%s-%s" (include "speech-stack.fullname" .root) .component }}
{{- end }}

{{- define "speech-stack.predictorUrl" -}}
{{- printf "http://%s-predictor.%s.svc.cluster.local" (include "speech-stack.isvcName" .) .root.Release.Namespace }}
{{- end }}

{{/* The headless Service whose name resolves to every Ready replica of a predictor (port 8080). */}}
{{- define "speech-stack.replicasUrl" -}}
{{- printf "http://%s-replicas.%s.svc.cluster.local:8080" (include "speech-stack.isvcName" .) .root.Release.Namespace }}
{{- end }}

{{- define "speech-stack.hfTokenSecret" -}}
{{- default (printf "%s-hf-token" (include "speech-stack.fullname" .)) .Values.hfToken.existingSecret }}
{{- end }}

{{- define "speech-stack.hasHfToken" -}}
{{- if or .Values.hfToken.value .Values.hfToken.existingSecret }}true{{ end }}
{{- end }}

{{- define "speech-stack.apiKeysSecret" -}}
{{- default (printf "%s-api-keys" (include "speech-stack.fullname" .)) .Values.gateway.apiKeys.existingSecret }}
{{- end }}

{{- define "speech-stack.cacheClaim" -}}
{{- default (printf "%s-cache" (include "speech-stack.isvcName" .)) .values.cache.existingClaim }}
{{- end }}

{{/* The Secret holding the gateway-to-predictor token. */}}
{{- define "speech-stack.predictorTokenSecret" -}}
{{- default (printf "%s-predictor-token" (include "speech-stack.fullname" .)) .Values.predictorAuth.existingSecret }}
{{- end }}

{{/* An env entry reading the predictor token: (dict "root" $ "name" "ASR_AUTH_TOKEN") */}}
{{- define "speech-stack.predictorTokenEnv" -}}
- name: {{ .name }}
  valueFrom:
    secretKeyRef:
      name: {{ include "speech-stack.predictorTokenSecret" .root }}
      key: {{ .root.Values.predictorAuth.key }}
{{- end }}

{{/* prometheus.io scrape annotations of a pod serving /metrics on this port. */}}
{{- define "speech-stack.scrapeAnnotations" -}}
{{- if .root.Values.metrics.scrapeAnnotations }}
prometheus.io/scrape: "true"
prometheus.io/port: {{ .port | quote }}
prometheus.io/path: /metrics
{{- end }}
{{- end }}

{{/* The Redis the gateways share their per-key counts in: the one given, or the release's own. */}}
{{- define "speech-stack.quotaRedisUrl" -}}
{{- $r := .Values.gateway.quotas.redis }}
{{- if $r.url }}{{ $r.url }}
{{- else if $r.deploy }}redis://{{ include "speech-stack.fullname" . }}-redis:6379/0
{{- end }}
{{- end }}
