"""Client-side helpers that ship with the broker.

`broker.client.proton_ws` runs python-qpid-proton over WebSocket (imported
on demand: it needs the `python-qpid-proton` package, which the broker
itself does not), including wss:// with a private CA and OAuth2 bearer
tokens on the upgrade request, as SAP Event Mesh and similar brokers want."""
