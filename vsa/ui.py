"""The live page: runs and their streams (state, fps, latency, drops, reconnects, counts) and a
live annotated view of each stream, in a browser.

``vsa ui`` (or ``vsa serve --ui``) serves it, on 127.0.0.1:8090 by default. Bound elsewhere
(``--host 0.0.0.0``) it asks for a token like the status endpoint: the URL it prints carries
it once (``/?token=...``), which sets a cookie for the page's own requests.

- ``GET /``: the page (one HTML file, no external resources): the running runs first, newest
  first, then the last 10 that ended;
- ``GET /api/runs``: the controller's status (``{"runs": [...]}``), what ``vsa status --json``
  shows;
- ``GET /frame/<run id>/<source id>.jpg``: the stream's newest annotated picture (204 while
  there is none yet). A request marks the stream as watched for a few seconds: only then does
  the stream make pictures (``vsa.stream.preview``), at most 5 a second, scaled to 640 wide.

The page asks for a stream's picture twice a second while it is shown, so an engine nobody
watches makes none.
"""

from __future__ import annotations

import hmac
import json
import logging
import re
import secrets
import threading
import time
import urllib.parse
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler
from typing import Any

from vsa.constants import ENDPOINT_MAX_CONNECTIONS

log = logging.getLogger("vsa.ui")

LOOPBACK = ("127.0.0.1", "::1", "localhost")
DEFAULT_PORT = 8090
STATUS_MAX_AGE_S = 0.5  # viewers within this share one status answer
PICTURE_MAX_AGE_S = 0.2  # ... one picture of a stream (it makes at most 5 a second)
COOKIE = "vsa_ui"
_FRAME = re.compile(
    r"^/frame/([A-Za-z0-9][A-Za-z0-9_.:-]{0,200})/([A-Za-z0-9][A-Za-z0-9_.-]{0,63})\.jpg$"
)

StatusFn = Callable[[], dict[str, Any]]
PictureFn = Callable[[str, str], bytes | None]  # (run id, source id) -> JPEG, None: none yet


class UiServer:
    """The live page's HTTP server (a thread of its own; ``close`` stops it)."""

    def __init__(
        self,
        status: StatusFn,
        picture: PictureFn,
        host: str = "127.0.0.1",
        port: int = DEFAULT_PORT,
        token: str | None = None,
    ) -> None:
        self.status, self.picture = status, picture
        self.host, self.port = host, port
        # viewers share the answers: 20 viewers cost the engine what one does
        self._cache: dict[Any, tuple[float, Any]] = {}
        self._locks: dict[Any, threading.Lock] = {}
        self._guard = threading.Lock()
        # a token on any address but the loopback: the page is as private as its URL
        self.token = token or (None if host in LOOPBACK else secrets.token_urlsafe(24))
        self._server: Any = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        base = f"http://{host}:{self.port}/"
        return base if self.token is None else f"{base}?token={self.token}"

    def start(self) -> str:
        from vsa.control.endpoint import _bounded_server

        self._server = _bounded_server(
            (self.host, self.port), self._handler(), ENDPOINT_MAX_CONNECTIONS
        )
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="vsa-ui", daemon=True
        )
        self._thread.start()
        return self.url

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def cached(self, key: Any, max_age_s: float, fetch: Callable[[], Any]) -> Any:
        """``fetch()``'s answer, shared by every request within ``max_age_s`` of it (one
        fetch at a time per key: concurrent viewers wait for it instead of asking again)."""
        with self._guard:
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            hit = self._cache.get(key)
            now = time.monotonic()
            if hit is not None and now - hit[0] < max_age_s:
                return hit[1]
            value = fetch()
            self._cache[key] = (time.monotonic(), value)
            return value

    def _allowed(self, path: str, headers: Any) -> tuple[bool, str | None]:
        """Whether a request may be served; a cookie to set when it came with ?token=."""
        if self.token is None:
            return True, None
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(path).query)
        given = (query.get("token") or [""])[0]
        if given and hmac.compare_digest(given, self.token):
            return True, given
        auth = headers.get("Authorization") or ""
        if auth.startswith("Bearer ") and hmac.compare_digest(auth[7:], self.token):
            return True, None
        for part in (headers.get("Cookie") or "").split(";"):
            name, _, value = part.strip().partition("=")
            if name == COOKIE and hmac.compare_digest(value, self.token):
                return True, None
        return False, None

    def _handler(self) -> type[Any]:
        ui = self

        class Handler(BaseHTTPRequestHandler):
            server_version = "vsa-ui"

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass  # no request log: the token may be in a URL

            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                ok, cookie = ui._allowed(self.path, self.headers)
                if not ok:
                    self._send(401, b"a token is needed: open the URL vsa ui printed", "text/plain")
                    return
                path = urllib.parse.urlsplit(self.path).path
                try:
                    if path == "/":
                        self._send(200, PAGE.encode(), "text/html; charset=utf-8", cookie)
                    elif path == "/api/runs":
                        runs = ui.cached("status", STATUS_MAX_AGE_S, ui.status)
                        body = json.dumps(runs, default=str).encode()
                        self._send(200, body, "application/json", cookie)
                    elif (m := _FRAME.match(path)) is not None:
                        run_id, source_id = m.group(1), m.group(2)
                        jpeg = ui.cached(
                            (run_id, source_id),
                            PICTURE_MAX_AGE_S,
                            lambda: ui.picture(run_id, source_id),
                        )
                        if jpeg is None:
                            self._send(204, b"", "image/jpeg")
                        else:
                            self._send(200, jpeg, "image/jpeg")
                    else:
                        self._send(404, b"not found", "text/plain")
                except Exception as exc:  # noqa: BLE001 - the page shows the engine's trouble
                    log.warning("live page: %s failed: %s", path, exc)
                    self._send(503, str(exc).encode()[:500], "text/plain")

            def _send(self, code: int, body: bytes, kind: str, cookie: str | None = None) -> None:
                self.send_response(code)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                if cookie is not None:
                    self.send_header(
                        "Set-Cookie", f"{COOKIE}={cookie}; HttpOnly; SameSite=Strict; Path=/"
                    )
                self.end_headers()
                if body:
                    self.wfile.write(body)

        return Handler


