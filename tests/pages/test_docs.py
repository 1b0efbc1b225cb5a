"""/docs and /redoc, in process: same-origin pages, served bundles, hidden private files, 503 without bundles."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from starlette.applications import Starlette
from starlette.routing import Mount, Route
from starlette.testclient import TestClient

from inference.app import create_app
from inference.config import Settings
from inference.pages.docs import docs_routes
from inference.paths import PROJECT_ROOT

STATIC_DIR = PROJECT_ROOT / "static"
OWN_FILES = ("docs.html", "redoc.html", "swagger-init.js", "same-origin-images.js")
PAGES = ("/docs", "/redoc")
ASSET_TYPES = ("text/javascript", "application/javascript", "text/css", "image/png")
# Every quoted string in a script, every url(...) in CSS.
JS_STRING = re.compile(r"""(["'`])((?:(?!\1)[^\\\n]|\\.)*)\1""")
CSS_URL = re.compile(r"""url\(\s*["']?([^"')]+)""")


def make_app(static_dir: Path) -> Starlette:
    return create_app(Settings(static_dir=static_dir, auto_reload=False))


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    if not (STATIC_DIR / "node_modules" / ".package-lock.json").is_file():
        pytest.fail("the Swagger UI and ReDoc bundles are not installed: run `make docs`")
    with TestClient(make_app(STATIC_DIR)) as client:
        yield client


class _Links(HTMLParser):
    """Every URL an HTML page names: src, href, spec-url and friends, and url(...) in inline styles."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.scripts: list[str] = []
        self._in_style = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._in_style = tag == "style"
        for name, value in attrs:
            if value is not None and (name in ("src", "href", "action", "srcset", "poster", "data") or "url" in name):
                self.urls.append(value.strip())
            if value is not None and name == "style":
                self.urls += CSS_URL.findall(value)
        if tag == "script":
            self.scripts.append(dict(attrs).get("src") or "")

    def handle_data(self, data: str) -> None:
        if self._in_style:
            self.urls += CSS_URL.findall(data)

    def handle_endtag(self, tag: str) -> None:
        self._in_style = False


def page_links(html: str) -> _Links:
    parser = _Links()
    parser.feed(html)
    parser.close()
    return parser


def js_urls(source: str) -> list[str]:
    """The string literals of a script that look like URLs (contain a slash or a scheme)."""
    return [m.group(2) for m in JS_STRING.finditer(source) if "/" in m.group(2) or ":" in m.group(2)]


def assert_same_origin(urls: list[str], where: str) -> None:
    assert urls, f"no URL found in {where}"
    for url in urls:
        parts = urlsplit(url)
        if parts.scheme in ("data", "blob"):
            continue
        assert (parts.scheme, parts.netloc) == ("", ""), f"{where} names an absolute URL: {url!r}"


@pytest.mark.parametrize("path", PAGES)
def test_page_is_html_naming_only_same_origin_urls(client: TestClient, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in response.headers["content-security-policy"]
    links = page_links(response.text)
    assert all(links.scripts), f"{path} has an inline script"
    assert_same_origin(links.urls, path)


@pytest.mark.parametrize("name", ["swagger-init.js", "same-origin-images.js"])
def test_our_scripts_name_only_same_origin_urls(client: TestClient, name: str) -> None:
    response = client.get(f"/static/{name}")
    assert response.status_code == 200
    assert response.text == (STATIC_DIR / name).read_text()
    assert_same_origin(js_urls(response.text), name)


def test_swagger_ui_loads_our_spec_without_the_online_validator(client: TestClient) -> None:
    source = client.get("/static/swagger-init.js").text
    assert re.search(r"\bvalidatorUrl\s*:\s*null\b", source)
    assert re.search(r"""\burl\s*:\s*["']/openapi\.json["']""", source)
    assert page_links(client.get("/docs").text).scripts[-1] == "/static/swagger-init.js"


def test_redoc_guard_runs_before_the_bundle(client: TestClient) -> None:
    # ReDoc 2.x puts an <img> from its vendor's CDN in the side menu; same-origin-images.js must be in place first.
    links = page_links(client.get("/redoc").text)
    assert links.scripts == ["/static/same-origin-images.js", "/static/redoc/redoc.standalone.js"]
    assert "/openapi.json" in links.urls


@pytest.mark.parametrize("path", PAGES)
def test_everything_a_page_loads_is_served(client: TestClient, path: str) -> None:
    links = page_links(client.get(path).text)
    assets = [url for url in links.urls if not url.startswith("data:") and url != "/openapi.json"]
    assert any(url.endswith(".js") for url in assets)
    for url in assets:
        response = client.get(url)
        assert response.status_code == 200, url
        assert response.headers["content-type"].startswith(ASSET_TYPES), (url, response.headers["content-type"])
        assert len(response.content) > 0, url


def test_the_bundles_are_the_pinned_ones(client: TestClient) -> None:
    pins = json.loads((STATIC_DIR / "package.json").read_text())["dependencies"]
    lock = json.loads((STATIC_DIR / "package-lock.json").read_text())["packages"]
    assert set(pins) == {"swagger-ui-dist", "redoc"}
    for name, version in pins.items():
        assert re.fullmatch(r"\d+\.\d+\.\d+", version), f"{name} is not pinned to an exact version: {version}"
        assert lock[f"node_modules/{name}"]["version"] == version
        installed = json.loads((STATIC_DIR / "node_modules" / name / "package.json").read_text())
        assert installed["version"] == version, f"{name}: run `make docs`"
    assert pins["swagger-ui-dist"].startswith("5.")  # 4.x cannot render OpenAPI 3.1
    assert pins["redoc"].startswith("2.")
    bundle = client.get("/static/redoc/redoc.standalone.js")
    assert bundle.status_code == 200
    assert bundle.content == (STATIC_DIR / "node_modules/redoc/bundles/redoc.standalone.js").read_bytes()


def test_the_spec_the_pages_load_is_openapi_3_1(client: TestClient) -> None:
    response = client.get("/openapi.json")
    assert response.status_code == 200
    spec = response.json()
    assert spec["openapi"].startswith("3.1")
    assert spec["paths"]
    assert not {"/docs", "/redoc"} & set(spec["paths"])
    assert not any(path.startswith("/static") for path in spec["paths"])


@pytest.mark.parametrize(
    "path",
    [
        "/static/package.json",
        "/static/package-lock.json",
        "/static/docs.html",
        "/static/node_modules/.package-lock.json",
        "/static/node_modules/redoc/package.json",
        "/static/node_modules/swagger-ui-dist/swagger-ui-bundle.js",
        "/static/swagger-ui/package.json",
        "/static/swagger-ui/index.html",
        "/static/swagger-ui/swagger-initializer.js",
        "/static/redoc/redoc.lib.js",
        "/static/redoc/../package.json",
        "/static/%2e%2e/pyproject.toml",
        "/static/swagger-ui/%2e%2e/%2e%2e/package-lock.json",
        "/static/",
    ],
)
def test_nothing_else_under_static_is_served(client: TestClient, path: str) -> None:
    assert client.get(path).status_code == 404


def test_docs_routes_stay_out_of_the_schema() -> None:
    routes = docs_routes(STATIC_DIR)
    pages = [route for route in routes if isinstance(route, Route)]
    assert sorted(route.path for route in pages) == ["/docs", "/redoc"]
    assert not any(route.include_in_schema for route in pages)
    assert [route.path for route in routes if isinstance(route, Mount)] == ["/static"]


def test_pages_answer_503_until_the_bundles_are_installed(tmp_path: Path) -> None:
    for name in OWN_FILES:
        shutil.copy(STATIC_DIR / name, tmp_path / name)
    with TestClient(make_app(tmp_path)) as client:
        for path in PAGES:
            response = client.get(path)
            assert response.status_code == 503, path
            assert response.headers["content-type"] == "application/json"
            assert "make docs" in response.json()["error"]
        assert client.get("/static/swagger-ui/swagger-ui-bundle.js").status_code == 404
        assert client.get("/static/redoc/redoc.standalone.js").status_code == 404
        assert client.get("/static/swagger-init.js").status_code == 200

        # `make docs` while the service runs: the pages work without a restart.
        bundles = tmp_path / "node_modules"
        shutil.copytree(STATIC_DIR / "node_modules/swagger-ui-dist", bundles / "swagger-ui-dist")
        shutil.copytree(STATIC_DIR / "node_modules/redoc/bundles", bundles / "redoc/bundles")
        for path in PAGES:
            assert client.get(path).status_code == 200, path
        assert client.get("/static/redoc/redoc.standalone.js").status_code == 200
