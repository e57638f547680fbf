{{/* Names and settings of TLS, tokens and the secrets key (docs/security.md). */}}

{{/* Number of executor identities: one certificate per possible executor pod. */}}
{{- define "sluice.executorIdentities" -}}
{{- $e := .Values.executor -}}
{{- if $e.autoscaling.enabled -}}{{ $e.autoscaling.maxReplicas }}{{- else -}}{{ $e.replicas }}{{- end -}}
{{- end -}}

{{- define "sluice.executorName" -}}
{{- printf "%s-executor" (include "sluice.fullname" .) -}}
{{- end -}}

{{/* Secret of a TLS piece: call with (dict "root" $ "which" "driver"|"executor"|"etcd"|"etcdClient"). */}}
{{- define "sluice.tlsSecret" -}}
{{- $fn := include "sluice.fullname" .root -}}
{{- $default := dict "driver" (printf "%s-driver-tls" $fn) "executor" (printf "%s-executor-tls" $fn) "etcd" (printf "%s-etcd-tls" $fn) "etcdClient" (printf "%s-etcd-client-tls" $fn) -}}
{{- $t := .root.Values.tls -}}
{{- if and (eq $t.source "existing") (index $t.existingSecrets .which) -}}
{{- index $t.existingSecrets .which -}}
{{- else -}}
{{- index $default .which -}}
{{- end -}}
{{- end -}}

{{- define "sluice.authSecret" -}}
{{- .Values.auth.existingSecret | default (printf "%s-auth" (include "sluice.fullname" .)) -}}
{{- end -}}

{{- define "sluice.tokensSecret" -}}
{{- printf "%s-tokens" (include "sluice.fullname" .) -}}
{{- end -}}

{{- define "sluice.secretsKeySecret" -}}
{{- .Values.secrets.keySecret | default (printf "%s-secrets-key" (include "sluice.fullname" .)) -}}
{{- end -}}

{{/* TLS to the bundled etcd: the chart's own TLS applies to it. */}}
{{- define "sluice.etcdBundledTLS" -}}
{{- if and .Values.etcd.bundled.enabled .Values.tls.enabled -}}true{{- end -}}
{{- end -}}

{{/* DNS names of the driver certificate. Executors verify it by the driver Service's name
(--tls-server-name) even when a follower redirects them to the leader's pod IP. */}}
{{- define "sluice.driverDNSNames" -}}
{{- $svc := include "sluice.driverService" . -}}
{{- $ns := .Release.Namespace -}}
{{- $names := list $svc (printf "%s.%s" $svc $ns) (printf "%s.%s.svc" $svc $ns) (printf "%s.%s.svc.cluster.local" $svc $ns) "localhost" -}}
{{- concat $names .Values.tls.driverDNSNames | uniq | toJson -}}
{{- end -}}

{{/* DNS names of the bundled etcd members' certificate (server and peer). */}}
{{- define "sluice.etcdDNSNames" -}}
{{- $svc := include "sluice.etcdService" . -}}
{{- $ns := .Release.Namespace -}}
{{- list (printf "*.%s.%s.svc" $svc $ns) (printf "*.%s.%s.svc.cluster.local" $svc $ns) (printf "%s.%s.svc" $svc $ns) $svc "localhost" | toJson -}}
{{- end -}}

{{/* Cross-value checks of the security values. */}}
{{- define "sluice.validateSecurity" -}}
{{- $t := .Values.tls -}}
{{- if and $t.enabled (eq $t.source "certManager") (not $t.certManager.issuerRef.name) -}}
{{- fail "tls.certManager.issuerRef.name is required with tls.source=certManager (an Issuer or ClusterIssuer whose CA ends up in the issued Secrets' ca.crt), or use tls.source=generate" -}}
{{- end -}}
{{- if and .Values.auth.enabled (not .Values.auth.existingSecret) (not .Values.auth.tokens) -}}
{{- fail "auth.tokens is empty: list at least one {name, role}, set auth.existingSecret, or disable auth" -}}
{{- end -}}
{{- $seen := dict -}}
{{- range .Values.auth.tokens -}}
{{- if hasKey $seen .name -}}
{{- fail (printf "auth.tokens: the name %q appears twice" .name) -}}
{{- end -}}
{{- $_ := set $seen .name true -}}
{{- end -}}
{{- end -}}
