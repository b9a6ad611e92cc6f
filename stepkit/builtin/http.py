"""``http``: a real step — run, rollback and sync each call a configured URL.

Per-direction parameters (strings); the rollback and sync names carry a ``rollback`` / ``sync`` prefix:

==================  =========================  ======================  ==================================
run                 rollback                   sync                    meaning
==================  =========================  ======================  ==================================
``url``             ``rollbackUrl``            ``syncUrl``             target; run requires it, an unset
                                                                       rollback/sync URL = do nothing
``method``          ``rollbackMethod``         ``syncMethod``          default POST / DELETE / GET
``body``            ``rollbackBody``           ``syncBody``            JSON text, sent as
                                                                       ``application/json``; default none
``expectedStatus``  ``rollbackExpectedStatus``  ``syncExpectedStatus``  comma-separated codes or classes
                                                                       (``"200,201"``, ``"2xx"``); default
                                                                       ``2xx``, rollback ``2xx,404``
                                                                       (already gone = undone)
==================  =========================  ======================  ==================================

Shared parameters:

- ``headers`` — JSON object of strings sent with every request; ``header.<Name>`` keys (e.g.
  ``header.Authorization``) add or override single headers.
- ``timeoutSeconds`` — connect and read timeout of each request (default ``"30"``), always capped by
  the time left before the call deadline.

Placeholders ``${...}`` in URLs (percent-encoded) and inside the string values of bodies:
``resource.id``, ``resource.name``, ``resource.address``, ``resource.status``, ``resource.attributes.K``,
``workflow.name``, ``workflow.namespace``, ``workflow.uid``, ``workflow.parameters.K``,
``workflow.attributes.K``, ``step.name``, ``idempotencyKey``. An unknown or unset placeholder is a
permanent error (the call is not made). Example rollback: ``rollbackUrl: "https://api/v1/dbs/${resource.id}"``.

Every request carries ``Idempotency-Key: <ctx.idempotency_key>`` (the same for every attempt in one
direction), which a server uses to make the at-least-once calls harmless.

Response: when the status is expected and the body is a JSON object, its ``resource`` object (``status``,
``id``, ``name``, ``address``, ``attributes``) becomes the step's resource update and its ``attributes``
object the step's attributes (scalar values are converted to strings). Any other body: no outputs.

Errors: connection errors and timeouts -> retryable; 5xx and 408 -> retryable (``Retry-After`` becomes
the delay hint); 429 -> ignorable (throttled; does not consume an attempt); any other unexpected status
-> permanent. Redirects are followed (at most 5) only to the same scheme, host and port; a redirect
elsewhere is a permanent error and is not followed. Error codes are ``HTTP<status>``, ``Timeout``,
``ConnectionError``, ``RedirectRefused``, ``DeadlineExceeded``, ``BadParameter``.
"""

from __future__ import annotations

import email.utils
import ipaddress
import json
import math
import re
import time
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import requests
import urllib3.exceptions

from stepkit.builtin import _params
from stepkit.context import Direction, StepContext
from stepkit.errors import IgnorableError, PermanentError, RetryableError, StepError
from stepkit.outputs import ResourceStatus, StepResult

__all__ = ["HttpStep"]

_DEFAULT_METHOD: Mapping[Direction, str] = {"run": "POST", "rollback": "DELETE", "sync": "GET"}
_DEFAULT_EXPECTED: Mapping[Direction, str] = {"run": "2xx", "rollback": "2xx,404", "sync": "2xx"}
_PARAM_PREFIX: Mapping[Direction, str] = {"run": "", "rollback": "rollback", "sync": "sync"}
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_MAX_REDIRECTS = 5
_MAX_BODY = 1 << 20  # bytes of response read; a larger JSON response is not parsed
_MAX_RETRY_AFTER = 3600.0
_PLACEHOLDER = re.compile(r"\$\{([A-Za-z0-9_.\-]+)\}")
USER_AGENT = "kube-workflow-stepkit-http"


