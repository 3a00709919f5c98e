"""Command-line interface: `amqpws-broker serve` (arrives with the broker-core issue)."""

from __future__ import annotations

import click

from broker import __version__


@click.group()
@click.version_option(__version__, prog_name="amqpws-broker")
def main() -> None:
    """A small AMQP 1.0 broker over TCP and WebSocket."""
