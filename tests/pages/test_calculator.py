"""/calculator in-process: the page, exactly the files it loads, and the model it reads, nothing more."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from inference.app import create_app
from inference.config import Settings
from inference.onnx_io import metadata, open_session
from inference.pages.calculator import CONTENT_SECURITY_POLICY, ORT_WEB_DIR, ORT_WEB_FILES, OWN_FILES
from tests.helpers import ROOT, Project

WEB_DIR = ROOT / "examples" / "web"


def settings_for(p: Project, web_dir: Path = WEB_DIR) -> Settings:
    return Settings(model_settings=p.settings, model_registry=p.registry, auto_reload=False, calculator_dir=web_dir)


@pytest.fixture
def client(served: Project) -> Iterator[TestClient]:
    if not (WEB_DIR / "node_modules" / ".package-lock.json").is_file():
        pytest.fail("onnxruntime-web is not installed: run `make web`")
    with TestClient(create_app(settings_for(served)), raise_server_exceptions=False) as c:
        yield c


def test_calculator_redirects_to_the_page_its_relative_urls_need(client: TestClient) -> None:
    response = client.get("/calculator", follow_redirects=False)
    assert response.status_code == 308 and response.headers["location"] == "/calculator/"
    linked = client.get("/calculator?carat=0%2C7&cut=Very+Good", follow_redirects=False)
    assert linked.status_code == 308 and linked.headers["location"] == "/calculator/?carat=0%2C7&cut=Very+Good"
    page = client.get("/calculator")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert page.headers["content-security-policy"] == CONTENT_SECURITY_POLICY


def test_the_page_carries_the_same_policy_for_static_servers() -> None:
    page = (WEB_DIR / "index.html").read_text()
    (meta,) = re.findall(r'http-equiv="Content-Security-Policy" content="([^"]+)"', page)
    header = [d for d in CONTENT_SECURITY_POLICY.split("; ") if not d.startswith("frame-ancestors")]
    assert meta.split("; ") == header
    assert "'unsafe-eval'" not in meta and "'unsafe-inline'" not in meta and "http" not in meta


def test_every_file_the_page_loads_is_served_and_nothing_else(client: TestClient) -> None:
    types = {"calculator.js": "text/javascript", "calculator.css": "text/css"}
    for name in OWN_FILES:
        response = client.get(f"/calculator/{name}")
        assert response.status_code == 200 and response.headers["content-type"].startswith(types[name])
        assert response.content == (WEB_DIR / name).read_bytes()
    for name in ORT_WEB_FILES:
        response = client.get(f"/calculator/{ORT_WEB_DIR.as_posix()}/{name}")
        assert response.status_code == 200, name
        kind = "application/wasm" if name.endswith(".wasm") else "text/javascript"
        assert response.headers["content-type"].startswith(kind)
    hidden = [
        "index.html",
        "package.json",
        "package-lock.json",
        "node_modules/.package-lock.json",
        "node_modules/onnxruntime-web/package.json",
        f"{ORT_WEB_DIR.as_posix()}/ort.all.min.mjs",
        f"{ORT_WEB_DIR.as_posix()}/../package.json",
    ]
    for path in hidden:
        assert client.get(f"/calculator/{path}").status_code == 404, path


def test_the_page_loads_only_files_the_service_serves() -> None:
    script = (WEB_DIR / "calculator.js").read_text()
    page = (WEB_DIR / "index.html").read_text()
    assert set(re.findall(r'(?:src|href)="([^":]+)"', page)) == {"calculator.css", "calculator.js"}
    (bundle,) = re.findall(r"from '\./(node_modules/[^']+)'", script)
    assert Path(bundle).parent == ORT_WEB_DIR and Path(bundle).name in ORT_WEB_FILES


def test_the_page_has_no_copy_of_the_categories(served: Project) -> None:
    """The lists come from the model's feature_schema, so the page must not name any category."""
    blob = (served.settings.parent / json.loads(served.settings.read_text())["path"]).read_bytes()
    schema = json.loads(metadata(open_session(blob))["feature_schema"])
    text = (WEB_DIR / "index.html").read_text() + (WEB_DIR / "calculator.js").read_text()
    for values in schema["categorical"].values():
        for value in values:
            assert not re.search(rf"['\">]{re.escape(value)}['\"<]", text), value


def test_the_served_model_is_published_at_the_repository_paths(client: TestClient, served: Project) -> None:
    recorded = json.loads(served.settings.read_text())
    settings = client.get("/modelsettings.json")
    assert settings.status_code == 200 and settings.json() == recorded
    model = client.get(f"/{recorded['path']}")
    assert model.status_code == 200 and hashlib.sha256(model.content).hexdigest() == recorded["sha256"]
    for other in ("model_registry/history.jsonl", "model_registry/diamond_price-v9.onnx", "model_registry/.lock"):
        assert client.get(f"/{other}").status_code == 404, other


def test_a_model_file_changed_on_disk_is_not_published(client: TestClient, served: Project) -> None:
    path = served.settings.parent / json.loads(served.settings.read_text())["path"]
    path.write_bytes(path.read_bytes() + b"\0")
    response = client.get("/model_registry/" + path.name)
    assert response.status_code == 503 and "changed" in response.json()["error"]


def test_without_a_model_the_model_urls_answer_503(project: Project) -> None:
    with TestClient(create_app(settings_for(project))) as client:
        for path in ("/modelsettings.json", "/model_registry/diamond_price-v1.onnx"):
            response = client.get(path)
            assert response.status_code == 503 and "no model is loaded" in response.json()["error"]


def test_without_onnxruntime_web_the_page_says_how_to_install_it(served: Project, tmp_path: Path) -> None:
    web = tmp_path / "web"
    web.mkdir()
    for name in ("index.html", *OWN_FILES):
        shutil.copy(WEB_DIR / name, web / name)
    with TestClient(create_app(settings_for(served, web))) as client:
        response = client.get("/calculator/")
        assert response.status_code == 503 and "make web" in response.json()["error"]
        assert client.get(f"/calculator/{ORT_WEB_DIR.as_posix()}/{ORT_WEB_FILES[0]}").status_code == 404
