"""Client-side helpers that ship with the broker.

`broker.client.proton_ws` runs python-qpid-proton over WebSocket (imported
on demand: it needs the `python-qpid-proton` package, which the broker
itself does not)."""
