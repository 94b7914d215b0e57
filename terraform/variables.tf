# Inputs. Every variable has a type, a description and validation for enums and cardinality.
# No resources here.

variable "cloud_id" {
  type        = string
  description = "Yandex Cloud cloud id (20 lowercase letters and digits, e.g. b1g...)."

  validation {
    condition     = can(regex("^[a-z][a-z0-9]{19}$", var.cloud_id))
    error_message = "cloud_id must be a Yandex Cloud id: 20 lowercase letters and digits."
  }
}

variable "folder_id" {
  type        = string
  description = "Folder that holds every resource. A fresh folder is fine; the applier needs the admin role on it."

  validation {
    condition     = can(regex("^[a-z][a-z0-9]{19}$", var.folder_id))
    error_message = "folder_id must be a Yandex Cloud id: 20 lowercase letters and digits."
  }
}

variable "name" {
  type        = string
  description = "Name prefix for every resource (cluster, network, buckets, service accounts)."
  default     = "credit-scoring"

  validation {
    condition     = can(regex("^[a-z][-a-z0-9]{1,20}[a-z0-9]$", var.name))
    error_message = "name must be 3-22 characters: lowercase letters, digits and hyphens, starting with a letter."
  }
}

variable "zones" {
  type        = list(string)
  description = "The three availability zones of the regional master, the subnets and the node groups."
  default     = ["ru-central1-a", "ru-central1-b", "ru-central1-d"]

  validation {
    condition     = length(var.zones) == 3 && length(distinct(var.zones)) == 3
    error_message = "zones must list exactly three distinct zones (a regional master needs three)."
  }

  validation {
    condition     = alltrue([for z in var.zones : contains(["ru-central1-a", "ru-central1-b", "ru-central1-d"], z)])
    error_message = "zones must be chosen from ru-central1-a, ru-central1-b, ru-central1-d (ru-central1-c is retired)."
  }
}

variable "subnet_cidrs" {
  type        = map(string)
  description = "One private IPv4 CIDR per zone for the master and node subnets, keyed by zone. Must not overlap each other or the pod and service ranges."
  default = {
    "ru-central1-a" = "10.10.0.0/20"
    "ru-central1-b" = "10.10.16.0/20"
    "ru-central1-d" = "10.10.32.0/20"
  }

  validation {
    condition     = length(var.subnet_cidrs) == 3 && alltrue([for z in var.zones : contains(keys(var.subnet_cidrs), z)])
    error_message = "subnet_cidrs must have exactly one entry for each zone in var.zones."
  }

  validation {
    condition     = alltrue([for c in values(var.subnet_cidrs) : can(cidrhost(c, 0)) && tonumber(split("/", c)[1]) >= 16 && tonumber(split("/", c)[1]) <= 28])
    error_message = "Each subnet CIDR must be a valid IPv4 CIDR between /16 and /28."
  }

  validation {
    condition     = length(distinct([for c in values(var.subnet_cidrs) : cidrhost(c, 0)])) == length(var.subnet_cidrs)
    error_message = "Subnet CIDRs must be distinct."
  }
}

variable "cluster_ipv4_range" {
  type        = string
  description = "Pod address range (CIDR). Must not overlap the subnets or the service range."
  default     = "10.112.0.0/16"

  validation {
    condition     = can(cidrhost(var.cluster_ipv4_range, 0))
    error_message = "cluster_ipv4_range must be a valid IPv4 CIDR."
  }
}

variable "service_ipv4_range" {
  type        = string
  description = "Kubernetes Service (ClusterIP) address range (CIDR). Must not overlap the subnets or the pod range."
  default     = "10.96.0.0/16"

  validation {
    condition     = can(cidrhost(var.service_ipv4_range, 0)) && var.service_ipv4_range != var.cluster_ipv4_range
    error_message = "service_ipv4_range must be a valid IPv4 CIDR different from cluster_ipv4_range."
  }
}

variable "kubernetes_version" {
  type        = string
  description = "Kubernetes minor version of the master and the node groups (pinned; patch revisions follow the release channel)."
  default     = "1.32"

  validation {
    condition     = can(regex("^1\\.(2[89]|3[0-9])$", var.kubernetes_version))
    error_message = "kubernetes_version must be a minor version such as 1.32 (1.28 or later)."
  }
}

variable "release_channel" {
  type        = string
  description = "Managed Kubernetes release channel: RAPID, REGULAR or STABLE."
  default     = "STABLE"

  validation {
    condition     = contains(["RAPID", "REGULAR", "STABLE"], var.release_channel)
    error_message = "release_channel must be RAPID, REGULAR or STABLE."
  }
}

variable "master_public_ip" {
  type        = bool
  description = "Give the Kubernetes API a public address (reachable only from master_allowed_cidrs). Set false when kubectl runs from inside the VPC (VPN, bastion)."
  default     = true
}

