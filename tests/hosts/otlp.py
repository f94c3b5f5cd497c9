"""A real OTLP/HTTP trace receiver for tests: what an OpenTelemetry collector's ``/v1/traces``
takes (protobuf ``ExportTraceServiceRequest``), decoded into plain span dicts."""

from __future__ import annotations

import asyncio
from typing import Any


class OtlpReceiver:
    """An OTLP/HTTP trace receiver: decodes each ExportTraceServiceRequest into span dicts."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host = host
        self.spans: list[dict[str, Any]] = []
        self.arrived = asyncio.Event()

    async def start(self) -> str:
        """Listen on ``host`` (a free port); returns the endpoint URL for
        ``OTEL_EXPORTER_OTLP_ENDPOINT``."""
        from aiohttp import web

        app = web.Application()
        app.router.add_post("/v1/traces", self._traces)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, self.host, 0)
        await site.start()
        port = self.runner.addresses[0][1]
        return f"http://{self.host}:{port}"

    async def _traces(self, request: Any) -> Any:
        from aiohttp import web
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
            ExportTraceServiceRequest,
        )

        message = ExportTraceServiceRequest()
        message.ParseFromString(await request.read())
        for resource in message.resource_spans:
            service = {a.key: a.value.string_value for a in resource.resource.attributes}
            for scope in resource.scope_spans:
                for span in scope.spans:
                    self.spans.append(
                        {
                            "name": span.name,
                            "id": span.span_id.hex(),
                            "parent": span.parent_span_id.hex(),
                            "trace": span.trace_id.hex(),
                            "start": span.start_time_unix_nano,
                            "end": span.end_time_unix_nano,
                            "attributes": {a.key: _value(a.value) for a in span.attributes},
                            "service": service.get("service.name"),
                        }
                    )
        self.arrived.set()
        return web.Response(status=200)

    async def wait_for(self, predicate: Any, timeout: float) -> list[dict[str, Any]]:
        """The spans once ``predicate(spans)`` holds; TimeoutError after ``timeout`` seconds."""
        async with asyncio.timeout(timeout):
            while not predicate(self.spans):
                self.arrived.clear()
                await self.arrived.wait()
        return self.spans

    async def stop(self) -> None:
        await self.runner.cleanup()


def _value(v: Any) -> Any:
    kind = v.WhichOneof("value")
    return getattr(v, kind) if kind else None
