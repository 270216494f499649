"""Scale-out event stream: every canonical change reaches NATS JetStream once."""

from __future__ import annotations

import uuid
from pathlib import Path

from accord.bootstrap import build_hub
from accord.config import Settings
from accord.events.stream import open_stream
from accord.runtime.http_vendor import IdempotentHttpVendor
from accord.runtime.pipeline import Route
from accord.sandbox.recorder import RecorderServer

from .test_runtime_embedded import POLICY, account_event


def test_every_canonical_change_is_published_to_jetstream_once(
    nats_url: str, tmp_path: Path
) -> None:
    # Unique per run: JetStream drops a message id it saw in its duplicate
    # window, and canonical ids (so event ids) are derived from the input.
    run = uuid.uuid4().hex[:12]
    reader = open_stream(nats_url)
    before = max((seq for seq, _ in reader.replay()), default=0)
    reader.close()
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'accord.db'}", nats_url=nats_url)
    with RecorderServer() as recorder:
        hub = build_hub(
            settings,
            vendors={"erp": IdempotentHttpVendor(recorder.url)},
            routes=[Route("account", "erp", "upsert_customer")],
            policy=POLICY,
        )
        with hub:
            for i in range(50):
                hub.pipeline.ingest(
                    "crm",
                    f"nats-{run}-{i}",
                    "account.updated",
                    {
                        **account_event(i, domain=f"{run}.example"),
                        "external_id": f"{run}-{i}",
                    },
                )
            assert hub.worker.drain(60)
            # publishing the same changes again is deduplicated by event id
            hub.pipeline.publish([("account", cid, 1) for cid in _ids(hub)])
    reader = open_stream(nats_url)
    try:
        mine = [
            c
            for _, c in reader.replay(since_seq=before + 1)
            if c.data.get("domain") == f"{run}.example"
        ]
    finally:
        reader.close()
    assert len(mine) == 50
    assert len({c.event_id for c in mine}) == 50
    assert all(c.entity_type == "account" and c.system == "crm" for c in mine)


def _ids(hub: object) -> list[str]:
    from sqlalchemy import select

    from accord.store.tables import records

    with hub.engine.connect() as conn:  # type: ignore[attr-defined]
        return [row.id for row in conn.execute(select(records.c.id))]
