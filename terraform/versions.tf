# Terraform and provider versions. Cross-variable validation needs Terraform >= 1.9; the checks
# run with 1.11. The provider is pinned exactly: bump it on purpose and commit the
# .terraform.lock.hcl that `terraform init` writes.
terraform {
  required_version = "~> 1.11"

  required_providers {
    yandex = {
      source  = "yandex-cloud/yandex"
      version = "0.146.0"
    }
  }
}
