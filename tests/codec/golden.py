"""Hand-written encodings of performatives, SASL frames and message sections.

Each vector was worked out from the encoding rules of the spec (§1.6, §2.7,
§3, §5.3), not produced by our encoder: described list, descriptor as
smallulong, trailing nulls trimmed, fields equal to their default written as
null, `multiple` fields as a single value when they hold one and an array
otherwise, the smallest constructor for each value.
"""

from __future__ import annotations

import re

from broker.codec.messaging import (
    Accepted,
    AmqpSequence,
    AmqpValue,
    ApplicationProperties,
    Data,
    DeliveryAnnotations,
    Footer,
    Header,
    MessageAnnotations,
    Modified,
    Properties,
    Received,
    Rejected,
    Released,
    Source,
    Target,
)
from broker.codec.performatives import (
    Attach,
    Begin,
    Close,
    Detach,
    Disposition,
    End,
    Error,
    Flow,
    Open,
    Role,
    SaslChallenge,
    SaslCode,
    SaslInit,
    SaslMechanisms,
    SaslOutcome,
    SaslResponse,
    SndSettleMode,
    Transfer,
)
from broker.codec.types import Described, Int, Long, Symbol, Timestamp, UInt

_TOKEN = re.compile(r'"([^"]*)"|([0-9a-fA-F]{2})')


def g(text: str) -> bytes:
    """Hex bytes and "quoted ASCII" → bytes; `#` starts a comment."""
    out = bytearray()
    for line in text.splitlines():
        line = line.split("#")[0]
        pos = 0
        for m in _TOKEN.finditer(line):
            assert not line[pos : m.start()].strip(), f"junk in vector: {line[pos : m.start()]!r}"
            pos = m.end()
            out += (
                m.group(1).encode("ascii") if m.group(1) is not None else bytes.fromhex(m.group(2))
            )
        assert not line[pos:].strip(), f"junk in vector: {line[pos:]!r}"
    return bytes(out)


NOT_FOUND = Error(condition=Symbol("amqp:not-found"), description="no")
NOT_FOUND_BYTES = """
    00 53 1d c0 15 02          # error, list8 size 21, 2 fields
      a3 0e "amqp:not-found"   # condition
      a1 02 "no"               # description
"""

