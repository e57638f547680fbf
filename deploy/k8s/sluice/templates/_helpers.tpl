{{/* Names, labels and the settings several templates share. */}}

{{- define "sluice.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
Full name prefix of every object. Kept at most 40 characters so that suffixed names
("-executor", "-etcd-headless" and StatefulSet pod names) stay within 63.
*/}}
{{- define "sluice.fullname" -}}
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

{{- define "sluice.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels of every object; call with (dict "root" $ "component" "driver"). */}}
{{- define "sluice.labels" -}}
helm.sh/chart: {{ include "sluice.chart" .root }}
{{ include "sluice.selectorLabels" . }}
app.kubernetes.io/version: {{ .root.Values.image.tag | default .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/part-of: sluice
{{- with .root.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Selector labels: stable for the life of a release (selectors are immutable). */}}
{{- define "sluice.selectorLabels" -}}
app.kubernetes.io/name: {{ include "sluice.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "sluice.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "sluice.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "sluice.imageTag" -}}
{{- .Values.image.tag | default .Chart.AppVersion -}}
{{- end -}}

{{- define "sluice.driverService" -}}
{{- printf "%s-driver" (include "sluice.fullname" .) -}}
{{- end -}}

{{- define "sluice.etcdService" -}}
{{- printf "%s-etcd" (include "sluice.fullname" .) -}}
{{- end -}}

{{/*
The --etcd endpoints: every member of the bundled etcd through its stable DNS name
(<pod>.<headless service>.<namespace>.svc), or the configured external endpoints.
*/}}
{{- define "sluice.etcdEndpoints" -}}
{{- if .Values.etcd.bundled.enabled -}}
{{- $svc := include "sluice.etcdService" . -}}
{{- $eps := list -}}
{{- range $i := until (int .Values.etcd.bundled.replicas) -}}
{{- $eps = append $eps (printf "%s://%s-%d.%s.%s.svc:2379" (ternary "https" "http" (eq (include "sluice.etcdBundledTLS" $) "true")) $svc $i $svc $.Release.Namespace) -}}
{{- end -}}
{{- join "," $eps -}}
{{- else -}}
{{- if not .Values.etcd.endpoints -}}
{{- fail "etcd.endpoints: set the endpoints of an existing etcd, or enable etcd.bundled" -}}
{{- end -}}
{{- join "," .Values.etcd.endpoints -}}
{{- end -}}
{{- end -}}

{{/*
Checks that need more than one value, which values.schema.json cannot express; each failure
names the values involved.
*/}}
{{- define "sluice.validate" -}}
{{- $d := .Values.driver -}}
{{- if lt (int $d.heartbeatTimeoutSeconds) (mul 3 (int $d.heartbeatIntervalSeconds)) -}}
{{- fail (printf "driver.heartbeatTimeoutSeconds (%v) must be at least 3x driver.heartbeatIntervalSeconds (%v)" $d.heartbeatTimeoutSeconds $d.heartbeatIntervalSeconds) -}}
{{- end -}}
{{- if eq (int $d.grpcPort) (int $d.httpPort) -}}
{{- fail (printf "driver.grpcPort and driver.httpPort must differ (both %v)" $d.grpcPort) -}}
{{- end -}}
{{- if and (not (kindIs "invalid" $d.terminationGracePeriodSeconds)) (lt (int $d.terminationGracePeriodSeconds) (add (int $d.shutdownTimeoutSeconds) 15)) -}}
{{- fail (printf "driver.terminationGracePeriodSeconds (%v) must be at least driver.shutdownTimeoutSeconds (%v) + 15: the driver resigns (5s), stops gRPC (shutdownTimeoutSeconds), stops HTTP (5s) and closes etcd (5s)" $d.terminationGracePeriodSeconds $d.shutdownTimeoutSeconds) -}}
{{- end -}}
{{- $e := .Values.executor -}}
{{- if and (not (kindIs "invalid" $e.terminationGracePeriodSeconds)) (lt (int $e.terminationGracePeriodSeconds) (add (int $e.drainTimeoutSeconds) 10)) -}}
{{- fail (printf "executor.terminationGracePeriodSeconds (%v) must be at least executor.drainTimeoutSeconds (%v) + 10: after the drain the executor flushes results and closes its readers and sinks" $e.terminationGracePeriodSeconds $e.drainTimeoutSeconds) -}}
{{- end -}}
{{- $a := $e.autoscaling -}}
{{- if $a.enabled -}}
{{- if gt (int $a.minReplicas) (int $a.maxReplicas) -}}
{{- fail (printf "executor.autoscaling.minReplicas (%v) must not exceed executor.autoscaling.maxReplicas (%v)" $a.minReplicas $a.maxReplicas) -}}
{{- end -}}
{{- if and (kindIs "invalid" $a.targetCPUUtilizationPercentage) (not $a.lag.enabled) -}}
{{- fail "executor.autoscaling: set targetCPUUtilizationPercentage or enable lag, or the autoscaler has no metric" -}}
{{- end -}}
{{- end -}}
{{- if and .Values.etcd.bundled.enabled .Values.etcd.endpoints -}}
{{- fail "etcd.endpoints and etcd.bundled.enabled are exclusive: disable the bundled etcd to use your own" -}}
{{- end -}}
{{- if and .Values.etcd.tls.enabled .Values.etcd.bundled.enabled -}}
{{- fail "etcd.tls.enabled applies to an external etcd; the bundled etcd gets its TLS from tls.* (on with tls.enabled)" -}}
{{- end -}}
{{- if and .Values.etcd.tls.enabled (not .Values.etcd.tls.secretName) -}}
{{- fail "etcd.tls.secretName is required when etcd.tls.enabled is true (a Secret with ca.crt, tls.crt and tls.key)" -}}
{{- end -}}
{{- end -}}

{{/* Environment shared by driver and executor containers. */}}
{{- define "sluice.commonEnv" -}}
- name: POD_NAME
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
- name: POD_IP
  valueFrom:
    fieldRef:
      fieldPath: status.podIP
- name: SLUICE_LOG_LEVEL
  value: {{ .Values.logLevel | quote }}
{{- with .Values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end -}}
