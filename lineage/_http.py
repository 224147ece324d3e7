"""HttpSink: record events through the gate service (``POST /v1/lineage/events``).

Pipelines hold an API token, never database credentials (the service is the one boundary they
cross). Batches are chunked under the service's body limit; connection failures and 503s are
retried with backoff, then raised as ServiceUnavailable so a caller can fail closed. Event ids
make a retried batch harmless: the store records each id once.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence

import httpx

from gate_core import AuthenticationFailed, GatehouseError, PermissionDenied, ServiceUnavailable
from lineage._errors import LineageInputError
from lineage._models import AccessEvent

CHUNK = 500  # events per request: well under the service's default 1 MiB body limit


class HttpSink:
    def __init__(self, base_url: str, token: str, *, timeout: float = 10.0, retries: int = 3) -> None:
        self.base_url = base_url.rstrip("/")
        self._client = httpx.Client(
            base_url=self.base_url,
            headers={"Authorization": f"Bearer {token}", "User-Agent": "gatehouse-lineage/0.1"},
            timeout=timeout,
        )
        self._retries = retries

    def record_many(self, events: Sequence[AccessEvent], /) -> int:
        recorded = 0
        for start in range(0, len(events), CHUNK):
            body = {"events": [e.model_dump(mode="json") for e in events[start : start + CHUNK]]}
            recorded += self._post(body)
        return recorded

    def _post(self, body: Mapping[str, object]) -> int:
        last = ""
        for attempt in range(self._retries + 1):
            try:
                response = self._client.post("/v1/lineage/events", json=body)
            except httpx.TransportError as exc:
                last = f"{type(exc).__name__}: {exc}"
            else:
                if response.status_code != 503:
                    return self._answer(response)
                last = "503 from the service"
            if attempt < self._retries:
                time.sleep(0.2 * 2**attempt)
        raise ServiceUnavailable(f"cannot record lineage at {self.base_url}: {last}")

    @staticmethod
    def _answer(response: httpx.Response) -> int:
        if response.is_success:
            return int(response.json().get("recorded", 0))
        try:
            detail = str(response.json().get("detail") or response.reason_phrase)
        except ValueError:
            detail = response.reason_phrase
        error: type[GatehouseError] = {
            401: AuthenticationFailed,
            403: PermissionDenied,
            422: LineageInputError,
        }.get(response.status_code, GatehouseError)
        raise error(f"lineage service refused the events ({response.status_code}): {detail}")

    def close(self) -> None:
        self._client.close()
