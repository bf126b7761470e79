#!/usr/bin/python3
"""A tiny SMTP server for tests and the demo: every message it receives is appended to a file
as one JSON line {"mail_from", "rcpt_tos", "data"}. Debian's python3-aiosmtpd (installed by
scripts/stack.sh). Prints "ready <port>" once it listens; stops on SIGTERM/SIGINT.

    /usr/bin/python3 scripts/smtp_sink.py --port 2525 --out .stack/mail.jsonl
"""

import argparse
import json
import signal
import sys
import threading

from aiosmtpd.controller import Controller


class Store:
    def __init__(self, path):
        self.path = path
        self.lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope):
        line = json.dumps(
            {
                "mail_from": envelope.mail_from,
                "rcpt_tos": envelope.rcpt_tos,
                "data": envelope.content.decode("utf-8", "replace"),
            }
        )
        with self.lock, open(self.path, "a", encoding="utf-8") as out:
            out.write(line + "\n")
        return "250 Message accepted for delivery"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--out", required=True, help="file the messages are appended to")
    args = parser.parse_args()
    controller = Controller(Store(args.out), hostname=args.host, port=args.port)
    controller.start()
    print(f"ready {args.port}", flush=True)
    stopped = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stopped.set())
    stopped.wait()
    controller.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
