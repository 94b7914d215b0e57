# Outputs. try(..., null) keeps `terraform output` usable on a partial apply.

output "cluster_id" {
  description = "Managed Kubernetes cluster id."
  value       = try(yandex_kubernetes_cluster.main.id, null)
}

output "cluster_name" {
  description = "Managed Kubernetes cluster name."
  value       = try(yandex_kubernetes_cluster.main.name, null)
}

output "kubeconfig_command" {
  description = "The yc command that writes the cluster's kubeconfig context."
  value = try(
    "yc managed-kubernetes cluster get-credentials --id ${yandex_kubernetes_cluster.main.id} --folder-id ${var.folder_id} ${var.master_public_ip ? "--external" : "--internal"}",
    null,
  )
}

output "node_group_ids" {
  description = "Node group ids by zone."
  value       = try({ for zone, group in yandex_kubernetes_node_group.workers : zone => group.id }, null)
}

output "registry_id" {
  description = "Container Registry id."
  value       = try(yandex_container_registry.main.id, null)
}

output "registry_url" {
  description = "Image prefix for docker push and the Deployment (cr.yandex/<registry id>)."
  value       = try(local.registry_url, null)
}

output "model_bucket" {
  description = "Bucket for the Triton model repository (s3://https://storage.yandexcloud.net:443/<bucket>/model_repository)."
  value       = try(yandex_storage_bucket.models.bucket, null)
}

output "drift_bucket" {
  description = "Bucket for the drift reports."
  value       = try(yandex_storage_bucket.drift.bucket, null)
}

output "network_id" {
  description = "VPC network id."
  value       = try(yandex_vpc_network.main.id, null)
}

output "subnet_ids" {
  description = "Subnet ids by zone."
  value       = try({ for zone, subnet in yandex_vpc_subnet.k8s : zone => subnet.id }, null)
}

output "service_account_ids" {
  description = "Service account ids: cluster, nodes, triton (model reader), drift (report writer)."
  value = try({
    cluster = yandex_iam_service_account.cluster.id
    nodes   = yandex_iam_service_account.nodes.id
    triton  = yandex_iam_service_account.triton.id
    drift   = yandex_iam_service_account.drift.id
  }, null)
}

output "kms_key_ids" {
  description = "KMS key ids: Kubernetes secrets and bucket encryption."
  value = try({
    k8s_secrets = yandex_kms_symmetric_key.k8s_secrets.id
    storage     = yandex_kms_symmetric_key.storage.id
  }, null)
}

output "triton_node_ports" {
  description = "NodePorts the public overlay must use: https (ingress-nginx controller), grpc (Triton's mutual-TLS gRPC Service)."
  value       = try(var.triton_node_ports, null)
}

output "triton_s3_access_key_id" {
  description = "Static access key id of the Triton service account (read-only model bucket)."
  value       = try(yandex_iam_service_account_static_access_key.triton.access_key, null)
}

output "triton_s3_secret_key" {
  description = "Secret of the Triton static access key; put it in a Kubernetes Secret, never in git."
  value       = try(yandex_iam_service_account_static_access_key.triton.secret_key, null)
  sensitive   = true
}

output "drift_s3_access_key_id" {
  description = "Static access key id of the drift service account (drift-report bucket)."
  value       = try(yandex_iam_service_account_static_access_key.drift.access_key, null)
}

output "drift_s3_secret_key" {
  description = "Secret of the drift static access key; put it in a Kubernetes Secret, never in git."
  value       = try(yandex_iam_service_account_static_access_key.drift.secret_key, null)
  sensitive   = true
}
