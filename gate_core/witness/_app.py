"""The witness's HTTP face: ``POST /add-checkpoint`` (C2SP tlog-witness), plus ``GET /`` telling
an operator who this witness is and which logs it holds. Plain Starlette: no JSON, no sessions,
no authentication beyond the log's signature on what is submitted (as the spec says)."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from gate_core._cosign import SIZE_CONTENT_TYPE, VerifierKey
from gate_core.witness._witness import Refused, Witness

MAX_BODY_BYTES = 64 * 1024  # 63 proof lines and a note of a few signatures fit many times over


def create_witness_app(witness: Witness, verifier_key: VerifierKey) -> Starlette:
    async def add_checkpoint(request: Request) -> Response:
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_BODY_BYTES:
                return PlainTextResponse(f"request body over {MAX_BODY_BYTES} bytes\n", status_code=413)
        try:
            lines = await run_in_threadpool(witness.add_checkpoint, body)
        except Refused as refused:
            if refused.status == 409 and refused.size is not None:
                # exactly the spec's media type: Starlette would append "; charset=utf-8" to text/*
                size = f"{refused.size}\n".encode()
                return Response(size, status_code=409, headers={"content-type": SIZE_CONTENT_TYPE})
            return PlainTextResponse(refused.reason + "\n", status_code=refused.status)
        return PlainTextResponse(lines)

    async def about(_request: Request) -> Response:
        held = await run_in_threadpool(witness.state.latest)
        text = [f"gatehouse witness {verifier_key.name}", f"verifier key {verifier_key.text()}"]
        text += [f"log {origin} size {latest.size}" for origin, latest in held.items()]
        return PlainTextResponse("\n".join(text) + "\n")

    return Starlette(
        routes=[
            Route("/add-checkpoint", add_checkpoint, methods=["POST"]),
            Route("/", about, methods=["GET"]),
        ]
    )
