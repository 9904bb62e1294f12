{{/*
Several replicas of a service: the count, the update strategy, the pod anti-affinity and the
PodDisruptionBudget. Each helper takes (dict "root" $ "component" "router" "svc" .Values.router).
*/}}

{{/* The replicas of a service: svc.replicas (0 is kept: a service scaled to nothing). */}}
{{- define "darklaunch.replicas" -}}
{{- if hasKey .svc "replicas" }}{{ int .svc.replicas }}{{ else }}1{{ end }}
{{- end }}

{{/*
The Deployment strategy: svc.updateStrategy, else the top-level updateStrategy. With type
Recreate its rollingUpdate (the default's, say) is left out: the API server would refuse it.
*/}}
{{- define "darklaunch.strategy" -}}
{{- $s := .svc.updateStrategy | default .root.Values.updateStrategy }}
{{- $type := $s.type | default "RollingUpdate" }}
type: {{ $type }}
{{- if and (eq $type "RollingUpdate") $s.rollingUpdate }}
rollingUpdate:
  {{- toYaml $s.rollingUpdate | nindent 2 }}
{{- end }}
{{- end }}

{{/*
The pod's affinity: svc.affinity, else the top-level affinity, with the podAntiAffinity preset
(svc.podAntiAffinity, else the top-level one: soft, hard or none) added unless that affinity
has a podAntiAffinity of its own. Empty when there is nothing to set.
*/}}
{{- define "darklaunch.affinity" -}}
{{- $v := .root.Values }}
{{- $aff := deepCopy (.svc.affinity | default $v.affinity | default dict) }}
{{- $preset := .svc.podAntiAffinity | default $v.podAntiAffinity | default "none" }}
{{- if not (has $preset (list "soft" "hard" "none")) }}
{{- fail (printf "%s.podAntiAffinity %q: want soft, hard or none" .component $preset) }}
{{- end }}
{{- if and (ne $preset "none") (not (hasKey $aff "podAntiAffinity")) }}
{{- $term := dict
      "topologyKey" ($v.podAntiAffinityTopologyKey | default "kubernetes.io/hostname")
      "labelSelector" (dict "matchLabels" (include "darklaunch.selectorLabels" (dict "root" .root "component" .component) | fromYaml)) }}
{{- if eq $preset "soft" }}
{{- $_ := set $aff "podAntiAffinity" (dict "preferredDuringSchedulingIgnoredDuringExecution" (list (dict "weight" 100 "podAffinityTerm" $term))) }}
{{- else }}
{{- $_ := set $aff "podAntiAffinity" (dict "requiredDuringSchedulingIgnoredDuringExecution" (list $term)) }}
{{- end }}
{{- end }}
{{- if $aff }}{{ toYaml $aff }}{{ end }}
{{- end }}

{{/*
The PodDisruptionBudget of a service with more than one replica (podDisruptionBudget.enabled):
a voluntary eviction (a node drain) takes at most maxUnavailable of its pods at a time, or
keeps minAvailable. Nothing for one replica, where a budget would block every drain.
*/}}
{{- define "darklaunch.pdb" -}}
{{- $p := .root.Values.podDisruptionBudget }}
{{- $labels := dict "root" .root "component" .component }}
{{- if and .svc.enabled $p.enabled (gt (int (include "darklaunch.replicas" .)) 1) }}
{{- $hasMax := not (or (kindIs "invalid" $p.maxUnavailable) (eq (toString $p.maxUnavailable) "")) }}
{{- $hasMin := not (or (kindIs "invalid" $p.minAvailable) (eq (toString $p.minAvailable) "")) }}
{{- if and $hasMax $hasMin }}
{{- fail "podDisruptionBudget: set maxUnavailable or minAvailable, not both" }}
{{- end }}
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {{ include "darklaunch.fullname" .root }}-{{ .component }}
  namespace: {{ .root.Release.Namespace }}
  labels:
    {{- include "darklaunch.labels" $labels | nindent 4 }}
spec:
  {{- if $hasMin }}
  minAvailable: {{ $p.minAvailable }}
  {{- else if $hasMax }}
  maxUnavailable: {{ $p.maxUnavailable }}
  {{- else }}
  maxUnavailable: 1
  {{- end }}
  {{- with $p.unhealthyPodEvictionPolicy }}
  unhealthyPodEvictionPolicy: {{ . }}
  {{- end }}
  selector:
    matchLabels:
      {{- include "darklaunch.selectorLabels" $labels | nindent 6 }}
{{- end }}
{{- end }}

{{/*
Each pod's name is its instance name (DARKLAUNCH_INSTANCE), the last part of its key in the
bucket darklaunch-members, where a '.' would split the key: the fullname the pods are named
after must have none.
*/}}
{{- define "darklaunch.checkInstanceName" -}}
{{- $name := include "darklaunch.fullname" .root }}
{{- if contains "." $name }}
{{- fail (printf "the resource names' prefix %q holds a '.', which the pods' names (each service instance's name in NATS) must not: set fullnameOverride, or use a release name without one" $name) }}
{{- end }}
{{- end }}