def _param_name(direction: Direction, name: str) -> str:
    prefix = _PARAM_PREFIX[direction]
    return f"{prefix}{name[0].upper()}{name[1:]}" if prefix else name


@dataclass(frozen=True, slots=True)
class _Request:
    method: str
    url: str
    headers: dict[str, str]
    body: bytes | None
    expected: frozenset[int]
    timeout: float


def _expected_statuses(raw: str, key: str) -> frozenset[int]:
    codes: set[int] = set()
    for part in (p.strip().lower() for p in raw.split(",")):
        if re.fullmatch(r"[1-5]xx", part):
            base = int(part[0]) * 100
            codes.update(range(base, base + 100))
        elif re.fullmatch(r"[1-5]\d\d", part):
            codes.add(int(part))
        else:
            raise PermanentError(
                f"parameter {key!r} must list status codes or classes like 2xx, got {raw!r}",
                code="BadParameter",
            )
    return frozenset(codes)


def _placeholder_values(ctx: StepContext) -> dict[str, str | None]:
    res, wf = ctx.resource, ctx.workflow
    values: dict[str, str | None] = {
        "resource.id": res.id,
        "resource.name": res.name,
        "resource.address": res.address,
        "resource.status": res.status,
        "workflow.name": wf.name,
        "workflow.namespace": wf.namespace,
        "workflow.uid": wf.uid,
        "step.name": ctx.step_name,
        "idempotencyKey": ctx.idempotency_key,
    }
    values.update({f"resource.attributes.{k}": v for k, v in res.attributes.items()})
    values.update({f"workflow.parameters.{k}": v for k, v in wf.parameters.items()})
    values.update({f"workflow.attributes.{k}": v for k, v in wf.attributes.items()})
    return values


def _substitute(template: str, values: Mapping[str, str | None], where: str, *, quote: bool) -> str:
    def replace(match: re.Match[str]) -> str:
        value = values.get(match.group(1))
        if value is None:
            raise PermanentError(
                f"placeholder ${{{match.group(1)}}} in {where} has no value", code="BadParameter"
            )
        return urllib.parse.quote(value, safe="") if quote else value

    return _PLACEHOLDER.sub(replace, template)


def _substitute_json(value: Any, values: Mapping[str, str | None], where: str) -> Any:
    if isinstance(value, str):
        return _substitute(value, values, where, quote=False)
    if isinstance(value, list):
        return [_substitute_json(item, values, where) for item in value]
    if isinstance(value, dict):
        return {key: _substitute_json(item, values, where) for key, item in value.items()}
    return value


def _build_request(ctx: StepContext) -> _Request | None:
    params, direction = ctx.parameters, ctx.direction
    url_key = _param_name(direction, "url")
    template = _params.required(params, url_key) if direction == "run" else _params.text(params, url_key)
    if template is None:
        return None
    values = _placeholder_values(ctx)
    url = _substitute(template, values, url_key, quote=True)
    if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
        raise PermanentError(
            f"parameter {url_key!r} must be an http(s) URL, got {url!r}", code="BadParameter"
        )

    method_key = _param_name(direction, "method")
    method = (_params.text(params, method_key) or _DEFAULT_METHOD[direction]).upper()
    if not re.fullmatch(r"[A-Z]+", method):
        raise PermanentError(
            f"parameter {method_key!r} is not an HTTP method: {method!r}", code="BadParameter"
        )

    headers = {"User-Agent": USER_AGENT, **_params.str_map(params, "headers")}
    headers.update({k.removeprefix("header."): v for k, v in params.items() if k.startswith("header.") and v})
    headers["Idempotency-Key"] = ctx.idempotency_key

    body_key = _param_name(direction, "body")
    body: bytes | None = None
    parsed = _params.json_value(params, body_key)
    if parsed is not None:
        body = json.dumps(_substitute_json(parsed, values, body_key)).encode()
        headers["Content-Type"] = "application/json"

    expected_key = _param_name(direction, "expectedStatus")
    expected = _expected_statuses(
        _params.text(params, expected_key) or _DEFAULT_EXPECTED[direction], expected_key
    )
    timeout = _params.seconds(params, "timeoutSeconds", 30.0)
    if timeout <= 0:
        raise PermanentError("parameter 'timeoutSeconds' must be > 0", code="BadParameter")
    return _Request(method, url, headers, body, expected, timeout)


