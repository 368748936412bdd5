{{/*
Helpers. The naming helpers follow `helm create` exactly, because src/values.rs
re-implements them (chart_name, fullname, service_account_name,
server_password_secret, config_map_name, image) and CI holds the two together.
*/}}

{{/* Chart name, or nameOverride. */}}
{{- define "agentic-sdlc-orchestrator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Fully qualified app name: fullnameOverride, else the release name if it already
contains the chart name, else <release>-<name>. Cut to 63 characters (DNS label).
*/}}
{{- define "agentic-sdlc-orchestrator.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* name-version, for the helm.sh/chart label. */}}
{{- define "agentic-sdlc-orchestrator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Selector labels: stable for the life of a release. */}}
{{- define "agentic-sdlc-orchestrator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "agentic-sdlc-orchestrator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Common labels on every object the chart renders. */}}
{{- define "agentic-sdlc-orchestrator.labels" -}}
helm.sh/chart: {{ include "agentic-sdlc-orchestrator.chart" . }}
{{ include "agentic-sdlc-orchestrator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* Task pods' ServiceAccount: serviceAccount.name, else fullname if created, else "default". */}}
{{- define "agentic-sdlc-orchestrator.serviceAccountName" -}}
{{- if .Values.serviceAccount.name }}
{{- .Values.serviceAccount.name }}
{{- else if .Values.serviceAccount.create }}
{{- include "agentic-sdlc-orchestrator.fullname" . }}
{{- else -}}
default
{{- end }}
{{- end }}

{{/* The Secret holding `server-password` (written by the ExternalSecret). */}}
{{- define "agentic-sdlc-orchestrator.serverPasswordSecret" -}}
{{- if .Values.externalSecret.name }}
{{- .Values.externalSecret.name }}
{{- else }}
{{- printf "%s-server-password" (include "agentic-sdlc-orchestrator.fullname" .) }}
{{- end }}
{{- end }}

{{/* The ConfigMap `asdo spawn` reads its cluster-side values from. */}}
{{- define "agentic-sdlc-orchestrator.configMapName" -}}
{{- printf "%s-config" (include "agentic-sdlc-orchestrator.fullname" .) }}
{{- end }}

{{/* repository:tag, the tag defaulting to the chart's appVersion. */}}
{{- define "agentic-sdlc-orchestrator.image" -}}
{{- printf "%s:%s" .Values.pod.image.repository (.Values.pod.image.tag | default .Chart.AppVersion | toString) }}
{{- end }}

{{/* Namespace of every object: namespace.name, else the release namespace. */}}
{{- define "agentic-sdlc-orchestrator.namespace" -}}
{{- default .Release.Namespace .Values.namespace.name }}
{{- end }}

{{/* Task pod name: agent-<task id lowercased> (asdo's task::pod_name). */}}
{{- define "agentic-sdlc-orchestrator.podName" -}}
{{- printf "agent-%s" (lower .Values.task.id) }}
{{- end }}

{{/*
Labels of the task Pod: what asdo's render.rs sets, plus helm.sh/chart. pod.labels
come first and the fixed labels win over them, as in render.rs; pod.queueName, when
set, is Kueue's queue-name label (and wins over a pod.labels entry of that key).
*/}}
{{- define "agentic-sdlc-orchestrator.podLabels" -}}
{{- $fixed := dict
  "app" "agent-orchestrator"
  "task-id" (toString .Values.task.id)
  "app.kubernetes.io/name" (include "agentic-sdlc-orchestrator.name" .)
  "app.kubernetes.io/instance" .Release.Name
  "app.kubernetes.io/component" "agent"
  "app.kubernetes.io/version" (toString .Chart.AppVersion)
  "app.kubernetes.io/managed-by" .Release.Service
  "helm.sh/chart" (include "agentic-sdlc-orchestrator.chart" .) }}
{{- with .Values.pod.queueName }}
{{- $_ := set $fixed "kueue.x-k8s.io/queue-name" . }}
{{- end }}
{{- toYaml (merge $fixed (deepCopy (.Values.pod.labels | default dict))) }}
{{- end }}

{{/* The LocalQueue's name: kueue.localQueue.name, else <fullname>. */}}
{{- define "agentic-sdlc-orchestrator.localQueueName" -}}
{{- .Values.kueue.localQueue.name | default (include "agentic-sdlc-orchestrator.fullname" .) }}
{{- end }}

{{/*
The remoteRef fields ESO's v1 CRD defaults (0.16-2.8). Rendered explicitly so
the object ArgoCD compares equals the one the API server stores. nullBytePolicy
(defaulted only in 2.3-2.6) is left out: ESO < 2.3 rejects it.
*/}}
{{- define "agentic-sdlc-orchestrator.remoteRefDefaults" -}}
conversionStrategy: Default
decodingStrategy: None
metadataPolicy: None
{{- end }}
