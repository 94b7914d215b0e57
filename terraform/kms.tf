# KMS keys: one for Kubernetes secrets (etcd envelope encryption), one for the buckets, so each
# service account can use only the key it needs. Both rotate yearly.

resource "yandex_kms_symmetric_key" "k8s_secrets" {
  name                = "${var.name}-k8s-secrets"
  description         = "Encrypts Kubernetes secrets of ${var.name}"
  folder_id           = var.folder_id
  default_algorithm   = "AES_256"
  rotation_period     = "8760h"
  deletion_protection = var.deletion_protection
  labels              = local.labels
}

resource "yandex_kms_symmetric_key" "storage" {
  name                = "${var.name}-storage"
  description         = "Server-side encryption of the ${var.name} buckets"
  folder_id           = var.folder_id
  default_algorithm   = "AES_256"
  rotation_period     = "8760h"
  deletion_protection = var.deletion_protection
  labels              = local.labels
}

resource "yandex_kms_symmetric_key_iam_member" "cluster_k8s_secrets" {
  symmetric_key_id = yandex_kms_symmetric_key.k8s_secrets.id
  role             = "kms.keys.encrypterDecrypter"
  member           = "serviceAccount:${yandex_iam_service_account.cluster.id}"
}

# Triton only reads the model repository: decrypt only.
resource "yandex_kms_symmetric_key_iam_member" "triton_storage" {
  symmetric_key_id = yandex_kms_symmetric_key.storage.id
  role             = "kms.keys.decrypter"
  member           = "serviceAccount:${yandex_iam_service_account.triton.id}"
}

# The drift job writes reports (encrypt) and reads earlier ones (decrypt).
resource "yandex_kms_symmetric_key_iam_member" "drift_storage" {
  symmetric_key_id = yandex_kms_symmetric_key.storage.id
  role             = "kms.keys.encrypterDecrypter"
  member           = "serviceAccount:${yandex_iam_service_account.drift.id}"
}

resource "yandex_kms_symmetric_key_iam_member" "model_publishers_storage" {
  for_each = toset(var.model_publisher_members)

  symmetric_key_id = yandex_kms_symmetric_key.storage.id
  role             = "kms.keys.encrypterDecrypter"
  member           = each.value
}
