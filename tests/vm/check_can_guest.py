#!/usr/bin/env python3
"""Checks what tests/vm/can-guest.sh printed in the guest, on the host.

    check_can_guest.py GUEST_OUTPUT TRUCK_LOG ERRORS_LOG HOST_START HOST_END

Each check prints "ok NAME" or "FAILED NAME: why"; the last line is
"N passed, N failed" and the exit status is 1 when any check failed.
"""

import base64
import gzip
import json
import re
import sys

B64_LINE = re.compile(r"^[A-Za-z0-9+/=]+$")
CANDUMP = re.compile(r"^\((\d+)\.(\d{6})\) (\S+) ([0-9A-F]+)#(\S*)$")

# The DM1 of the truck log (shared/fixtures/README.md): SPN, FMI, occurrence count.
EXPECTED_DTCS = {(980, 9, 126), (3216, 20, 2), (609, 9, 1), (609, 12, 3)}


def sections(text):
    out, name = {}, None
    for line in text.splitlines():
        line = line.rstrip("\r")
        if line.startswith("== "):
            name = line[3:].strip()
            out[name] = []
        elif name is not None:
            out[name].append(line)
    return out


def frames(lines):
    """(time_us, id, data) of each candump -l line, the interface left out."""
    got = []
    for line in lines:
        m = CANDUMP.match(line.strip())
        if m:
            got.append((int(m[1]) * 1_000_000 + int(m[2]), m[4], m[5]))
    return got


class Checks:
    def __init__(self):
        self.passed = self.failed = 0

    def check(self, name, ok, why=""):
        if ok:
            self.passed += 1
            print(f"ok {name}")
        else:
            self.failed += 1
            print(f"FAILED {name}: {why}")


