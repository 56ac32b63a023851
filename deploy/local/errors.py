"""The one error the local infrastructure raises: a reason a person can act on, on one line."""


class InfraError(Exception):
    """Kafka or PostgreSQL could not be started, reached or stopped.

    The message is a single line (the CLI prints it as ``passclear: <reason>``), so anything
    quoted from a tool or a log is folded onto that line here rather than at every raise site.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(" ".join(line.strip() for line in reason.splitlines() if line.strip()))
