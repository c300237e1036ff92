"""The `storywink` command line (console script `storywink = storywink.cli:app`)."""

from storywink.cli import costs as _costs  # noqa: F401  (registers `costs`)
from storywink.cli import models as _models  # noqa: F401  (registers `models`)
from storywink.cli import redraw as _redraw  # noqa: F401  (registers `page redraw`)
from storywink.cli.commands import app
from storywink.cli.exits import ExitCode
from storywink.cli.story import page_app  # importing it registers `story` and `page`
from storywink.cli.web import serve  # importing it registers `serve` and `token`

__all__ = ["ExitCode", "app", "page_app", "serve"]
