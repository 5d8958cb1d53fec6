{{/*
Names. Kubernetes caps most names at 63 characters; a Job's name also becomes the pod label
`job-name`, which has the same cap, so the hashed Job name keeps the total at 63.
*/}}
{{- define "migrate-job.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "migrate-job.fullname" -}}
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

{{- define "migrate-job.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "migrate-job.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository $tag -}}
{{- end -}}
{{- end -}}

{{/*
In hook mode the name is stable: `before-hook-creation` deletes the previous Job first. As a
plain Job (Argo CD sync waves, Flux, kubectl apply) the name carries a hash of the image and the
values, because a Job's pod template is immutable: a new image or setting must be a new Job,
and an unchanged deploy must be the same Job (nothing re-runs).
*/}}
{{- define "migrate-job.jobName" -}}
{{- $full := include "migrate-job.fullname" . -}}
{{- if .Values.hooks.enabled -}}
{{- $full -}}
{{- else -}}
{{- $hash := printf "%s|%s" (include "migrate-job.image" .) (toJson .Values) | sha256sum | trunc 8 -}}
{{- printf "%s-%s" ($full | trunc 54 | trimSuffix "-") $hash -}}
{{- end -}}
{{- end -}}

{{/* The post-deploy Job: the pre Job's name with `-post` (before the hash in plain-Job mode). */}}
{{- define "migrate-job.postJobName" -}}
{{- $full := include "migrate-job.fullname" . -}}
{{- if .Values.hooks.enabled -}}
{{- printf "%s-post" ($full | trunc 58 | trimSuffix "-") -}}
{{- else -}}
{{- $hash := printf "post|%s|%s" (include "migrate-job.image" .) (toJson .Values) | sha256sum | trunc 8 -}}
{{- printf "%s-post-%s" ($full | trunc 49 | trimSuffix "-") $hash -}}
{{- end -}}
{{- end -}}

{{- define "migrate-job.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "migrate-job.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "migrate-job.selectorLabels" -}}
app.kubernetes.io/name: {{ include "migrate-job.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: database-migration
{{- end -}}

{{- define "migrate-job.labels" -}}
{{ include "migrate-job.selectorLabels" . }}
helm.sh/chart: {{ include "migrate-job.chart" . }}
app.kubernetes.io/version: {{ default .Chart.AppVersion .Values.image.tag | trunc 63 | trimSuffix "-" | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/*
Hook annotations for a resource the Jobs depend on, or for a Job itself.
A pre-install hook runs before the release's ordinary resources exist, so the ServiceAccount
(-10) and the ConfigMap/Secret (-5) are hooks too; otherwise the first install never gets a pod.
`before-hook-creation` lets the next upgrade re-create them; `hook-succeeded` cleans up after a
success; a failed Job and what it used stay for `kubectl logs` (no `hook-failed`).
With postDeploy.enabled the dependencies are also post-install,post-upgrade hooks: Helm deleted
them after the pre phase succeeded, and the post Job needs them again (same weights).
Argo CD maps Helm hooks itself but ignores them once any Argo hook annotation is present, so in
Argo mode every one of these resources carries Argo's own annotations (PostSync for the post).
Usage: include "migrate-job.hookAnnotations" (dict "root" $ "weight" "-10")        dependency
       include "migrate-job.hookAnnotations" (dict "root" $ "weight" "0" "phase" "pre")  a Job
*/}}
{{- define "migrate-job.hookAnnotations" -}}
{{- $v := .root.Values -}}
{{- $phase := .phase | default "" -}}
{{- $helm := list -}}
{{- $argo := list -}}
{{- if ne $phase "post" -}}
{{- $helm = concat $helm (list "pre-install" "pre-upgrade") -}}
{{- $argo = append $argo "PreSync" -}}
{{- end -}}
{{- if or (eq $phase "post") (and (eq $phase "") $v.postDeploy.enabled) -}}
{{- $helm = concat $helm (list "post-install" "post-upgrade") -}}
{{- $argo = append $argo "PostSync" -}}
{{- end -}}
{{- if $v.hooks.enabled }}
helm.sh/hook: {{ join "," $helm }}
helm.sh/hook-weight: {{ .weight | quote }}
helm.sh/hook-delete-policy: {{ ternary $v.postDeploy.hookDeletePolicy "before-hook-creation,hook-succeeded" (eq $phase "post") }}
{{- end }}
{{- if $v.argo.enabled }}
argocd.argoproj.io/hook: {{ join "," $argo }}
argocd.argoproj.io/hook-delete-policy: {{ $v.argo.hookDeletePolicy }}
argocd.argoproj.io/sync-wave: {{ .weight | quote }}
{{- else if and (eq $phase "post") (not $v.hooks.enabled) -}}
{{- if not (kindIs "invalid" $v.postDeploy.syncWave) }}
argocd.argoproj.io/sync-wave: {{ $v.postDeploy.syncWave | toString | quote }}
{{- end }}
{{- else if not (kindIs "invalid" $v.argo.syncWave) }}
argocd.argoproj.io/sync-wave: {{ $v.argo.syncWave | toString | quote }}
{{- end }}
{{- end -}}

{{/* True when the chart must create its own Secret (something secret was passed inline). */}}
{{- define "migrate-job.needsSecret" -}}
{{- if or .Values.database.url .Values.database.password .Values.notify.url -}}true{{- end -}}
{{- end -}}

{{- define "migrate-job.backupUri" -}}
{{- $b := .Values.backup -}}
{{- if $b.uri -}}
{{- $b.uri -}}
{{- else if ne $b.volume.type "none" -}}
{{- printf "file://%s" $b.volume.mountPath -}}
{{- else -}}
none
{{- end -}}
{{- end -}}

{{/*
Refuse values that would only fail inside the cluster, after Helm has waited for the hook.
*/}}
{{- define "migrate-job.validate" -}}
{{- $v := .Values -}}
{{- $db := $v.database -}}
{{- if $v.hooks.enabled -}}
{{- $budget := add $v.job.activeDeadlineSeconds $v.pod.terminationGracePeriodSeconds -}}
{{- if ge (int $budget) (int $v.hooks.helmTimeoutSeconds) -}}
{{- fail (printf "job.activeDeadlineSeconds (%v) + pod.terminationGracePeriodSeconds (%v) must be below hooks.helmTimeoutSeconds (%v, the --timeout you give Helm): otherwise Helm gives up before the Job reports why it failed" $v.job.activeDeadlineSeconds $v.pod.terminationGracePeriodSeconds $v.hooks.helmTimeoutSeconds) -}}
{{- end -}}
{{- end -}}
{{- if $v.postDeploy.enabled -}}
{{- if $v.hooks.enabled -}}
{{- $budget := add $v.postDeploy.activeDeadlineSeconds $v.pod.terminationGracePeriodSeconds -}}
{{- if ge (int $budget) (int $v.hooks.helmTimeoutSeconds) -}}
{{- fail (printf "postDeploy.activeDeadlineSeconds (%v) + pod.terminationGracePeriodSeconds (%v) must be below hooks.helmTimeoutSeconds (%v, the --timeout you give Helm): Helm waits for the post-install/post-upgrade hook with the same timeout" $v.postDeploy.activeDeadlineSeconds $v.pod.terminationGracePeriodSeconds $v.hooks.helmTimeoutSeconds) -}}
{{- end -}}
{{- else if and (not $v.argo.enabled) (kindIs "invalid" $v.postDeploy.syncWave) -}}
{{- fail "postDeploy.enabled without Helm hooks (hooks.enabled=false) or Argo CD hooks (argo.enabled) needs postDeploy.syncWave, a sync wave after the application's: otherwise the post Job would run while the old version still serves traffic" -}}
{{- end -}}
{{- end -}}
{{- if and $db.url $db.existingSecret.name -}}
{{- fail "set either database.url or database.existingSecret.name, not both" -}}
{{- end -}}
{{- if eq $db.secretSource "env" -}}
{{- if not (or $db.url $db.existingSecret.name $db.host) -}}
{{- fail "no database configured: set database.existingSecret.name (a Secret holding the URL), database.secretSource aws/azure/file, or database.host (libpq PG* variables)" -}}
{{- end -}}
{{- else -}}
{{- if or $db.url $db.password -}}
{{- fail (printf "database.url/database.password are for secretSource env; secretSource %s reads the credentials itself" $db.secretSource) -}}
{{- end -}}
{{- end -}}
{{- if and (eq $db.secretSource "file") (not (or $db.existingSecret.name $db.secretFile)) -}}
{{- fail "database.secretSource file needs database.existingSecret.name (mounted by the chart) or database.secretFile (a file you mount with extraVolumes)" -}}
{{- end -}}
{{- if and (eq $db.secretSource "aws") (not $db.aws.secretId) -}}
{{- fail "database.secretSource aws needs database.aws.secretId" -}}
{{- end -}}
{{- if and (eq $db.secretSource "azure") (not (and $db.azure.vaultUrl $db.azure.secretName)) -}}
{{- fail "database.secretSource azure needs database.azure.vaultUrl and database.azure.secretName" -}}
{{- end -}}
{{- if and $v.notify.url $v.notify.existingSecret.name -}}
{{- fail "set either notify.url or notify.existingSecret.name, not both" -}}
{{- end -}}
{{- if not $v.serviceAccount.create -}}
{{- if not $v.serviceAccount.name -}}
{{- fail "serviceAccount.create is false: set serviceAccount.name to the existing ServiceAccount" -}}
{{- end -}}
{{- if $v.identity.aws.roleArn -}}
{{- fail "identity.aws.roleArn annotates the ServiceAccount this chart creates; with serviceAccount.create=false annotate your own ServiceAccount instead" -}}
{{- end -}}
{{- end -}}
{{- $bt := $v.backup.volume.type -}}
{{- if and (eq $bt "existingClaim") (not $v.backup.volume.existingClaim) -}}
{{- fail "backup.volume.type existingClaim needs backup.volume.existingClaim" -}}
{{- end -}}
{{- if and (hasPrefix "file://" $v.backup.uri) (eq $bt "none") -}}
{{- fail "a file:// backup needs backup.volume (the root filesystem is read-only)" -}}
{{- end -}}
{{- if and (not $v.image.digest) (not (default .Chart.AppVersion $v.image.tag)) -}}
{{- fail "set image.tag or image.digest" -}}
{{- end -}}
{{- end -}}
