{{/*
The command line of one role process: (dict "ctx" $ "role" "fleet"). Flags are those of
`certmesh server` (services/certmesh/src/cli.rs, ServerArgs); secrets never appear here.
*/}}
{{- define "certmesh.roleArgs" -}}
{{- $ := .ctx -}}
{{- $role := .role -}}
{{- $v := $.Values -}}
{{- $cfg := index $v.roles $role -}}
{{- $bind := $v.config.bindAddress -}}
{{- $args := list "server" "--services" $role
      "--listen" (printf "%s:8443" $bind)
      "--ops-listen" (printf "%s:9090" $bind)
      "--pki-public-url" (include "certmesh.pkiPublicUrl" $)
      "--crl-shards" (toString $v.pki.crlShards)
      "--tenant" $v.config.tenant -}}
{{- if include "certmesh.needsTls" (dict "ctx" $ "role" $role) -}}
{{- $args = concat $args (list "--tls-cert" "/etc/certmesh/tls/tls.crt" "--tls-key" "/etc/certmesh/tls/tls.key") -}}
{{- end -}}
{{- $args = concat $args (list "--mesh" $v.mesh.mode) -}}
{{- if eq $v.mesh.mode "internal" -}}
{{- $args = concat $args (list "--mesh-secret-file" "/etc/certmesh/mesh/secret" "--mesh-cert-validity" $v.mesh.certValidity) -}}
{{- if ne $role "fleet" -}}
{{- $args = concat $args (list "--trust-domain" $v.roles.fleet.trustDomain) -}}
{{- end -}}
{{- else if eq $v.mesh.mode "files" -}}
{{- $args = concat $args (list "--mesh-cert" "/etc/certmesh/tls/tls.crt" "--mesh-key" "/etc/certmesh/tls/tls.key" "--mesh-ca" "/etc/certmesh/tls/ca.crt") -}}
{{- end -}}
{{- if $v.config.logJson -}}{{- $args = append $args "--log-json" -}}{{- end -}}
{{- if include "certmesh.needsKeys" $role -}}
{{- $args = concat $args (list "--key-dir" "/var/lib/certmesh/keys") -}}
{{- end -}}
{{- if include "certmesh.needsKek" $role -}}
{{- $args = concat $args (list "--kek-file" "/etc/certmesh/kek/kek") -}}
{{- end -}}
{{- if and (include "certmesh.callsRoles" $role) (eq $v.mesh.mode "off") -}}
{{- $args = concat $args (list "--ca-bundle" "/etc/certmesh/tls/ca.crt") -}}
{{- end -}}
{{- if eq $role "gateway" -}}
{{- range $peer := list "issuance" "iam" "ca" "revocation" "fleet" "discovery" "notification" -}}
{{- if include "certmesh.roleEnabled" (dict "ctx" $ "role" $peer) -}}
{{- $args = concat $args (list (printf "--%s-endpoint" $peer) (include "certmesh.roleEndpoint" (dict "ctx" $ "role" $peer))) -}}
{{- end -}}
{{- end -}}
{{- $args = concat $args (list "--rate-limit-per-second" (toString $cfg.rateLimitPerSecond) "--rate-limit-burst" (toString $cfg.rateLimitBurst)) -}}
{{- end -}}
{{- if eq $role "revocation" -}}
{{- $args = concat $args (list
      "--pki-listen" (printf "%s:8080" $bind)
      "--pki-workers" (toString $cfg.pkiWorkers)
      "--crl-validity" $cfg.crlValidity
      "--crl-refresh" $cfg.crlRefresh
      "--ocsp-validity" $cfg.ocspValidity
      "--ocsp-responder-validity" $cfg.ocspResponderValidity) -}}
{{- end -}}
{{- if eq $role "fleet" -}}
{{- $args = concat $args (list
      "--fleet-listen" (printf "%s:8444" $bind)
      "--fleet-issuance-endpoint" (include "certmesh.roleEndpoint" (dict "ctx" $ "role" "issuance"))
      "--trust-domain" $cfg.trustDomain
      "--agent-identity-validity" $cfg.agentIdentityValidity
      "--agent-heartbeat" $cfg.agentHeartbeat
      "--fleet-max-attempts" (toString $cfg.maxAttempts)
      "--fleet-retry-base" $cfg.retryBase) -}}
{{- end -}}
{{- if eq $role "discovery" -}}
{{- if include "certmesh.roleEnabled" (dict "ctx" $ "role" "fleet") -}}
{{- $args = concat $args (list "--fleet-endpoint" (include "certmesh.roleEndpoint" (dict "ctx" $ "role" "fleet"))) -}}
{{- end -}}
{{- $args = concat $args (list
      "--scan-concurrency" (toString $cfg.scanConcurrency)
      "--scan-timeout" $cfg.scanTimeout
      "--scan-tick" $cfg.scanTick
      "--scan-max-addresses" (toString (int64 $cfg.scanMaxAddresses))) -}}
{{- with $cfg.scanAllow -}}
{{- $args = concat $args (list "--scan-allow" (join "," .)) -}}
{{- end -}}
{{- if $cfg.scanDenyPrivate -}}{{- $args = append $args "--scan-deny-private" -}}{{- end -}}
{{- end -}}
{{- if eq $role "notification" -}}
{{- $args = concat $args (list
      "--notify-thresholds" (join "," $cfg.thresholds)
      "--notify-max-attempts" (toString $cfg.maxAttempts)
      "--notify-retry-base" $cfg.retryBase) -}}
{{- end -}}
{{- $args = concat $args $cfg.extraArgs -}}
{{- toYaml $args -}}
{{- end -}}
