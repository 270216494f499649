"""``/v1/kpis``: the deal-to-cash KPIs of :mod:`accord.kpi`, as JSON.

Money is given per currency in minor units; ratios and day counts as decimal
strings, so that no figure passes through a float.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel

from accord.api.auth import Permission
from accord.api.context import ApiContext, access, context
from accord.connectors.governor import quota_policies
from accord.kpi import compute

__all__ = ["router"]

router = APIRouter(tags=["kpis"])


class CycleTimeOut(BaseModel):
    count: int
    median_days: str | None
    p90_days: str | None


class SyncLagOut(BaseModel):
    system: str
    pending_events: int
    oldest_pending_seconds: float | None
    last_synced_seconds: float | None


class QuotaUseOut(BaseModel):
    vendor: str
    window: str
    used: int
    limit: int | None


class KpisOut(BaseModel):
    as_of: str
    wip_minor: dict[str, int]
    dso_days: dict[str, str | None]
    billing_cycle_time: CycleTimeOut
    revenue_leakage: dict[str, str | None]
    dispute_rate: str | None
    sync_lag: list[SyncLagOut]
    quota_use: list[QuotaUseOut]


def _text(value: Decimal | None) -> str | None:
    return None if value is None else str(value)


@router.get(
    "/kpis",
    response_model=KpisOut,
    summary="DSO, billing cycle time, WIP, leakage, dispute rate, sync lag, quota use",
    operation_id="get_kpis",
    openapi_extra=access(Permission.READ_RECORDS),
)
def get_kpis(
    ctx: Annotated[ApiContext, Depends(context)],
    dso_window_days: Annotated[int, Query(ge=1, le=3660)] = 90,
    leakage_after_days: Annotated[int, Query(ge=0, le=3660)] = 30,
    as_of: Annotated[
        date | None,
        Query(
            description="The business day to measure on (default today); sync lag and "
            "quota use are always now."
        ),
    ] = None,
) -> KpisOut:
    overrides = {name: system.quota for name, system in ctx.settings.systems.items()}
    limits = {
        vendor: {"second": p.per_second, "minute": p.per_minute, "day": p.per_day}
        for vendor, p in quota_policies(overrides).items()
        if vendor in ctx.settings.systems
    }
    with ctx.engine.connect() as conn:
        kpis = compute(
            conn,
            ctx.clock(),
            quota_limits=limits,
            dso_days=dso_window_days,
            leakage_after_days=leakage_after_days,
            as_of=as_of,
        )
    cycle = kpis.billing_cycle_time
    return KpisOut(
        as_of=kpis.as_of.isoformat(),
        wip_minor=kpis.wip,
        dso_days={c: _text(v) for c, v in kpis.dso_days.items()},
        billing_cycle_time=CycleTimeOut(
            count=cycle.count, median_days=_text(cycle.median_days), p90_days=_text(cycle.p90_days)
        ),
        revenue_leakage={c: _text(v) for c, v in kpis.revenue_leakage.items()},
        dispute_rate=_text(kpis.dispute_rate),
        sync_lag=[
            SyncLagOut(
                system=s.system,
                pending_events=s.pending_events,
                oldest_pending_seconds=s.oldest_pending_seconds,
                last_synced_seconds=s.last_synced_seconds,
            )
            for s in kpis.sync_lag
        ],
        quota_use=[
            QuotaUseOut(vendor=q.vendor, window=q.window, used=q.used, limit=q.limit)
            for q in kpis.quota_use
        ],
    )
