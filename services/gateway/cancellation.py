"""Stop work for a client that left. Once a request's body has been read, the next ASGI message is
the client's disconnect; when it comes before the response is complete, the request's task is
cancelled, which closes the connection to the predictor, which stops the model work there."""

from __future__ import annotations

import asyncio

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.common.asgi import annotate


class CancelOnDisconnect:
    def __init__(self, app: ASGIApp, prefix: str = "/v1/") -> None:
        self.app, self.prefix = app, prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or not scope["path"].startswith(self.prefix):
            await self.app(scope, receive, send)
            return
        body_read, gone = asyncio.Event(), asyncio.Event()
        complete = False

        async def tracking_receive() -> Message:
            if body_read.is_set():  # after the body, the only message left is the disconnect
                await gone.wait()
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.disconnect":
                gone.set()
            elif not message.get("more_body", False):
                body_read.set()
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal complete
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                complete = True
            await send(message)

        async def watch() -> None:
            await body_read.wait()
            while (await receive())["type"] != "http.disconnect":
                pass
            gone.set()

        app_task = asyncio.ensure_future(self.app(scope, tracking_receive, tracking_send))
        watch_task = asyncio.ensure_future(watch())
        try:
            await asyncio.wait({app_task, watch_task}, return_when=asyncio.FIRST_COMPLETED)
            if app_task.done() or complete:
                await app_task
                return
            annotate(scope, cancelled=True)
            app_task.cancel()
            try:
                await app_task
            except asyncio.CancelledError:
                current = asyncio.current_task()
                if current is not None and current.cancelling():
                    raise  # this request is being cancelled from outside (shutdown), not by us
        finally:
            watch_task.cancel()
            if not app_task.done():
                app_task.cancel()
