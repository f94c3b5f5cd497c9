"""Live audio devices through PortAudio (the ``sounddevice`` package): ``MicrophoneSource``,
``SpeakerSink`` and ``list_devices``.

Importing this package does not load PortAudio; the first device lookup does, and raises
BackendUnavailable when ``sounddevice`` or ``libportaudio2`` is missing.
"""

from .listing import list_devices
from .microphone import MicrophoneSource
from .speaker import SpeakerSink

__all__ = ["MicrophoneSource", "SpeakerSink", "list_devices"]
