"""Settings of ``orderwatch console``: the worker's (broker, topics, data dir) plus its own.

They extend :class:`orderwatch.settings.Settings` so one environment configures the worker and the
console alike (same ``ORDERWATCH_BOOTSTRAP_SERVERS``, same topic names, same TLS/SASL knobs).
``docs/console.md`` lists the console's own variables.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path

from pydantic import Field, SecretStr

from orderwatch.settings import Settings


class ConsoleSettings(Settings):
    """The console's knobs; defaults are safe (loopback, local accounts, no trusted proxy)."""

    console_host: str = Field("127.0.0.1", description="bind address of the console")
    console_port: int = Field(8480, ge=0, le=65535, description="port of the console")
    console_db: Path | None = Field(
        None, description="SQLite projection (default: DATA_DIR/console/console.sqlite3)"
    )
    console_users_file: Path | None = Field(
        None, description="local accounts file (default: DATA_DIR/console/users.yaml)"
    )
    console_session_secret: SecretStr | None = Field(
        None,
        description="key signing session cookies; replicas behind one address share it "
        "(default: a random key kept in DATA_DIR/console/session.key)",
    )
    console_session_hours: float = Field(12.0, gt=0, description="session lifetime, hours")
    console_secure_cookie: bool = Field(
        False, description="mark the session cookie Secure (set it when served over HTTPS)"
    )
    console_trusted_proxies: str = Field(
        "",
        description="comma-separated addresses/networks whose X-Forwarded-User is trusted "
        "(empty: no proxy sign-in)",
    )
    console_proxy_user_header: str = Field("X-Forwarded-User", description="proxy's user header")
    console_proxy_email_header: str = Field(
        "X-Forwarded-Email", description="proxy's e-mail header"
    )
    console_proxy_groups_header: str = Field(
        "X-Forwarded-Groups", description="proxy's comma-separated groups header"
    )
    console_proxy_group_prefix: str = Field(
        "orderwatch:",
        description="group PREFIX+viewer|operator|approver is the role, PREFIX+team:OWNER a team",
    )
    console_command_timeout: float = Field(
        10.0, gt=0, description="seconds to wait for a command's reply"
    )
    console_page_size: int = Field(
        50, ge=5, le=500, description="queue and approvals rows per page"
    )

    @property
    def console_dir(self) -> Path:
        return self.data_dir / "console"

    @property
    def db_path(self) -> Path:
        return self.console_db or self.console_dir / "console.sqlite3"

    @property
    def users_path(self) -> Path:
        return self.console_users_file or self.console_dir / "users.yaml"

    def proxy_networks(self) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
        """The trusted proxy addresses as networks (a bare address is a /32 or /128)."""
        return [
            ipaddress.ip_network(part.strip(), strict=False)
            for part in self.console_trusted_proxies.split(",")
            if part.strip()
        ]
