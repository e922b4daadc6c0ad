#!/usr/bin/env python3
"""Generate a large test zone (example.com, exactly NRECORDS resource records) and a query file.

Usage: genbigzone.py OUTDIR [NRECORDS] [NQUERIES]       (defaults: 1000000, 100000)

Writes OUTDIR/big-NRECORDS.zone and OUTDIR/big-NRECORDS.queries.txt. Deterministic (seed 42),
in the style of ../shared/bench/genzone.py, scaled up:
  the same apex (SOA, 2 NS with in-zone A/AAAA, A, AAAA, MX x2, TXT x2), *.wild (A+TXT) and a
  delegation child.example.com with glue; then blocks of 20 hosts, each block holding
    20 x hostNNNNNNN A, 10 x AAAA (every 2nd host), 1 in-zone CNAME aliasNNNNNN -> a random host,
  plus one TXT txtNNNNN every 5 blocks and one mxdomNNNN (MX + A) every 50 blocks,
  cut off as soon as the zone holds exactly NRECORDS RRs (SOA and NS included).
  Addresses are in 198.18.0.0/15 and 2001:db8::/32 (data only; nothing is ever sent to them).
Queries (shuffled by construction): 80% A host, 10% AAAA host, 5% NXDOMAIN, 2% A via CNAME,
1.5% MX, 1.5% TXT, as in genzone.py.
"""
import random
import sys

out = sys.argv[1] if len(sys.argv) > 1 else "."
NREC = int(sys.argv[2]) if len(sys.argv) > 2 else 1_000_000
NQUERIES = int(sys.argv[3]) if len(sys.argv) > 3 else 100_000
rnd = random.Random(42)
O = "example.com."


def v4(i):
    return f"198.{18 + ((i >> 16) & 1)}.{(i >> 8) & 255}.{i & 255}"


def v6(i):
    return f"2001:db8:{(i >> 16) & 0xffff:x}::{i & 0xffff:x}"


head = [f"$ORIGIN {O}", "$TTL 3600"]
rrs = [
    f"@ IN SOA ns1.{O} hostmaster.{O} 2026010101 7200 3600 1209600 300",
    f"@ IN NS ns1.{O}",
    f"@ IN NS ns2.{O}",
    "@ IN A 192.0.2.1",
    "@ IN AAAA 2001:db8::1",
    f"@ IN MX 10 mail1.{O}",
    f"@ IN MX 20 mail2.{O}",
    '@ IN TXT "v=spf1 mx -all"',
    '@ IN TXT "google-site-verification=abcdefghijklmnopqrstuvwxyz0123456789"',
    "ns1 IN A 192.0.2.53",
    "ns1 IN AAAA 2001:db8::53",
    "ns2 IN A 198.51.100.53",
    "ns2 IN AAAA 2001:db8:1::53",
    "mail1 IN A 192.0.2.25",
    "mail2 IN A 198.51.100.25",
    f"www IN CNAME {O}",
    "*.wild IN A 192.0.2.80",
    '*.wild IN TXT "wildcard"',
    f"child IN NS ns1.child.{O}",
    f"child IN NS ns2.child.{O}",
    "ns1.child IN A 192.0.2.153",
    "ns1.child IN AAAA 2001:db8:2::153",
    "ns2.child IN A 198.51.100.153",
]

hosts = 0      # hostNNNNNNN names created (each has an A)
aaaa = []      # host indices with AAAA
aliases = 0
txts = 0
mxdoms = 0


def full():
    return len(rrs) >= NREC


block = 0
while not full():
    for k in range(20):
        if full():
            break
        i = hosts
        rrs.append(f"host{i:07d} IN A {v4(i)}")
        hosts += 1
        if i % 2 == 0 and not full():
            rrs.append(f"host{i:07d} IN AAAA {v6(i)}")
            aaaa.append(i)
    if not full():
        rrs.append(f"alias{aliases:06d} IN CNAME host{rnd.randrange(hosts):07d}")
        aliases += 1
    if block % 5 == 0 and not full():
        rrs.append(f'txt{txts:05d} IN TXT "token={rnd.getrandbits(128):032x}"')
        txts += 1
    if block % 50 == 0 and not full():
        rrs.append(f"mxdom{mxdoms:04d} IN MX 10 mail1.{O}")
        if not full():
            rrs.append(f"mxdom{mxdoms:04d} IN A {v4(mxdoms)}")
        mxdoms += 1
    block += 1

assert len(rrs) == NREC, (len(rrs), NREC)
base = f"{out}/big-{NREC}"
with open(f"{base}.zone", "w") as f:
    f.write("\n".join(head + rrs) + "\n")

q = []
for _ in range(NQUERIES):
    r = rnd.random()
    if r < 0.80:
        q.append(f"host{rnd.randrange(hosts):07d}.{O} A")
    elif r < 0.90:
        q.append(f"host{rnd.choice(aaaa):07d}.{O} AAAA")
    elif r < 0.95:
        q.append(f"nx{rnd.getrandbits(40):010x}.{O} A")
    elif r < 0.97 and aliases:
        q.append(f"alias{rnd.randrange(aliases):06d}.{O} A")
    elif r < 0.985:
        q.append(f"{O} MX" if rnd.random() < 0.5 or not mxdoms else f"mxdom{rnd.randrange(mxdoms):04d}.{O} MX")
    else:
        q.append(f"{O} TXT" if rnd.random() < 0.5 or not txts else f"txt{rnd.randrange(txts):05d}.{O} TXT")
with open(f"{base}.queries.txt", "w") as f:
    f.write("\n".join(q) + "\n")
print(f"{base}.zone: {len(rrs)} RRs ({hosts} hosts, {len(aaaa)} AAAA, {aliases} CNAME, {txts} TXT, "
      f"{mxdoms} MX names); {len(q)} queries")
