"""A first run with real keys: the shipped style references are published to the user's
storage by `storywink styles publish`, a worker refuses to start while one is missing, and
the model is sent the published references (real cloudinary and google-genai SDKs, fakes)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from temporalio.testing import WorkflowEnvironment
from typer.testing import CliRunner

from storywink.cli import app
from storywink.contract import BookStatus
from storywink.illustration import style_assets
from storywink.illustration.style_assets import REFERENCES_DIR, publish_references, reference_paths
from storywink.providers.factory import build_store
from tests.support.commands import clean_env
from tests.support.paths import WORKER_SCRIPT
from tests.support.pipeline import Pipeline
from tests.support.provider_fakes import GEMINI_KEY, Fakes


def _publish_with_the_cli(fakes: Fakes, tmp_path: Path) -> tuple[str, str]:
    env = {
        "CLOUDINARY_URL": fakes.cloudinary_url,
        "STORAGE": "cloudinary",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite'}",
    }
    result = CliRunner().invoke(app, ["styles", "publish"], env=env)
    assert result.exit_code == 0, result.output
    return result.stdout.strip(), result.stderr


def test_publish_uploads_every_reference_once_and_prints_the_url_that_serves_them(
    fakes: Fakes, tmp_path: Path
) -> None:
    url, said = _publish_with_the_cli(fakes, tmp_path)
    again, said_again = _publish_with_the_cli(fakes, tmp_path)

    assert "5 reference images uploaded, 0 already there" in said
    assert "0 reference images uploaded, 5 already there" in said_again
    assert again == url
    assert len(fakes.cloudinary.uploads) == len(reference_paths()) == 5
    for path in reference_paths():
        served = httpx.get(url + path)
        assert served.status_code == 200, path
        assert served.content == (REFERENCES_DIR / path).read_bytes()


def test_a_changed_reference_is_published_beside_the_old_ones(
    fakes: Fakes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, _ = _publish_with_the_cli(fakes, tmp_path)
    changed = tmp_path / "references"
    for path in reference_paths():
        (changed / path).parent.mkdir(parents=True, exist_ok=True)
        (changed / path).write_bytes((REFERENCES_DIR / path).read_bytes())
    (changed / "crayon/reference-1.png").write_bytes(
        (REFERENCES_DIR / "storybook/reference-1.png").read_bytes()
    )
    monkeypatch.setattr(style_assets, "REFERENCES_DIR", changed)
    new_url, _ = _publish_with_the_cli(fakes, tmp_path)

    assert new_url != url  # a new folder: books in flight keep the old references
    assert (
        httpx.get(url + "crayon/reference-1.png").content
        == (REFERENCES_DIR / "crayon/reference-1.png").read_bytes()
    )


@pytest.mark.process
def test_a_worker_with_a_real_model_names_each_missing_reference_and_exits_2(
    fakes: Fakes, tmp_path: Path, temporal_env: WorkflowEnvironment
) -> None:
    empty_folder = fakes.cloudinary.url(
        f"{fakes.cloudinary.cloud_name}/image/upload/v1/storywink/styles/nothing-here/"
    )
    result = subprocess.run(
        [sys.executable, str(WORKER_SCRIPT)],
        cwd=tmp_path,
        env=clean_env(
            tmp_path,
            TEMPORAL_ADDRESS=temporal_env.client.service_client.config.target_host,
            GEMINI_API_KEY=GEMINI_KEY,
            GEMINI_BASE_URL=fakes.gemini.base_url,
            CLOUDINARY_URL=fakes.cloudinary_url,
            STYLE_ASSETS_URL=empty_folder,
            ALLOW_PRIVATE_FETCH="true",
            LOG_LEVEL="WARNING",
        ),
        capture_output=True,
        text=True,
        timeout=60,
    )

    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, result.stderr
    assert len(lines) == 1, result.stderr
    for path in reference_paths():
        assert f"{path}: " in lines[0]
    assert "404" in lines[0]
    assert "storywink styles publish" in lines[0]
    assert fakes.cloudinary.api_secret not in result.stderr


async def test_the_model_is_sent_the_published_references(
    fake_pipeline: Pipeline, fakes: Fakes
) -> None:
    published = await publish_references(build_store(fake_pipeline.configure()))
    pipeline = fake_pipeline.with_settings(style_assets_url=published.assets_url)
    book_id = pipeline.book(2, photos="styled")

    outcome = await pipeline.illustrate(book_id)

    assert outcome.status is BookStatus.COMPLETED
    sent = [image for request in fakes.gemini.requests for _, image in request.inline_images]
    title = (REFERENCES_DIR / "vignette/title.png").read_bytes()
    page = (REFERENCES_DIR / "vignette/reference-1.png").read_bytes()
    assert title in sent and page in sent
