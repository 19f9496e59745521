"""The playground: a static page (no build step, nothing from a CDN) that calls the public API as
any client would. Served only when ``GATEWAY_PLAYGROUND`` is on."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse

from services.gateway.errors import NotFound

PAGE = Path(__file__).resolve().parent.parent / "playground"
FILES = {
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
}
# the page's own files only; audio from blob: URLs and the microphone; API calls and the realtime socket here
POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "media-src 'self' blob: mediastream:; connect-src 'self' ws: wss:; frame-ancestors 'none'"
)

router = APIRouter(include_in_schema=False)


def _file(name: str) -> FileResponse:
    if name not in FILES:
        raise NotFound(f"No playground file '{name[:64]}'", code="not_found")
    return FileResponse(
        PAGE / name,
        media_type=FILES[name],
        headers={"Content-Security-Policy": POLICY, "Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"},
    )


@router.get("/playground")
async def playground() -> FileResponse:
    return _file("index.html")


@router.get("/playground/{name}")
async def playground_file(name: str) -> FileResponse:
    return _file(name)
