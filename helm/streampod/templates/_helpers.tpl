{{/* Names, labels and the per-colour decisions every template shares. */}}

{{- define "streampod.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "streampod.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "streampod.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "streampod.selectorLabels" -}}
app.kubernetes.io/name: {{ include "streampod.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "streampod.labels" -}}
helm.sh/chart: {{ include "streampod.chart" . }}
{{ include "streampod.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: streampod
{{- end }}

{{/*
The colours to render: ["blue", "green"] with blue/green, else one unnamed colour ("").
*/}}
{{- define "streampod.colours" -}}
{{- if .Values.blueGreen.enabled }}["blue","green"]{{ else }}[""]{{ end }}
{{- end }}

{{/* ctx = dict "root" $ "colour" $c. Role of a colour: active | candidate | idle (scaled to zero). */}}
{{- define "streampod.role" -}}
{{- $v := .root.Values -}}
{{- if or (not $v.blueGreen.enabled) (eq .colour $v.blueGreen.activeColor) -}}active
{{- else if eq $v.blueGreen.inactive "candidate" -}}candidate
{{- else -}}idle
{{- end -}}
{{- end }}

{{/* Deployment (and Service, PDB, ScaledObject) name of a colour. */}}
{{- define "streampod.stageName" -}}
{{- $full := include "streampod.fullname" .root -}}
{{- if .colour }}{{ printf "%s-%s" ($full | trunc 57 | trimSuffix "-") .colour }}{{ else }}{{ $full }}{{ end }}
{{- end }}

{{- define "streampod.stageSelectorLabels" -}}
{{ include "streampod.selectorLabels" .root }}
app.kubernetes.io/component: stage
{{- if .colour }}
streampod.io/color: {{ .colour }}
{{- end }}
{{- end }}

{{- define "streampod.stageLabels" -}}
{{ include "streampod.labels" .root }}
app.kubernetes.io/component: stage
{{- if .colour }}
streampod.io/color: {{ .colour }}
streampod.io/role: {{ include "streampod.role" . }}
{{- end }}
{{- end }}

{{/* The consumer group of a colour: the pipeline's for the active one, its own for a candidate. */}}
{{- define "streampod.consumerGroup" -}}
{{- $v := .root.Values -}}
{{- if eq (include "streampod.role" .) "active" -}}{{ $v.input.consumerGroup }}
{{- else -}}{{ (index $v.blueGreen .colour).candidateConsumerGroup | default (printf "%s-candidate-%s" $v.input.consumerGroup .colour) }}
{{- end -}}
{{- end }}

{{- define "streampod.realDeadLetter" -}}
{{- .Values.deadLetter.topic | default (printf "%s.dlq" .Values.input.consumerGroup) }}
{{- end }}

{{- define "streampod.shadowOutput" -}}
{{- .Values.output.shadowTopic | default (printf "%s.shadow" .Values.output.topic) }}
{{- end }}

{{- define "streampod.shadowDeadLetter" -}}
{{- .Values.deadLetter.shadowTopic | default (printf "%s.shadow" (include "streampod.realDeadLetter" .)) }}
{{- end }}

{{- define "streampod.outputTopic" -}}
{{- if eq (include "streampod.role" .) "active" }}{{ .root.Values.output.topic }}{{ else }}{{ include "streampod.shadowOutput" .root }}{{ end }}
{{- end }}

{{- define "streampod.deadLetterTopic" -}}
{{- if eq (include "streampod.role" .) "active" }}{{ include "streampod.realDeadLetter" .root }}{{ else }}{{ include "streampod.shadowDeadLetter" .root }}{{ end }}
{{- end }}

{{- define "streampod.startFrom" -}}
{{- if eq (include "streampod.role" .) "active" }}{{ .root.Values.input.startFrom }}{{ else }}{{ .root.Values.blueGreen.candidateStartFrom }}{{ end }}
{{- end }}

{{- define "streampod.deadLetterKind" -}}
{{- .Values.deadLetter.kind | default .Values.input.kind }}
{{- end }}

{{/* Whether a colour runs pods at all. */}}
{{- define "streampod.running" -}}
{{- if ne (include "streampod.role" .) "idle" }}true{{ end }}
{{- end }}

{{- define "streampod.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}{{ .Values.serviceAccount.name | default (include "streampod.fullname" .) }}{{ else }}{{ .Values.serviceAccount.name | default "default" }}{{ end }}
{{- end }}

{{- define "streampod.secretName" -}}
{{- .Values.secrets.existingSecret | default (include "streampod.fullname" .) }}
{{- end }}

{{/* image ctx = dict "root" $ "image" .Values.images.x "tag" override */}}
{{- define "streampod.image" -}}
{{- $reg := .root.Values.images.registry -}}
{{- $repo := ternary (printf "%s/%s" (trimSuffix "/" $reg) .image.repository) .image.repository (ne $reg "") -}}
{{- if .image.digest }}{{ printf "%s@%s" $repo .image.digest }}
{{- else }}{{ printf "%s:%s" $repo (.tag | default .image.tag | default .root.Chart.AppVersion) }}
{{- end }}
{{- end }}

{{- define "streampod.secretMount" -}}/var/run/secrets/streampod{{- end }}
{{- define "streampod.caMount" -}}/var/run/secrets/streampod-ca{{- end }}

{{/*
Secret keys a container needs, as a JSON list. ctx = dict "root" $ "kinds" (list of connection kinds)
"checkpoint" bool. Kinds: kafka, eventhubs.
*/}}
{{- define "streampod.secretKeys" -}}
{{- $v := .root.Values -}}
{{- $keys := list -}}
{{- if has "kafka" .kinds -}}
{{- if $v.kafka.eventHubsEndpoint -}}
{{- $keys = append $keys $v.secrets.keys.kafkaEventHubsConnectionString -}}
{{- else if hasPrefix "SASL" $v.kafka.securityProtocol -}}
{{- $keys = append $keys $v.secrets.keys.kafkaSaslPassword -}}
{{- end -}}
{{- end -}}
{{- if and (has "eventhubs" .kinds) (not $v.eventhubs.namespace) -}}
{{- $keys = append $keys $v.secrets.keys.eventHubsConnectionString -}}
{{- end -}}
{{- if and .checkpoint (not $v.eventhubs.checkpointStore.accountUrl) -}}
{{- $keys = append $keys $v.secrets.keys.checkpointStoreConnectionString -}}
{{- end -}}
{{- toJson (uniq $keys) -}}
{{- end }}

{{/* Connection settings of a container as env entries (YAML list). ctx as for secretKeys. */}}
{{- define "streampod.connectionEnv" -}}
{{- $v := .root.Values -}}
{{- $dir := include "streampod.secretMount" . -}}
{{- if has "kafka" .kinds }}
{{- if $v.kafka.eventHubsEndpoint }}
- name: STREAMPOD_KAFKA_EVENTHUB_CONNECTION_STRING_FILE
  value: {{ printf "%s/%s" $dir $v.secrets.keys.kafkaEventHubsConnectionString | quote }}
{{- else }}
- name: STREAMPOD_KAFKA_BOOTSTRAP_SERVERS
  value: {{ $v.kafka.bootstrapServers | quote }}
- name: STREAMPOD_KAFKA_SECURITY_PROTOCOL
  value: {{ $v.kafka.securityProtocol | quote }}
{{- if hasPrefix "SASL" $v.kafka.securityProtocol }}
- name: STREAMPOD_KAFKA_SASL_MECHANISM
  value: {{ $v.kafka.sasl.mechanism | quote }}
- name: STREAMPOD_KAFKA_SASL_USERNAME
  value: {{ $v.kafka.sasl.username | quote }}
- name: STREAMPOD_KAFKA_SASL_PASSWORD_FILE
  value: {{ printf "%s/%s" $dir $v.secrets.keys.kafkaSaslPassword | quote }}
{{- end }}
{{- end }}
{{- if $v.kafka.tls.caSecretName }}
- name: STREAMPOD_KAFKA_SSL_CA_LOCATION
  value: {{ printf "%s/%s" (include "streampod.caMount" .) $v.kafka.tls.caKey | quote }}
{{- end }}
{{- if $v.kafka.extraConfig }}
- name: STREAMPOD_KAFKA_EXTRA_CONFIG
  value: {{ toJson $v.kafka.extraConfig | quote }}
{{- end }}
{{- end }}
{{- if has "eventhubs" .kinds }}
{{- if $v.eventhubs.namespace }}
- name: STREAMPOD_EVENTHUB_NAMESPACE
  value: {{ $v.eventhubs.namespace | quote }}
{{- else }}
- name: STREAMPOD_EVENTHUB_CONNECTION_STRING_FILE
  value: {{ printf "%s/%s" $dir $v.secrets.keys.eventHubsConnectionString | quote }}
{{- end }}
{{- end }}
{{- if .checkpoint }}
{{- if $v.eventhubs.checkpointStore.accountUrl }}
- name: STREAMPOD_CHECKPOINT_STORE_ACCOUNT_URL
  value: {{ $v.eventhubs.checkpointStore.accountUrl | quote }}
{{- else }}
- name: STREAMPOD_CHECKPOINT_STORE_CONNECTION_STRING_FILE
  value: {{ printf "%s/%s" $dir $v.secrets.keys.checkpointStoreConnectionString | quote }}
{{- end }}
- name: STREAMPOD_CHECKPOINT_STORE_CONTAINER
  value: {{ $v.eventhubs.checkpointStore.container | quote }}
{{- end }}
{{- end }}

{{/*
The chart's env list followed by the user's `env` map; a user entry may not redefine a variable the
chart sets (Kubernetes would silently keep the last one). ctx = dict "env" <YAML list> "extra" map "where" name
*/}}
{{- define "streampod.mergeEnv" -}}
{{- $env := fromYamlArray .env -}}
{{- $names := list -}}
{{- range $env }}{{ $names = append $names .name }}{{ end -}}
{{- $where := .where -}}
{{- range $k, $val := .extra }}
{{- if has $k $names }}
{{- fail (printf "%s.%s: the chart sets this variable itself; change it through the chart's own values" $where $k) }}
{{- end }}
{{- $env = append $env (dict "name" $k "value" (toString $val)) }}
{{- end }}
{{- toYaml $env }}
{{- end }}

{{- define "streampod.probes" -}}
{{- $p := .probes -}}
startupProbe:
  httpGet: {path: /healthz, port: {{ .port }}}
  periodSeconds: {{ $p.startupProbe.periodSeconds }}
  failureThreshold: {{ $p.startupProbe.failureThreshold }}
  timeoutSeconds: {{ $p.startupProbe.timeoutSeconds }}
livenessProbe:
  httpGet: {path: /healthz, port: {{ .port }}}
  periodSeconds: {{ $p.livenessProbe.periodSeconds }}
  failureThreshold: {{ $p.livenessProbe.failureThreshold }}
  timeoutSeconds: {{ $p.livenessProbe.timeoutSeconds }}
readinessProbe:
  httpGet: {path: /readyz, port: {{ .port }}}
  periodSeconds: {{ $p.readinessProbe.periodSeconds }}
  failureThreshold: {{ $p.readinessProbe.failureThreshold }}
  timeoutSeconds: {{ $p.readinessProbe.timeoutSeconds }}
{{- end }}

{{/* Env of each container (ctx = dict "root" $ "colour" $c), before the user's `env` maps. */}}
{{- define "streampod.readerEnv" -}}
{{- $v := .root.Values -}}
{{- $kinds := uniq (list $v.input.kind (include "streampod.deadLetterKind" .root)) }}
- name: STREAMPOD_LOG_LEVEL
  value: {{ $v.inputReader.logLevel | quote }}
- name: STREAMPOD_OPS_PORT
  value: {{ $v.inputReader.opsPort | quote }}
- name: STREAMPOD_INPUT_KIND
  value: {{ $v.input.kind | quote }}
- name: STREAMPOD_INPUT_TOPICS
  value: {{ join "," $v.input.topics | quote }}
- name: STREAMPOD_CONSUMER_GROUP
  value: {{ include "streampod.consumerGroup" . | quote }}
{{- if eq $v.input.kind "kafka" }}
- name: STREAMPOD_AUTO_OFFSET_RESET
  value: {{ include "streampod.startFrom" . | quote }}
{{- else }}
- name: STREAMPOD_EVENTHUB_STARTING_POSITION
  value: {{ include "streampod.startFrom" . | quote }}
{{- end }}
{{- if $v.deadLetter.kind }}
- name: STREAMPOD_DEAD_LETTER_KIND
  value: {{ $v.deadLetter.kind | quote }}
{{- end }}
- name: STREAMPOD_DEAD_LETTER_TOPIC
  value: {{ include "streampod.deadLetterTopic" . | quote }}
- name: STREAMPOD_APP_URL
  value: {{ printf "http://127.0.0.1:%v" $v.app.port | quote }}
{{- if $v.inputReader.staticMembership }}
- name: STREAMPOD_GROUP_INSTANCE_ID
  valueFrom:
    fieldRef: {fieldPath: metadata.name}
{{- end }}
{{- include "streampod.connectionEnv" (dict "root" .root "kinds" $kinds "checkpoint" (eq $v.input.kind "eventhubs")) }}
{{- end }}

{{- define "streampod.appEnv" -}}
{{- $v := .root.Values }}
- name: STREAMPOD_LOG_LEVEL
  value: {{ $v.app.logLevel | quote }}
- name: STREAMPOD_OPS_PORT
  value: {{ $v.app.opsPort | quote }}
- name: STREAMPOD_APP_PORT
  value: {{ $v.app.port | quote }}
- name: STREAMPOD_OUTPUT_URL
  value: {{ printf "http://127.0.0.1:%v" $v.outputWriter.port | quote }}
{{- if $v.app.module }}
- name: STREAMPOD_APP_MODULE
  value: {{ $v.app.module | quote }}
{{- end }}
{{- end }}

{{- define "streampod.writerEnv" -}}
{{- $v := .root.Values }}
- name: STREAMPOD_LOG_LEVEL
  value: {{ $v.outputWriter.logLevel | quote }}
- name: STREAMPOD_OPS_PORT
  value: {{ $v.outputWriter.opsPort | quote }}
- name: STREAMPOD_WRITER_PORT
  value: {{ $v.outputWriter.port | quote }}
- name: STREAMPOD_OUTPUT_KIND
  value: {{ $v.output.kind | quote }}
- name: STREAMPOD_OUTPUT_TOPIC
  value: {{ include "streampod.outputTopic" . | quote }}
{{- if and $v.output.allowedTopics (eq (include "streampod.role" .) "active") }}
- name: STREAMPOD_OUTPUT_ALLOWED_TOPICS
  value: {{ join "," $v.output.allowedTopics | quote }}
{{- end }}
{{- include "streampod.connectionEnv" (dict "root" .root "kinds" (list $v.output.kind) "checkpoint" false) }}
{{- end }}
