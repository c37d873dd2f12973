"""Wiring and serving: each side's app with its background parts, under uvicorn.

:func:`receiver_app` adds the pollers (one task per partner with a ``poll_url``) and closes the
writer on shutdown; :func:`transmitter_app` adds the ``signals-out`` consumer thread.
:class:`ServerThread` runs an app on a real socket in a thread (tests, the benchmark);
:func:`serve` runs it in the foreground (the command line).
"""

from __future__ import annotations

import asyncio
import threading
import time

__all__ = ["ServerThread", "receiver_app", "serve", "transmitter_app"]


def receiver_app(receiver):
    from streams.ssf.receiver import build_app, poll_loop

    stop = asyncio.Event()
    tasks: list[asyncio.Task] = []

    async def start():
        stop.clear()
        for peer in receiver.config.transmitters:
            if peer.poll_url:
                tasks.append(asyncio.get_running_loop().create_task(poll_loop(receiver, peer, stop)))

    async def finish():
        stop.set()
        if tasks:
            await asyncio.wait(tasks, timeout=5)
        close = getattr(receiver.writer, "close", None)
        if close:
            await asyncio.get_running_loop().run_in_executor(None, close)

    return build_app(receiver, on_startup=[start], on_shutdown=[finish])


def transmitter_app(tx, settings=None, topic: str | None = None):
    """The transmitter's app; with ``settings`` and ``topic`` it consumes ``signals-out``."""
    from streams.ssf.transmitter import build_app

    stop = threading.Event()
    threads: list[threading.Thread] = []

    async def start():
        if settings is None or topic is None:
            return
        loop = asyncio.get_running_loop()
        thread = threading.Thread(target=tx.consume, args=(settings, topic, loop, stop), daemon=True,
                                  name="ssf-signals-out")
        thread.start()
        threads.append(thread)

    async def finish():
        stop.set()
        for thread in threads:
            await asyncio.get_running_loop().run_in_executor(None, thread.join, 10)

    return build_app(tx, on_startup=[start], on_shutdown=[finish])


def _config(app, host: str, port: int, **more):
    import uvicorn

    return uvicorn.Config(app, host=host, port=port, log_level=more.pop("log_level", "warning"),
                          lifespan="on", access_log=False, timeout_graceful_shutdown=5, **more)


class ServerThread:
    """An app on ``host:port`` (0: any free port) in a thread; :attr:`url` once started."""

    def __init__(self, app, host: str = "127.0.0.1", port: int = 0, **more) -> None:
        import uvicorn

        self.server = uvicorn.Server(_config(app, host, port, **more))
        self.thread = threading.Thread(target=self.server.run, daemon=True, name="ssf-server")
        self.host = host
        self.port = port

    def start(self, timeout_s: float = 20.0) -> "ServerThread":
        self.thread.start()
        deadline = time.monotonic() + timeout_s
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the server did not start")
            time.sleep(0.02)
        self.port = self.server.servers[0].sockets[0].getsockname()[1]
        return self

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)

    def __enter__(self) -> "ServerThread":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def serve(app, host: str, port: int) -> None:
    """Run ``app`` in the foreground until interrupted."""
    import uvicorn

    uvicorn.Server(_config(app, host, port, log_level="info")).run()
