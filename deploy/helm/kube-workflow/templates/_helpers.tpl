{{/* Chart name, overridable. */}}
{{- define "kube-workflow.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Release-scoped name of the Deployment, Service and roles. */}}
{{- define "kube-workflow.fullname" -}}
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

{{- define "kube-workflow.selectorLabels" -}}
app.kubernetes.io/name: {{ include "kube-workflow.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: controller
{{- end -}}

{{- define "kube-workflow.labels" -}}
{{ include "kube-workflow.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "kube-workflow.serviceAccountName" -}}
{{- required "serviceAccount.name is required" .Values.serviceAccount.name -}}
{{- end -}}

{{- define "kube-workflow.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/*
The controller's rules, shared by the ClusterRole (config.namespace "") and the Role (one namespace).
Keep identical to deploy/manifests/02-rbac.yaml (tests/integration/test_deploy.py checks it).
*/}}
{{- define "kube-workflow.controllerRules" -}}
# Workflows: the informer lists and watches them; the reconciler reads one, adds/removes its
# finalizer and labels (update/patch). It never creates or deletes a Workflow: users do.
- apiGroups: ["workflow.example.com"]
  resources: ["workflows"]
  verbs: ["get", "list", "watch", "update", "patch"]
# Workflow status (phase, conditions, queue position) is written through the status subresource.
- apiGroups: ["workflow.example.com"]
  resources: ["workflows/status"]
  verbs: ["get", "update", "patch"]
# Setting ownerReferences with blockOwnerDeletion on child Steps needs update on the owner's
# finalizers subresource (OwnerReferencesPermissionEnforcement admission).
- apiGroups: ["workflow.example.com"]
  resources: ["workflows/finalizers"]
  verbs: ["update"]
# Steps are the controller's children: it creates one per DAG node, watches them, updates their spec
# and finalizers, and deletes them when a Workflow is removed.
- apiGroups: ["workflow.example.com"]
  resources: ["steps"]
  verbs: ["get", "list", "watch", "create", "update", "patch", "delete"]
# Step status (phase, attempts, step outputs) is written through the status subresource.
- apiGroups: ["workflow.example.com"]
  resources: ["steps/status"]
  verbs: ["get", "update", "patch"]
# Same as workflows/finalizers, with a Step as the owner: a step that creates objects owned by its
# Step (blockOwnerDeletion) needs it. (Adding/removing the Step's own finalizer is "update" on steps.)
- apiGroups: ["workflow.example.com"]
  resources: ["steps/finalizers"]
  verbs: ["update"]
# Events on Workflows and Steps: create, and patch to bump the count of a repeated event.
# Core v1 events ...
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create", "patch"]
# ... and events.k8s.io/v1 events (the newer API; the event recorder may use either).
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
# Secrets: read only, one at a time (no list/watch), for the HMAC signing keys that Workflows
# reference for their callbacks. A later hardening could restrict this with resourceNames.
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get"]
{{- end -}}
