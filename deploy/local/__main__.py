"""python -m deploy.local up|down|status|env: the local Kafka broker and PostgreSQL server."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from deploy.local.errors import InfraError
from deploy.local.stack import LocalStack


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m deploy.local",
        description="Run a real Kafka broker and PostgreSQL server on 127.0.0.1 for passclear. "
        "State lives in <repo>/.local (PASSCLEAR_STATE_DIR); ports: PASSCLEAR_KAFKA_PORT (19092, "
        "controller on the next port) and PASSCLEAR_PG_PORT (15432).",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="command")
    for name, action in COMMANDS.items():
        commands.add_parser(name, help=action.__doc__)
    command = COMMANDS[parser.parse_args(argv).command]
    try:
        return command(LocalStack())
    except InfraError as err:
        print(f"passclear: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def up(stack: LocalStack) -> int:
    """start both servers (a no-op for one already running) and write stack.env"""
    infra = stack.up()
    print(f"Kafka       {infra.bootstrap_servers}")
    print(f"PostgreSQL  {infra.database_url}")
    print(f"env file    {stack.env_file}")
    return 0


def down(stack: LocalStack) -> int:
    """stop both servers; data and the jar cache are kept"""
    stack.down()
    print("stopped")
    return 0


def status(stack: LocalStack) -> int:
    """show each server; exit status 3 unless both run"""
    services = stack.status()
    for service in services:
        state = f"running (pid {service.pid})" if service.running else "stopped"
        print(f"{service.name:<9} {state:<22} {service.address}  log: {service.log}")
    return 0 if all(service.running for service in services) else 3


def env(stack: LocalStack) -> int:
    """print KAFKA_BOOTSTRAP_SERVERS=... and DATABASE_URL=... of the running stack"""
    print("\n".join(stack.running_infra().env_lines()))
    return 0


COMMANDS: dict[str, Callable[[LocalStack], int]] = {"up": up, "down": down, "status": status, "env": env}

if __name__ == "__main__":
    sys.exit(main())
