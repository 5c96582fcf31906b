"""cantools as the reference peer for fleet-agent's CAN decoders.

Driven by agent/tests/decode_can_peer.rs, agent/tests/j1939_peer.rs and the
decode_throughput benchmark through FLEET_TEST_PYTHON. Subcommands:

  decode DBC LOG         decode a candump log (-l or default format) with cantools;
                         one JSON line per decoded frame, in log order
  generate DBC LOG SEED N
                         for every message of DBC, N frames encoded by cantools
                         from random valid values (seeded); writes the candump -l
                         LOG and prints one JSON line per frame with the values
                         that encoded it
  j1939 DBC LOG SEED     J1939 frames encoded by cantools from the parameter
                         groups of DBC (PGN-matched, any source address), plus a
                         DM1 of 14 codes sent as BAM and another as RTS/CTS;
                         writes LOG, prints the encoded values
  bench DBC LOG          time a pass over every frame of LOG: db.decode_message for
                         those the DBC knows (matched exactly or by PGN beforehand,
                         once per distinct id); best of 3;
                         prints {"frames", "decoded", "seconds", "log_frames_per_s"}
"""

import json
import math
import random
import sys
import time

import cantools
from cantools import j1939


def parse_line(line):
    """(timestamp or None, interface, id, extended, data) or None for a non-frame line."""
    parts = line.split()
    if not parts or parts[0].startswith("#"):
        return None
    ts = None
    if parts[0].startswith("("):
        ts = parts[0].strip("()")
        parts = parts[1:]
    if len(parts) >= 2 and "#" in parts[1]:
        ident, data = parts[1].split("#", 1)
        if data.startswith("R") or data.startswith("#"):
            return None
        return ts, parts[0], int(ident, 16), len(ident) == 8, bytes.fromhex(data)
    if len(parts) >= 3 and parts[2].startswith("["):
        if len(parts) > 3 and parts[3] == "remote":
            return None
        n = int(parts[2].strip("[]"))
        return ts, parts[0], int(parts[1], 16), len(parts[1]) == 8, bytes.fromhex("".join(parts[3 : 3 + n]))
    return None


class Lookup:
    """Exact frame id first, then a J1939 parameter group of the same PGN."""

    def __init__(self, db):
        self.db = db
        self.by_id = {(m.frame_id, m.is_extended_frame): m for m in db.messages}
        self.by_pgn = {}
        for m in db.messages:
            if m.protocol == "j1939" and m.is_extended_frame:
                self.by_pgn.setdefault(j1939.pgn_from_frame_id(m.frame_id), m)

    def __call__(self, ident, extended):
        m = self.by_id.get((ident, extended))
        if m is None and extended and self.by_pgn:
            m = self.by_pgn.get(j1939.pgn_from_frame_id(ident))
        return m


def plain(v):
    if isinstance(v, float) and v.is_integer() and abs(v) < 9e15:
        return int(v)
    return v


def signal_json(m, decoded):
    out = {}
    for name, v in decoded.items():
        if hasattr(v, "name"):  # a NamedSignalValue: the value-table name
            out[name] = {"choice": str(v.name), "value": plain(v.value)}
        else:
            out[name] = {"value": plain(float(v))}
    return out


def cmd_decode(dbc, log):
    db = cantools.database.load_file(dbc, strict=False)
    lookup = Lookup(db)
    with open(log, encoding="utf-8", errors="replace") as f:
        for line in f:
            fr = parse_line(line)
            if fr is None:
                continue
            _, iface, ident, ext, data = fr
            m = lookup(ident, ext)
            if m is None:
                continue
            decoded = m.decode(data, decode_choices=True, scaling=True, allow_truncated=True)
            print(json.dumps({"id": ("%08X" if ext else "%03X") % ident, "message": m.name,
                              "signals": signal_json(m, decoded)}))


def random_frame(rng, m):
    """Random bytes decoded by cantools give a valid value set (multiplexors
    included); cantools then encodes that set, and the encoded frame and values
    are the test case."""
    # Multiplexed messages define few multiplexor values: keep drawing.
    for _ in range(50_000):
        raw = bytes(rng.getrandbits(8) for _ in range(m.length))
        try:
            values = m.decode(raw, decode_choices=False, scaling=True)
        except cantools.database.DecodeError:
            continue  # a multiplexor value no signal is defined for
        if any(isinstance(v, float) and not math.isfinite(v) for v in values.values()):
            continue
        data = m.encode(values, scaling=True, padding=False, strict=False)
        return data, values
    raise SystemExit("no finite values for " + m.name)