def client_picture(client: Any) -> PictureFn:
    """``picture`` through Ray: the source actor's newest picture (``SourceActor.preview``),
    its handle looked up once per stream."""
    import ray

    from actors import NAMESPACE

    handles: dict[tuple[str, str], Any] = {}

    def picture(run_id: str, source_id: str) -> bytes | None:
        key = (run_id, source_id)
        if key not in handles:
            handles[key] = ray.get_actor(f"source:{run_id}/{source_id}", namespace=NAMESPACE)
        try:
            return ray.get(handles[key].preview.remote(), timeout=5)
        except Exception:
            handles.pop(key, None)  # restarted or gone: looked up again next time
            raise

    return picture


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>vsa: live</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body{font:14px system-ui,sans-serif;margin:16px;background:#111;color:#ddd}
h1{font-size:18px;margin:0 0 12px} h2{font-size:16px;margin:18px 0 6px}
table{border-collapse:collapse;margin-bottom:8px} td,th{padding:3px 10px;text-align:left}
th{color:#999;font-weight:normal;border-bottom:1px solid #333}
.STREAMING,.UP,.FINISHED{color:#6c6} .DEGRADED,.RECONNECTING,.WAITING,.CONNECTING{color:#eb5}
.FAILED,.STOPPED{color:#e66} .views{display:flex;flex-wrap:wrap;gap:12px}
figure{margin:0} figcaption{color:#999;font-size:12px} img{max-width:480px;background:#222;
min-width:320px;min-height:180px;display:block} #err{color:#e66}
</style></head><body>
<h1>vsa: runs and streams</h1><div id="err"></div><div id="runs">loading...</div>
<script>
"use strict";
const shown = new Map();
function esc(t){return String(t).replace(/[&<>"']/g,c=>({"&":"&amp;","<":"&lt;",">":"&gt;",'"':"&quot;","'":"&#39;"}[c]));}
function counts(s){const a=s.analytics; if(!a) return "";
  const l=Object.entries(a.lines||{}).map(([k,v])=>`${esc(k)} in ${v.in} out ${v.out}`);
  const z=Object.entries(a.zones||{}).map(([k,v])=>`${esc(k)}: ${v.occupancy} inside`);
  return l.concat(z).join("; ");}
const ENDED=["FINISHED","STOPPED","FAILED"];
function render(data){
  // running first, newest first; at most 10 that ended, after them
  const all=(data.runs||[]).slice().sort((a,b)=>(b.created_at||0)-(a.created_at||0));
  const runs=all.filter(r=>!ENDED.includes(r.state)).concat(all.filter(r=>ENDED.includes(r.state)).slice(0,10));
  let html="";
  for(const r of runs){
    html+=`<h2>${esc(r.name)} <span class="${esc(r.state)}">${esc(r.state)}</span> <small>${esc(r.id)}</small></h2>`;
    html+="<table><tr><th>stream</th><th>state</th><th>fps</th><th>p50 / p99 ms</th><th>drops</th><th>reconnects</th><th>counts</th></tr>";
    for(const s of r.sources||[]){
      const lat=s.latency_ms||{};
      html+=`<tr data-stream="${esc(s.id)}"><td>${esc(s.id)}</td><td class="${esc(s.state)}">${esc(s.state)}</td>`+
        `<td>${(s.fps||0).toFixed(1)}</td><td>${lat.p50==null?"-":Math.round(lat.p50)} / ${lat.p99==null?"-":Math.round(lat.p99)}</td>`+
        `<td>${s.frames_dropped||0}</td><td>${s.reconnects||0}</td><td>${counts(s)}</td></tr>`;}
    html+="</table><div class=views>";
    for(const s of r.sources||[]){ if(ENDED.includes(s.state)) continue;
      const key=`${r.id}/${s.id}`;
      html+=`<figure><img data-key="${esc(key)}" alt="${esc(s.id)}"><figcaption>${esc(s.id)}</figcaption></figure>`;}
    html+="</div>";}
  document.getElementById("runs").innerHTML=runs.length?html:"no runs";
  for(const img of document.querySelectorAll("img[data-key]")){
    const old=shown.get(img.dataset.key); if(old) img.src=old;}
}
async function poll(){
  try{const r=await fetch("api/runs",{cache:"no-store"}); if(!r.ok) throw new Error(await r.text());
    render(await r.json()); document.getElementById("err").textContent="";}
  catch(e){document.getElementById("err").textContent="the engine does not answer: "+e.message;}
}
async function frames(){
  for(const img of document.querySelectorAll("img[data-key]")){
    const key=img.dataset.key;
    try{const r=await fetch(`frame/${key}.jpg?t=${Date.now()}`,{cache:"no-store"});
      if(r.status===200){const url=URL.createObjectURL(await r.blob());
        const old=shown.get(key); shown.set(key,url); img.src=url; if(old) URL.revokeObjectURL(old);}}
    catch(e){}
  }
}
poll(); setInterval(poll,1000); setInterval(frames,500); frames();
</script></body></html>
"""

__all__ = ["DEFAULT_PORT", "PAGE", "UiServer", "client_picture"]
