"""Request/response nodes: RabbitMQ's /management (and, to come, Azure's $cbs)."""