def _is_loopback(host: str | None) -> bool:
    if not host:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urllib.parse.urlsplit(url)
    default = {"http": 80, "https": 443}.get(parts.scheme)
    return parts.scheme, (parts.hostname or "").lower(), parts.port or default


def _display(url: str) -> str:
    """The URL for logs and error messages: no credentials, query or fragment (they may hold secrets)."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    netloc = f"[{host}]" if ":" in host else host
    if parts.port is not None:
        netloc = f"{netloc}:{parts.port}"
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def _retry_after(response: requests.Response) -> float | None:
    raw = response.headers.get("Retry-After")
    if not raw:
        return None
    try:
        delay = float(raw)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(raw)
        except (TypeError, ValueError):
            return None
        delay = when.timestamp() - time.time()
    if not math.isfinite(delay):
        return None
    return min(max(delay, 0.0), _MAX_RETRY_AFTER)


def _reason(exc: requests.RequestException) -> str:
    """The root cause of a requests error without the URL it quotes (queries may hold secrets):
    requests wraps urllib3's MaxRetryError, whose ``reason`` is the socket-level error."""
    inner: Any = exc.args[0] if exc.args else exc
    reason = getattr(inner, "reason", None) or inner
    text = str(reason)
    # urllib3 prefixes "<...Connection object at 0x...>: " and pools prefix "HTTPConnectionPool(...): "
    return re.sub(r"^(<[^>]*>|\w+ConnectionPool\([^)]*\)): ", "", text)


def _is_timeout(exc: requests.RequestException) -> bool:
    """requests reports a read timeout while streaming as a ConnectionError wrapping urllib3's
    ReadTimeoutError, not as requests.Timeout; look inside."""
    return isinstance(exc, requests.Timeout) or any(
        isinstance(arg, urllib3.exceptions.TimeoutError) for arg in exc.args
    )


def _read_body(response: requests.Response, shown: str) -> bytes:
    """Up to ``_MAX_BODY`` + one chunk of the body; a read that stalls or breaks is retryable."""
    chunks: list[bytes] = []
    size = 0
    try:
        for chunk in response.iter_content(chunk_size=65536):
            chunks.append(chunk)
            size += len(chunk)
            if size > _MAX_BODY:
                break
    except requests.RequestException as exc:  # read timeout, reset, truncated chunked body
        code = "Timeout" if _is_timeout(exc) else "ConnectionError"
        raise RetryableError(f"{shown}: reading the response failed: {_reason(exc)}", code=code) from exc
    return b"".join(chunks)


def _excerpt(body: bytes) -> str:
    text = body[:200].decode("utf-8", "replace").strip()
    return f": {text}" if text else ""


