{{/*
One KServe InferenceService with a custom predictor container. Called with
(dict "root" $ "component" "asr" "values" .Values.asr "env" (list ...) "mountPath" "/app/models").
*/}}
{{- define "speech-stack.inferenceService" -}}
{{- $root := .root -}}
{{- $v := .values -}}
{{- $gpu := $v.gpu.enabled -}}
{{- if and $v.autoscaling.enabled (eq $root.Values.kserve.deploymentMode "Serverless") }}
{{- fail (printf "%s.autoscaling (KEDA) needs kserve.deploymentMode=RawDeployment: Knative scales Serverless predictors itself" .component) }}
{{- end }}
{{- if and (eq (int $v.minReplicas) 0) (ne $root.Values.kserve.deploymentMode "Serverless") }}
{{- fail (printf "%s.minReplicas 0 (scale to zero) needs kserve.deploymentMode=Serverless" .component) }}
{{- end }}
{{- if and (gt (int $v.maxReplicas) 1) (not $v.cache.existingClaim) (not (has "ReadWriteMany" $v.cache.accessModes)) }}
{{- fail (printf "%s.maxReplicas %v shares one cache claim between pods on different nodes: set %s.cache.accessModes to [ReadWriteMany] or %s.cache.existingClaim" .component $v.maxReplicas .component .component) }}
{{- end }}
apiVersion: serving.kserve.io/v1beta1
kind: InferenceService
metadata:
  name: {{ include "speech-stack.isvcName" . }}
  labels:
    {{- include "speech-stack.componentLabels" . | nindent 4 }}
  annotations:
    serving.kserve.io/deploymentMode: {{ $root.Values.kserve.deploymentMode | quote }}
    {{- if $v.autoscaling.enabled }}
    # KEDA's ScaledObject (predictor-scaledobject.yaml) owns the replica count
    serving.kserve.io/autoscalerClass: external
    {{- end }}
spec:
  predictor:
    minReplicas: {{ $v.minReplicas }}
    maxReplicas: {{ $v.maxReplicas }}
    labels:
      {{- include "speech-stack.componentLabels" . | nindent 6 }}
    {{- with include "speech-stack.scrapeAnnotations" (dict "root" $root "port" 8080) }}
    annotations:
      {{- . | nindent 6 }}
    {{- end }}
    automountServiceAccountToken: false
    terminationGracePeriodSeconds: {{ add (int $v.shutdownGraceSeconds) 15 }}
    securityContext:
      {{- toYaml $root.Values.podSecurityContext | nindent 6 }}
    {{- with $root.Values.imagePullSecrets }}
    imagePullSecrets:
      {{- toYaml . | nindent 6 }}
    {{- end }}
    {{- $selector := $v.nodeSelector }}
    {{- if $gpu }}{{ $selector = merge (deepCopy $v.nodeSelector) $v.gpu.nodeSelector }}{{ end }}
    {{- with $selector }}
    nodeSelector:
      {{- toYaml . | nindent 6 }}
    {{- end }}
    {{- $tolerations := $v.tolerations }}
    {{- if $gpu }}{{ $tolerations = concat $v.tolerations $v.gpu.tolerations }}{{ end }}
    {{- with $tolerations }}
    tolerations:
      {{- toYaml . | nindent 6 }}
    {{- end }}
    {{- with $v.affinity }}
    affinity:
      {{- toYaml . | nindent 6 }}
    {{- end }}
    containers:
      - name: kserve-container
        image: {{ include "speech-stack.image" (dict "root" $root "image" $v.image) | quote }}
        imagePullPolicy: {{ $v.image.pullPolicy }}
        ports:
          - name: http
            containerPort: 8080
            protocol: TCP
        env:
          - name: HOME
            value: /tmp
          - name: PYANNOTE_METRICS_ENABLED
            value: "false"
          {{- if include "speech-stack.hasHfToken" $root }}
          - name: HF_TOKEN
            valueFrom:
              secretKeyRef:
                name: {{ include "speech-stack.hfTokenSecret" $root }}
                key: {{ $root.Values.hfToken.key }}
          {{- end }}
          {{- toYaml .env | nindent 10 }}
          {{- if $root.Values.predictorAuth.enabled }}
          {{- include "speech-stack.predictorTokenEnv" (dict "root" $root "name" (printf "%s_AUTH_TOKEN" (upper .component))) | nindent 10 }}
          {{- end }}
          {{- with $v.extraEnv }}
          {{- toYaml . | nindent 10 }}
          {{- end }}
        readinessProbe:
          httpGet: {path: /readyz, port: http}
          periodSeconds: 10
          timeoutSeconds: 5
        livenessProbe:
          httpGet: {path: /healthz, port: http}
          periodSeconds: 20
          timeoutSeconds: 5
          failureThreshold: 6
        startupProbe:
          httpGet: {path: /healthz, port: http}
          periodSeconds: {{ $v.startupProbe.periodSeconds }}
          failureThreshold: {{ $v.startupProbe.failureThreshold }}
        lifecycle:
          preStop:
            exec: {command: [sleep, "5"]}
        resources:
          requests:
            {{- toYaml $v.resources.requests | nindent 12 }}
          limits:
            {{- toYaml $v.resources.limits | nindent 12 }}
            {{- if $gpu }}
            {{ $v.gpu.resourceName }}: {{ $v.gpu.count }}
            {{- end }}
        securityContext:
          {{- toYaml $root.Values.securityContext | nindent 10 }}
        volumeMounts:
          - name: cache
            mountPath: {{ .mountPath }}
          - name: tmp
            mountPath: /tmp
    volumes:
      - name: cache
        persistentVolumeClaim:
          claimName: {{ include "speech-stack.cacheClaim" . }}
      - name: tmp
        emptyDir: {sizeLimit: {{ $v.tmpSizeLimit | quote }}}
{{- end }}

{{/* The model-cache PVC of a predictor, unless an existing claim is used. */}}
{{- define "speech-stack.cachePvc" -}}
{{- if not .values.cache.existingClaim }}
apiVersion: v1
kind: PersistentVolumeClaim
metadata:
  name: {{ include "speech-stack.cacheClaim" . }}
  labels:
    {{- include "speech-stack.componentLabels" . | nindent 4 }}
spec:
  accessModes:
    {{- toYaml .values.cache.accessModes | nindent 4 }}
  {{- with .values.cache.storageClass }}
  storageClassName: {{ . | quote }}
  {{- end }}
  resources:
    requests:
      storage: {{ .values.cache.size }}
{{- end }}
{{- end }}
