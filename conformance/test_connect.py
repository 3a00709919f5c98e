"""Connection open/close with SASL ANONYMOUS and PLAIN; a wrong password is refused."""

from __future__ import annotations

import pytest
from clients import clients_for, run_case


@pytest.mark.parametrize("client", clients_for("connect_anonymous"))
def test_connect_anonymous(client, broker):
    result = run_case(client, "connect_anonymous", broker)
    assert result["open"] is True
    # The anonymous relay is announced on the connection (NOTES: addresses).
    assert "ANONYMOUS-RELAY" in result["offered_capabilities"]


@pytest.mark.parametrize("client", clients_for("connect_plain"))
def test_connect_plain(client, broker):
    result = run_case(client, "connect_plain", broker, user="alice", password="secret")
    assert result == {"open": True}


@pytest.mark.parametrize("client", clients_for("connect_bad_password"))
def test_connect_bad_password(client, broker):
    result = run_case(client, "connect_bad_password", broker, user="alice", password="wrong")
    assert result["refused"] is True, "a wrong password must be refused by SASL"