def _to_str(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _outputs(body: bytes) -> StepResult | None:
    if not body or len(body) > _MAX_BODY:
        return None
    try:
        data = json.loads(body)
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    raw_resource, raw_attributes = data.get("resource"), data.get("attributes")
    resource = None
    if isinstance(raw_resource, dict):
        fields = {
            k: _to_str(raw_resource[k])
            for k in ("status", "id", "name", "address")
            if raw_resource.get(k) is not None
        }
        raw_res_attrs = raw_resource.get("attributes")
        res_attrs = (
            {str(k): _to_str(v) for k, v in raw_res_attrs.items()} if isinstance(raw_res_attrs, dict) else {}
        )
        resource = ResourceStatus(**fields, attributes=res_attrs)
    attributes = (
        {str(k): _to_str(v) for k, v in raw_attributes.items()} if isinstance(raw_attributes, dict) else {}
    )
    if resource is None and not attributes:
        return None
    return StepResult(attributes=attributes, resource=resource)


class HttpStep:
    """``http``; see the module docstring. Stateless: one ``requests.Session`` per call."""

    def run(self, ctx: StepContext) -> StepResult | None:
        return self._call(ctx)

    def rollback(self, ctx: StepContext) -> StepResult | None:
        return self._call(ctx)

    def sync(self, ctx: StepContext) -> StepResult | None:
        return self._call(ctx)

    def _call(self, ctx: StepContext) -> StepResult | None:
        request = _build_request(ctx)
        if request is None:
            ctx.log.debug("http step has no url for this direction")
            return None
        with requests.Session() as session:
            # Environment proxies never apply to loopback targets (local services, tests).
            session.trust_env = not _is_loopback(urllib.parse.urlsplit(request.url).hostname)
            return self._send(ctx, session, request)

    def _send(self, ctx: StepContext, session: requests.Session, request: _Request) -> StepResult | None:
        method, url, body, headers = request.method, request.url, request.body, dict(request.headers)
        origin = _origin(url)
        for _ in range(_MAX_REDIRECTS + 1):
            shown = f"{method} {_display(url)}"
            timeout = min(request.timeout, ctx.remaining())
            if timeout <= 0:
                raise RetryableError(f"call deadline passed before {shown}", code="DeadlineExceeded")
            response = self._exchange(session, method, url, shown, headers, body, timeout)
            with response:
                status = response.status_code
                payload = _read_body(response, shown)
                location = response.headers.get("Location")
                if status in _REDIRECTS and location and status not in request.expected:
                    target = urllib.parse.urljoin(url, location)
                    if _origin(target) != origin:
                        raise PermanentError(
                            f"{shown} redirected to another origin ({_display(target)}); not followed",
                            code="RedirectRefused",
                        )
                    ctx.log.debug("http step following redirect", status=status, location=_display(target))
                    if status == 303 or (status in (301, 302) and method == "POST"):
                        method, body = "GET", None  # what browsers and requests do
                        headers.pop("Content-Type", None)
                    url = target
                    continue
                ctx.log.info("http step response", request=shown, status=status)
                if status in request.expected:
                    return _outputs(payload)
                raise self._status_error(shown, status, payload, response)
        raise PermanentError(f"{shown}: more than {_MAX_REDIRECTS} redirects", code="RedirectRefused")

    @staticmethod
    def _exchange(
        session: requests.Session,
        method: str,
        url: str,
        shown: str,
        headers: Mapping[str, str],
        body: bytes | None,
        timeout: float,
    ) -> requests.Response:
        try:
            return session.request(
                method,
                url,
                headers=dict(headers),
                data=body,
                timeout=(timeout, timeout),
                allow_redirects=False,
                stream=True,
            )
        except requests.Timeout as exc:
            raise RetryableError(f"{shown}: timed out after {timeout:.1f}s", code="Timeout") from exc
        except requests.ConnectionError as exc:
            raise RetryableError(
                f"{shown}: connection failed: {_reason(exc)}", code="ConnectionError"
            ) from exc
        except requests.RequestException as exc:  # invalid URL, too many headers, ...: will not heal
            raise PermanentError(f"{shown}: {type(exc).__name__}: {exc}", code="BadRequest") from exc

    @staticmethod
    def _status_error(shown: str, status: int, payload: bytes, response: requests.Response) -> StepError:
        message = f"{shown} returned {status}{_excerpt(payload)}"
        code = f"HTTP{status}"
        if status == 429:
            return IgnorableError(message, delay=_retry_after(response), code=code)
        if status >= 500 or status == 408:
            return RetryableError(message, delay=_retry_after(response), code=code)
        return PermanentError(message, code=code)
