"""Broker configuration: one frozen dataclass, merged from defaults, a TOML
file and command-line flags (each flag is the field name in kebab-case)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class StreamConfig:
    """Retention of one declared stream; None means unlimited."""

    name: str
    max_age: str | None = None  # e.g. "1h", "7D"
    max_length_bytes: int | None = None
    max_length_messages: int | None = None


@dataclass(frozen=True, slots=True)
class Config:
    host: str = "127.0.0.1"
    port: int = 5672  # 0 picks a free port; None disables the TCP listener
    ws_port: int | None = 15678  # None disables the WebSocket listener
    ws_path: str | None = None  # None accepts any path
    queues: tuple[str, ...] = ()
    streams: tuple[StreamConfig, ...] = ()
    users: dict[str, str] = field(default_factory=lambda: {"guest": "guest"})
    allow_anonymous: bool = True
    auto_create: bool = True
    max_frame_size: int = 1024 * 1024
    max_message_size: int = 16 * 1024 * 1024
    idle_time_out: float = 60.0  # seconds we allow the peer to stay silent; 0 disables
    container_id: str = "amqpws-broker"
    default_offset: str = "next"  # stream consumers that send no offset filter
    queue_max_length: int | None = None
    queue_max_length_bytes: int | None = None
    queue_overflow: str = "reject-publish"  # or "drop-head"
    log_level: str = "info"
