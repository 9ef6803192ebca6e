# The client side of tests/submission.rs: Python's smtplib, driven by one
# JSON argument, printing every reply as JSON for the Rust side to check.
import base64, json, smtplib, socket, ssl, sys

args = json.loads(sys.argv[1])
ctx = ssl.create_default_context(cafile=args["ca"])
host = "localhost"

def starttls():
    s = smtplib.SMTP(host, args["port"], timeout=10)
    s.ehlo("client.example")
    s.starttls(context=ctx)
    s.ehlo("client.example")
    return s

def implicit():
    s = smtplib.SMTP_SSL(host, args["tls_port"], timeout=10, context=ctx)
    s.ehlo("client.example")
    return s

def plain(key):
    return "PLAIN " + base64.b64encode(b"\0anyone\0" + key.encode()).decode()

def reply(r):
    return [r[0], r[1].decode("utf-8", "replace")]

def send(s, data):
    out = [reply(s.docmd("MAIL", "FROM:<app@example.com>")),
           reply(s.docmd("RCPT", "TO:<bob@example.org>"))]
    out.append(reply(s.docmd("DATA")))
    s.send(data)
    out.append(reply(s.getreply()))
    return out

def message():
    from email.message import EmailMessage
    m = EmailMessage()
    m["From"] = "App <app@example.com>"
    m["To"] = "bob@example.org"
    m["Subject"] = "Grüße — ваш счёт 🧾"
    m["X-Herald-Tags"] = "invoice, smtp"
    m.set_content("Hello\n.leading dot\nBye\n")
    m.add_attachment(bytes(range(256)) * 4, maintype="application",
                     subtype="octet-stream", filename="data.bin")
    return m

mode = args["mode"]
out = {}
if mode == "deliver":
    s = starttls() if args["via"] == "starttls" else implicit()
    if args["mech"] == "PLAIN":
        s.user, s.password = "whoever", args["key"]
        out["auth"] = reply(s.auth("PLAIN", s.auth_plain, initial_response_ok=True))
    else:
        s.user, s.password = "whoever", args["key"]
        out["auth"] = reply(s.auth("LOGIN", s.auth_login, initial_response_ok=False))
    m = message()
    data = m.as_bytes(policy=m.policy.clone(linesep="\r\n"))
    out["sent"] = base64.b64encode(data).decode()
    s.mail("app@example.com")
    s.rcpt("bob@example.org")
    out["data"] = reply(s.data(data))
    s.quit()
elif mode == "refusals":
    s = smtplib.SMTP(host, args["port"], timeout=10)
    out["ehlo_plain"] = reply(s.ehlo("client.example"))
    out["auth_plain"] = reply(s.docmd("AUTH", plain(args["key"])))
    out["mail_plain"] = reply(s.docmd("MAIL", "FROM:<app@example.com>"))
    s.starttls(context=ctx)
    out["ehlo_tls"] = reply(s.ehlo("client.example"))
    out["mail_tls"] = reply(s.docmd("MAIL", "FROM:<app@example.com>"))
    out["rcpt_tls"] = reply(s.docmd("RCPT", "TO:<bob@example.org>"))
    s.close()
elif mode == "lockout":
    s = implicit()
    out["tries"] = [reply(s.docmd("AUTH", plain("wrong-key-0123456789-" + str(i)))) for i in range(5)]
    try:
        out["after"] = reply(s.docmd("NOOP"))
    except smtplib.SMTPServerDisconnected:
        out["after"] = "disconnected"
    try:
        implicit()
        out["again"] = "connected"
    except smtplib.SMTPConnectError as e:
        out["again"] = [e.smtp_code, e.smtp_error.decode()]
elif mode == "injection":
    raw = socket.create_connection((host, args["port"]), timeout=10)
    f = raw.makefile("rb")
    def lines(f):
        out = []
        while True:
            line = f.readline().decode()
            out.append(line.strip())
            if line[3:4] != "-":
                return out
    lines(f)
    raw.sendall(b"EHLO client.example\r\n")
    lines(f)
    # NOOP rides in the same packet as STARTTLS, in the clear.
    raw.sendall(b"STARTTLS\r\nNOOP\r\n")
    out["starttls"] = lines(f)
    tls = ctx.wrap_socket(raw, server_hostname=host)
    tf = tls.makefile("rb")
    tls.sendall(b"EHLO client.example\r\n")
    out["first_after_tls"] = lines(tf)
