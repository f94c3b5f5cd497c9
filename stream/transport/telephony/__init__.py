"""Phone calls and plain WebSocket media on the server: Twilio Media Streams (``/twilio``),
Telnyx Media Streaming (``/telnyx``) and a plain PCM WebSocket (``/ws``), each call served by its
own pipeline with a playout buffer, loss concealment, paced output and echo cancellation.

One module per concept: ``protocol`` (the shape every provider's messages take, the shared
readers), ``twilio`` / ``telnyx`` (a serializer each; Twilio's request signature), ``playout``
(the inbound playout buffer and concealment, the outbound pacer), ``call`` (one call: socket,
pipeline, clock), ``routes`` (``add_routes``, admission and limits), ``settings``.
See docs/telephony.md.
"""

from .call import CALLER, Call
from .protocol import ProtocolError
from .routes import CALLS_KEY, add_routes, calls_status
from .settings import TelephonySettings
from .telnyx import TelnyxSerializer
from .twilio import TwilioSerializer

__all__ = [
    "CALLER",
    "CALLS_KEY",
    "Call",
    "ProtocolError",
    "TelephonySettings",
    "TelnyxSerializer",
    "TwilioSerializer",
    "add_routes",
    "calls_status",
]
