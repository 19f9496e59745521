"""Keys with names and limits, quotas shared by replicas, usage, the audit trail."""