def cmd_generate(dbc, log, seed, n):
    db = cantools.database.load_file(dbc, strict=False)
    rng = random.Random(int(seed))
    t = 1_700_000_000_000_000
    with open(log, "w") as f:
        for m in db.messages:
            if m.length > 8:
                continue
            for _ in range(int(n)):
                data, values = random_frame(rng, m)
                t += 1000
                ident = ("%08X" if m.is_extended_frame else "%03X") % m.frame_id
                f.write("(%d.%06d) vcan0 %s#%s\n" % (t // 1_000_000, t % 1_000_000, ident, data.hex().upper()))
                print(json.dumps({"id": ident, "message": m.name,
                                  "signals": {k: plain(float(v)) for k, v in values.items()}}))


def tp_frames(sa, da, pgn, payload, t, rts):
    """(timestamp, id, data) of a J1939-21 transport session carrying payload."""
    size, packets = len(payload), (len(payload) + 6) // 7
    p = [pgn & 0xFF, (pgn >> 8) & 0xFF, (pgn >> 16) & 0xFF]
    cm = lambda src, dst: j1939.frame_id_pack(7, 0, 0, 0xEC, dst, src)
    dt = j1939.frame_id_pack(7, 0, 0, 0xEB, da, sa)
    out = []
    if rts:
        out.append((t, cm(sa, da), bytes([0x10, size & 0xFF, size >> 8, packets, 0xFF] + p)))
        # The receiver takes the message in windows of 4 packets.
        seq = 1
        while seq <= packets:
            t += 20_000
            n = min(4, packets - seq + 1)
            out.append((t, cm(da, sa), bytes([0x11, n, seq, 0xFF, 0xFF] + p)))
            for s in range(seq, seq + n):
                t += 10_000
                chunk = payload[(s - 1) * 7 : s * 7].ljust(7, b"\xff")
                out.append((t, dt, bytes([s]) + chunk))
            seq += n
        t += 10_000
        out.append((t, cm(da, sa), bytes([0x13, size & 0xFF, size >> 8, packets, 0xFF] + p)))
    else:
        out.append((t, cm(sa, 0xFF), bytes([0x20, size & 0xFF, size >> 8, packets, 0xFF] + p)))
        for s in range(1, packets + 1):
            t += 50_000
            chunk = payload[(s - 1) * 7 : s * 7].ljust(7, b"\xff")
            out.append((t, j1939.frame_id_pack(7, 0, 0, 0xEB, 0xFF, sa), bytes([s]) + chunk))
    return out


def cmd_j1939(dbc, log, seed):
    db = cantools.database.load_file(dbc, strict=False)
    rng = random.Random(int(seed))
    t = 1_700_000_000_000_000
    frames, expected = [], []
    for m in db.messages:
        if m.name == "DM1":
            continue
        for _ in range(5):
            sa = rng.choice([0x00, 0x03, 0x17, 0x21])
            values = {}
            for s in m.signals:
                # Valid values: below the J1939 "error" range of the field.
                top = (0xFA << (s.length - 8)) if s.length >= 8 else (1 << s.length) - 1
                raw = rng.randrange(0, top)
                values[s.name] = raw * s.scale + s.offset
            data = m.encode(values, scaling=True, strict=False)
            fid = m.frame_id & ~0xFF | sa
            t += 10_000
            frames.append((t, fid, data))
            expected.append({"pgn": j1939.pgn_from_frame_id(m.frame_id), "source": sa,
                             "spns": {str(s.spn): values[s.name] for s in m.signals if s.spn}})
    dm1 = db.get_message_by_name("DM1")
    for sa, da, rts in [(0x00, 0xFF, False), (0x03, 0x21, True)]:
        codes = [{"spn": rng.randrange(1, 1 << 19), "fmi": rng.randrange(0, 32), "oc": rng.randrange(1, 127)}
                 for _ in range(14)]
        values = {"MIL": 1, "RedStop": 0, "AmberWarning": 1, "Protect": 0, "FlashMIL": 3,
                  "FlashRedStop": 3, "FlashAmberWarning": 1, "FlashProtect": 3}
        for i, c in enumerate(codes, 1):
            values[f"DTC{i}_SPN_LO"] = c["spn"] & 0xFFFF
            values[f"DTC{i}_SPN_HI"] = c["spn"] >> 16
            values[f"DTC{i}_FMI"] = c["fmi"]
            values[f"DTC{i}_OC"] = c["oc"]
            values[f"DTC{i}_CM"] = 0
        payload = dm1.encode(values, strict=False)
        t += 100_000
        frames.extend(tp_frames(sa, da, j1939.pgn_from_frame_id(dm1.frame_id), payload, t, rts))
        t = frames[-1][0]
        expected.append({"pgn": 65226, "source": sa, "dm1": codes, "lamps": 0x44})
    frames.sort(key=lambda f: f[0])
    with open(log, "w") as f:
        for ts, fid, data in frames:
            f.write("(%d.%06d) can0 %08X#%s\n" % (ts // 1_000_000, ts % 1_000_000, fid, data.hex().upper()))
    for e in expected:
        print(json.dumps(e))


def cmd_bench(dbc, log):
    db = cantools.database.load_file(dbc, strict=False)
    lookup = Lookup(db)
    frames = []
    with open(log) as f:
        for line in f:
            fr = parse_line(line)
            if fr is not None:
                frames.append((fr[2], fr[3], fr[4]))
    # The id -> message match (exact, then PGN) is resolved once per distinct id
    # outside the timing, so the loop times cantools, not this script's glue.
    known = {}
    for ident, ext, _ in frames:
        if (ident, ext) not in known:
            m = lookup(ident, ext)
            known[(ident, ext)] = None if m is None else m.frame_id
    best, decoded = None, 0
    for _ in range(3):
        decoded = 0
        start = time.perf_counter()
        for ident, ext, data in frames:
            fid = known[(ident, ext)]
            if fid is not None:
                db.decode_message(fid, data)
                decoded += 1
        secs = time.perf_counter() - start
        best = secs if best is None else min(best, secs)
    print(json.dumps({"frames": len(frames), "decoded": decoded, "seconds": best,
                      "log_frames_per_s": len(frames) / best}))


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    {"decode": cmd_decode, "generate": cmd_generate, "j1939": cmd_j1939, "bench": cmd_bench}[cmd](*args)
