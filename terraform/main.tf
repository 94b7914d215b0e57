# Provider, shared names and labels. Authentication comes from the environment
# (YC_TOKEN, or YC_SERVICE_ACCOUNT_KEY_FILE for a service account), never from variables.
provider "yandex" {
  cloud_id  = var.cloud_id
  folder_id = var.folder_id
  zone      = var.zones[0]
}

locals {
  labels = merge(var.labels, { project = var.name, managed-by = "terraform" })

  # Bucket names are global across Yandex Cloud: by default the folder id makes them unique.
  model_bucket_name = coalesce(var.model_bucket_name, "${var.name}-models-${var.folder_id}")
  drift_bucket_name = coalesce(var.drift_bucket_name, "${var.name}-drift-${var.folder_id}")

  # The registry address that image references and `docker push` use.
  registry_url = "cr.yandex/${yandex_container_registry.main.id}"
}
