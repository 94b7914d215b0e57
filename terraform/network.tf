# VPC: one private subnet per zone, egress to the internet through a NAT gateway (the nodes have
# no public addresses), and the security groups of the cluster, the nodes and the Triton service.

resource "yandex_vpc_network" "main" {
  name        = var.name
  description = "Network of the ${var.name} Kubernetes cluster"
  folder_id   = var.folder_id
  labels      = local.labels
}

resource "yandex_vpc_gateway" "nat" {
  name      = "${var.name}-nat"
  folder_id = var.folder_id
  labels    = local.labels

  shared_egress_gateway {}
}

resource "yandex_vpc_route_table" "nat" {
  name       = "${var.name}-nat"
  folder_id  = var.folder_id
  network_id = yandex_vpc_network.main.id
  labels     = local.labels

  static_route {
    destination_prefix = "0.0.0.0/0"
    gateway_id         = yandex_vpc_gateway.nat.id
  }
}

resource "yandex_vpc_subnet" "k8s" {
  for_each = toset(var.zones)

  name           = "${var.name}-${each.key}"
  description    = "Master and nodes of ${var.name} in ${each.key}"
  folder_id      = var.folder_id
  zone           = each.key
  network_id     = yandex_vpc_network.main.id
  v4_cidr_blocks = [var.subnet_cidrs[each.key]]
  route_table_id = yandex_vpc_route_table.nat.id
  labels         = local.labels
}

# Rules Managed Kubernetes needs between the master and the nodes; attached to both.
resource "yandex_vpc_security_group" "k8s_main" {
  name        = "${var.name}-k8s-main"
  description = "Service traffic of the Managed Kubernetes master and nodes"
  folder_id   = var.folder_id
  network_id  = yandex_vpc_network.main.id
  labels      = local.labels

  ingress {
    description    = "ICMP health checks of the nodes from Yandex Cloud private ranges"
    protocol       = "ICMP"
    v4_cidr_blocks = ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"]
  }

  ingress {
    description       = "Network load balancer health checks"
    protocol          = "TCP"
    predefined_target = "loadbalancer_healthchecks"
    from_port         = 0
    to_port           = 65535
  }

  ingress {
    description       = "Master to nodes and node to node, inside this group only"
    protocol          = "ANY"
    predefined_target = "self_security_group"
    from_port         = 0
    to_port           = 65535
  }

  egress {
    description       = "Master to nodes and node to node, inside this group only"
    protocol          = "ANY"
    predefined_target = "self_security_group"
    from_port         = 0
    to_port           = 65535
  }
}

# The Kubernetes API: reachable only from the operators' and CI's addresses.
resource "yandex_vpc_security_group" "k8s_master" {
  name        = "${var.name}-k8s-master"
  description = "Kubernetes API access"
  folder_id   = var.folder_id
  network_id  = yandex_vpc_network.main.id
  labels      = local.labels

  ingress {
    description    = "Kubernetes API (kubectl)"
    protocol       = "TCP"
    port           = 443
    v4_cidr_blocks = var.master_allowed_cidrs
  }

  ingress {
    description    = "Kubernetes API (kubectl, legacy port)"
    protocol       = "TCP"
    port           = 6443
    v4_cidr_blocks = var.master_allowed_cidrs
  }

  egress {
    description    = "Master to metrics-server in the pod network"
    protocol       = "TCP"
    port           = 4443
    v4_cidr_blocks = [var.cluster_ipv4_range]
  }
}

# Nodes: pod and service traffic inside the cluster; outbound through the NAT gateway.
resource "yandex_vpc_security_group" "k8s_nodes" {
  name        = "${var.name}-k8s-nodes"
  description = "Pod and service traffic of the node groups"
  folder_id   = var.folder_id
  network_id  = yandex_vpc_network.main.id
  labels      = local.labels

  ingress {
    description    = "Pod to pod and service traffic inside the cluster"
    protocol       = "ANY"
    v4_cidr_blocks = [var.cluster_ipv4_range, var.service_ipv4_range]
    from_port      = 0
    to_port        = 65535
  }

  egress {
    description    = "Outbound through the NAT gateway: image pulls, Object Storage, Yandex Cloud APIs"
    protocol       = "ANY"
    v4_cidr_blocks = ["0.0.0.0/0"]
    from_port      = 0
    to_port        = 65535
  }
}

# The only ports that can face the internet: the TLS endpoints of k8s/overlays/public (HTTPS of
# the ingress-nginx controller, Triton's mutual-TLS gRPC), through their NodePorts, to
# service_ingress_cidrs only. That list is empty by default, and then this group admits nothing
# (the other overlays create no load balancer at all).
resource "yandex_vpc_security_group" "triton_service" {
  name        = "${var.name}-triton-service"
  description = "TLS endpoints of the public overlay (HTTPS, gRPC) through their NodePorts"
  folder_id   = var.folder_id
  network_id  = yandex_vpc_network.main.id
  labels      = local.labels

  dynamic "ingress" {
    for_each = length(var.service_ingress_cidrs) > 0 ? ["https"] : []
    content {
      description    = "HTTPS of ingress-nginx (NodePort): TLS and client certificates, then Triton HTTP 8000"
      protocol       = "TCP"
      port           = var.triton_node_ports.https
      v4_cidr_blocks = var.service_ingress_cidrs
    }
  }

  dynamic "ingress" {
    for_each = length(var.service_ingress_cidrs) > 0 ? ["grpc"] : []
    content {
      description    = "Triton gRPC 8001 with mutual TLS (NodePort)"
      protocol       = "TCP"
      port           = var.triton_node_ports.grpc
      v4_cidr_blocks = var.service_ingress_cidrs
    }
  }
}
