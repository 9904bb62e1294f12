{{/*
Names, labels and the one Deployment template all four services share.
*/}}

{{- define "darklaunch.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The prefix of every resource name: the release name, with the chart name added unless the
release name already contains it. Kept short enough that "-collector" still fits in 63.
*/}}
{{- define "darklaunch.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 52 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "darklaunch.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels of every resource; call with (dict "root" $ "component" "router"). */}}
{{- define "darklaunch.labels" -}}
helm.sh/chart: {{ include "darklaunch.chart" .root }}
{{ include "darklaunch.selectorLabels" . }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/part-of: darklaunch
{{- end }}

{{- define "darklaunch.selectorLabels" -}}
app.kubernetes.io/name: {{ include "darklaunch.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
{{- if .component }}
app.kubernetes.io/component: {{ .component }}
{{- end }}
{{- end }}

{{/* The ServiceAccount of a service; call with (dict "root" $ "component" "router"). */}}
{{- define "darklaunch.serviceAccountName" -}}
{{- printf "%s-%s" (include "darklaunch.fullname" .root) .component }}
{{- end }}

{{- define "darklaunch.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion | toString) }}
{{- end }}

{{/*
The Secret the chart creates for inline NATS credentials or token. "-auth" keeps it apart from
a Secret you may have named <fullname>-nats yourself (nats.*.existingSecret).
*/}}
{{- define "darklaunch.natsSecretName" -}}
{{- printf "%s-nats-auth" (include "darklaunch.fullname" .) }}
{{- end }}

{{- define "darklaunch.natsCredsSecret" -}}
{{- $c := .Values.nats.credentials }}
{{- if and $c.existingSecret $c.content }}
{{- fail "nats.credentials: set existingSecret or content, not both" }}
{{- end }}
{{- if $c.existingSecret }}{{ $c.existingSecret }}{{ else if $c.content }}{{ include "darklaunch.natsSecretName" . }}{{ end }}
{{- end }}

{{- define "darklaunch.natsTokenSecret" -}}
{{- $t := .Values.nats.token }}
{{- if and $t.existingSecret $t.value }}
{{- fail "nats.token: set existingSecret or value, not both" }}
{{- end }}
{{- if $t.existingSecret }}{{ $t.existingSecret }}{{ else if $t.value }}{{ include "darklaunch.natsSecretName" . }}{{ end }}
{{- end }}

{{/* The collector's metric definitions: the ConfigMap to mount, or nothing (shipped ones). */}}
{{- define "darklaunch.metricsConfigMap" -}}
{{- $m := .Values.metrics }}
{{- if and $m.existingConfigMap $m.custom }}
{{- fail "metrics: set custom or existingConfigMap, not both" }}
{{- end }}
{{- if $m.existingConfigMap }}{{ $m.existingConfigMap }}{{ else if $m.custom }}{{ printf "%s-metrics" (include "darklaunch.fullname" .) }}{{ end }}
{{- end }}

{{- define "darklaunch.natsCredsDir" -}}/etc/darklaunch/nats{{- end }}
{{- define "darklaunch.natsTLSDir" -}}/etc/darklaunch/nats-tls{{- end }}
{{- define "darklaunch.natsNkeyDir" -}}/etc/darklaunch/nkey{{- end }}

{{/* The keys of the NATS TLS Secret that are used: ca, cert, key (empty for none). */}}
{{- define "darklaunch.natsTLSKeys" -}}
{{- $t := .Values.nats.tls }}
{{- if $t.existingSecret }}
{{- if ne (empty $t.cert) (empty $t.key) }}
{{- fail "nats.tls: a client certificate needs both cert and key (or neither)" }}
{{- end }}
{{- if and (empty $t.ca) (empty $t.cert) }}
{{- fail "nats.tls: existingSecret is set but neither ca nor cert names a key in it" }}
{{- end }}
{{- end }}
{{- end }}
{{- define "darklaunch.metricsDir" -}}/etc/darklaunch/metrics{{- end }}

{{/*
The Deployment of one service. Call with
  (dict "root" $ "component" "router" "svc" .Values.router "args" (list ...) "automountToken" false)
"args" are the service's own flags; the common ones (NATS, stream replicas, health, logs) and
svc.extraArgs are added here.
*/}}
{{- define "darklaunch.deployment" -}}
{{- $root := .root }}
{{- $v := $root.Values }}
{{- $svc := .svc }}
{{- $labels := dict "root" $root "component" .component }}
{{- $creds := include "darklaunch.natsCredsSecret" $root }}
{{- $token := include "darklaunch.natsTokenSecret" $root }}
{{- include "darklaunch.checkInstanceName" . }}
{{- $metricsCM := "" }}
{{- if eq .component "collector" }}
{{- $metricsCM = include "darklaunch.metricsConfigMap" $root }}
{{- end }}
{{- $args := list "serve" .component
      (printf "--server=%s" (required "nats.url is required: the URL of a NATS server with JetStream, e.g. --set nats.url=nats://nats.default:4222 (install NATS with its own chart: see deploy/README.md)" $v.nats.url))
      (printf "--stream-replicas=%d" (int $v.nats.streamReplicas))
      "--health-addr=:8081"
      "--log-format=json"
      (printf "--log-level=%s" $v.logLevel) }}
{{- if $creds }}
{{- $args = append $args (printf "--creds=%s/%s" (include "darklaunch.natsCredsDir" $root) $v.nats.credentials.key) }}
{{- end }}
{{- $nkeys := $v.nats.nkeys.existingSecret }}
{{- if and $nkeys (or $creds $token) }}
{{- fail "nats.nkeys: one NATS user per service signs in with its nkey; do not also set nats.credentials or nats.token" }}
{{- end }}
{{- if $nkeys }}
{{- $args = append $args (printf "--nkey=%s/%s.nk" (include "darklaunch.natsNkeyDir" $root) .component) }}
{{- if eq .component "judge" }}
{{- /* The API answers as its own user, in people's inboxes only. */}}
{{- $args = append $args (printf "--api-nkey=%s/api.nk" (include "darklaunch.natsNkeyDir" $root)) }}
{{- end }}
{{- end }}
{{- $tls := $v.nats.tls }}
{{- include "darklaunch.natsTLSKeys" $root }}
{{- if $tls.existingSecret }}
{{- if $tls.ca }}
{{- $args = append $args (printf "--tls-ca=%s/%s" (include "darklaunch.natsTLSDir" $root) $tls.ca) }}
{{- end }}
{{- if $tls.cert }}
{{- $args = append $args (printf "--tls-cert=%s/%s" (include "darklaunch.natsTLSDir" $root) $tls.cert) }}
{{- $args = append $args (printf "--tls-key=%s/%s" (include "darklaunch.natsTLSDir" $root) $tls.key) }}
{{- end }}
{{- end }}
{{- if $metricsCM }}
{{- $args = append $args (printf "--metrics-file=%s/metrics.yaml" (include "darklaunch.metricsDir" $root)) }}
{{- end }}
{{- $args = concat $args .args ($svc.extraArgs | default list) }}
{{- $podAnnotations := merge (deepCopy ($svc.podAnnotations | default dict)) ($v.podAnnotations | default dict) }}
{{- $podLabels := merge (deepCopy ($svc.podLabels | default dict)) ($v.podLabels | default dict) }}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ include "darklaunch.fullname" $root }}-{{ .component }}
  namespace: {{ $root.Release.Namespace }}
  labels:
    {{- include "darklaunch.labels" $labels | nindent 4 }}
spec:
  replicas: {{ include "darklaunch.replicas" . }}
  revisionHistoryLimit: 3
  strategy:
    {{- include "darklaunch.strategy" . | trim | nindent 4 }}
  selector:
    matchLabels:
      {{- include "darklaunch.selectorLabels" $labels | nindent 6 }}
  template:
    metadata:
      labels:
        {{- include "darklaunch.labels" $labels | nindent 8 }}
        {{- with $podLabels }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      annotations:
        {{- /* Restart the pods when the Secret or ConfigMap the chart creates changes. */}}
        checksum/nats: {{ toJson $v.nats | sha256sum }}
        {{- if eq .component "collector" }}
        checksum/metrics: {{ toJson $v.metrics | sha256sum }}
        {{- end }}
        {{- with $podAnnotations }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
    spec:
      serviceAccountName: {{ include "darklaunch.serviceAccountName" $labels }}
      automountServiceAccountToken: {{ .automountToken }}
      {{- with $v.imagePullSecrets }}
      imagePullSecrets:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      securityContext:
        {{- toYaml $v.podSecurityContext | nindent 8 }}
      containers:
        - name: {{ .component }}
          image: {{ include "darklaunch.image" $root | quote }}
          imagePullPolicy: {{ $v.image.pullPolicy }}
          command: ["/darklaunch"]
          args:
            {{- toYaml $args | nindent 12 }}
          env:
            {{- /* --instance: each replica is named by its pod. */}}
            - name: DARKLAUNCH_INSTANCE
              valueFrom:
                fieldRef:
                  fieldPath: metadata.name
            {{- if $token }}
            - name: DARKLAUNCH_TOKEN
              valueFrom:
                secretKeyRef:
                  name: {{ $token }}
                  key: {{ $v.nats.token.key }}
            {{- end }}
            {{- with $svc.extraEnv }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
          ports:
            - name: health
              containerPort: 8081
              protocol: TCP
          livenessProbe:
            httpGet:
              path: /healthz
              port: health
            periodSeconds: 10
            timeoutSeconds: 2
            failureThreshold: 3
          readinessProbe:
            httpGet:
              path: /readyz
              port: health
            periodSeconds: 5
            timeoutSeconds: 2
            failureThreshold: 2
          resources:
            {{- toYaml ($svc.resources | default $v.resources) | nindent 12 }}
          securityContext:
            {{- toYaml $v.securityContext | nindent 12 }}
          {{- if or $creds $metricsCM $tls.existingSecret $nkeys }}
          volumeMounts:
            {{- if $nkeys }}
            - name: nats-nkey
              mountPath: {{ include "darklaunch.natsNkeyDir" $root }}
              readOnly: true
            {{- end }}
            {{- if $creds }}
            - name: nats-credentials
              mountPath: {{ include "darklaunch.natsCredsDir" $root }}
              readOnly: true
            {{- end }}
            {{- if $tls.existingSecret }}
            - name: nats-tls
              mountPath: {{ include "darklaunch.natsTLSDir" $root }}
              readOnly: true
            {{- end }}
            {{- if $metricsCM }}
            - name: metrics
              mountPath: {{ include "darklaunch.metricsDir" $root }}
              readOnly: true
            {{- end }}
          {{- end }}
      {{- if or $creds $metricsCM $tls.existingSecret $nkeys }}
      volumes:
        {{- if $nkeys }}
        - name: nats-nkey
          secret:
            secretName: {{ $nkeys }}
            defaultMode: 0440
            items:
              {{- /* Its own key only: a pod cannot sign in as another service. */}}
              - key: {{ .component }}.nk
                path: {{ .component }}.nk
              {{- if eq .component "judge" }}
              - key: api.nk
                path: api.nk
              {{- end }}
        {{- end }}
        {{- if $creds }}
        - name: nats-credentials
          secret:
            secretName: {{ $creds }}
            defaultMode: 0440
            items:
              - key: {{ $v.nats.credentials.key }}
                path: {{ $v.nats.credentials.key }}
        {{- end }}
        {{- if $tls.existingSecret }}
        - name: nats-tls
          secret:
            secretName: {{ $tls.existingSecret }}
            defaultMode: 0440
            items:
              {{- range $k := list $tls.ca $tls.cert $tls.key }}
              {{- if $k }}
              - key: {{ $k }}
                path: {{ $k }}
              {{- end }}
              {{- end }}
        {{- end }}
        {{- if $metricsCM }}
        - name: metrics
          configMap:
            name: {{ $metricsCM }}
            items:
              - key: metrics.yaml
                path: metrics.yaml
        {{- end }}
      {{- end }}
      {{- with ($svc.nodeSelector | default $v.nodeSelector) }}
      nodeSelector:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with ($svc.tolerations | default $v.tolerations) }}
      tolerations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with (include "darklaunch.affinity" .) }}
      affinity:
        {{- . | nindent 8 }}
      {{- end }}
{{- end }}

{{/*
The ServiceAccount of one service. Only the router's mounts a token (it talks to the API
server); the others never talk to it, so they get none and no RBAC at all.
*/}}
{{- define "darklaunch.serviceAccount" -}}
apiVersion: v1
kind: ServiceAccount
metadata:
  name: {{ include "darklaunch.serviceAccountName" (dict "root" .root "component" .component) }}
  namespace: {{ .root.Release.Namespace }}
  labels:
    {{- include "darklaunch.labels" (dict "root" .root "component" .component) | nindent 4 }}
  {{- with .svc.serviceAccount.annotations }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
automountServiceAccountToken: {{ .automountToken }}
{{- end }}
