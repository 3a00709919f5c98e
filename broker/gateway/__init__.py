"""Gateway mode: our WebSocket and TCP listeners in front of another AMQP 1.0
broker (a RabbitMQ cluster), routing links instead of relaying bytes.

Clients' connections end here, with SASL, tokens, Origin checks and
permissions decided at the edge as in `serve`; each client session is carried
by one session on one of a few upstream connections, and each link by one
upstream link with the same name, termini and settle modes.  Credit flows end
to end, deliveries keep their tags and their bytes, outcomes go back the way
the message came.  Everything here is sans-io: `gateway_server.py` dials the
upstream nodes and pumps the sockets.

- `upstream.py`: the upstream nodes (URLs), the pool of connections to them,
  failover with backoff, where a new session goes;
- `routes.py`: one client link ↔ one upstream link, one client session ↔ one
  upstream session, and everything that crosses between them;
- `core.py`: the `Gateway` the transports talk to, and its client connections.
"""
