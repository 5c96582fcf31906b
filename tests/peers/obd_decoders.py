"""python-OBD's own mode 01 decoders on seeded random payloads, one JSON line each.

Usage: obd_decoders.py SEED CASES_PER_PID

For every mode 01 command python-OBD defines in PIDs 0x00-0x5F, the script builds
CASES_PER_PID payloads of the command's data length (all-zero and all-0xFF first,
then random bytes from SEED, biased to single bits and small numbers so the state
and table PIDs hit their valid values), runs python-OBD's decoder on a synthetic CAN message
(no adapter, no I/O) and prints
    {"pid": "0C", "name": "RPM", "data": "1AF8", "value": ...}
with the value normalised to plain JSON: a quantity as {"value": x, "unit": "..."},
a supported-PID bitmap as the PIDs it announces, O2 sensor tables as "B1S1"-style
names, a DTC tuple as its code, a monitor status as its fields and tests.

python-OBD 0.7.3 has no decoder for PID 0xA6 (odometer); its lines carry
"decoder": "J1979" and the SAE J1979 formula (A..D / 10 km) instead.
"""

import json
import random
import sys

import obd
from obd.OBDResponse import Status
from obd.protocols import ECU
from obd.protocols.protocol import Frame, Message
from obd.utils import BitArray


def normalise(pid, value):
    if value is None or isinstance(value, (bool, str, int, float)):
        return value
    if hasattr(value, "magnitude") and hasattr(value, "units"):
        return {"value": float(value.magnitude), "unit": str(value.units)}
    if isinstance(value, BitArray):
        base = pid
        return ["%02X" % (base + i + 1) for i, bit in enumerate(value) if bit]
    if isinstance(value, Status):
        tests = {}
        for name, test in vars(value).items():
            if name and hasattr(test, "available"):
                tests[name] = [bool(test.available), bool(test.complete)]
        return {
            "mil": value.MIL,
            "dtc_count": value.DTC_count,
            "ignition": value.ignition_type,
            "tests": tests,
        }
    if pid in (0x13, 0x1D):
        # ((), (bank 1 sensors), (bank 2 sensors), ...) -> ["B1S1", ...]
        return [
            "B%dS%d" % (bank, sensor + 1)
            for bank, sensors in enumerate(value)
            for sensor, present in enumerate(sensors)
            if present
        ]
    if pid == 0x02:
        return value[0]
    if isinstance(value, (tuple, list)):
        return [normalise(pid, v) for v in value]
    raise TypeError("PID %02X: cannot normalise %r" % (pid, value))


def random_byte(rng):
    """Any byte, a single bit (the state enums) or a small number (the tables)."""
    kind = rng.randrange(3)
    if kind == 0:
        return 1 << rng.randrange(8)
    if kind == 1:
        return rng.randrange(40)
    return rng.randrange(256)


def decode(command, data):
    message = Message([Frame("")])
    message.ecu = ECU.ENGINE
    message.data = bytearray([0x41, command.pid] + data)
    return command([message]).value


def decoded(command, data):
    """The normalised value, or {"python_error": ...} where python-OBD raises
    (0.7.3's AIR_STATUS indexes past its table for bits 4-7)."""
    try:
        return normalise(command.pid, decode(command, data))
    except (IndexError, KeyError, ValueError) as e:
        return {"python_error": "%s: %s" % (type(e).__name__, e)}


def main():
    seed, cases = int(sys.argv[1]), int(sys.argv[2])
    rng = random.Random(seed)
    for command in obd.commands[1][: 0x60]:
        if command is None:
            continue
        n = command.bytes - 2
        payloads = [[0] * n, [0xFF] * n]
        payloads += [[random_byte(rng) for _ in range(n)] for _ in range(cases - 2)]
        for data in payloads:
            print(json.dumps({
                "pid": "%02X" % command.pid,
                "name": command.name,
                "data": bytes(data).hex().upper(),
                "value": decoded(command, data),
            }))
    for _ in range(cases):
        data = [rng.randrange(256) for _ in range(4)]
        print(json.dumps({
            "pid": "A6",
            "name": "ODOMETER",
            "decoder": "J1979",
            "data": bytes(data).hex().upper(),
            "value": {"value": int.from_bytes(bytes(data), "big") / 10.0, "unit": "kilometer"},
        }))


if __name__ == "__main__":
    main()