elif mode == "recipients":
    s = implicit()
    out["auth"] = reply(s.docmd("AUTH", plain(args["key"])))
    out["mail"] = reply(s.docmd("MAIL", "FROM:<app@example.com>"))
    out["rcpts"] = [reply(s.docmd("RCPT", "TO:<r%d@example.org>" % i)) for i in range(6)]
    out["data"] = reply(s.docmd("DATA"))
    s.send(b"Subject: five\r\n\r\nhi\r\n.\r\n")
    out["queued"] = reply(s.getreply())
    s.quit()
elif mode == "idle":
    s = implicit()
    s.sock.settimeout(10)
    # Say nothing: the server gives up first.
    out["idle"] = reply(s.getreply())
    s2 = implicit()
    s2.docmd("AUTH", plain(args["key"]))
    s2.docmd("MAIL", "FROM:<app@example.com>")
    s2.docmd("RCPT", "TO:<bob@example.org>")
    s2.docmd("DATA")
    s2.send(b"Subject: never finished\r\n\r\nhalf a mess")
    s2.sock.settimeout(10)
    out["data_idle"] = reply(s2.getreply())
elif mode == "bdat":
    s = implicit()
    out["ehlo"] = reply(s.ehlo("client.example"))
    out["auth"] = reply(s.docmd("AUTH", plain(args["key"])))
    # A chunk whose bytes look like commands, and a refused BDAT's chunk:
    # neither may be obeyed.
    s.send(b"BDAT 6\r\nQUIT\r\nNOOP\r\n")
    out["refused"] = [reply(s.getreply()), reply(s.getreply())]
    body = b"Subject: chunked\r\n\r\nline one\n.\nMAIL FROM:<x@example.com>\r\n"
    head, tail = body[:20], body[20:]
    s.send(b"MAIL FROM:<app@example.com>\r\nRCPT TO:<bob@example.org>\r\n" +
           b"BDAT %d\r\n" % len(head) + head + b"BDAT %d LAST\r\n" % len(tail) + tail)
    out["sent"] = [reply(s.getreply()) for _ in range(4)]
    s.send(b"MAIL FROM:<app@example.com>\r\nRCPT TO:<bob@example.org>\r\nBDAT 10\r\n0123456789DATA\r\n")
    out["data_after_bdat"] = [reply(s.getreply()) for _ in range(4)]
    s.send(b"RSET\r\nMAIL FROM:<app@example.com>\r\nRCPT TO:<bob@example.org>\r\n")
    out["reset"] = [reply(s.getreply()) for _ in range(3)]
    big = b"x" * (args["max"] + 1)
    s.send(b"BDAT %d LAST\r\n" % len(big) + big)
    out["big"] = reply(s.getreply())
    out["after"] = reply(s.docmd("NOOP"))
    s.quit()
elif mode == "scope":
    s = implicit()
    out["auth"] = reply(s.docmd("AUTH", plain(args["reader"])))
    out["mail"] = reply(s.docmd("MAIL", "FROM:<app@example.com>"))
    s.quit()
elif mode == "size":
    s = implicit()
    out["auth"] = reply(s.docmd("AUTH", plain(args["key"])))
    out["mail_size"] = reply(s.docmd("MAIL", "FROM:<app@example.com> SIZE=%d" % (args["max"] + 1)))
    big = b"Subject: big\r\n\r\n" + (b"x" * 70 + b"\r\n") * (args["max"] // 72 + 10) + b".\r\n"
    out["big"] = send(s, big)
    out["small"] = send(s, b"Subject: small\r\n\r\nfits\r\n.\r\n")
    s.quit()
elif mode == "pipeline":
    s = implicit()
    out["auth"] = reply(s.docmd("AUTH", plain(args["key"])))
    s.send(b"MAIL FROM:<app@example.com>\r\nRCPT TO:<bob@example.org>\r\n"
           b"RCPT TO:<not an address>\r\nRCPT TO:<carol@example.org>\r\nNOOP\r\nDATA\r\n")
    out["replies"] = [reply(s.getreply()) for _ in range(6)]
    s.send(b"Subject: pipelined\r\n\r\nhi\r\n.\r\nRSET\r\nQUIT\r\n")
    out["replies"] += [reply(s.getreply()) for _ in range(3)]
elif mode == "smuggle":
    s = implicit()
    out["auth"] = reply(s.docmd("AUTH", plain(args["key"])))
    out["sends"] = []
    for vector in [b"\n.\n", b"\n.\r\n", b"\r.\r"]:
        data = (b"Subject: smuggled\r\n\r\nbefore" + vector +
                b"MAIL FROM:<evil@example.com>\r\nRCPT TO:<victim@example.org>\r\n"
                b"DATA\r\nSubject: evil\r\n\r\nevil body\r\n.\r\n")
        out["sends"].append(send(s, data))
    out["after"] = reply(s.docmd("NOOP"))
    s.quit()
print(json.dumps(out))
