"""Local infrastructure the project starts itself: a Kafka broker and a PostgreSQL server on loopback.

Run `python -m deploy.local up|down|status|env`, or call `ensure_infra()` / `stop_infra()` from tests.
"""

from deploy.local.errors import InfraError
from deploy.local.kafka_broker import KafkaBroker
from deploy.local.postgres import LocalPostgres
from deploy.local.service import ServiceStatus
from deploy.local.stack import Infra, LocalStack, default_state_dir, ensure_infra, stop_infra

__all__ = [
    "Infra",
    "InfraError",
    "KafkaBroker",
    "LocalPostgres",
    "LocalStack",
    "ServiceStatus",
    "default_state_dir",
    "ensure_infra",
    "stop_infra",
]