variable "master_allowed_cidrs" {
  type        = list(string)
  description = "IPv4 CIDRs allowed to reach the Kubernetes API (TCP 443 and 6443): operators' and CI runners' egress addresses."

  validation {
    condition     = length(var.master_allowed_cidrs) > 0 && alltrue([for c in var.master_allowed_cidrs : can(cidrhost(c, 0))])
    error_message = "master_allowed_cidrs must list at least one valid IPv4 CIDR."
  }

  validation {
    condition     = alltrue([for c in var.master_allowed_cidrs : tonumber(split("/", c)[1]) >= 8])
    error_message = "master_allowed_cidrs must not open the API to the whole internet (no 0.0.0.0/0, nothing wider than /8)."
  }
}

variable "service_ingress_cidrs" {
  type        = list(string)
  description = "IPv4 CIDRs allowed to reach the TLS endpoints of k8s/overlays/public (ingress-nginx HTTPS and Triton's mutual-TLS gRPC, on triton_node_ports). Empty, the default: the security group opens nothing (the other overlays create no load balancer at all). 0.0.0.0/0, or anything wider than /8, also needs allow_internet_clients = true."
  default     = []

  validation {
    condition     = alltrue([for c in var.service_ingress_cidrs : can(regex("^[0-9]{1,3}(\\.[0-9]{1,3}){3}/[0-9]{1,2}$", c)) && can(cidrhost(c, 0))])
    error_message = "service_ingress_cidrs entries must be IPv4 CIDRs such as 203.0.113.0/24."
  }

  validation {
    condition     = var.allow_internet_clients || alltrue([for c in var.service_ingress_cidrs : try(tonumber(split("/", c)[1]) >= 8, true)])
    error_message = "service_ingress_cidrs would open the scoring API to the internet (0.0.0.0/0 or wider than /8): list your clients' ranges, or set allow_internet_clients = true for k8s/overlays/public (TLS and client certificates in front of Triton)."
  }
}

variable "allow_internet_clients" {
  type        = bool
  description = "The second key to a public API: true lets service_ingress_cidrs hold 0.0.0.0/0 or anything wider than /8. Set it only with k8s/overlays/public applied, whose endpoints require TLS and a client certificate."
  default     = false
}

variable "triton_node_ports" {
  type = object({
    https = number
    grpc  = number
  })
  description = "NodePorts of the TLS endpoints of k8s/overlays/public, the only ports open to service_ingress_cidrs: https is the ingress-nginx controller's HTTPS NodePort (k8s/components/public-tls/ingress-nginx-values.yaml), grpc the NodePort of Triton's mutual-TLS gRPC LoadBalancer Service (service-grpc-public.yaml there)."
  default = {
    https = 30800
    grpc  = 30801
  }

  validation {
    condition = (
      var.triton_node_ports.https != var.triton_node_ports.grpc &&
      alltrue([for p in [var.triton_node_ports.https, var.triton_node_ports.grpc] : p >= 30000 && p <= 32767])
    )
    error_message = "triton_node_ports must be two different ports in the NodePort range 30000-32767."
  }
}

variable "node_platform_id" {
  type        = string
  description = "Compute platform of the nodes: standard-v1 (Broadwell), standard-v2 (Cascade Lake) or standard-v3 (Ice Lake)."
  default     = "standard-v3"

  validation {
    condition     = contains(["standard-v1", "standard-v2", "standard-v3"], var.node_platform_id)
    error_message = "node_platform_id must be standard-v1, standard-v2 or standard-v3."
  }
}

variable "node_cores" {
  type        = number
  description = "vCPUs per node. One Triton replica (4 vCPU requested) plus system pods fit on 6."
  default     = 6

  validation {
    condition     = contains([2, 4, 6, 8, 12, 16, 20, 24, 28, 32], var.node_cores)
    error_message = "node_cores must be one of 2, 4, 6, 8, 12, 16, 20, 24, 28, 32."
  }
}

variable "node_memory_gb" {
  type        = number
  description = "Memory per node in GB; the platform decides the allowed GB per vCPU (standard-v3 at 100%: 1 to 4)."
  default     = 8

  validation {
    condition     = var.node_memory_gb >= var.node_cores && var.node_memory_gb <= 8 * var.node_cores
    error_message = "node_memory_gb must be between 1 and 8 GB per vCPU (node_cores)."
  }
}

variable "node_core_fraction" {
  type        = number
  description = "Guaranteed vCPU share in percent: 100 for predictable inference latency; 20 or 50 are cheaper burstable nodes."
  default     = 100

  validation {
    condition     = contains([20, 50, 100], var.node_core_fraction)
    error_message = "node_core_fraction must be 20, 50 or 100."
  }
}

variable "node_disk_type" {
  type        = string
  description = "Boot disk type of the nodes."
  default     = "network-ssd"

  validation {
    condition     = contains(["network-hdd", "network-ssd"], var.node_disk_type)
    error_message = "node_disk_type must be network-hdd or network-ssd."
  }
}

variable "node_disk_size_gb" {
  type        = number
  description = "Boot disk size per node in GB; the NGC Triton image alone unpacks to about 15 GB."
  default     = 96

  validation {
    condition     = var.node_disk_size_gb >= 64 && var.node_disk_size_gb <= 1024
    error_message = "node_disk_size_gb must be between 64 and 1024."
  }
}

