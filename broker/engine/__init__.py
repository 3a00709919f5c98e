"""Sans-io AMQP 1.0 engine: bytes in, events out; local actions in, bytes out."""
