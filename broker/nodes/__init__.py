"""Message nodes (queues, streams) and the address registry: plain synchronous objects."""
