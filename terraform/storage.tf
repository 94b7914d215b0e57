# Object Storage: the Triton model repository and the drift reports. Both private (no anonymous
# access, no ACL grants), versioned, and encrypted server-side with the storage KMS key. Access
# is granted per bucket to one service account each.

resource "yandex_storage_bucket" "models" {
  bucket                = local.model_bucket_name
  folder_id             = var.folder_id
  default_storage_class = "STANDARD"
  force_destroy         = false
  tags                  = local.labels

  anonymous_access_flags {
    read        = false
    list        = false
    config_read = false
  }

  versioning {
    enabled = true
  }

  server_side_encryption_configuration {
    rule {
      apply_server_side_encryption_by_default {
        kms_master_key_id = yandex_kms_symmetric_key.storage.id
        sse_algorithm     = "aws:kms"
      }
    }
  }

  lifecycle_rule {
    id      = "expire-noncurrent-versions"
    enabled = true
    prefix  = ""

    noncurrent_version_expiration {
      days = var.noncurrent_version_days
    }
  }

  lifecycle_rule {
    id                                     = "abort-incomplete-uploads"
    enabled                                = true
    prefix                                 = ""
    abort_incomplete_multipart_upload_days = 7
  }
}

resource "yandex_storage_bucket" "drift" {
  bucket                = local.drift_bucket_name
  folder_id             = var.folder_id
  default_storage_class = "STANDARD"
  force_destroy         = false
  tags                  = local.labels

  anonymous_access_flags {
    read        = false
    list        = false
    config_read = false
  }

  versioning {
    enabled = true
  }

  server_side_encryption_configuration {
    rule {
      apply_server_side_encryption_by_default {
        kms_master_key_id = yandex_kms_symmetric_key.storage.id
        sse_algorithm     = "aws:kms"
      }
    }
  }

  lifecycle_rule {
    id      = "expire-noncurrent-versions"
    enabled = true
    prefix  = ""

    noncurrent_version_expiration {
      days = var.noncurrent_version_days
    }
  }

  lifecycle_rule {
    id                                     = "abort-incomplete-uploads"
    enabled                                = true
    prefix                                 = ""
    abort_incomplete_multipart_upload_days = 7
  }
}

# Triton: list and read the model repository, nothing else.
resource "yandex_storage_bucket_iam_binding" "models_viewer" {
  bucket  = yandex_storage_bucket.models.bucket
  role    = "storage.viewer"
  members = ["serviceAccount:${yandex_iam_service_account.triton.id}"]
}

# Whoever publishes models (the release pipeline), only if given.
resource "yandex_storage_bucket_iam_binding" "models_uploader" {
  count = length(var.model_publisher_members) > 0 ? 1 : 0

  bucket  = yandex_storage_bucket.models.bucket
  role    = "storage.uploader"
  members = var.model_publisher_members
}

# The drift job: write reports (storage.uploader also lets it read earlier ones), in this bucket only.
resource "yandex_storage_bucket_iam_binding" "drift_uploader" {
  bucket  = yandex_storage_bucket.drift.bucket
  role    = "storage.uploader"
  members = ["serviceAccount:${yandex_iam_service_account.drift.id}"]
}
