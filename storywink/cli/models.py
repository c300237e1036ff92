"""`storywink models`: the Gemini models the configured key can use, the configured ones
marked, an announced shutdown warned of (`storywink/providers/gemini_models.py`).

Registered on the `storywink` command by importing this module (`storywink.cli` does).
"""

from __future__ import annotations

from datetime import date

from storywink.cli.commands import app
from storywink.cli.exits import ExitCode, fail, run_or_exit, settings_or_exit
from storywink.config import ConfigurationError, Settings
from storywink.providers.gemini_models import ModelSpec, spec_for


def _configured(settings: Settings) -> dict[str, str]:
    """model name -> the setting that names it, for the models this set-up calls."""
    from storywink.providers.gemini_check import configured_models

    return {model.name: model.setting for model in configured_models(settings)}


def model_line(name: str, setting: str | None, today: date) -> str:
    from storywink.providers.gemini_check import SHUTDOWN_WARNING_DAYS, kind_of

    spec: ModelSpec | None = spec_for(name)
    mark = f"  <- {setting}" if setting else ""
    if spec is None:
        return f"{name:32} {kind_of(name).value:5}  not in storywink's table (price unknown){mark}"
    note = f"released {spec.released}"
    days = spec.days_left(today)
    if days is not None:
        warn = "WARNING: " if days <= SHUTDOWN_WARNING_DAYS else ""
        instead = f", use {spec.replacement}" if spec.replacement else ""
        note = f"{warn}shuts down {spec.shutdown} (in {days} days{instead})"
    return f"{name:32} {spec.kind.value:5}  {note}{mark}"


async def _usable(settings: Settings) -> list[str]:
    # Imported here: the SDK would slow every other command.
    from storywink.providers.factory import gemini_client
    from storywink.providers.gemini_check import usable_models

    if settings.gemini_api_key is None:
        raise ConfigurationError("GEMINI_API_KEY (or GOOGLE_API_KEY) is not set")
    client = gemini_client(settings)
    try:
        return await usable_models(client, settings.secrets())
    finally:
        await client.aio.aclose()


@app.command("models")
def models() -> None:
    """List the Gemini models the configured key can use; the configured ones are marked,
    and an announced shutdown is shown. Exit 2 when the key is refused or a configured
    model is not among them."""
    settings = settings_or_exit()
    usable = run_or_exit(_usable(settings))
    configured = _configured(settings)
    today = date.today()
    for name in usable:
        print(model_line(name, configured.get(name), today))
    missing = [f"{setting} {name}" for name, setting in configured.items() if name not in usable]
    if missing:
        fail(ExitCode.BAD_INPUT, f"not available to this key: {', '.join(missing)}")
