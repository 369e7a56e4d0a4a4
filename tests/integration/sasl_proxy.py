"""A loopback proxy that terminates SASL/PLAIN in front of Tansu, which has no SASL of its own.

The worker's SASL settings are only worth something if a broker refuses it without them, so this
proxy plays that broker: per connection it speaks just enough of the Kafka wire protocol to run
the SASL exchange itself (ApiVersions is forwarded, SaslHandshake and SaslAuthenticate are answered
here), refuses anything else before authentication, and then pipes bytes unchanged. Tansu must
advertise this proxy's address, or clients would bypass it after bootstrap.

Only the request versions aiokafka sends are implemented, and the ApiVersions answer says so: it
caps SaslHandshake at v1 (v0 would switch to raw tokens) and SaslAuthenticate at v1 (Tansu lists
v2, a flexible version this proxy does not parse).
"""

from __future__ import annotations

import asyncio
import contextlib
import struct

from tests.integration.proxy import Proxy, pump

API_VERSIONS = 18
SASL_HANDSHAKE = 17
SASL_AUTHENTICATE = 36
#: what this proxy implements, written over the broker's own ApiVersions list
SASL_VERSIONS = {SASL_HANDSHAKE: (1, 1), SASL_AUTHENTICATE: (0, 1)}
#: ApiVersions v3+ is flexible; older ones are enough for aiokafka and clients fall back on 35
API_VERSIONS_MAX = 2

UNSUPPORTED_SASL_MECHANISM = 33
UNSUPPORTED_VERSION = 35
SASL_AUTHENTICATION_FAILED = 58

#: Kafka caps unauthenticated frames (sasl.server.max.receive.size) so a stranger cannot make the
#: broker allocate a huge buffer; the same cap here makes a garbage length prefix fail fast
MAX_UNAUTHENTICATED_FRAME = 512 * 1024


class Refused(Exception):
    """The client broke the SASL protocol or failed it: the connection is closed, nothing piped."""


def _string(value: str | None) -> bytes:
    if value is None:
        return struct.pack(">h", -1)
    raw = value.encode()
    return struct.pack(">h", len(raw)) + raw


def _read_string(buf: bytes, at: int) -> tuple[str | None, int]:
    (size,) = struct.unpack_from(">h", buf, at)
    at += 2
    if size < 0:
        return None, at
    return buf[at : at + size].decode(), at + size


def _frame(correlation_id: int, body: bytes) -> bytes:
    """A non-flexible response: size, header v0 (the correlation id), body."""
    return struct.pack(">ii", 4 + len(body), correlation_id) + body


async def _read_frame(reader: asyncio.StreamReader, limit: int) -> bytes:
    (size,) = struct.unpack(">i", await reader.readexactly(4))
    if not 8 <= size <= limit:
        raise Refused(f"frame of {size} bytes")
    return await reader.readexactly(size)


def _patch_api_versions(version: int, response: bytes) -> bytes:
    """Rewrite the broker's ApiVersions response (v0-v2) so it lists exactly the SASL we serve."""
    correlation_id, error_code, count = struct.unpack_from(">ihi", response, 0)
    if error_code != 0:
        return response
    at = 10
    versions: dict[int, tuple[int, int]] = {}
    for _ in range(count):
        key, low, high = struct.unpack_from(">hhh", response, at)
        versions[key] = (low, high)
        at += 6
    versions.update(SASL_VERSIONS)
    body = struct.pack(">hi", 0, len(versions)) + b"".join(
        struct.pack(">hhh", key, low, high) for key, (low, high) in sorted(versions.items())
    )
    if version >= 1:
        body += response[at : at + 4]  # throttle_time_ms, as the broker said
    return struct.pack(">i", correlation_id) + body


