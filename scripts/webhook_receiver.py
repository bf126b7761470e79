#!/usr/bin/env python3
"""A tiny receiver of flashgate-notifier's webhooks, for the demo: verifies Flashgate-Signature
(t=<unix>,v1=<hex HMAC-SHA256 of "t.body"> with the shared secret, within 300 s) and appends
one JSON line per request to --out: the event id, whether the signature verified, when the
request arrived (received_at_ms, ms since the epoch, read before the body is verified; for
scripts/notify_bench.sh's latencies), the event.
Answers 200 to a verified request, 400 otherwise (the notifier then retries).

    webhook_receiver.py --port 8095 --secret "$secret" --out events.jsonl
"""
import argparse
import hashlib
import hmac
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def verified(secret: bytes, header: str, body: bytes, now: int, tolerance: int = 300) -> bool:
    """The documented recipe: every v1 of the header against HMAC-SHA256(secret, t + "." + body)."""
    parts = [p.split("=", 1) for p in header.split(",") if "=" in p]
    stamps = [v for k, v in parts if k.strip() == "t"]
    if not stamps or not stamps[0].isdigit() or abs(now - int(stamps[0])) > tolerance:
        return False
    expected = hmac.new(secret, stamps[0].encode() + b"." + body, hashlib.sha256).hexdigest()
    return any(hmac.compare_digest(expected, v) for k, v in parts if k.strip() == "v1")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--secret", required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    secret = args.secret.encode()
    # One writer at a time: the server answers each request on its own thread.
    out_lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's name)
            body = self.rfile.read(int(self.headers.get("content-length") or 0))
            received_at_ms = time.time_ns() // 1_000_000
            ok = verified(secret, self.headers.get("Flashgate-Signature", ""), body, int(time.time()))
            try:
                event = json.loads(body)
            except ValueError:
                event = None
            line = {
                "event_id": self.headers.get("Flashgate-Event-Id"),
                "signature_verified": ok,
                "received_at_ms": received_at_ms,
                "event": event,
            }
            with out_lock, open(args.out, "a", encoding="utf-8") as out:
                out.write(json.dumps(line) + "\n")
            self.send_response(200 if ok else 400)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *_: object) -> None:
            pass

    ThreadingHTTPServer(("127.0.0.1", args.port), Handler).serve_forever()


if __name__ == "__main__":
    main()
