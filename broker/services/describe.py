"""Messages and AMQP values as JSON, for people: what the console's peek and
`/management`'s peek extension show (and the CLI prints)."""

from __future__ import annotations

import json
from collections.abc import Mapping

from broker.admin import Admin, AdminError
from broker.codec.messaging import AmqpSequence, AmqpValue, Data, Message
from broker.codec.types import Described
from broker.errors import DecodeError

MAX_BODY_SHOWN = 64 * 1024  # bytes of a peeked body shown as text or hex


def peek_described(admin: Admin, name: str, query: Mapping[str, str]) -> list[dict[str, object]]:
    """The peek both `/management` and the JSON API offer: `count` (10) messages
    of queue `name` from `offset` (a stream's), described; bad numbers are a 400."""
    try:
        count = int(query.get("count", "10"))
        offset = int(query["offset"]) if "offset" in query else None
    except ValueError:
        raise AdminError(400, "count and offset must be integers") from None
    return [describe_message(m, offset=o) for o, m in admin.peek(name, count, offset=offset)]


def describe_message(message: Message, *, offset: int | None = None) -> dict[str, object]:
    """A message for people: its sections as JSON values, the body as text when
    it is UTF-8, as JSON when it parses, and in hex (both cut to 64 KiB)."""
    out: dict[str, object] = {}
    if offset is not None:
        out["offset"] = offset
    try:
        header = message.header
        out["header"] = _fields(header) if header is not None else None
        properties = message.properties
        out["properties"] = _fields(properties) if properties is not None else None
        out["message_annotations"] = jsonable(message.message_annotations)
        out["application_properties"] = jsonable(message.application_properties)
        out["body"] = _body(message.body)
    except DecodeError as exc:
        out["error"] = f"cannot decode: {exc}"
    out["size"] = len(message.payload)
    return out


def _fields(composite: object) -> dict[str, object]:
    names = getattr(type(composite), "__slots__", None) or getattr(composite, "__dict__", {})
    return {n: jsonable(getattr(composite, n)) for n in names
            if getattr(composite, n, None) is not None}


def _body(sections: list[object]) -> dict[str, object]:
    if sections and all(isinstance(s, Data) for s in sections):
        raw = b"".join(bytes(s.value) for s in sections)  # type: ignore[attr-defined]
        shown = raw[:MAX_BODY_SHOWN]
        out: dict[str, object] = {"kind": "data", "size": len(raw), "hex": shown.hex(),
                                  "truncated": len(raw) > MAX_BODY_SHOWN}
        try:
            out["text"] = shown.decode("utf-8")
        except UnicodeDecodeError:
            return out
        try:
            out["json"] = json.loads(raw)
        except ValueError:
            pass
        return out
    if len(sections) == 1 and isinstance(sections[0], AmqpValue):
        return {"kind": "value", "value": jsonable(sections[0].value)}
    if sections and all(isinstance(s, AmqpSequence) for s in sections):
        return {"kind": "sequence", "value": [jsonable(s.value) for s in sections]}  # type: ignore[attr-defined]
    return {"kind": "none" if not sections else "mixed"}


def jsonable(value: object) -> object:
    """An AMQP value as JSON: binary as UTF-8 text when it is (else hex),
    symbols and uuids as strings, described values as {descriptor, value}."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (bytes, bytearray, memoryview)):
        raw = bytes(value)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            return "0x" + raw.hex()
    if isinstance(value, Mapping):
        return {str(jsonable(k)): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, Described):
        return {"descriptor": jsonable(value.descriptor), "value": jsonable(value.value)}
    items = getattr(value, "items", None)
    if isinstance(items, (list, tuple)):  # an AMQP array
        return [jsonable(v) for v in items]
    inner = getattr(value, "value", None)
    if inner is not None and not callable(inner):  # wrapper types (UInt, Timestamp…)
        return jsonable(inner)
    return str(value)
