"""The auditor's replay: recompute every statement from the event log and compare.

Read-only by construction: it reads topics without a consumer group and has no producer and
no database connection that writes."""
