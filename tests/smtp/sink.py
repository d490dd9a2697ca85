#!/usr/bin/env python3
"""A real SMTP server for the mail tests and the sender benchmark (aiosmtpd).

Every accepted message is parsed with Python's `email` package and written
as `<n>.json` (envelope, every header, text and HTML parts) beside the raw
`<n>.eml` under DIR, each through a temporary file and a rename. Prints
`ready <port>` once listening. Faults on demand:

  --tempfail N      the first N transactions get `451 4.3.0` at the end of DATA
  --permfail TEXT   recipients containing TEXT get `550 5.1.1` at RCPT
  --drop K          the K-th transaction (1-based) loses its connection after
                    the data, without a reply and without storing the message
  --count-only      store nothing, count accepted messages (benchmark); the
                    count is written to DIR/count on SIGTERM
  --auth USER:PASS  require SMTP AUTH (PLAIN or LOGIN) with these credentials;
                    each stored message records the user as `auth_user`
"""
import argparse
import asyncio
import email
import email.policy
import json
import os
import signal
import sys
import warnings

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult


class Sink:
    def __init__(self, args):
        self.args = args
        self.transactions = 0
        self.stored = 0

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if self.args.permfail and self.args.permfail in address:
            return "550 5.1.1 no such mailbox here"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        self.transactions += 1
        n = self.transactions
        if n <= self.args.tempfail:
            return "451 4.3.0 try again later"
        if self.args.drop and n == self.args.drop:
            server.transport.close()
            return "421 closing"  # never reaches the client: the connection is gone
        self.stored += 1
        if self.args.count_only:
            return "250 OK"
        raw = envelope.original_content or envelope.content
        msg = email.message_from_bytes(raw, policy=email.policy.default)
        text = html = None
        for part in msg.walk():
            ctype = part.get_content_type()
            if ctype == "text/plain" and text is None:
                text = part.get_content()
            elif ctype == "text/html" and html is None:
                html = part.get_content()
        user = getattr(session, "auth_data", None)
        record = {
            "auth_user": user.decode() if isinstance(user, bytes) else user,
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "headers": {k: str(v) for k, v in msg.items()},
            "text": text,
            "html": html,
        }
        write(os.path.join(self.args.dir, f"{self.stored}.eml"), raw)
        write(os.path.join(self.args.dir, f"{self.stored}.json"), json.dumps(record).encode())
        return "250 OK"


class Authenticator:
    def __init__(self, user, password):
        self.user = user.encode()
        self.password = password.encode()

    def __call__(self, server, session, envelope, mechanism, auth_data):
        ok = auth_data.login == self.user and auth_data.password == self.password
        return AuthResult(success=ok, handled=False, auth_data=auth_data.login if ok else None)


def write(path, data):
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.rename(tmp, path)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--dir", required=True)
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--tempfail", type=int, default=0)
    p.add_argument("--permfail", default="")
    p.add_argument("--drop", type=int, default=0)
    p.add_argument("--count-only", action="store_true")
    p.add_argument("--auth", default="")
    args = p.parse_args()
    # AUTH without TLS is what a loopback test server does: no warning per connection.
    warnings.simplefilter("ignore")
    os.makedirs(args.dir, exist_ok=True)
    sink = Sink(args)
    port = args.port
    if port == 0:
        import socket

        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
    auth = {}
    if args.auth:
        user, password = args.auth.split(":", 1)
        auth = dict(
            auth_required=True,
            auth_require_tls=False,
            authenticator=Authenticator(user, password),
        )
    controller = Controller(sink, hostname="127.0.0.1", port=port, decode_data=False, **auth)
    controller.start()
    print(f"ready {port}", flush=True)
    # The reader may close its end after this line: print nothing more.
    sys.stdout = open(os.devnull, "w")

    def stop(*_):
        controller.stop()
        write(os.path.join(args.dir, "count"), str(sink.stored).encode())
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    while True:
        signal.pause()


if __name__ == "__main__":
    main()
