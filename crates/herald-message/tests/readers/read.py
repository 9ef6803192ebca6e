"""Reads one rendered message from stdin with Python's email package (the
modern policy, as mail clients built on it do) and prints what a reader
sees as JSON: subject, the named headers, addresses' display names, and per
leaf part its type, transfer encoding, file name and, for an attached
message, that message's subject."""

import email
import email.policy
import json
import sys

names = sys.argv[1:]
msg = email.message_from_bytes(sys.stdin.buffer.read(), policy=email.policy.default)
out = {
    "subject": str(msg["Subject"]) if msg["Subject"] is not None else None,
    "headers": {n: (str(msg[n]) if msg[n] is not None else None) for n in names},
    "names": {
        field: [a.display_name for a in msg[field].addresses]
        for field in ("From", "To", "Cc", "Reply-To")
        if msg[field] is not None
    },
    "parts": [],
}


def leaves(part):
    """The leaf parts, an attached message counting as one."""
    if part.get_content_maintype() == "multipart":
        for child in part.iter_parts():
            yield from leaves(child)
    else:
        yield part


for part in leaves(msg):
    info = {
        "type": part.get_content_type(),
        "cte": part.get("Content-Transfer-Encoding"),
        "filename": part.get_filename(),
        "name": part.get_param("name"),
    }
    if part.get_content_type() == "message/rfc822":
        inner = part.get_payload()
        inner = inner[0] if isinstance(inner, list) and inner else None
        info["inner_subject"] = str(inner["Subject"]) if inner is not None and inner["Subject"] is not None else None
    else:
        info["bytes"] = len(part.get_payload(decode=True) or b"")
    out["parts"].append(info)
json.dump(out, sys.stdout)
