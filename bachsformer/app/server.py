"""The local web page: static files from this package, a small JSON API, and the files of each
finished piece. Every request is answered; a bad one gets a message, never a dead server.

    GET  /                       the page
    GET  /api/info               styles, keys, forms, instruments, limits
    POST /api/compose            {style, key, form, bars, bpm, program, temperature, seed} -> {job}
    POST /api/upload?name=F.mid  the MIDI file as the body -> {upload, bars, key, roll}
    POST /api/continue           {upload, bars, ...} -> {job}
    POST /api/regenerate         {upload, ranges: [[first, last], ...], ...} -> {job}
    POST /api/harmonise          {upload, ...} -> {job}: its top line kept, the other voices new
    POST /api/variation          {upload, ...} -> {job}: its rhythm kept, every pitch new
    GET  /api/jobs/ID            {state, error, seconds, piece}
    GET  /api/jobs/ID/FILE       piece.mid, piece.wav, piece.musicxml, score-N.svg
"""
from __future__ import annotations

import json
import re
import secrets
import shutil
import tempfile
import threading
from collections import OrderedDict
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

from .jobs import Busy, JobQueue
from .studio import MAX_UPLOAD_BYTES, RequestError, Studio

STATIC = Path(__file__).resolve().parent / "static"
PAGES = {"/": ("index.html", "text/html; charset=utf-8"), "/app.js": ("app.js", "text/javascript; charset=utf-8"),
         "/style.css": ("style.css", "text/css; charset=utf-8")}
DOWNLOADS = {"piece.mid": ("midi", "audio/midi"), "piece.wav": ("wav", "audio/wav"),
             "piece.musicxml": ("musicxml", "application/vnd.recordare.musicxml+xml")}
MAX_JSON_BYTES = 16_384
MAX_DRAINED_BYTES = 64_000_000  # a body over the limit is read and dropped up to this size, then refused
MAX_UPLOADS = 32
LISTEN_BACKLOG = 256  # connections the kernel holds until the server accepts them
JOB_PATH = re.compile(r"^/api/jobs/([0-9a-f]{16})(?:/([a-z0-9.-]+))?$")


class App:
    """The studio, its job queue and its output folder: the state every request handler shares."""

    def __init__(self, studio: Studio, out_dir: Path | None = None):
        self.studio = studio
        self.out_dir = Path(out_dir) if out_dir else Path(tempfile.mkdtemp(prefix="bachsformer-app-"))
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.jobs = JobQueue(on_forget=self._delete_files, warm_up=lambda: studio.warm_up(self.out_dir))
        self.uploads = OrderedDict()
        self._lock = threading.Lock()
        self.info = studio.info()

    def _delete_files(self, job) -> None:
        if job.result is not None:
            for path in job.result.files.values():
                Path(path).unlink(missing_ok=True)

    def add_upload(self, data: bytes, name: str) -> tuple:
        upload_id = secrets.token_hex(8)
        upload = self.studio.read_upload(data, name, self.out_dir, upload_id)
        with self._lock:
            self.uploads[upload_id] = upload
            while len(self.uploads) > MAX_UPLOADS:
                _, old = self.uploads.popitem(last=False)
                old.path.unlink(missing_ok=True)
        return upload_id, upload

    def upload(self, upload_id) -> object:
        with self._lock:
            upload = self.uploads.get(upload_id) if isinstance(upload_id, str) else None
        if upload is None:
            raise RequestError("upload: unknown or forgotten; send the file again")
        return upload

    def submit(self, options: dict, upload=None, regenerate=None, mode: str = "continue"):
        def work(job):
            return self.studio.compose(options, upload, regenerate, self.out_dir / f"piece-{job.id}", mode)
        return self.jobs.submit(work)


