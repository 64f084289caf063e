"""The gateway an SPE runs on its side (this package; the CLI, hub.entrypoints.gateway, only parses
options and prints): national export → signed envelopes → durable outbox → hub,
and back: the SPE's deliveries → verified records → files in its national format.

Every converted record is signed once and its envelope stored in a local
SQLite outbox before anything is sent. Sending takes pending envelopes in
batches over one Publish stream and marks each with the hub's answer; if the
link drops, what was not answered stays pending and the next run sends it
again. A record already stored by the hub comes back DUPLICATE (the bytes are
identical), so an intermittent link loses nothing and duplicates nothing.

Receiving subscribes from the SPE's cursor, verifies each record's signature
end to end against the directory (the hub could not forge it), and writes it
in the national format to a file named by origin, record and version, durably
(written whole, synced, renamed) before acknowledging: a delivery that comes
again after a broken link rewrites the same file, so nothing is lost or
doubled. Withdrawals and deletion notices are listed in notices.csv (ids
only); a deletion removes the gateway's copies and, unless the SPE lets the
gateway confirm it, holds the cursor until the SPE confirms that its own
systems deleted the data too.
"""

from hub.gateway.errors import GatewayError
from hub.gateway.outbox import FlushReport, Outbox
from hub.gateway.receiver import Inbox, Receiver, ReceiveReport, fetch_directory
from hub.gateway.review import ReviewQueue
from hub.gateway.sender import Sender, converted_records

__all__ = [
    "FlushReport",
    "GatewayError",
    "Inbox",
    "Outbox",
    "ReceiveReport",
    "Receiver",
    "ReviewQueue",
    "Sender",
    "converted_records",
    "fetch_directory",
]
