"""The resource type tokens the rules look at (pulumi-aws 7, pulumi-kubernetes 4)."""

BUCKET = "aws:s3/bucket:Bucket"
BUCKET_VERSIONING = "aws:s3/bucketVersioning:BucketVersioning"
BUCKET_SSE = "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration"
BUCKET_PUBLIC_ACCESS_BLOCK = "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock"
BUCKET_POLICY = "aws:s3/bucketPolicy:BucketPolicy"
BUCKET_LIFECYCLE = "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration"
BUCKET_OBJECT_LOCK = "aws:s3/bucketObjectLockConfiguration:BucketObjectLockConfiguration"
BUCKET_REPLICATION = "aws:s3/bucketReplicationConfig:BucketReplicationConfig"

KMS_KEY = "aws:kms/key:Key"
KMS_REPLICA_KEY = "aws:kms/replicaKey:ReplicaKey"
KMS_ALIAS = "aws:kms/alias:Alias"
SNS_TOPIC = "aws:sns/topic:Topic"
SNS_TOPIC_SUBSCRIPTION = "aws:sns/topicSubscription:TopicSubscription"

RDS_INSTANCE = "aws:rds/instance:Instance"
RDS_PARAMETER_GROUP = "aws:rds/parameterGroup:ParameterGroup"
RDS_BACKUP_REPLICATION = "aws:rds/instanceAutomatedBackupsReplication:InstanceAutomatedBackupsReplication"
METRIC_ALARM = "aws:cloudwatch/metricAlarm:MetricAlarm"
SECRET = "aws:secretsmanager/secret:Secret"
IAM_ROLE = "aws:iam/role:Role"
IAM_ROLE_POLICY = "aws:iam/rolePolicy:RolePolicy"

ROUTE53_ZONE = "aws:route53/zone:Zone"
ROUTE53_RECORD = "aws:route53/record:Record"
ROUTE53_HEALTH_CHECK = "aws:route53/healthCheck:HealthCheck"

ECR_REPOSITORY = "aws:ecr/repository:Repository"
BACKUP_VAULT = "aws:backup/vault:Vault"
BACKUP_PLAN = "aws:backup/plan:Plan"
BACKUP_SELECTION = "aws:backup/selection:Selection"
ECR_REPLICATION = "aws:ecr/replicationConfiguration:ReplicationConfiguration"

K8S_CRONJOB = "kubernetes:batch/v1:CronJob"
K8S_JOB = "kubernetes:batch/v1:Job"
K8S_DEPLOYMENT = "kubernetes:apps/v1:Deployment"
K8S_DEPLOYMENT_PATCH = "kubernetes:apps/v1:DeploymentPatch"
K8S_STATEFULSET = "kubernetes:apps/v1:StatefulSet"
K8S_DAEMONSET = "kubernetes:apps/v1:DaemonSet"
K8S_POD = "kubernetes:core/v1:Pod"
K8S_CONFIGMAP = "kubernetes:core/v1:ConfigMap"
K8S_SERVICE_ACCOUNT = "kubernetes:core/v1:ServiceAccount"
K8S_ROLE = "kubernetes:rbac.authorization.k8s.io/v1:Role"
K8S_ROLE_BINDING = "kubernetes:rbac.authorization.k8s.io/v1:RoleBinding"
K8S_PROVIDER = "pulumi:providers:kubernetes"

# Resources whose loss loses data or the means to read it: they must carry `protect`.
STATEFUL = (BUCKET, KMS_KEY, KMS_REPLICA_KEY, RDS_INSTANCE, ROUTE53_ZONE, SECRET, ECR_REPOSITORY, BACKUP_VAULT)

# Where each workload kind keeps its pod spec.
POD_SPEC_PATHS = {
    K8S_CRONJOB: "spec.jobTemplate.spec.template.spec",
    K8S_JOB: "spec.template.spec",
    K8S_DEPLOYMENT: "spec.template.spec",
    K8S_STATEFULSET: "spec.template.spec",
    K8S_DAEMONSET: "spec.template.spec",
    K8S_POD: "spec",
}
WORKLOADS = tuple(POD_SPEC_PATHS)
