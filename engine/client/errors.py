"""The error every engine client raises when its engine cannot be reached.

Apart from engine/client/daemon_client.py because both clients raise it (the daemon's, and the
OpenAI-compatible server's in engine/client/remote.py), and client.py's factory imports
the remote client: one shared leaf keeps the import graph acyclic.
"""

from __future__ import annotations


class EngineUnavailable(Exception):
    """The engine cannot be reached, failed to start, or went away mid-job; the
    message says what to do (and where the daemon's log is)."""
