{{/* Names, labels and the pieces every workload shares. */}}

{{- define "petpro.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "petpro.fullname" -}}
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

{{- define "petpro.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "petpro.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: petpro
{{- end -}}

{{/* Selector labels of one component: include with (dict "root" $ "component" "web"). */}}
{{- define "petpro.selectorLabels" -}}
app.kubernetes.io/name: {{ include "petpro.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "petpro.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{- define "petpro.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "petpro.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "petpro.secretName" -}}
{{- default (include "petpro.fullname" .) .Values.secrets.existingSecret -}}
{{- end -}}

{{/* Env of every container: ConfigMap + Secret, the pod IP in DJANGO_ALLOWED_HOSTS. */}}
{{- define "petpro.env" -}}
- name: POD_IP
  valueFrom:
    fieldRef:
      fieldPath: status.podIP
- name: DJANGO_ALLOWED_HOSTS
  value: {{ printf "%s,localhost,$(POD_IP)" (join "," .root.Values.allowedHosts) | quote }}
- name: SERVICE_COMPONENT
  value: {{ .component | quote }}
- name: OTEL_RESOURCE_ATTRIBUTES
  value: {{ printf "service.namespace=petpro,deployment.environment=%s,petpro.component=%s" .root.Release.Namespace .component | quote }}
{{- end -}}

{{- define "petpro.envFrom" -}}
- configMapRef:
    name: {{ include "petpro.fullname" . }}
- secretRef:
    name: {{ include "petpro.secretName" . }}
{{- end -}}

{{/* Writable scratch space under a read-only root filesystem. */}}
{{- define "petpro.volumes" -}}
- name: tmp
  emptyDir:
    sizeLimit: 64Mi
- name: metrics
  emptyDir:
    sizeLimit: 64Mi
{{- if .Values.tls.caSecret }}
- name: ca-certificates
  secret:
    secretName: {{ .Values.tls.caSecret }}
{{- end }}
{{- end -}}

{{- define "petpro.volumeMounts" -}}
- name: tmp
  mountPath: /tmp
- name: metrics
  mountPath: /var/run/petpro/metrics
{{- if .Values.tls.caSecret }}
- name: ca-certificates
  mountPath: {{ .Values.tls.mountPath }}
  readOnly: true
{{- end }}
{{- end -}}

{{/* Preferred anti-affinity over nodes and zones for one component. */}}
{{- define "petpro.affinity" -}}
{{- if or .root.Values.affinity.spreadAcrossNodes .root.Values.affinity.spreadAcrossZones }}
affinity:
  podAntiAffinity:
    preferredDuringSchedulingIgnoredDuringExecution:
      {{- if .root.Values.affinity.spreadAcrossNodes }}
      - weight: 100
        podAffinityTerm:
          topologyKey: kubernetes.io/hostname
          labelSelector:
            matchLabels:
              {{- include "petpro.selectorLabels" . | nindent 14 }}
      {{- end }}
      {{- if .root.Values.affinity.spreadAcrossZones }}
      - weight: 50
        podAffinityTerm:
          topologyKey: topology.kubernetes.io/zone
          labelSelector:
            matchLabels:
              {{- include "petpro.selectorLabels" . | nindent 14 }}
      {{- end }}
{{- end }}
{{- end -}}

{{/* Config data shared by the ConfigMap and the migration hook's copy of it. */}}
{{- define "petpro.configData" -}}
{{- $_ := required "Set config.JWT_ISSUER: the iss of callers' tokens (docs/operations.md)" .Values.config.JWT_ISSUER }}
{{/* The relay process (deployment-relay.yaml) is woken by NOTIFY; without it, by Celery. */}}
{{- if not (hasKey .Values.config "EVENT_RELAY_NUDGE") }}
EVENT_RELAY_NUDGE: {{ ternary "notify" "celery" .Values.relay.enabled | quote }}
{{- end }}
{{- range $key, $value := .Values.config }}
{{- if ne (toString $value) "" }}
{{ $key }}: {{ $value | toString | quote }}
{{- end }}
{{- end }}
{{- end -}}
