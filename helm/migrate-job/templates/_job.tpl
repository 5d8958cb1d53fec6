{{/*
One migration Job, shared by the pre-deploy Job (job.yaml) and the post-deploy Job
(job-post.yaml): everything but the name, the phase, the deadline, the TTL and the hook
annotations comes from the same values.
Usage: include "migrate-job.job" (dict "root" $ "phase" "pre" "name" $name "annotations" $ann
       "deadline" 240 "ttl" nil)
*/}}
{{- define "migrate-job.job" -}}
{{- $root := .root -}}
{{- $v := $root.Values -}}
{{- $db := $v.database -}}
{{- $fullname := include "migrate-job.fullname" $root -}}
{{- $name := .name -}}
{{- $phase := .phase -}}
{{- /* The pre Job applies everything unless a post Job follows it. */ -}}
{{- $runPhase := ternary .phase "all" (or (eq .phase "post") $v.postDeploy.enabled) -}}
{{- /*
Pod labels and annotations. The Azure Workload Identity webhook only mutates pods that carry
`azure.workload.identity/use: "true"` on the pod itself; a ServiceAccount annotation alone
gives a pod with no token. Mesh sidecars never exit, so they are opted out by default; a user's
own pod labels/annotations can still override those defaults.
*/ -}}
{{- $identityLabels := dict -}}
{{- if $v.identity.azure.clientId -}}
{{- $_ := set $identityLabels "azure.workload.identity/use" "true" -}}
{{- end -}}
{{- $meshLabels := dict -}}
{{- $meshAnnotations := dict -}}
{{- if $v.pod.disableSidecarInjection -}}
{{- $_ := set $meshLabels "sidecar.istio.io/inject" "false" -}}
{{- $_ := set $meshLabels "kuma.io/sidecar-injection" "disabled" -}}
{{- $_ := set $meshAnnotations "sidecar.istio.io/inject" "false" -}}
{{- $_ := set $meshAnnotations "linkerd.io/inject" "disabled" -}}
{{- $_ := set $meshAnnotations "consul.hashicorp.com/connect-inject" "false" -}}
{{- end -}}
{{- $podLabels := merge $identityLabels (deepCopy $v.pod.labels) $meshLabels -}}
{{- $podAnnotations := merge (deepCopy $v.pod.annotations) $meshAnnotations -}}
apiVersion: batch/v1
kind: Job
metadata:
  name: {{ $name }}
  namespace: {{ $root.Release.Namespace }}
  labels:
    {{- include "migrate-job.labels" $root | nindent 4 }}
    migrate-job/phase: {{ $phase }}
    {{- with $v.job.labels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- with .annotations }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
spec:
  # One attempt: a migration that failed for a reason of its own fails again; retries only hide
  # the first (useful) error behind later ones. Disruptions are retried by podFailurePolicy.
  backoffLimit: 0
  activeDeadlineSeconds: {{ .deadline }}
  {{- if not (kindIs "invalid" .ttl) }}
  ttlSecondsAfterFinished: {{ .ttl }}
  {{- end }}
  # A replacement pod starts only once the old one is gone, so two never overlap (the old one may
  # still hold the migration lock while it rolls back).
  podReplacementPolicy: Failed
  podFailurePolicy:
    rules:
      # A node drain or preemption is not the migration's fault: retry without counting it.
      - action: Ignore
        onPodConditions:
          - type: DisruptionTarget
            status: "True"
      # The job's own exit codes (config, database, lock, integrity, safety, backup, migration,
      # verification failures): fail the Job at once with that reason.
      - action: FailJob
        onExitCodes:
          containerName: migrate
          operator: In
          values: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]
  template:
    metadata:
      labels:
        {{- include "migrate-job.selectorLabels" $root | nindent 8 }}
        migrate-job/phase: {{ $phase }}
        {{- with $podLabels }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      {{- with $podAnnotations }}
      annotations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
    spec:
      restartPolicy: Never
      serviceAccountName: {{ include "migrate-job.serviceAccountName" $root }}
      automountServiceAccountToken: {{ $v.serviceAccount.automountServiceAccountToken }}
      # Service links would add *_PORT/*_HOST variables for every Service in the namespace.
      enableServiceLinks: false
      terminationGracePeriodSeconds: {{ $v.pod.terminationGracePeriodSeconds }}
      {{- with $v.pod.priorityClassName }}
      priorityClassName: {{ . }}
      {{- end }}
      {{- with $v.imagePullSecrets }}
      imagePullSecrets:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $v.pod.nodeSelector }}
      nodeSelector:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $v.pod.tolerations }}
      tolerations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $v.pod.affinity }}
      affinity:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      securityContext:
        runAsNonRoot: true
        runAsUser: {{ $v.pod.runAsUser }}
        runAsGroup: {{ $v.pod.runAsGroup }}
        fsGroup: {{ $v.pod.fsGroup }}
        seccompProfile:
          type: RuntimeDefault
      containers:
        - name: migrate
          image: {{ include "migrate-job.image" $root | quote }}
          imagePullPolicy: {{ $v.image.pullPolicy }}
          {{- with $v.command }}
          command:
            {{- toYaml . | nindent 12 }}
          {{- end }}
          {{- with $v.args }}
          args:
            {{- toYaml . | nindent 12 }}
          {{- end }}
          envFrom:
            - configMapRef:
                name: {{ $fullname }}
            {{- with $v.extraEnvFrom }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
          env:
            # yoyo and getpass look the user up by name; a numeric UID has no passwd entry.
            - name: USER
              value: migrate
            - name: HOME
              value: /tmp
            # Which migrations this Job applies (`run --phase`): docs/rollout.md.
            - name: MIGRATE_PHASE
              value: {{ $runPhase | quote }}
            {{- if eq $db.secretSource "env" }}
            {{- if $db.existingSecret.name }}
            - name: MIGRATE_DATABASE_URL
              valueFrom:
                secretKeyRef:
                  name: {{ $db.existingSecret.name }}
                  key: {{ $db.existingSecret.key }}
            {{- else if $db.url }}
            - name: MIGRATE_DATABASE_URL
              valueFrom:
                secretKeyRef:
                  name: {{ $fullname }}
                  key: MIGRATE_DATABASE_URL
            {{- end }}
            {{- if $db.password }}
            - name: PGPASSWORD
              valueFrom:
                secretKeyRef:
                  name: {{ $fullname }}
                  key: PGPASSWORD
            {{- end }}
            {{- end }}
            {{- if $v.notify.existingSecret.name }}
            - name: MIGRATE_NOTIFY_URL
              valueFrom:
                secretKeyRef:
                  name: {{ $v.notify.existingSecret.name }}
                  key: {{ $v.notify.existingSecret.key }}
            {{- else if $v.notify.url }}
            - name: MIGRATE_NOTIFY_URL
              valueFrom:
                secretKeyRef:
                  name: {{ $fullname }}
                  key: MIGRATE_NOTIFY_URL
            {{- end }}
            {{- with $v.extraEnv }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
          # The job writes its one-line JSON summary here; if it dies before that, the end of
          # its log becomes the termination message instead.
          terminationMessagePath: {{ $v.settings.terminationLog }}
          terminationMessagePolicy: FallbackToLogsOnError
          securityContext:
            runAsNonRoot: true
            runAsUser: {{ $v.pod.runAsUser }}
            runAsGroup: {{ $v.pod.runAsGroup }}
            readOnlyRootFilesystem: true
            allowPrivilegeEscalation: false
            privileged: false
            capabilities:
              drop:
                - ALL
            seccompProfile:
              type: RuntimeDefault
          {{- with $v.resources }}
          resources:
            {{- toYaml . | nindent 12 }}
          {{- end }}
          volumeMounts:
            - name: tmp
              mountPath: /tmp
            {{- if and (eq $db.secretSource "file") $db.existingSecret.name }}
            - name: database-secret
              mountPath: {{ $db.existingSecret.mountPath }}
              readOnly: true
            {{- end }}
            {{- if ne $v.backup.volume.type "none" }}
            - name: backups
              mountPath: {{ $v.backup.volume.mountPath }}
            {{- end }}
            {{- with $v.extraVolumeMounts }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
      volumes:
        - name: tmp
          emptyDir:
            sizeLimit: {{ $v.tmp.sizeLimit }}
        {{- if and (eq $db.secretSource "file") $db.existingSecret.name }}
        - name: database-secret
          secret:
            secretName: {{ $db.existingSecret.name }}
            defaultMode: 0440
            items:
              - key: {{ $db.existingSecret.key }}
                path: {{ $db.existingSecret.key }}
        {{- end }}
        {{- if eq $v.backup.volume.type "emptyDir" }}
        - name: backups
          emptyDir:
            sizeLimit: {{ $v.backup.volume.sizeLimit }}
        {{- else if eq $v.backup.volume.type "existingClaim" }}
        - name: backups
          persistentVolumeClaim:
            claimName: {{ $v.backup.volume.existingClaim }}
        {{- end }}
        {{- with $v.extraVolumes }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
{{- end -}}
