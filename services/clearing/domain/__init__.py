"""The clearing core: pure functions from redemption events to statements.

Shared by the clearing service and the auditor replay, so both compute the same bytes."""
