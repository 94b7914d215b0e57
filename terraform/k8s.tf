# Regional Managed Kubernetes: the master in all three zones, one autoscaling node group per zone
# (the cluster autoscaler scales a group inside one zone; a group per zone keeps the Triton
# replicas spread and lets each zone grow on its own).

resource "yandex_kubernetes_cluster" "main" {
  name                    = var.name
  description             = "Triton credit-scoring cluster"
  folder_id               = var.folder_id
  network_id              = yandex_vpc_network.main.id
  cluster_ipv4_range      = var.cluster_ipv4_range
  service_ipv4_range      = var.service_ipv4_range
  service_account_id      = yandex_iam_service_account.cluster.id
  node_service_account_id = yandex_iam_service_account.nodes.id
  release_channel         = var.release_channel
  network_policy_provider = "CALICO"
  labels                  = local.labels

  kms_provider {
    key_id = yandex_kms_symmetric_key.k8s_secrets.id
  }

  master {
    # checkov:skip=CKV_YC_5:The API needs an address that operators and CI can reach from a fresh folder; the k8s_master security group opens it only to master_allowed_cidrs (validated: no 0.0.0.0/0, nothing wider than /8). Set master_public_ip=false once a VPN or bastion exists.
    version            = var.kubernetes_version
    public_ip          = var.master_public_ip
    security_group_ids = [yandex_vpc_security_group.k8s_main.id, yandex_vpc_security_group.k8s_master.id]

    regional {
      region = "ru-central1"

      dynamic "location" {
        for_each = var.zones
        content {
          zone      = location.value
          subnet_id = yandex_vpc_subnet.k8s[location.value].id
        }
      }
    }

    maintenance_policy {
      auto_upgrade = true

      maintenance_window {
        start_time = var.maintenance_window.start_time
        duration   = var.maintenance_window.duration
      }
    }

    master_logging {
      enabled                    = var.master_logging
      folder_id                  = var.folder_id
      kube_apiserver_enabled     = var.master_logging
      cluster_autoscaler_enabled = var.master_logging
      events_enabled             = var.master_logging
      audit_enabled              = var.master_logging
    }
  }

  # The master needs its roles and the key before it starts; deleting them first breaks destroy.
  depends_on = [
    yandex_resourcemanager_folder_iam_member.cluster,
    yandex_kms_symmetric_key_iam_member.cluster_k8s_secrets,
    yandex_container_registry_iam_binding.puller,
  ]
}

resource "yandex_kubernetes_node_group" "workers" {
  for_each = yandex_vpc_subnet.k8s

  cluster_id  = yandex_kubernetes_cluster.main.id
  name        = "${var.name}-${each.key}"
  description = "Triton workers in ${each.key}"
  version     = var.kubernetes_version
  labels      = local.labels

  node_labels = {
    "workload" = "triton"
  }

  instance_template {
    platform_id = var.node_platform_id

    network_interface {
      nat        = false
      subnet_ids = [each.value.id]
      security_group_ids = [
        yandex_vpc_security_group.k8s_main.id,
        yandex_vpc_security_group.k8s_nodes.id,
        yandex_vpc_security_group.triton_service.id,
      ]
    }

    resources {
      cores         = var.node_cores
      memory        = var.node_memory_gb
      core_fraction = var.node_core_fraction
    }

    boot_disk {
      type = var.node_disk_type
      size = var.node_disk_size_gb
    }

    scheduling_policy {
      preemptible = var.node_preemptible
    }

    container_runtime {
      type = "containerd"
    }
  }

  scale_policy {
    auto_scale {
      min     = var.node_autoscaling.min
      max     = var.node_autoscaling.max
      initial = var.node_autoscaling.initial
    }
  }

  allocation_policy {
    location {
      zone = each.key
    }
  }

  # Node upgrades add one node before draining one: Triton keeps its replicas while nodes roll.
  deploy_policy {
    max_expansion   = 1
    max_unavailable = 0
  }

  maintenance_policy {
    auto_upgrade = true
    auto_repair  = true

    maintenance_window {
      start_time = var.maintenance_window.start_time
      duration   = var.maintenance_window.duration
    }
  }
}
