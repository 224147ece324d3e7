"""The real hop: which machine is on the other end of the connection.

``gatehouse serve`` runs uvicorn with its forwarded-header rewriting off (``proxy_headers=False``):
otherwise uvicorn replaces the client address with whatever ``X-Forwarded-For`` says whenever the
connection comes from an address it trusts — by default 127.0.0.1, i.e. any process on the
service host — and the address would no longer tell who is asking.

``SocketPeer`` is the app's outermost layer. It records the connection's own peer under
``SOCKET_PEER`` in the ASGI scope before anything else can change ``client``; only then, and only
for the hops named in ``forwarded_allow_ips`` (a load balancer), does uvicorn's own
``ProxyHeadersMiddleware`` set ``client`` and ``scheme`` from the forwarded headers, for logs and
URLs. Whoever asserts an identity (the identity-aware proxy's headers, the console's local sign-in)
is judged on ``socket_peer``, never on ``client``.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

SOCKET_PEER = "gatehouse.socket_peer"


class SocketPeer:
    def __init__(self, app: ASGIApp, forwarded_allow_ips: tuple[str, ...] = ()) -> None:
        self.app = app
        self.inner: ASGIApp = app
        if forwarded_allow_ips:
            # uvicorn's own ProxyHeadersMiddleware, typed with uvicorn's ASGI aliases
            self.inner = ProxyHeadersMiddleware(app, trusted_hosts=list(forwarded_allow_ips))  # type: ignore[arg-type,assignment]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            client = scope.get("client")
            scope[SOCKET_PEER] = str(client[0]) if client else ""
        await self.inner(scope, receive, send)


def socket_peer(scope: Scope) -> str:
    """The address of the machine this connection comes from ("" when the server gave none)."""
    recorded = scope.get(SOCKET_PEER)
    if isinstance(recorded, str):
        return recorded
    client = scope.get("client")  # an app served without SocketPeer (never by `gatehouse serve`)
    return str(client[0]) if client else ""