class SaslProxy(Proxy):
    """Forwards 127.0.0.1:``port`` to Tansu on ``upstream`` once a client proves ``username``.

    The counters let a test tell "authenticated" from "got through somehow": ``successes`` and
    ``failures`` count SaslAuthenticate verdicts (and refused mechanisms), ``refused`` counts
    connections closed for sending anything else before authenticating.
    """

    def __init__(self, upstream: int, username: str, password: str) -> None:
        super().__init__(upstream)
        self.username = username
        self.password = password
        self.successes = 0
        self.failures = 0
        self.refused = 0
        #: the client_id of every authenticated connection: tells the worker from test clients
        self.clients: list[str | None] = []

    def _accepts(self, token: bytes) -> bool:
        """RFC 4616 ``authzid NUL authcid NUL passwd``.

        aiokafka sends the user as authzid too (``user\\0user\\0pw``), others leave it empty; any
        other authzid would be a request to act as someone else, which this broker never grants.
        """
        parts = token.split(b"\0")
        if len(parts) != 3:
            return False
        authzid, user, password = (p.decode(errors="replace") for p in parts)
        return authzid in ("", user) and user == self.username and password == self.password

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        upstream: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        try:
            upstream = await self._authenticate(reader, writer)
        except Refused:
            pass
        except (OSError, asyncio.IncompleteReadError, struct.error, UnicodeDecodeError):
            pass  # the client hung up or sent garbage mid-exchange: nothing to pipe
        if upstream is None:
            with contextlib.suppress(Exception):
                writer.close()
            return
        up_reader, up_writer = upstream
        self._writers |= {writer, up_writer}
        await asyncio.gather(pump(reader, up_writer), pump(up_reader, writer))
        self._writers -= {writer, up_writer}

    async def _authenticate(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        """Run the pre-authentication conversation; the upstream streams once the client is in.

        Requests are handled strictly one at a time, so a forwarded ApiVersions answer can never
        overtake or trail one of ours.
        """
        upstream: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        mechanism_agreed = False
        try:
            while True:
                request = await _read_frame(reader, MAX_UNAUTHENTICATED_FRAME)
                api_key, version, correlation_id = struct.unpack_from(">hhi", request, 0)
                client_id, body_at = _read_string(request, 8)
                if api_key == API_VERSIONS and version > API_VERSIONS_MAX:
                    # the broker's way to say "ask again, older": v0 body, the versions it takes
                    body = struct.pack(">hihhh", UNSUPPORTED_VERSION, 1, API_VERSIONS, 0, 2)
                    writer.write(_frame(correlation_id, body))
                elif api_key == API_VERSIONS:
                    if upstream is None:
                        upstream = await asyncio.open_connection("127.0.0.1", self.upstream)
                    upstream[1].write(struct.pack(">i", len(request)) + request)
                    response = await _read_frame(upstream[0], 64 * 1024 * 1024)
                    patched = _patch_api_versions(version, response)
                    writer.write(struct.pack(">i", len(patched)) + patched)
                elif api_key == SASL_HANDSHAKE and version == 1:
                    mechanism, _ = _read_string(request, body_at)
                    error = 0 if mechanism == "PLAIN" else UNSUPPORTED_SASL_MECHANISM
                    body = struct.pack(">hi", error, 1) + _string("PLAIN")
                    writer.write(_frame(correlation_id, body))
                    if error:
                        self.failures += 1
                        await writer.drain()
                        raise Refused(f"mechanism {mechanism}")
                    mechanism_agreed = True
                elif api_key == SASL_AUTHENTICATE and version <= 1 and mechanism_agreed:
                    (size,) = struct.unpack_from(">i", request, body_at)
                    token = request[body_at + 4 : body_at + 4 + max(size, 0)]
                    ok = self._accepts(token)
                    message = None if ok else "Authentication failed: invalid username or password"
                    body = struct.pack(">h", 0 if ok else SASL_AUTHENTICATION_FAILED)
                    body += _string(message) + struct.pack(">i", 0)  # no server challenge
                    if version >= 1:
                        body += struct.pack(">q", 0)  # session_lifetime_ms: no re-auth asked
                    writer.write(_frame(correlation_id, body))
                    await writer.drain()
                    if not ok:
                        self.failures += 1
                        raise Refused("bad credentials")
                    self.successes += 1
                    self.clients.append(client_id)
                    if upstream is None:
                        upstream = await asyncio.open_connection("127.0.0.1", self.upstream)
                    return upstream
                else:
                    self.refused += 1
                    raise Refused(f"api {api_key} v{version} before authentication")
                await writer.drain()
        except BaseException:
            if upstream is not None:
                with contextlib.suppress(Exception):
                    upstream[1].close()
            raise
