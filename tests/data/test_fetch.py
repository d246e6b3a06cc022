from __future__ import annotations

import http.server
import socket
import threading
from pathlib import Path

import pytest

from mammo_ray.cli import run_cli
from mammo_ray.data.__main__ import main
from mammo_ray.data.fetch import ARCHIVE_NAME, MIAS_URL, default_dest, download, fetch_mias
from mammo_ray.errors import FetchError
from tests.data.mias_factory import mias_files, write_archive


class _Server:
    """A local HTTP server answering each path from ``routes`` (path -> (status, body)).

    ``announced`` overrides the Content-Length sent for a path.
    """

    def __init__(self) -> None:
        self.routes: dict[str, tuple[int, bytes]] = {}
        self.announced: dict[str, int] = {}
        self.requests: list[str] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.requests.append(self.path)
                status, body = server.routes.get(self.path, (404, b"not found"))
                self.send_response(status)
                length = server.announced.get(self.path, len(body))
                self.send_header("Content-Length", str(length))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"


@pytest.fixture
def no_proxy(monkeypatch):
    """Keep urllib from sending requests for 127.0.0.1 to a proxy named in the environment."""
    monkeypatch.setenv("no_proxy", "*")
    monkeypatch.setenv("NO_PROXY", "*")


@pytest.fixture
def server(no_proxy):
    served = _Server()
    served.thread.start()
    yield served
    served.httpd.shutdown()
    served.httpd.server_close()


@pytest.fixture
def archive_bytes(tmp_path_factory) -> bytes:
    path = tmp_path_factory.mktemp("served") / "all-mias.tar.gz"
    return write_archive(path, mias_files()).read_bytes()


def test_fetch_downloads_verifies_and_prints_the_path(server, archive_bytes, tmp_path, capsys):
    server.routes["/all-mias.tar.gz"] = (200, archive_bytes)
    dest = tmp_path / "cache"
    code = run_cli(main, ["fetch", "--dest", str(dest), "--url", server.url("/all-mias.tar.gz")])
    out, err = capsys.readouterr()
    assert code == 0
    assert (dest / ARCHIVE_NAME).read_bytes() == archive_bytes
    assert sorted(p.name for p in dest.iterdir()) == [ARCHIVE_NAME]
    assert "found 12 images of 6 patients (normal 5, mass 4, calc 3)" in out
    assert out.splitlines()[-1] == str(dest / ARCHIVE_NAME)
    assert "warning: the official archive holds 322 images, this one 12" in err


def test_fetch_keeps_a_valid_archive_unless_forced(server, archive_bytes, tmp_path, capsys):
    server.routes["/m.tar.gz"] = (200, archive_bytes)
    args = ["fetch", "--dest", str(tmp_path), "--url", server.url("/m.tar.gz")]
    assert run_cli(main, args) == 0
    assert run_cli(main, args) == 0
    assert server.requests == ["/m.tar.gz"]
    assert "already downloaded" in capsys.readouterr().out
    assert run_cli(main, [*args, "--force"]) == 0
    assert server.requests == ["/m.tar.gz", "/m.tar.gz"]


def test_fetch_replaces_an_archive_that_does_not_parse(server, archive_bytes, tmp_path):
    server.routes["/m.tar.gz"] = (200, archive_bytes)
    (tmp_path / ARCHIVE_NAME).write_bytes(b"half a download")
    with pytest.warns(UserWarning, match="does not parse .*; downloading again"):
        result = fetch_mias(tmp_path, url=server.url("/m.tar.gz"), progress=False)
    assert result.downloaded and result.path.read_bytes() == archive_bytes
    assert result.dataset.path == result.path and len(result.dataset.records) == 12


def test_http_404_exits_2_naming_the_url_and_leaves_no_file(server, tmp_path, capsys):
    url = server.url("/missing.tar.gz")
    assert run_cli(main, ["fetch", "--dest", str(tmp_path), "--url", url]) == 2
    err = capsys.readouterr().err
    assert err == f"error: {url}: HTTP error 404 Not Found\n"
    assert list(tmp_path.iterdir()) == []


def test_non_archive_body_exits_2_and_leaves_no_file(server, tmp_path, capsys):
    server.routes["/page"] = (200, b"<html>moved</html>")
    url = server.url("/page")
    assert run_cli(main, ["fetch", "--dest", str(tmp_path), "--url", url]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {url}: the download is not a MIAS archive (")
    assert err.count("\n") == 1
    assert list(tmp_path.iterdir()) == []


def test_archive_without_info_txt_is_not_a_mias_archive(server, tmp_path):
    body = write_archive(tmp_path / "x.tar.gz", {"readme.txt": b"hello"}).read_bytes()
    server.routes["/x"] = (200, body)
    dest = tmp_path / "dest"
    with pytest.raises(FetchError, match=r"/x: the download is not a MIAS archive \(.*Info\.txt"):
        fetch_mias(dest, url=server.url("/x"), progress=False)
    assert list(dest.iterdir()) == []


def test_connection_refused_is_a_fetch_error(no_proxy, tmp_path):
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{unused.getsockname()[1]}/a"
    with pytest.raises(FetchError, match=rf"^{url}: cannot connect"):
        download(url, tmp_path / "a", progress=False, timeout=5)


def test_download_returns_the_byte_count(server, tmp_path):
    server.routes["/b"] = (200, b"x" * 100_000)
    assert download(server.url("/b"), tmp_path / "b", progress=False) == 100_000
    assert (tmp_path / "b").read_bytes() == b"x" * 100_000


def test_body_shorter_than_announced_is_an_incomplete_download(server, archive_bytes, tmp_path):
    server.routes["/short"] = (200, archive_bytes[:1000])
    server.announced["/short"] = len(archive_bytes)
    with pytest.raises(
        FetchError, match=rf"/short: incomplete download, 1000 of {len(archive_bytes)}"
    ):
        fetch_mias(tmp_path, url=server.url("/short"), progress=False)
    assert list(tmp_path.iterdir()) == []


def test_default_dest_is_mammo_ray_home_or_the_user_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("MAMMO_RAY_HOME", str(tmp_path))
    assert default_dest() == tmp_path
    monkeypatch.delenv("MAMMO_RAY_HOME")
    assert default_dest() == Path.home() / ".cache" / "mammo_ray"


def test_default_url_is_the_mias_distribution():
    assert MIAS_URL == "http://peipa.essex.ac.uk/pix/mias/all-mias.tar.gz"
