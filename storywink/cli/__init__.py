"""The `storywink` command line (console script `storywink = storywink.cli:app`)."""

from storywink.cli.commands import app
from storywink.cli.exits import ExitCode

__all__ = ["ExitCode", "app"]
