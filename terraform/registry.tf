# Container Registry for the serving image. Nodes pull from this registry only (no folder-wide role).

resource "yandex_container_registry" "main" {
  name      = var.name
  folder_id = var.folder_id
  labels    = local.labels
}

resource "yandex_container_registry_iam_binding" "puller" {
  registry_id = yandex_container_registry.main.id
  role        = "container-registry.images.puller"
  members     = ["serviceAccount:${yandex_iam_service_account.nodes.id}"]
}

resource "yandex_container_registry_iam_binding" "pusher" {
  count = length(var.registry_pusher_members) > 0 ? 1 : 0

  registry_id = yandex_container_registry.main.id
  role        = "container-registry.images.pusher"
  members     = var.registry_pusher_members
}
