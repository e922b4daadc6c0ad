#!/usr/bin/env python3
"""Writes the seed corpora into fuzz/corpus/<target>/ (run once; the results
are committed, after `cargo fuzz cmin`).

- query_parse, query_path: queries as `dig` sends them (captured on the
  loopback), plus hand-made malformed ones;
- response_parse: the answers a running oxidns (target/release/oxidns, with
  the zones of the query_path target) gave to those queries;
- corefile: the repo's Corefile and every `corefile` example in the READMEs;
- zonefile: examples/db.example.org, the signed fixtures, the differential
  test zones and a few snippets of the rarer syntax.
"""

import hashlib
import os
import re
import socket
import struct
import subprocess
import sys
import threading
import time

FUZZ = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(FUZZ)
CORPUS = os.path.join(FUZZ, "corpus")
SERVER_PORT = 15353
PROXY_PORT = 15354


def save(target, data):
    if isinstance(data, str):
        data = data.encode()
    folder = os.path.join(CORPUS, target)
    os.makedirs(folder, exist_ok=True)
    name = hashlib.sha1(data).hexdigest()
    with open(os.path.join(folder, name), "wb") as f:
        f.write(data)


def corefile_for_server():
    fixtures = os.path.join(FUZZ, "fixtures")
    return f"""example.org:{SERVER_PORT} {{
    bind 127.0.0.1
    cache
    file {REPO}/examples/db.example.org
}}
signed.test:{SERVER_PORT} nsec3.test:{SERVER_PORT} {{
    bind 127.0.0.1
    cache
    file {fixtures}/db.signed.test signed.test
    file {fixtures}/db.nsec3.test nsec3.test
}}
.:{SERVER_PORT} {{
    bind 127.0.0.1
    chaos oxidns-fuzz
    local
    any
    whoami
}}
"""


DIG_QUERIES = [
    ["www.example.org", "A"],
    ["WwW.ExAmPlE.oRg", "AAAA", "+noedns"],
    ["example.org", "SOA", "+dnssec"],
    ["example.org", "NS"],
    ["example.org", "MX", "+nsid"],
    ["example.org", "TXT", "+cookie=0102030405060708"],
    ["example.org", "ANY"],
    ["example.org", "CAA", "+bufsize=512"],
    ["web.example.org", "A"],
    ["x.apps.example.org", "A"],
    ["_sip._udp.example.org", "SRV"],
    ["host.lab.example.org", "A", "+norec"],
    ["missing.example.org", "A", "+dnssec"],
    ["www.signed.test", "A", "+dnssec"],
    ["nothere.signed.test", "A", "+dnssec"],
    ["www.signed.test", "TXT", "+dnssec"],
    ["x.wild.signed.test", "A", "+dnssec"],
    ["a.dname.signed.test", "A", "+dnssec"],
    ["cname.signed.test", "A", "+dnssec"],
    ["host.secure.signed.test", "A", "+dnssec"],
    ["host.insecure.signed.test", "A", "+dnssec"],
    ["signed.test", "DNSKEY", "+dnssec", "+bufsize=4096"],
    ["nothere.nsec3.test", "A", "+dnssec"],
    ["ent.nsec3.test", "A", "+dnssec"],
    ["nsec3.test", "NSEC3PARAM", "+dnssec"],
    ["version.bind", "TXT", "-c", "CH"],
    ["hostname.bind", "TXT", "-c", "CH"],
    ["localhost", "A"],
    ["1.0.0.127.in-addr.arpa", "PTR"],
    ["whoami.test", "A"],
    [".", "NS", "+edns=1"],
    ["example.org", "A", "+opcode=status"],
    ["example.org", "A", "+ednsopt=65001:78797a"],
]


def capture_with_dig():
    """Returns [(query, response)] for DIG_QUERIES, via a recording proxy."""
    proxy = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    proxy.bind(("127.0.0.1", PROXY_PORT))
    proxy.settimeout(5)
    upstream = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    upstream.settimeout(3)
    pairs = []
    for args in DIG_QUERIES:
        print("dig", *args, file=sys.stderr)
        dig = subprocess.Popen(
            ["dig", "@127.0.0.1", "-p", str(PROXY_PORT), "+tries=1", "+time=3", "+notcp", "+ignore"] + args,
            stdout=subprocess.DEVNULL,
        )
        query, client = proxy.recvfrom(65535)
        upstream.sendto(query, ("127.0.0.1", SERVER_PORT))
        try:
            response, _ = upstream.recvfrom(65535)
        except socket.timeout:
            response = None
        if response is not None:
            proxy.sendto(response, client)
        dig.wait()
        pairs.append((query, response))
    return pairs


