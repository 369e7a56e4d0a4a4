"""The public contract as models: what orderwatch reads and what it writes."""

# isort: off
# inbound first: the command models (commands.py) extend its envelope, and it imports them back
# to join them into the one union every input is decoded with
from orderwatch.events.inbound import EVENT_TYPES, InboundEvent
from orderwatch.events.codec import decode_event, encode_exception, encode_reply
from orderwatch.events.commands import COMMAND_TYPES, CommandReply
from orderwatch.events.exception import Evidence, ExceptionEvent

# isort: on

__all__ = [
    "COMMAND_TYPES",
    "EVENT_TYPES",
    "CommandReply",
    "Evidence",
    "ExceptionEvent",
    "InboundEvent",
    "decode_event",
    "encode_exception",
    "encode_reply",
]
