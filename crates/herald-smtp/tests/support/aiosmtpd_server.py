"""A third-party SMTP server for herald's interoperability tests.

Runs aiosmtpd on 127.0.0.1 with optional STARTTLS and AUTH, writes every
accepted message to OUT/<n>.eml and its envelope to OUT/<n>.json, and prints
READY <port> once it listens.
"""

import argparse
import asyncio
import json
import os
import ssl
import sys

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


class Saver:
    def __init__(self, out):
        self.out = out
        self.count = 0

    async def handle_DATA(self, server, session, envelope):
        self.count += 1
        base = os.path.join(self.out, str(self.count))
        with open(base + ".eml", "wb") as f:
            f.write(envelope.original_content)
        with open(base + ".json", "w") as f:
            json.dump(
                {
                    "mail_from": envelope.mail_from,
                    "rcpt_tos": envelope.rcpt_tos,
                    "mail_options": envelope.mail_options,
                    "tls": session.ssl is not None,
                    "authenticated": session.authenticated,
                },
                f,
            )
        return "250 2.0.0 OK saved"


def authenticator(user, password):
    def check(server, session, envelope, mechanism, auth_data):
        ok = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login.decode() == user
            and auth_data.password.decode() == password
        )
        return AuthResult(success=ok, handled=False)

    return check


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--cert")
    p.add_argument("--key")
    p.add_argument("--user")
    p.add_argument("--password")
    args = p.parse_args()

    kwargs = {}
    if args.cert:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(args.cert, args.key)
        kwargs["tls_context"] = ctx
        kwargs["require_starttls"] = True
    if args.user:
        kwargs["authenticator"] = authenticator(args.user, args.password)
        kwargs["auth_require_tls"] = bool(args.cert)
    else:
        kwargs["auth_require_tls"] = False

    controller = Controller(
        Saver(args.out),
        hostname="127.0.0.1",
        port=args.port,
        server_hostname="aiosmtpd.test",
        enable_SMTPUTF8=True,
        **kwargs,
    )
    controller.start()
    print(f"READY {args.port}", flush=True)
    try:
        sys.stdin.read()  # runs until the test closes our stdin
    finally:
        controller.stop()


if __name__ == "__main__":
    main()
