"""Which deployment ("fleet") a worker serves: the database it shares with the others, and
the local storage beside it. Workers that disagree would fail pages for files or rows that
exist elsewhere, so they are told apart:

- the database holds one `fleet_identity` row, created by the first worker;
- local storage holds a marker file, `<STORAGE_DIR>/.storywink-fleet`, with the same id;
- at start a worker refuses (one line) a database and a storage whose ids differ, or a new
  database beside storage that already belongs to a fleet;
- `prepare_illustration` stamps its fleet on every page task, and a page worker of
  another fleet fails the attempt retryably instead of drawing, so the page waits for a
  worker that agrees (`activities.illustrate_page`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Final

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from storywink.db.models import FleetIdentity, new_id
from storywink.providers.base import ImageStore
from storywink.providers.local_storage import LocalImageStore

MARKER_NAME: Final = ".storywink-fleet"
# The memo key under which a client names its fleet on the runs it starts.
FLEET_MEMO: Final = "storywink_fleet"
_ROW: Final = 1


class FleetError(RuntimeError):
    """This worker's database and storage belong to different fleets, or its storage
    cannot hold the marker (one line naming the settings)."""


def database_fleet(session: Session) -> str | None:
    return session.scalar(select(FleetIdentity.fleet_id).where(FleetIdentity.id == _ROW))


def ensure_database_fleet(session: Session) -> str:
    """The database's fleet id, created by the first caller (concurrent ones agree)."""
    if (found := database_fleet(session)) is not None:
        return found
    session.add(FleetIdentity(id=_ROW, fleet_id=new_id()))
    try:
        session.commit()
    except IntegrityError:  # another worker created it first
        session.rollback()
    found = database_fleet(session)
    assert found is not None
    return found


def marker_path(store: ImageStore) -> Path | None:
    """Where local storage keeps its fleet marker; None for a CDN."""
    return store.root / MARKER_NAME if isinstance(store, LocalImageStore) else None


def read_marker(path: Path) -> str | None:
    try:
        value = json.loads(path.read_text(encoding="utf-8")).get("fleet_id")
    except FileNotFoundError:
        return None
    except (OSError, ValueError, AttributeError):
        raise FleetError(f"unreadable fleet marker {path}") from None
    return str(value) if value else None


def _write_marker(path: Path, fleet_id: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    temp.write_text(json.dumps({"fleet_id": fleet_id}), encoding="utf-8")
    os.replace(temp, path)


def establish_fleet(sessions: sessionmaker[Session], store: ImageStore, database_shown: str) -> str:
    """The fleet this worker serves, after checking its database and storage agree; the
    first worker of a fleet writes both. `FleetError` names the settings otherwise."""
    marker = marker_path(store)
    # The marker first: a first worker commits the row before it writes the marker, so a
    # worker starting beside it never sees a marker without its row.
    in_storage = read_marker(marker) if marker is not None else None
    with sessions() as session:
        in_database = database_fleet(session)
        where = f"database {database_shown} (DATABASE_URL)"
        if in_storage is not None and in_database != in_storage:
            found = f"fleet {in_database}" if in_database else "no fleet yet (a new database)"
            raise FleetError(
                f"{where} holds {found}, but storage {marker} (STORAGE_DIR) belongs to fleet "
                f"{in_storage}: every worker must use the same DATABASE_URL and STORAGE_DIR "
                f"(a new database meant for this storage: delete {marker})"
            )
        fleet_id = in_database or ensure_database_fleet(session)
    if marker is not None and in_storage is None:
        try:
            _write_marker(marker, fleet_id)
        except OSError as exc:
            raise FleetError(
                f"cannot write the fleet marker {marker} (STORAGE_DIR): {exc.strerror}"
            ) from None
    return fleet_id
