{{/* vim: set filetype=mustache: */}}

{{/* The chart name, overridable. */}}
{{- define "velero-download-server.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
The full name of the release's objects (and of the Service the gateway looks itself up by).
A release name that already contains the chart name is used as is.
*/}}
{{- define "velero-download-server.fullname" -}}
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

{{/* Cluster-scoped objects carry the namespace too: two releases in two namespaces must not collide. */}}
{{- define "velero-download-server.clusterName" -}}
{{- printf "%s-%s" .Release.Namespace (include "velero-download-server.fullname" .) -}}
{{- end -}}

{{/* chart-version, for the helm.sh/chart label. */}}
{{- define "velero-download-server.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels that select the gateway's pods. */}}
{{- define "velero-download-server.selectorLabels" -}}
app.kubernetes.io/name: {{ include "velero-download-server.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/*
Labels every object of the release carries besides name and component. part-of names the application
this one belongs to (Velero), as the recommended labels intend; component says which piece an object is.
*/}}
{{- define "velero-download-server.releaseLabels" -}}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: velero
helm.sh/chart: {{ include "velero-download-server.chart" . }}
{{- end -}}

{{/* Labels of every object of the gateway: its name, the release's labels, and a component (default gateway). */}}
{{- define "velero-download-server.componentLabels" -}}
app.kubernetes.io/name: {{ include "velero-download-server.name" .root }}
{{ include "velero-download-server.releaseLabels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* Labels of every object of the gateway. */}}
{{- define "velero-download-server.labels" -}}
{{ include "velero-download-server.componentLabels" (dict "root" . "component" "gateway") }}
{{- end -}}

{{/*
The gateway pods' default placement: spread the replicas over nodes (preferred, or required with
"hard"), so one node's drain or failure does not take every replica. A given `affinity` replaces it.
*/}}
{{- define "velero-download-server.affinity" -}}
{{- if .Values.affinity -}}
{{- toYaml .Values.affinity -}}
{{- else if .Values.podAntiAffinity -}}
{{- $term := dict "topologyKey" "kubernetes.io/hostname" "labelSelector" (dict "matchLabels" (include "velero-download-server.selectorLabels" . | fromYaml)) -}}
{{- if eq .Values.podAntiAffinity "soft" -}}
{{- toYaml (dict "podAntiAffinity" (dict "preferredDuringSchedulingIgnoredDuringExecution" (list (dict "weight" 100 "podAffinityTerm" $term)))) -}}
{{- else if eq .Values.podAntiAffinity "hard" -}}
{{- toYaml (dict "podAntiAffinity" (dict "requiredDuringSchedulingIgnoredDuringExecution" (list $term))) -}}
{{- else -}}
{{- fail (printf "podAntiAffinity must be soft, hard or empty, not %q" (toString .Values.podAntiAffinity)) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Where the CA of the gateway's certificate is read from (ca.crt): the published ConfigMap, else the certificate Secret, that key only. */}}
{{- define "velero-download-server.caVolume" -}}
{{- if .Values.tls.caConfigMap -}}
configMap:
  name: {{ .Values.tls.caConfigMap }}
  items:
    - key: ca.crt
      path: ca.crt
{{- else -}}
secret:
  secretName: {{ include "velero-download-server.tlsSecretName" . }}
  items:
    - key: ca.crt
      path: ca.crt
{{- end -}}
{{- end -}}

{{/* The service account the gateway runs as. */}}
{{- define "velero-download-server.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "velero-download-server.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* The certificate Secret (--tls-secret). */}}
{{- define "velero-download-server.tlsSecretName" -}}
{{- required "tls.secretName must not be empty" .Values.tls.secretName -}}
{{- end -}}

{{/* The signing-key Secret of signed DownloadRequest URLs: a fixed name the gateway creates. */}}
{{- define "velero-download-server.signingKeySecretName" -}}
velero-download-server-signing-key
{{- end -}}

{{/* image:tag or image@digest. */}}
{{- define "velero-download-server.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{/* The served namespaces as a JSON list: the release namespace first, then configuration.watchNamespaces. */}}
{{- define "velero-download-server.watchedNamespaces" -}}
{{- prepend (.Values.configuration.watchNamespaces | default (list)) .Release.Namespace | uniq | toJson -}}
{{- end -}}

{{/* "true" when a watched namespace is a `*` glob: the gateway then lists cluster-wide. */}}
{{- define "velero-download-server.watchesGlob" -}}
{{- range (.Values.configuration.watchNamespaces | default (list)) -}}
{{- if contains "*" . -}}true{{- end -}}
{{- end -}}
{{- end -}}

{{/* configuration.fqdn without scheme and port: the Ingress host and a certificate name. */}}
{{- define "velero-download-server.fqdnHost" -}}
{{- regexReplaceAll ":[0-9]+$" (.Values.configuration.fqdn | trimPrefix "https://") "" -}}
{{- end -}}

{{/* The Service's DNS names, as in the certificate the gateway generates. */}}
{{- define "velero-download-server.serviceDnsNames" -}}
{{- $svc := include "velero-download-server.fullname" . -}}
{{- $ns := .Release.Namespace -}}
{{- list $svc (printf "%s.%s" $svc $ns) (printf "%s.%s.svc" $svc $ns) (printf "%s.%s.svc.cluster.local" $svc $ns) | toJson -}}
{{- end -}}

{{/* "true" when the gateway keeps the webhook's caBundle in step with ca.crt (not with cert-manager, whose CA injector does). */}}
{{- define "velero-download-server.webhookCaBundle" -}}
{{- if and .Values.admissionWebhook.enabled (ne .Values.tls.mode "certManager") -}}true{{- end -}}
{{- end -}}

{{/* The MutatingWebhookConfiguration's name (--webhook-configuration): cluster-scoped, so it carries the namespace. */}}
{{- define "velero-download-server.webhookConfigurationName" -}}
{{- include "velero-download-server.clusterName" . -}}
{{- end -}}

{{/*
The RBAC rules of files/rules.yaml with the object names filled in, as YAML: cluster, watched, own,
and the optional caConfigMap, accessUsers and webhookCaBundle lists that templates/rbac.yaml adds when in use.
*/}}
{{- define "velero-download-server.rules" -}}
{{- $certificate := include "velero-download-server.tlsSecretName" . -}}
{{- $signingKey := include "velero-download-server.signingKeySecretName" . -}}
{{- $webhook := include "velero-download-server.webhookConfigurationName" . -}}
{{- $service := include "velero-download-server.fullname" . -}}
{{- .Files.Get "files/rules.yaml" | replace "__CERTIFICATE_SECRET__" $certificate | replace "__SIGNING_KEY_SECRET__" $signingKey | replace "__CA_CONFIGMAP__" (.Values.tls.caConfigMap | default "") | replace "__SERVICE__" $service | replace "__WEBHOOK_CONFIGURATION__" $webhook | replace "__ACCESS_USERS_SECRET__" (.Values.accessUsers.secretName | default "") -}}
{{- end -}}

{{/* The admission webhook's own Service (--webhook-service-name); its DNS names are in the certificate. */}}
{{- define "velero-download-server.webhookServiceName" -}}
{{- printf "%s-webhook" (include "velero-download-server.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Velero's service account as the API server names it in userInfo. */}}
{{- define "velero-download-server.veleroUser" -}}
{{- $sa := .Values.admissionWebhook.veleroServiceAccount -}}
{{- printf "system:serviceaccount:%s:%s" ($sa.namespace | default .Release.Namespace) $sa.name -}}
{{- end -}}

{{/* The gateway's own service account as the API server names it in userInfo. */}}
{{- define "velero-download-server.gatewayUser" -}}
{{- printf "system:serviceaccount:%s:%s" .Release.Namespace (include "velero-download-server.serviceAccountName" .) -}}
{{- end -}}

{{/*
The webhook needs the API server to guard the requester record (ValidatingAdmissionPolicy, GA in
Kubernetes 1.30): on older clusters the chart refuses rather than install a weaker guarantee.
*/}}
{{- define "velero-download-server.webhookSupported" -}}
{{- if and .Values.admissionWebhook.enabled (semverCompare "<1.30-0" .Capabilities.KubeVersion.Version) -}}
{{- fail (printf "admissionWebhook.enabled needs Kubernetes 1.30 or later (ValidatingAdmissionPolicy guards who may write status.downloadURL); this cluster is %s. Disable the webhook and use the velero-download client, or upgrade the cluster." .Capabilities.KubeVersion.Version) -}}
{{- end -}}
{{- end -}}

{{/* The webhook's and the policy's namespace selector: as given, else the watched namespaces by name (none with a glob). */}}
{{- define "velero-download-server.webhookNamespaceSelector" -}}
{{- $selector := .Values.admissionWebhook.namespaceSelector -}}
{{- if and (not $selector) (not (include "velero-download-server.watchesGlob" .)) -}}
{{- $selector = dict "matchExpressions" (list (dict "key" "kubernetes.io/metadata.name" "operator" "In" "values" (include "velero-download-server.watchedNamespaces" . | fromJsonArray))) -}}
{{- end -}}
{{- toYaml ($selector | default dict) -}}
{{- end -}}

{{/*
Whole seconds (rounded up) of a duration as the gateway's flags write it: 500ms, 25s, 2m, 1.5h. The
schema has already checked the form.
*/}}
{{- define "velero-download-server.seconds" -}}
{{- $n := regexReplaceAll "^([0-9.]+)(ms|s|m|h)$" . "${1}" | float64 -}}
{{- $unit := regexReplaceAll "^[0-9.]+" . "" -}}
{{- $factor := get (dict "ms" 0.001 "s" 1.0 "m" 60.0 "h" 3600.0) $unit -}}
{{- mulf $n $factor | ceil | int -}}
{{- end -}}

{{/*
The pod's terminationGracePeriodSeconds: the kubelet kills the container this long after it began
stopping the pod, and the time counts from the preStop sleep on. It must cover the sleep, the
gateway's own pause (--shutdown-delay) and the drain (--shutdown-grace); unset, it is their sum plus
5 s for the exit itself; set, a value that would cut the drain is refused.
*/}}
{{- define "velero-download-server.terminationGracePeriodSeconds" -}}
{{- $cfg := .Values.configuration -}}
{{- $delay := include "velero-download-server.seconds" $cfg.shutdownDelay | int -}}
{{- if gt $delay 600 -}}
{{- fail (printf "configuration.shutdownDelay is %s; the gateway accepts at most 10m" $cfg.shutdownDelay) -}}
{{- end -}}
{{- $need := add (int .Values.preStopSleepSeconds) $delay (include "velero-download-server.seconds" $cfg.shutdownGrace | int) -}}
{{- $set := .Values.terminationGracePeriodSeconds -}}
{{- if kindIs "invalid" $set -}}
{{- add $need 5 -}}
{{- else if lt (int $set) $need -}}
{{- fail (printf "terminationGracePeriodSeconds is %v, less than preStopSleepSeconds + configuration.shutdownDelay + configuration.shutdownGrace = %d s: the kubelet would kill running downloads; raise it or leave it unset (computed)" $set $need) -}}
{{- else -}}
{{- int $set -}}
{{- end -}}
{{- end -}}

{{/* Labels of the `helm test` Pod: the release's, without the gateway's name, so nothing that selects the gateway selects it. */}}
{{- define "velero-download-server.testLabels" -}}
{{ include "velero-download-server.releaseLabels" . }}
app.kubernetes.io/component: test
{{- end -}}