def malformed_queries(good):
    out = []
    out.append(good[:11])  # short header
    qr = bytearray(good)
    qr[2] |= 0x80
    out.append(bytes(qr))  # a response
    out.append(good + b"\x00")  # trailing byte
    two = bytearray(good)
    two[5] = 2
    out.append(bytes(two))  # QDCOUNT 2, one question
    header = good[:12]
    # Compression loop in the question, and a forward pointer.
    out.append(header[:4] + b"\x00\x01\x00\x00\x00\x00\x00\x00" + b"\xc0\x0c\x00\x01\x00\x01")
    out.append(header[:4] + b"\x00\x01\x00\x00\x00\x00\x00\x00" + b"\xc0\x20\x00\x01\x00\x01")
    # Two OPT records.
    opt = b"\x00\x00\x29\x10\x00\x00\x00\x00\x00\x00\x00"
    q = bytearray(good[:12])
    q[4:12] = b"\x00\x01\x00\x00\x00\x00\x00\x02"
    question = b"\x07example\x03org\x00\x00\x01\x00\x01"
    out.append(bytes(q) + question + opt + opt)
    # OPT in the answer section, and an OPT with a non-root owner.
    q[4:12] = b"\x00\x01\x00\x01\x00\x00\x00\x00"
    out.append(bytes(q) + question + opt)
    q[4:12] = b"\x00\x01\x00\x00\x00\x00\x00\x01"
    out.append(bytes(q) + question + b"\x01a" + opt)
    # A bad EDNS option (length past the end).
    out.append(bytes(q) + question + b"\x00\x00\x29\x10\x00\x00\x00\x00\x00\x00\x04\x00\x0a\x00\x08")
    return out


def corefiles():
    texts = [open(os.path.join(REPO, "Corefile")).read()]
    readmes = [os.path.join(REPO, "README.md")]
    plugins = os.path.join(REPO, "plugins")
    readmes += [os.path.join(plugins, p, "README.md") for p in sorted(os.listdir(plugins))]
    for path in readmes:
        if not os.path.exists(path):
            continue
        text = open(path).read()
        texts += re.findall(r"```corefile\n(.*?)```", text, re.S)
    texts.append("(common) {\n    errors\n    log\n}\nexample.org {\n    import common\n    import snippet.conf\n    file db.example.org\n    hosts hosts example.org {\n        fallthrough\n    }\n}\n")
    texts.append("(args) {\n    chaos {args.1} {args.2}\n}\n{$OXIDNS_FUZZ}:1053 dns://[::1]:53 10.0.0.0/24 {\n    import args v1 \"A B\"\n    root .\n    file db.signed.test {$OXIDNS_FUZZ}\n    auto {\n        directory . db\\.(.*) {1}\n    }\n}\n")
    return texts


def zonefiles():
    texts = [open(os.path.join(REPO, "examples", "db.example.org")).read()]
    zones = os.path.join(REPO, "crates", "oxidns", "tests", "differential", "zones")
    for name in sorted(os.listdir(zones)):
        text = open(os.path.join(zones, name)).read()
        texts.append(text.replace("@ORIGIN@", "example.org"))
    for name in ["db.signed.test", "db.nsec3.test"]:
        text = open(os.path.join(FUZZ, "fixtures", name)).read()
        texts.append("$ORIGIN example.org.\n" + text)
    texts.append("$ORIGIN example.org.\n$TTL 1h30m\n@ SOA ns hm 1 2h 15m 2w 5m\n@ NS ns\nns A 192.0.2.1\n$GENERATE 1-20/2 host-$ A 192.0.2.$\n$GENERATE 0-3 ${10,3,x}.rev PTR host-${0,2,d}\nraw TYPE65400 \\# 4 0a000001\nraw2 A \\# 4 c0000202\n$INCLUDE db.example.org sub\nesc TXT \"a\\\"b\" \\065\\066\n")
    texts.append("$ORIGIN example.org.\n$TTL 300\n@ SOA ns hm (\n 1 ; serial\n 3600 900 604800 300 )\n@ NS ns.other.\nx CNAME y\nx A 192.0.2.9\nsub NS ns.sub\nns.sub A 192.0.2.10\nbelow.sub A 192.0.2.11\nd DNAME example.net.\nunder.d A 192.0.2.12\n")
    return texts


def main():
    corefile = os.path.join(FUZZ, "target", "seeds.Corefile")
    os.makedirs(os.path.dirname(corefile), exist_ok=True)
    with open(corefile, "w") as f:
        f.write(corefile_for_server())
    binary = os.path.join(REPO, "target", "release", "oxidns")
    server = subprocess.Popen([binary, "-conf", corefile], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(1.0)
        if server.poll() is not None:
            sys.exit("oxidns did not start")
        pairs = capture_with_dig()
    finally:
        server.terminate()
        server.wait()
    queries = [q for q, _ in pairs]
    for query, response in pairs:
        save("query_parse", query)
        save("query_path", b"\x00" + query)
        if response is not None:
            save("response_parse", response)
    for i, query in enumerate(queries[:6]):
        save("query_path", bytes([1 + (i % 3)]) + query)
    for bad in malformed_queries(queries[0]):
        save("query_parse", bad)
        save("query_path", b"\x00" + bad)
    for text in corefiles():
        save("corefile", text)
    for text in zonefiles():
        save("zonefile", text)
    for target in sorted(os.listdir(CORPUS)):
        print(target, len(os.listdir(os.path.join(CORPUS, target))))


if __name__ == "__main__":
    main()
