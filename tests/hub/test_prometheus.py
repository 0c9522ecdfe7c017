"""The hub's Prometheus series and Hub.attach() with a real portside.App."""

from __future__ import annotations

import pytest
from prometheus_client import REGISTRY

import portside
from portside.hub import Hub
from portside.hub.prometheus import PrometheusExporter
from tests.hub.helpers import hub_server, receive_json, subscriber


def sample(name: str) -> float:
    value = REGISTRY.get_sample_value(name)
    return 0.0 if value is None else value


async def test_exporter_copies_counters_and_gauges() -> None:
    async with Hub() as hub, hub_server(hub) as server:
        exporter = PrometheusExporter(hub, interval=60)
        before = sample("portside_hub_published_total")
        await exporter.start()
        await exporter.start()  # once is enough
        client, _ = await subscriber(server, "t")
        await hub.publish("t", "x")
        await receive_json(client)
        exporter.flush()
        assert sample("portside_hub_published_total") == before + 1
        assert sample("portside_hub_topics") == 1
        assert sample("portside_hub_subscriptions") == 1
        exporter.flush()  # nothing new: nothing added
        assert sample("portside_hub_published_total") == before + 1
        await exporter.stop()
        await exporter.stop()
        await client.close()


def test_exporter_interval() -> None:
    with pytest.raises(ValueError, match="interval"):
        PrometheusExporter(Hub(), interval=0)


async def test_attach_adds_hooks_readiness_and_metrics() -> None:
    app = portside.App(lambda ws: ws.wait_closed())
    hub = Hub()
    hub.attach(app)
    assert len(app.startup_hooks) == 2
    assert len(app.shutdown_hooks) == 2
    ((name, check),) = app.readiness_checks
    assert name == "hub"
    assert check() is False
    for hook in app.startup_hooks:
        await hook()
    assert check() is True
    for hook in reversed(app.shutdown_hooks):
        await hook()
    assert check() is False


def test_attach_without_readiness_or_metrics() -> None:
    app = portside.App(lambda ws: ws.wait_closed())
    Hub().attach(app, readiness=False, metrics=False)
    assert app.readiness_checks == []
    assert len(app.startup_hooks) == 1
