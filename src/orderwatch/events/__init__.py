"""The public contract as models: what orderwatch reads and what it writes."""

from orderwatch.events.codec import decode_event, encode_exception
from orderwatch.events.exception import Evidence, ExceptionEvent
from orderwatch.events.inbound import EVENT_TYPES, InboundEvent

__all__ = [
    "EVENT_TYPES",
    "Evidence",
    "ExceptionEvent",
    "InboundEvent",
    "decode_event",
    "encode_exception",
]
