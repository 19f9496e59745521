"""``python -m services.gateway``: settings -> app -> uvicorn (draining on SIGTERM)."""

from services.common import logs
from services.common.draining import serve
from services.gateway.app import create_app
from services.gateway.settings import GatewaySettings


def main() -> None:
    settings = GatewaySettings()
    logs.configure("gateway", settings.log_format)
    app = create_app(settings)
    serve(
        app,
        app.state.drain,
        settings.host,
        settings.port,
        ws_max_size=settings.realtime_max_event_bytes,
        ws_ping_interval=20,
        ws_ping_timeout=20,
    )


if __name__ == "__main__":
    main()
