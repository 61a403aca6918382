{{/*
Cross-field checks that values.schema.json cannot express; each fails `helm install` with one line
naming the values to fix.
*/}}
{{- define "streampod.validate" -}}
{{- $v := .Values -}}
{{- $kinds := list $v.input.kind $v.output.kind (include "streampod.deadLetterKind" .) -}}
{{- $secretsOk := ne $v.secrets.existingSecret "" -}}
{{- if and (eq $v.input.kind "eventhubs") (gt (len $v.input.topics) 1) -}}
{{- fail "input.topics: native Event Hubs input reads exactly one event hub" -}}
{{- end -}}
{{- if and (eq $v.input.kind "kafka") (not (has $v.input.startFrom (list "earliest" "latest"))) -}}
{{- fail (printf "input.startFrom: %q: Kafka input starts from earliest or latest" $v.input.startFrom) -}}
{{- end -}}
{{- if has "kafka" $kinds -}}
{{- if $v.kafka.eventHubsEndpoint -}}
{{- if not (or $secretsOk $v.kafka.eventHubsConnectionString) -}}
{{- fail "kafka.eventHubsEndpoint: needs kafka.eventHubsConnectionString or secrets.existingSecret" -}}
{{- end -}}
{{- else -}}
{{- if not $v.kafka.bootstrapServers -}}
{{- fail "kafka.bootstrapServers: required for Kafka input or output (or set kafka.eventHubsEndpoint)" -}}
{{- end -}}
{{- if hasPrefix "SASL" $v.kafka.securityProtocol -}}
{{- if not (and $v.kafka.sasl.mechanism $v.kafka.sasl.username) -}}
{{- fail (printf "kafka.sasl.mechanism and kafka.sasl.username: required when kafka.securityProtocol=%s" $v.kafka.securityProtocol) -}}
{{- end -}}
{{- if not (or $secretsOk $v.kafka.sasl.password) -}}
{{- fail (printf "kafka.sasl.password or secrets.existingSecret: required when kafka.securityProtocol=%s" $v.kafka.securityProtocol) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- if has "eventhubs" $kinds -}}
{{- if not (or $v.eventhubs.namespace $v.eventhubs.connectionString $secretsOk) -}}
{{- fail "eventhubs: set eventhubs.namespace (workload identity), eventhubs.connectionString or secrets.existingSecret" -}}
{{- end -}}
{{- end -}}
{{- if eq $v.input.kind "eventhubs" -}}
{{- if not $v.eventhubs.checkpointStore.container -}}
{{- fail "eventhubs.checkpointStore.container: required for native Event Hubs input" -}}
{{- end -}}
{{- if not (or $v.eventhubs.checkpointStore.accountUrl $v.eventhubs.checkpointStore.connectionString $secretsOk) -}}
{{- fail "eventhubs.checkpointStore: set accountUrl (workload identity), connectionString or secrets.existingSecret" -}}
{{- end -}}
{{- end -}}
{{- if $v.blueGreen.enabled -}}
{{- if and (eq $v.input.kind "eventhubs") (hasPrefix "$" $v.input.consumerGroup) -}}
{{- range $c := list "blue" "green" -}}
{{- if not (index $v.blueGreen $c).candidateConsumerGroup -}}
{{- fail (printf "blueGreen.%s.candidateConsumerGroup: required with Event Hubs group %q (a candidate needs its own group, created on the hub)" $c $v.input.consumerGroup) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- $groups := list -}}
{{- range $c := list "blue" "green" -}}
{{- $groups = append $groups (include "streampod.consumerGroup" (dict "root" $ "colour" $c)) -}}
{{- end -}}
{{- if eq (index $groups 0) (index $groups 1) -}}
{{- fail (printf "blueGreen: both colours would consume with group %q; candidate groups must differ from input.consumerGroup" (index $groups 0)) -}}
{{- end -}}
{{- if eq (include "streampod.shadowOutput" .) $v.output.topic -}}
{{- fail "output.shadowTopic: must differ from output.topic (the candidate never writes the real output)" -}}
{{- end -}}
{{- if has (include "streampod.shadowOutput" .) $v.output.allowedTopics -}}
{{- fail "output.allowedTopics: may not name the shadow output" -}}
{{- end -}}
{{- if eq (include "streampod.shadowDeadLetter" .) (include "streampod.realDeadLetter" .) -}}
{{- fail "deadLetter.shadowTopic: must differ from the real dead-letter destination" -}}
{{- end -}}
{{- end -}}
{{- if $v.autoscaling.keda.enabled -}}
{{- $k := $v.autoscaling.keda -}}
{{- if lt (int $k.partitionCount) 1 -}}
{{- fail "autoscaling.keda.partitionCount: required (the input's partition count caps the replicas)" -}}
{{- end -}}
{{- if gt (int $k.maxReplicas) (int $k.partitionCount) -}}
{{- fail (printf "autoscaling.keda.maxReplicas: %d is more than the %d partitions; extra replicas would sit idle" (int $k.maxReplicas) (int $k.partitionCount)) -}}
{{- end -}}
{{- if gt (int $k.minReplicas) (int ($k.maxReplicas | default $k.partitionCount)) -}}
{{- fail "autoscaling.keda.minReplicas: more than maxReplicas" -}}
{{- end -}}
{{- if and (eq $v.input.kind "kafka") $v.kafka.eventHubsEndpoint (not $v.eventhubs.namespace) -}}
{{- fail "eventhubs.namespace: KEDA needs the namespace host to reach the Event Hubs Kafka endpoint" -}}
{{- end -}}
{{- end -}}
{{- if and $v.workloadIdentity.enabled (not $v.serviceAccount.create) (not $v.serviceAccount.name) -}}
{{- fail "workloadIdentity.enabled: needs serviceAccount.create or serviceAccount.name" -}}
{{- end -}}
{{- end }}