variable "node_preemptible" {
  type        = bool
  description = "Use preemptible nodes (much cheaper, stopped at least once a day). Keep false for production."
  default     = false
}

variable "node_autoscaling" {
  type = object({
    min     = number
    max     = number
    initial = number
  })
  description = "Autoscaling bounds of EACH per-zone node group (three groups). A Triton pod requests 3 vCPU, so a 4-vCPU node holds one: the defaults give 3 nodes at rest (the 3 replicas, one per zone) and up to 15 for the HPA's 12 replicas plus the rolling-update surge pod and the drift job."
  default = {
    min     = 1
    max     = 5
    initial = 1
  }

  validation {
    condition     = var.node_autoscaling.min >= 1 && var.node_autoscaling.max >= 2 && var.node_autoscaling.max <= 32
    error_message = "node_autoscaling.min must be >= 1 (a node in every zone) and max between 2 (room for the surge pod) and 32."
  }

  validation {
    condition = (
      var.node_autoscaling.min <= var.node_autoscaling.initial &&
      var.node_autoscaling.initial <= var.node_autoscaling.max
    )
    error_message = "node_autoscaling must satisfy min <= initial <= max."
  }
}

variable "maintenance_window" {
  type = object({
    start_time = string
    duration   = string
  })
  description = "Daily UTC window for automatic patch upgrades of the master and the nodes (the minor version stays pinned)."
  default = {
    start_time = "01:00"
    duration   = "3h"
  }

  validation {
    condition = (
      can(regex("^([01][0-9]|2[0-3]):[0-5][0-9]$", var.maintenance_window.start_time)) &&
      can(regex("^([1-9]|1[0-9]|2[0-4])h$", var.maintenance_window.duration))
    )
    error_message = "maintenance_window needs start_time as HH:MM and duration as 1h to 24h."
  }
}

variable "master_logging" {
  type        = bool
  description = "Send kube-apiserver, audit, events and cluster-autoscaler logs to Cloud Logging (the folder's default log group)."
  default     = true
}

variable "noncurrent_version_days" {
  type        = number
  description = "Days to keep overwritten or deleted object versions in both buckets before they expire."
  default     = 90

  validation {
    condition     = var.noncurrent_version_days >= 1 && var.noncurrent_version_days <= 3650
    error_message = "noncurrent_version_days must be between 1 and 3650."
  }
}

variable "model_bucket_name" {
  type        = string
  description = "Name of the model-repository bucket (global across Yandex Cloud). Null: <name>-models-<folder_id>."
  default     = null

  validation {
    condition     = var.model_bucket_name == null || can(regex("^[a-z0-9][-a-z0-9.]{1,61}[a-z0-9]$", var.model_bucket_name))
    error_message = "model_bucket_name must be 3-63 characters: lowercase letters, digits, hyphens and dots."
  }
}

variable "drift_bucket_name" {
  type        = string
  description = "Name of the drift-report bucket (global across Yandex Cloud). Null: <name>-drift-<folder_id>."
  default     = null

  validation {
    condition     = var.drift_bucket_name == null || can(regex("^[a-z0-9][-a-z0-9.]{1,61}[a-z0-9]$", var.drift_bucket_name))
    error_message = "drift_bucket_name must be 3-63 characters: lowercase letters, digits, hyphens and dots."
  }
}

variable "deletion_protection" {
  type        = bool
  description = "Protect the KMS keys from deletion. Losing a key makes the buckets and Kubernetes secrets unreadable; set false only to destroy everything."
  default     = true
}

variable "model_publisher_members" {
  type        = list(string)
  description = "Extra IAM subjects (e.g. serviceAccount:<id> of the release pipeline) allowed to upload the model repository to the model bucket."
  default     = []

  validation {
    condition     = alltrue([for m in var.model_publisher_members : can(regex("^(serviceAccount|userAccount|federatedUser|group):[a-z0-9]+$", m))])
    error_message = "model_publisher_members entries must look like serviceAccount:<id>, userAccount:<id>, federatedUser:<id> or group:<id> (no system groups)."
  }
}

variable "registry_pusher_members" {
  type        = list(string)
  description = "Extra IAM subjects (e.g. serviceAccount:<id> of CI) allowed to push images to the registry."
  default     = []

  validation {
    condition     = alltrue([for m in var.registry_pusher_members : can(regex("^(serviceAccount|userAccount|federatedUser|group):[a-z0-9]+$", m))])
    error_message = "registry_pusher_members entries must look like serviceAccount:<id>, userAccount:<id>, federatedUser:<id> or group:<id> (no system groups)."
  }
}

variable "labels" {
  type        = map(string)
  description = "Extra labels for every resource that takes them (project and managed-by are always set)."
  default     = {}

  validation {
    condition     = alltrue([for k, v in var.labels : can(regex("^[a-z][-_0-9a-z]{0,62}$", k)) && can(regex("^[-_0-9a-z]{0,63}$", v))])
    error_message = "Label keys must start with a lowercase letter; keys and values use lowercase letters, digits, - and _ (at most 63 characters)."
  }
}