# (id, object, hand-written encoding)
VECTORS: list[tuple[str, object, str]] = [
    ("open-minimal", Open(container_id="c"), "00 53 10 c0 04 01 a1 01 63"),
    (
        "open-defaults-trimmed",
        Open(container_id="c", max_frame_size=0xFFFFFFFF, channel_max=0xFFFF),
        "00 53 10 c0 04 01 a1 01 63",
    ),
    (
        "open-zero-idle-timeout",
        Open(container_id="c", idle_time_out=0),
        "00 53 10 c0 08 05 a1 01 63 40 40 40 43",
    ),
    (
        "open-full",
        Open(
            container_id="c",
            hostname="h",
            max_frame_size=512,
            channel_max=7,
            idle_time_out=30000,
            outgoing_locales=(Symbol("en"),),
            offered_capabilities=(Symbol("x"),),
            desired_capabilities=(Symbol("a"), Symbol("bc")),
            properties={Symbol("p"): "v"},
        ),
        """
        00 53 10 c0 2e 0a                 # open, list8 size 46, 10 fields
          a1 01 "c"                       # container-id
          a1 01 "h"                       # hostname
          70 00 00 02 00                  # max-frame-size uint 512
          60 00 07                        # channel-max ushort 7
          70 00 00 75 30                  # idle-time-out 30000
          a3 02 "en"                      # outgoing-locales: one symbol, no array
          40                              # incoming-locales
          a3 01 "x"                       # offered-capabilities
          e0 07 02 a3 01 "a" 02 "bc"      # desired-capabilities: array8 of sym8
          c1 07 02 a3 01 "p" a1 01 "v"    # properties
        """,
    ),
    (
        "begin",
        Begin(
            remote_channel=1,
            next_outgoing_id=0,
            incoming_window=2048,
            outgoing_window=0xFFFFFFFF,
            handle_max=1023,
        ),
        """
        00 53 11 c0 14 05
          60 00 01                        # remote-channel
          43                              # next-outgoing-id uint0
          70 00 00 08 00                  # incoming-window
          70 ff ff ff ff                  # outgoing-window
          70 00 00 03 ff                  # handle-max
        """,
    ),
    (
        "begin-no-remote-channel",
        Begin(next_outgoing_id=1, incoming_window=100, outgoing_window=100),
        "00 53 11 c0 08 04 40 52 01 52 64 52 64",
    ),
    (
        "attach",
        Attach(
            name="l",
            handle=0,
            role=Role.RECEIVER,
            snd_settle_mode=SndSettleMode.SETTLED,
            source=Source(address="q"),
            target=Target(address="t"),
            max_message_size=65536,
        ),
        """
        00 53 12 c0 27 0b
          a1 01 "l"                       # name
          43                              # handle
          41                              # role receiver
          50 01                           # snd-settle-mode settled (ubyte)
          40                              # rcv-settle-mode: default first
          00 53 28 c0 04 01 a1 01 "q"     # source
          00 53 29 c0 04 01 a1 01 "t"     # target
          40 40 40                        # unsettled, incomplete-unsettled, initial-delivery-count
          80 00 00 00 00 00 01 00 00      # max-message-size ulong
        """,
    ),
    (
        "source-full",
        Source(
            address="q",
            durable=1,
            expiry_policy=Symbol("never"),
            filter={Symbol("f"): Described(Symbol("s"), "x")},
            capabilities=(Symbol("queue"),),
        ),
        """
        00 53 28 c0 27 0b
          a1 01 "q"                       # address
          52 01                           # durable: configuration
          a3 05 "never"                   # expiry-policy
          40 40 40 40                     # timeout, dynamic, dynamic-node-properties, distribution-mode
          c1 0b 02 a3 01 "f" 00 a3 01 "s" a1 01 "x"   # filter
          40 40                           # default-outcome, outcomes
          a3 05 "queue"                   # capabilities
        """,
    ),
    ("target-dynamic", Target(dynamic=True), "00 53 29 c0 06 05 40 40 40 40 41"),
    (
        "flow-link",
        Flow(
            next_incoming_id=1,
            incoming_window=2048,
            next_outgoing_id=1,
            outgoing_window=2048,
            handle=0,
            delivery_count=0,
            link_credit=100,
            drain=True,
        ),
        """
        00 53 13 c0 15 09
          52 01 70 00 00 08 00 52 01 70 00 00 08 00   # session window
          43 43 52 64                     # handle, delivery-count, link-credit
          40                              # available
          41                              # drain
        """,
    ),
    (
        "flow-session",
        Flow(incoming_window=10, next_outgoing_id=0, outgoing_window=10),
        "00 53 13 c0 07 04 40 52 0a 43 52 0a",
    ),
    (
        "transfer",
        Transfer(
            handle=0,
            delivery_id=5,
            delivery_tag=b"\x00\x01",
            message_format=0,
            settled=False,
            more=False,
        ),
        "00 53 14 c0 0a 05 43 52 05 a0 02 00 01 43 42",
    ),
    (
        "transfer-more-aborted",
        Transfer(handle=1, more=True, aborted=True),
        "00 53 14 c0 0c 0a 52 01 40 40 40 40 41 40 40 40 41",
    ),
    (
        "disposition-accepted",
        Disposition(role=Role.RECEIVER, first=0, last=3, settled=True, state=Accepted()),
        "00 53 15 c0 0a 05 41 43 52 03 41 00 53 24 45",
    ),
    (
        "disposition-rejected",
        Disposition(role=Role.SENDER, first=7, state=Rejected(error=NOT_FOUND)),
        """
        00 53 15 c0 26 05 42 52 07 40 40
          00 53 25 c0 1b 01               # rejected
        """
        + NOT_FOUND_BYTES,
    ),
    ("released", Released(), "00 53 26 45"),
    ("modified", Modified(delivery_failed=True), "00 53 27 c0 02 01 41"),
    ("received", Received(section_number=0, section_offset=10), "00 53 23 c0 04 02 43 53 0a"),
    ("error", NOT_FOUND, NOT_FOUND_BYTES),
    (
        "detach",
        Detach(handle=2, closed=True, error=Error(condition=Symbol("amqp:link:detach-forced"))),
        """
        00 53 16 c0 23 03 52 02 41
          00 53 1d c0 1a 01 a3 17 "amqp:link:detach-forced"
        """,
    ),
    ("end", End(), "00 53 17 45"),
    (
        "end-error-info",
        End(error=Error(condition=Symbol("x:y"), info={Symbol("k"): UInt(1)})),
        """
        00 53 17 c0 15 01
          00 53 1d c0 0f 03 a3 03 "x:y" 40 c1 06 02 a3 01 "k" 52 01
        """,
    ),
    ("close", Close(), "00 53 18 45"),
    (
        "close-error",
        Close(error=Error(condition=Symbol("amqp:internal-error"), description="boom")),
        """
        00 53 18 c0 22 01
          00 53 1d c0 1c 02 a3 13 "amqp:internal-error" a1 04 "boom"
        """,
    ),
    (
        "sasl-mechanisms",
        SaslMechanisms(sasl_server_mechanisms=(Symbol("PLAIN"), Symbol("ANONYMOUS"))),
        """
        00 53 40 c0 15 01
          e0 12 02 a3 05 "PLAIN" 09 "ANONYMOUS"
        """,
    ),
    (
        "sasl-mechanisms-one",
        SaslMechanisms(sasl_server_mechanisms=(Symbol("ANONYMOUS"),)),
        '00 53 40 c0 0c 01 a3 09 "ANONYMOUS"',
    ),
    (
        "sasl-init",
        SaslInit(mechanism=Symbol("PLAIN"), initial_response=b"\x00u\x00p", hostname="h"),
        '00 53 41 c0 11 03 a3 05 "PLAIN" a0 04 00 "u" 00 "p" a1 01 "h"',
    ),
    ("sasl-challenge", SaslChallenge(challenge=b"ch"), '00 53 42 c0 05 01 a0 02 "ch"'),
    ("sasl-response-empty", SaslResponse(response=b""), "00 53 43 c0 03 01 a0 00"),
    ("sasl-outcome-ok", SaslOutcome(code=SaslCode.OK), "00 53 44 c0 03 01 50 00"),
    (
        "sasl-outcome-auth",
        SaslOutcome(code=SaslCode.AUTH, additional_data=b"x"),
        '00 53 44 c0 06 02 50 01 a0 01 "x"',
    ),
    (
        "header",
        Header(durable=True, priority=4, ttl=1000, first_acquirer=False, delivery_count=2),
        "00 53 70 c0 0b 05 41 40 70 00 00 03 e8 40 52 02",
    ),
    (
        "properties",
        Properties(
            message_id="id1",
            to="q",
            content_type=Symbol("text/plain"),
            creation_time=Timestamp(1000),
            group_sequence=3,
        ),
        """
        00 53 73 c0 27 0c
          a1 03 "id1"                     # message-id
          40                              # user-id
          a1 01 "q"                       # to
          40 40 40                        # subject, reply-to, correlation-id
          a3 0a "text/plain"              # content-type
          40 40                           # content-encoding, absolute-expiry-time
          83 00 00 00 00 00 00 03 e8      # creation-time
          40                              # group-id
          52 03                           # group-sequence
        """,
    ),
    ("delivery-annotations", DeliveryAnnotations({}), "00 53 71 c1 01 00"),
    (
        "message-annotations",
        MessageAnnotations({Symbol("x-opt-a"): "b"}),
        '00 53 72 c1 0d 02 a3 07 "x-opt-a" a1 01 "b"',
    ),
    (
        "application-properties",
        ApplicationProperties({"k": Int(1)}),
        '00 53 74 c1 06 02 a1 01 "k" 54 01',
    ),
    ("data", Data(b"hi"), '00 53 75 a0 02 "hi"'),
    ("amqp-sequence", AmqpSequence([Long(1)]), "00 53 76 c0 03 01 55 01"),
    ("amqp-value", AmqpValue("hi"), '00 53 77 a1 02 "hi"'),
    ("footer", Footer({}), "00 53 78 c1 01 00"),
]