class Handler(BaseHTTPRequestHandler):
    server_version = "bachsformer"
    app: App  # set on the class made for each server

    def log_message(self, format, *args):  # quiet: the terminal shows the address and errors only
        pass

    def do_GET(self):
        self._answer(self._get)

    def do_POST(self):
        self._answer(self._post)

    def _answer(self, route):
        try:
            route(urlparse(self.path))
        except RequestError as e:
            self._json({"error": str(e)}, HTTPStatus.BAD_REQUEST)
        except Busy as e:
            self._json({"error": str(e), "busy": True}, HTTPStatus.SERVICE_UNAVAILABLE)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the page went away; nothing to answer
        except Exception as e:  # a bug: the request fails, the server keeps serving
            import traceback
            traceback.print_exc()
            try:
                self._json({"error": f"internal error: {type(e).__name__}"}, HTTPStatus.INTERNAL_SERVER_ERROR)
            except OSError:
                pass

    def _get(self, url):
        if url.path in PAGES:
            name, kind = PAGES[url.path]
            return self._bytes((STATIC / name).read_bytes(), kind)
        if url.path == "/api/info":
            return self._json(self.app.info)
        match = JOB_PATH.match(url.path)
        if not match:
            return self._json({"error": "not found"}, HTTPStatus.NOT_FOUND)
        job = self.app.jobs.get(match.group(1))
        if job is None:
            return self._json({"error": "no such piece (it may have been forgotten)"}, HTTPStatus.NOT_FOUND)
        file = match.group(2)
        if file is None:
            return self._json(_job_json(job))
        if job.state != "done":
            return self._json({"error": f"the piece is {job.state}"}, HTTPStatus.CONFLICT)
        if file in DOWNLOADS:
            kind, mime = DOWNLOADS[file]
            path = job.result.files.get(kind)
            if path is None or not Path(path).exists():
                return self._json({"error": f"no {kind} for this piece"}, HTTPStatus.NOT_FOUND)
            return self._bytes(Path(path).read_bytes(), mime, download=f"bachsformer-seed{job.result.seed}{Path(file).suffix}")
        page = re.fullmatch(r"score-(\d+)\.svg", file)
        if page and 1 <= int(page.group(1)) <= len(job.result.svg):
            return self._bytes(job.result.svg[int(page.group(1)) - 1].encode(), "image/svg+xml")
        return self._json({"error": "not found"}, HTTPStatus.NOT_FOUND)

    def _post(self, url):
        if url.path == "/api/upload":
            name = Path(parse_qs(url.query).get("name", ["upload.mid"])[0]).name[:100] or "upload.mid"
            upload_id, upload = self.app.add_upload(self._body(MAX_UPLOAD_BYTES), name)
            return self._json({"upload": upload_id, **upload.summary})
        routes = {"/api/compose", "/api/continue", "/api/regenerate", "/api/harmonise", "/api/variation"}
        if url.path not in routes:
            return self._json({"error": "not found"}, HTTPStatus.NOT_FOUND)
        try:
            request = json.loads(self._body(MAX_JSON_BYTES) or b"{}")
        except ValueError:
            raise RequestError("the request is not JSON") from None
        options = self.app.studio.options(request)
        upload = regenerate = None
        if url.path != "/api/compose":
            upload = self.app.upload(request.get("upload"))
        if url.path == "/api/regenerate":
            regenerate = _ranges(request.get("ranges"), upload.summary["bars"])
        job = self.app.submit(options, upload, regenerate, url.path.rsplit("/", 1)[1])
        self._json({"job": job.id, "seed": options["seed"], "waiting": self.app.jobs.waiting()}, HTTPStatus.ACCEPTED)

    def _body(self, limit: int) -> bytes:
        try:
            length = int(self.headers.get("Content-Length", 0))
        except ValueError:
            raise RequestError("bad Content-Length") from None
        if length > limit:
            if length <= MAX_DRAINED_BYTES:  # read and dropped, so the client can read the answer
                left = length
                while left > 0:
                    chunk = self.rfile.read(min(1 << 16, left))
                    left = left - len(chunk) if chunk else 0
            else:
                self.close_connection = True
            raise RequestError(f"the request is {length / 1e6:.1f} MB, more than the {limit / 1e6:.2g} MB allowed")
        return self.rfile.read(length) if length > 0 else b""

    def _json(self, payload, status=HTTPStatus.OK):
        self._bytes(json.dumps(payload).encode(), "application/json", status=status)

    def _bytes(self, data: bytes, kind: str, status=HTTPStatus.OK, download: str | None = None):
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        if download:
            self.send_header("Content-Disposition", f'attachment; filename="{download}"')
        self.end_headers()
        self.wfile.write(data)


def _ranges(value, n_bars: int) -> list:
    """[[first, last], ...] checked as bars of the upload: RequestError otherwise."""
    if not isinstance(value, list) or not value or len(value) > 16:
        raise RequestError("ranges: choose the bars to regenerate, such as [[5, 8]]")
    ranges = []
    for item in value:
        if not (isinstance(item, list) and len(item) == 2 and all(isinstance(b, int) for b in item)):
            raise RequestError("ranges: each range is [first bar, last bar]")
        first, last = item
        if not 1 <= first <= last <= n_bars:
            raise RequestError(f"ranges: bars {first} to {last} are not bars of the piece, which has bars 1 to {n_bars}")
        ranges.append((first, last))
    return ranges


def _job_json(job) -> dict:
    out = {"job": job.id, "state": job.state, "error": job.error, "seconds": job.seconds}
    if job.state == "done":
        piece = job.result
        base = f"/api/jobs/{job.id}"
        out["piece"] = {"seed": piece.seed, "title": piece.title, "roll": piece.roll, "timemap": piece.timemap,
                        "svg": [f"{base}/score-{i}.svg" for i in range(1, len(piece.svg) + 1)], "notes": piece.notes,
                        "files": {kind: f"{base}/{name}" for name, (kind, _) in DOWNLOADS.items() if kind in piece.files}}
    return out


class Server(ThreadingHTTPServer):
    # The socket's listen backlog: the standard library's 5 let a burst of 50 page loads or
    # Compose clicks overflow it while the worker held the CPU, and the kernel reset one.
    request_queue_size = LISTEN_BACKLOG
    daemon_threads = True


def make_server(app: App, host: str = "127.0.0.1", port: int = 8000) -> Server:
    handler = type("BoundHandler", (Handler,), {"app": app})
    return Server((host, port), handler)


def cleanup(app: App, owned: bool) -> None:
    """Remove the output folder the server made for itself (never one the user named)."""
    if owned:
        shutil.rmtree(app.out_dir, ignore_errors=True)
