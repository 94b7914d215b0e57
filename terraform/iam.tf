# Service accounts, each with only the roles its job needs. Folder-wide roles only where the
# service works at folder scope (the cluster creates load balancers and public addresses);
# everything else is granted on the one registry, bucket or key (see registry.tf, storage.tf, kms.tf).

resource "yandex_iam_service_account" "cluster" {
  name        = "${var.name}-k8s-cluster"
  description = "Managed Kubernetes master of ${var.name}: manages nodes, load balancers, public addresses"
  folder_id   = var.folder_id
}

resource "yandex_iam_service_account" "nodes" {
  name        = "${var.name}-k8s-nodes"
  description = "Kubernetes nodes of ${var.name}: pull images from the registry"
  folder_id   = var.folder_id
}

resource "yandex_iam_service_account" "triton" {
  name        = "${var.name}-triton"
  description = "Triton pods of ${var.name}: read the model repository bucket"
  folder_id   = var.folder_id
}

resource "yandex_iam_service_account" "drift" {
  name        = "${var.name}-drift"
  description = "Drift job of ${var.name}: write drift reports"
  folder_id   = var.folder_id
}

locals {
  cluster_folder_roles = concat(
    ["k8s.clusters.agent", "vpc.publicAdmin", "load-balancer.admin"],
    var.master_logging ? ["logging.writer"] : [],
  )
}

resource "yandex_resourcemanager_folder_iam_member" "cluster" {
  for_each = toset(local.cluster_folder_roles)

  folder_id = var.folder_id
  role      = each.value
  member    = "serviceAccount:${yandex_iam_service_account.cluster.id}"
}

# S3 credentials for pods: Triton (s3:// model repository) and the drift job read them from a
# Kubernetes Secret. The secrets are in the Terraform state: keep the state bucket private.
resource "yandex_iam_service_account_static_access_key" "triton" {
  service_account_id = yandex_iam_service_account.triton.id
  description        = "S3 access of the Triton pods to the model bucket (read-only)"
}

resource "yandex_iam_service_account_static_access_key" "drift" {
  service_account_id = yandex_iam_service_account.drift.id
  description        = "S3 access of the drift job to the drift-report bucket"
}
