"""On-disk durability (`--data-dir`): the queue journal, stream segments with
their indexes, the topology file, and recovery.  The layout and the
guarantees are written down in docs/storage.md.

Only this package touches the data directory.  The container stays pure: it
records what must be kept and holds back the outcomes that promise it; the
server hands each batch to `Store.commit` on a worker thread and tells the
container when it is safe (see durable.py)."""
