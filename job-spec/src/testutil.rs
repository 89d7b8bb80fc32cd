//! Documents shared by the unit tests.

use crate::{parse_job, JobDocument};

/// The "complete job schema" example of the original v1 protocol
/// specification, every optional section included, typed out by hand.
pub(crate) const ORIGINAL_FULL_EXAMPLE: &str = r#"{
  "$schema": "https://guestkit.dev/schemas/job-v1.json",
  "version": "1.0",
  "job_id": "job-550e8400-e29b-41d4-a716-446655440000",
  "created_at": "2026-01-30T10:00:00Z",
  "kind": "VMOperation",
  "operation": "guestkit.inspect",
  "metadata": {
    "name": "inspect-production-vm-01",
    "namespace": "production",
    "labels": { "environment": "prod", "team": "platform", "cost-center": "engineering" },
    "annotations": {
      "ticket": "INC-12345",
      "requested_by": "alice@company.com",
      "description": "Weekly security scan"
    }
  },
  "execution": {
    "idempotency_key": "scan-2026-01-30-weekly",
    "attempt": 1,
    "max_attempts": 3,
    "timeout_seconds": 7200,
    "deadline": "2026-01-30T14:00:00Z",
    "priority": 5,
    "cancellable": true
  },
  "constraints": {
    "required_capabilities": ["guestkit.inspect", "disk.qcow2", "fs.lvm"],
    "required_features": ["lvm", "selinux"],
    "minimum_worker_version": "0.4.0",
    "maximum_disk_size_gb": 1000,
    "require_privileged": true,
    "allowed_worker_pools": ["pool-secure", "pool-prod"]
  },
  "routing": {
    "worker_id": null,
    "worker_pool": "pool-prod",
    "affinity": { "disk_locality": "/mnt/vms" },
    "anti_affinity": { "concurrent_jobs": ["job-abc123"] }
  },
  "payload": {
    "type": "guestkit.inspect.v1",
    "data": {
      "image": {
        "path": "/mnt/vms/prod-web-01.qcow2",
        "format": "qcow2",
        "checksum": "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        "size_bytes": 42949672960
      },
      "options": {
        "deep_scan": true,
        "include_packages": true,
        "include_services": true,
        "include_security": true
      },
      "output": { "format": "json", "destination": "/mnt/output/inspect-results.json" }
    }
  },
  "observability": {
    "trace_id": "550e8400-e29b-41d4-a716-446655440001",
    "span_id": "446655440001",
    "parent_span_id": null,
    "correlation_id": "weekly-scan-batch-2026-w04"
  },
  "audit": {
    "submitted_by": "api-service-v1.2.3",
    "submitted_from": "10.0.1.50",
    "authorization": { "method": "bearer_token", "subject": "service-account-scanner" }
  }
}"#;

/// The smallest valid document.
pub(crate) const MINIMAL: &str = r#"{
  "version": "1.0",
  "job_id": "job-0001-test",
  "created_at": "2026-01-30T10:00:00Z",
  "kind": "VMOperation",
  "operation": "system.echo",
  "payload": { "type": "system.echo.v1", "data": {} }
}"#;

/// [`MINIMAL`], parsed.
pub(crate) fn minimal() -> JobDocument {
    parse_job(MINIMAL.as_bytes()).expect("MINIMAL is valid")
}
