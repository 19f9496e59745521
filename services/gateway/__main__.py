"""``python -m services.gateway``: settings -> app -> uvicorn (draining on SIGTERM)."""

import uvicorn

from services.common import logs
from services.common.draining import DrainingServer
from services.gateway.app import create_app
from services.gateway.settings import GatewaySettings


def main() -> None:
    settings = GatewaySettings()
    logs.configure("gateway", settings.log_format)
    app = create_app(settings)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=1,
        ws_max_size=settings.realtime_max_event_bytes,
        ws_ping_interval=20,
        ws_ping_timeout=20,
    )
    DrainingServer(config, app.state.drain).run()


if __name__ == "__main__":
    main()
