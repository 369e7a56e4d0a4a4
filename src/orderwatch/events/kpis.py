"""KPI records (CONTRACT section 11): one per indicator, hour and dimension value, on
``order-kpis``; the numerator and the denominator, never a precomputed ratio."""

from __future__ import annotations

from datetime import datetime
from typing import Literal, TypeAlias

import orjson
from pydantic import BaseModel, ConfigDict, Field

Kpi: TypeAlias = Literal["payment_success_rate", "on_time_shipment_rate", "on_time_delivery_rate"]
#: each indicator's dimension field
DIMENSION: dict[str, str] = {
    "payment_success_rate": "method",
    "on_time_shipment_rate": "warehouse_id",
    "on_time_delivery_rate": "carrier",
}


class KpiRecord(BaseModel):
    """One indicator over one tumbling event-time UTC hour, for one value of its dimension."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kpi: Kpi
    window_start: datetime
    window_end: datetime
    method: str | None = Field(None, description="payment_success_rate only; else absent")
    warehouse_id: str | None = Field(None, description="on_time_shipment_rate only")
    carrier: str | None = Field(None, description="on_time_delivery_rate only")
    numerator: int = Field(ge=0)
    denominator: int = Field(ge=1)


def encode_kpi(record: KpiRecord) -> bytes:
    """The JSON body on ``order-kpis`` and in ``replay --kpis``: the one dimension it has."""
    return orjson.dumps(record.model_dump(mode="json", exclude_none=True))


__all__ = ["DIMENSION", "Kpi", "KpiRecord", "encode_kpi"]