def main():
    guest_out, truck, errors, host_start, host_end = sys.argv[1:6]
    host_start, host_end = int(host_start), int(host_end)
    s = sections(open(guest_out, encoding="utf-8", errors="replace").read())
    played = frames(open(truck).read().splitlines())
    played_errors = frames(open(errors).read().splitlines())
    c = Checks()

    for name in ("play", "record", "agent-exit", "agent-log", "events", "stalled-record", "recorded-log", "end"):
        c.check(f"guest printed its {name} section", name in s, "missing")

    # The recording: every frame played, in order, with kernel receive times.
    blob = "".join(line.strip() for line in s.get("recorded-log", []) if B64_LINE.match(line.strip()))
    try:
        recorded_text = gzip.decompress(base64.b64decode(blob)).decode()
    except Exception as e:  # a garbled console is a failed check, not a crash
        recorded_text = ""
        c.check("recorded log decodes", False, repr(e))
    rec_lines = recorded_text.splitlines()
    recorded = frames(rec_lines)
    c.check(
        "every recorded line names vcan0",
        rec_lines and all(" vcan0 " in l for l in rec_lines),
        f"{len(rec_lines)} lines",
    )
    rec_data = [(i, d) for _, i, d in recorded if not (len(i) == 8 and int(i, 16) & 0x20000000)]
    rec_err = [(i, d) for _, i, d in recorded if len(i) == 8 and int(i, 16) & 0x20000000]
    want_data = [(i, d) for _, i, d in played]
    c.check(
        "can record got back every played data frame in order",
        rec_data == want_data,
        f"recorded {len(rec_data)} data frames, played {len(want_data)}; first difference at "
        + str(next((k for k, (a, b) in enumerate(zip(rec_data, want_data)) if a != b), min(len(rec_data), len(want_data)))),
    )
    c.check(
        "can record kept the error frames as candump writes them",
        rec_err == [(i, d) for _, i, d in played_errors],
        f"{rec_err}",
    )
    times = [t for t, _, _ in recorded]
    c.check(
        "recorded times are kernel receive times of this run",
        times
        and all(a <= b for a, b in zip(times, times[1:]))
        and host_start - 5 <= times[0] / 1e6 <= host_end + 5,
        f"first {times[:1]}, host run {host_start}..{host_end}",
    )
    if len(times) >= len(want_data) > 1:
        span = (times[len(want_data) - 1] - times[0]) / 1e6
        log_span = (played[-1][0] - played[0][0]) / 1e6
        # Played at --speed 2, so never in less than half the log's span. Three
        # debug builds on one emulated CPU carry about 200 frames/s, so the guest
        # falls behind the log's 360 frames/s; the upper bound only catches a
        # player that stalls.
        c.check(
            f"play is paced at --speed 2 (recorded span {span:.2f} s for a {log_span:.2f} s log)",
            log_span / 2 * 0.95 <= span <= log_span / 2 * 8,
            "out of bounds",
        )
    rec_summary = " ".join(s.get("record", []))
    c.check(
        "can record counted the error frames, one bus-off and the controller's rx overflow",
        "4 error frames, 1 bus-off, 1 overflows" in rec_summary and "exit 0" in rec_summary,
        rec_summary,
    )

    stalled = " ".join(s.get("stalled-record", []))
    m = re.search(r"(\d+) data, (\d+) error frames, \d+ bus-off, (\d+) overflows", stalled)
    if m:
        data_n, err_n, overflows = map(int, m.groups())
        # One overflow is the controller's rx-overflow error frame; the rest are the
        # kernel's count of frames it dropped for us.
        dropped = overflows - 1
        c.check(
            f"a stalled reader: {data_n} frames recorded + {dropped} counted as dropped by the kernel"
            f" = {len(played)} played",
            dropped > 0 and data_n + dropped == len(played) and err_n == len(played_errors),
            stalled,
        )
        c.check(
            "the drops were logged",
            "kernel dropped CAN frames" in stalled and "exit 0" in stalled,
            stalled,
        )
    else:
        c.check("stalled reader summary printed", False, stalled)

    # The agent: ran on vcan0, saw the faults and the engine, logged bus-off once.
    c.check("agent stopped cleanly on SIGTERM", s.get("agent-exit", ["?"])[:1] == ["0"], s.get("agent-exit"))
    log = "\n".join(s.get("agent-log", []))
    c.check("agent logged bus-off once", log.count("CAN bus-off") == 1, f"{log.count('CAN bus-off')} times")
    c.check("agent saw the controller restart", "restarted after bus-off" in log, "no restart line")
    c.check(
        "agent said once that vcan0 went down, then read it again once it was back",
        # The error surfaces once the agent has read what was queued before the
        # link went down; if the link is still down then, one "cannot open" too.
        log.count("vcan0 is down") in (1, 2)
        and log.count("cannot open CAN interface") <= 1
        and log.count("CAN interface back; reading again") == 1,
        [l for l in log.splitlines() if "vcan0" in l and "bus-off" not in l],
    )
    events = []
    for line in s.get("events", []):
        line = line.strip()
        if line.startswith("{"):
            try:
                events.append(json.loads(line))
            except json.JSONDecodeError:
                pass
    dtcs = {
        (e["data"].get("spn"), e["data"].get("fmi"), e["data"].get("oc"))
        for e in events
        if e.get("kind") == "dtc_set"
    }
    c.check("DM1 faults recorded (SPN 980 FMI 9 OC 126 and the other three)", dtcs == EXPECTED_DTCS, sorted(dtcs))
    rpm = [e["data"]["engine_speed_rpm"] for e in events if "engine_speed_rpm" in e.get("data", {})]
    c.check("idle engine speed recorded", bool(rpm) and all(640 <= r <= 660 for r in rpm), rpm)
    kinds = [e.get("kind") for e in events]
    c.check("ignition inferred from the engine", "ignition_on" in kinds, kinds)
    walls = [e.get("wall_ms", 0) / 1000 for e in events]
    c.check(
        "events carry the guest's wall time",
        bool(walls) and all(host_start - 5 <= w <= host_end + 5 for w in walls),
        walls[:3],
    )

    print(f"vcan-guest: {c.passed} passed, {c.failed} failed")
    return 1 if c.failed else 0


if __name__ == "__main__":
    sys.exit(main())
