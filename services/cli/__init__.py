"""The `passclear` command: bring the system up, run the main job, audit the log."""

from services.cli.main import app

__all__ = ["app"]
