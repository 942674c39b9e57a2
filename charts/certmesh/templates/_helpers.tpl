{{/*
Names, labels, and what each role needs. Ports are fixed: every role serves gRPC, REST and
/healthz, /readyz, /metrics on 8443 (TLS); the revocation role's PKI listener is 8080 (plain
HTTP); the fleet role's agent listener is 8444 (TLS).
*/}}

{{- define "certmesh.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 40 | trimSuffix "-" -}}
{{- end -}}

{{/* Truncated to 40 so that "<fullname>-notification" and "-fleet-agents" stay DNS labels. */}}
{{- define "certmesh.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "certmesh.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Selector labels of one component: (dict "ctx" $ "component" "issuance") */}}
{{- define "certmesh.selectorLabels" -}}
app.kubernetes.io/name: {{ include "certmesh.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* Every label of one component's objects: (dict "ctx" $ "component" "issuance") */}}
{{- define "certmesh.labels" -}}
helm.sh/chart: {{ include "certmesh.chart" .ctx }}
{{ include "certmesh.selectorLabels" . }}
app.kubernetes.io/part-of: certmesh
app.kubernetes.io/version: {{ .ctx.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
{{- with .ctx.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "certmesh.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "certmesh.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "certmesh.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository $tag -}}
{{- end -}}
{{- end -}}

{{/* The Dockerfile's `agent` target: certmesh-agent on distroless with busybox. */}}
{{- define "certmesh.agentImage" -}}
{{- $tag := default (default .Chart.AppVersion .Values.image.tag) .Values.agent.image.tag -}}
{{- printf "%s:%s" .Values.agent.image.repository $tag -}}
{{- end -}}

{{/* Roles this build runs, in start order. */}}
{{- define "certmesh.allRoles" -}}
gateway issuance iam ca revocation discovery notification fleet
{{- end -}}

{{/* The roles this release runs (mode: distributed), space-separated. */}}
{{- define "certmesh.roles" -}}
{{- $out := list -}}
{{- if eq .Values.mode "distributed" -}}
{{- range $role := splitList " " (include "certmesh.allRoles" .) -}}
{{- $cfg := index $.Values.roles $role -}}
{{- if or (not (hasKey $cfg "enabled")) $cfg.enabled -}}
{{- $out = append $out $role -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- join " " $out -}}
{{- end -}}

{{- define "certmesh.roleEnabled" -}}
{{- if has .role (splitList " " (include "certmesh.roles" .ctx)) -}}true{{- end -}}
{{- end -}}

{{/* What each role needs (services/certmesh/src/server.rs). */}}
{{- define "certmesh.needsDatabase" -}}{{- if ne . "gateway" -}}true{{- end -}}{{- end -}}
{{- define "certmesh.needsKeys" -}}{{- if has . (list "issuance" "ca" "revocation" "fleet") -}}true{{- end -}}{{- end -}}
{{- define "certmesh.needsKek" -}}{{- if has . (list "issuance" "ca" "revocation" "fleet" "notification") -}}true{{- end -}}{{- end -}}
{{/* The role's own listener serves --tls-cert: the gateway and fleet always (public API,
agent listener), every role unless the internal mesh gives it its identity. */}}
{{- define "certmesh.needsTls" -}}
{{- if or (has .role (list "gateway" "fleet")) (ne .ctx.Values.mesh.mode "internal") -}}true{{- end -}}
{{- end -}}
{{- define "certmesh.meshSecretName" -}}
{{- .Values.mesh.existingSecret | default (printf "%s-mesh" (include "certmesh.fullname" .)) -}}
{{- end -}}
{{- define "certmesh.meshSecretKey" -}}
{{- ternary .Values.mesh.existingSecretKey "mesh-secret" (ne .Values.mesh.existingSecret "") -}}
{{- end -}}
{{- define "certmesh.callsRoles" -}}{{- if has . (list "gateway" "fleet" "discovery") -}}true{{- end -}}{{- end -}}

{{/* <fullname>-<role>.<namespace>.svc */}}
{{- define "certmesh.roleHost" -}}
{{- printf "%s-%s.%s.svc" (include "certmesh.fullname" .ctx) .role .ctx.Release.Namespace -}}
{{- end -}}

{{- define "certmesh.roleEndpoint" -}}
{{- printf "https://%s:8443" (include "certmesh.roleHost" .) -}}
{{- end -}}

{{- define "certmesh.pkiPublicUrl" -}}
{{- if .Values.pki.publicUrl -}}
{{- .Values.pki.publicUrl | trimSuffix "/" -}}
{{- else -}}
{{- $host := printf "%s-pki.%s.svc" (include "certmesh.fullname" .) .Release.Namespace -}}
{{- if eq (int .Values.services.pki.port) 80 -}}
{{- printf "http://%s" $host -}}
{{- else -}}
{{- printf "http://%s:%d" $host (int .Values.services.pki.port) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "certmesh.agentServer" -}}
{{- if .Values.agent.server -}}
{{- .Values.agent.server -}}
{{- else -}}
{{- printf "https://%s-fleet-agents.%s.svc:%d" (include "certmesh.fullname" .) .Release.Namespace (int .Values.services.agents.port) -}}
{{- end -}}
{{- end -}}

{{- define "certmesh.databaseSecretName" -}}
{{- default (printf "%s-database" (include "certmesh.fullname" .)) .Values.database.existingSecret -}}
{{- end -}}

{{- define "certmesh.databaseSecretKey" -}}
{{- if .Values.database.existingSecret -}}{{ .Values.database.existingSecretKey }}{{- else -}}database-url{{- end -}}
{{- end -}}

{{- define "certmesh.kekSecretName" -}}
{{- default (printf "%s-kek" (include "certmesh.fullname" .)) .Values.kek.existingSecret -}}
{{- end -}}

{{- define "certmesh.kekSecretKey" -}}
{{- if .Values.kek.existingSecret -}}{{ .Values.kek.existingSecretKey }}{{- else -}}kek{{- end -}}
{{- end -}}

{{- define "certmesh.keysClaimName" -}}
{{- default (printf "%s-keys" (include "certmesh.fullname" .)) .Values.keys.persistence.existingClaim -}}
{{- end -}}

{{/* The TLS Secret of one role: (dict "ctx" $ "role" "issuance") */}}
{{- define "certmesh.tlsSecretName" -}}
{{- $cfg := index .ctx.Values.roles .role -}}
{{- default .ctx.Values.tls.existingSecret $cfg.tlsSecret -}}
{{- end -}}

{{/* Pod-level security of every workload. */}}
{{- define "certmesh.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .Values.podSecurity.runAsUser }}
runAsGroup: {{ .Values.podSecurity.runAsGroup }}
fsGroup: {{ .Values.podSecurity.fsGroup }}
fsGroupChangePolicy: OnRootMismatch
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* Container-level security of every container, init containers too. */}}
{{- define "certmesh.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
privileged: false
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* The writable /tmp every pod gets (the root filesystem is read-only). */}}
{{- define "certmesh.tmpVolume" -}}
- name: tmp
  emptyDir:
    sizeLimit: 64Mi
{{- end -}}

{{- define "certmesh.tmpMount" -}}
- name: tmp
  mountPath: /tmp
{{- end -}}

{{/* HTTPS probes on the role listener; "ready" adds readiness on /readyz. */}}
{{- define "certmesh.probes" -}}
{{- $p := .ctx.Values.probes -}}
{{- $at := printf "port: %s, scheme: %s" .port .scheme -}}
startupProbe:
  httpGet: { path: /healthz, {{ $at }} }
  periodSeconds: {{ $p.startup.periodSeconds }}
  timeoutSeconds: {{ $p.startup.timeoutSeconds }}
  failureThreshold: {{ $p.startup.failureThreshold }}
readinessProbe:
  httpGet: { path: /readyz, {{ $at }} }
  initialDelaySeconds: {{ $p.readiness.initialDelaySeconds }}
  periodSeconds: {{ $p.readiness.periodSeconds }}
  timeoutSeconds: {{ $p.readiness.timeoutSeconds }}
  failureThreshold: {{ $p.readiness.failureThreshold }}
livenessProbe:
  httpGet: { path: /healthz, {{ $at }} }
  initialDelaySeconds: {{ $p.liveness.initialDelaySeconds }}
  periodSeconds: {{ $p.liveness.periodSeconds }}
  timeoutSeconds: {{ $p.liveness.timeoutSeconds }}
  failureThreshold: {{ $p.liveness.failureThreshold }}
{{- end -}}

{{/* Pod selector matching every role pod of this release (the role mesh). */}}
{{- define "certmesh.roleMeshPeer" -}}
- podSelector:
    matchLabels:
      app.kubernetes.io/name: {{ include "certmesh.name" . }}
      app.kubernetes.io/instance: {{ .Release.Name }}
    matchExpressions:
      - key: app.kubernetes.io/component
        operator: In
        values: {{ compact (splitList " " (include "certmesh.roles" .)) | toJson }}
{{- end -}}

{{/* Egress to DNS. */}}
{{- define "certmesh.dnsEgress" -}}
- ports:
    - { protocol: UDP, port: 53 }
    - { protocol: TCP, port: 53 }
  {{- with .Values.networkPolicy.dnsTo }}
  to:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end -}}

{{/* Egress to PostgreSQL. */}}
{{- define "certmesh.databaseEgress" -}}
- ports:
    {{- range .Values.networkPolicy.databasePorts }}
    - { protocol: TCP, port: {{ . }} }
    {{- end }}
  {{- with .Values.networkPolicy.databaseTo }}
  to:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end -}}

{{/* Soft spreading of a component's replicas over nodes, unless affinity is given. */}}
{{- define "certmesh.affinity" -}}
{{- if .affinity -}}
{{- toYaml .affinity -}}
{{- else -}}
podAntiAffinity:
  preferredDuringSchedulingIgnoredDuringExecution:
    - weight: 100
      podAffinityTerm:
        topologyKey: kubernetes.io/hostname
        labelSelector:
          matchLabels:
            {{- include "certmesh.selectorLabels" (dict "ctx" .ctx "component" .component) | nindent 12 }}
{{- end -}}
{{- end -}}

{{/* Environment of both agent containers: (dict "ctx" $ "serverName" "…"). */}}
{{- define "certmesh.agentEnv" -}}
{{- $a := .ctx.Values.agent -}}
- name: NODE_NAME
  valueFrom:
    fieldRef:
      fieldPath: spec.nodeName
- name: CERTMESH_AGENT_SERVER
  value: {{ include "certmesh.agentServer" .ctx | quote }}
{{- with .serverName }}
- name: CERTMESH_AGENT_SERVER_NAME
  value: {{ . | quote }}
{{- end }}
- name: CERTMESH_AGENT_CA_BUNDLE
  value: /etc/certmesh-agent/ca/ca.pem
- name: CERTMESH_AGENT_STATE_DIR
  value: {{ clean $a.stateDir | quote }}
- name: CERTMESH_AGENT_KEY_TYPE
  value: {{ $a.keyType | quote }}
{{- with $a.group }}
- name: CERTMESH_AGENT_GROUP
  value: {{ . | quote }}
{{- end }}
- name: RUST_LOG
  value: {{ $a.logLevel | quote }}
{{- with $a.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* The agent's containers: as every container, or as root with agent.dangerousRunAsRoot. */}}
{{- define "certmesh.agentContainerSecurityContext" -}}
{{- if .Values.agent.dangerousRunAsRoot -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: false
runAsUser: 0
privileged: false
capabilities:
  drop: ["ALL"]
  # Write and chown files that other users own in the host directories.
  add: ["CHOWN", "DAC_OVERRIDE", "FOWNER"]
seccompProfile:
  type: RuntimeDefault
{{- else -}}
{{- include "certmesh.containerSecurityContext" . -}}
{{- end -}}
{{- end -}}
