"""A stand-in desktop notification daemon on the session bus (org.freedesktop.Notifications):
records each Notify call as a JSON line, so tests see exactly what a user would have seen.

    python -m testkit.fake_notifications OUT_FILE
"""

from __future__ import annotations

import json
import sys

from jeepney import HeaderFields, MessageType, new_error, new_method_return
from jeepney.bus_messages import message_bus
from jeepney.io.blocking import open_dbus_connection

NAME = "org.freedesktop.Notifications"


def main() -> None:
    out = sys.argv[1]
    with open_dbus_connection(bus="SESSION") as conn:
        (result,) = conn.send_and_get_reply(message_bus.RequestName(NAME)).body
        assert result == 1, "another notification daemon owns the name"
        print("ready", flush=True)
        counter = 0
        while True:
            msg = conn.receive()
            if msg.header.message_type != MessageType.method_call:
                continue
            member = msg.header.fields.get(HeaderFields.member)
            if member == "Notify":
                app, _replaces, _icon, summary, body, *_ = msg.body
                with open(out, "a", encoding="utf-8") as handle:
                    handle.write(json.dumps({"app": app, "summary": summary, "body": body}) + "\n")
                counter += 1
                conn.send(new_method_return(msg, "u", (counter,)))
            elif member == "GetCapabilities":
                conn.send(new_method_return(msg, "as", (["body"],)))
            elif member == "GetServerInformation":
                conn.send(new_method_return(msg, "ssss", ("fake", "tests", "1", "1.2")))
            else:
                conn.send(new_error(msg, "org.freedesktop.DBus.Error.UnknownMethod"))


if __name__ == "__main__":
    main()
