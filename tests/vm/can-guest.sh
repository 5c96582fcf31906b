# Runs inside the guest (busybox sh; tests/vm/run-can-test puts it there as
# /guest/test.sh). The agent reads vcan0 while `fleet-agent can play` puts a real
# J1939 truck log and a few error frames on the bus, and `fleet-agent can record`
# records the bus. Prints sections for the host to check; exits non-zero only
# when a step could not run at all.
truck=/guest/truck.log
errors=/guest/errors.log
played=$(( $(grep -c '#' "$truck") + $(grep -c '#' "$errors") ))
data=/tmp/agent
mkdir -p "$data"
cat > /tmp/agent.toml <<TOML
version = 1
data_dir = "$data"
[log]
level = "info"
[sync]
enabled = false
[sources.can]
interface = "vcan0"
TOML

fleet-agent validate --config /tmp/agent.toml || exit 10
fleet-agent run --config /tmp/agent.toml >/tmp/agent.out 2>&1 &
agent=$!
fleet-agent can record --interface vcan0 --count "$played" --duration 120 /tmp/rec.log 2>/tmp/rec.err &
rec=$!

# Play only once the agent and the recorder both read the bus.
i=0
until grep -q "reading CAN interface" /tmp/agent.out && grep -q "recording vcan0" /tmp/rec.err; do
    i=$((i + 1))
    if [ "$i" -gt 300 ] || ! kill -0 "$agent" 2>/dev/null || ! kill -0 "$rec" 2>/dev/null; then
        echo "== agent-log"; cat /tmp/agent.out
        echo "== record"; cat /tmp/rec.err
        exit 11
    fi
    sleep 0.1
done

echo "== play"
date +%s
fleet-agent can play "$truck" --interface vcan0 --speed 2 2>&1 || exit 12
fleet-agent can play "$errors" --interface vcan0 --speed 0 2>&1 || exit 13
date +%s

wait "$rec"
rec_rc=$?
echo "== record"
cat /tmp/rec.err
echo "exit $rec_rc"

# The interface goes down under the agent (an adapter unplugged, a link reset)
# and comes back: it must say so once, retry with backoff and read again.
ip link set vcan0 down
sleep 3
ip link set vcan0 up
i=0
until grep -q "CAN interface back" /tmp/agent.out || [ "$i" -gt 200 ]; do
    i=$((i + 1))
    sleep 0.1
done
head -n 200 "$truck" > /tmp/after.log
fleet-agent can play /tmp/after.log --interface vcan0 --speed 0 2>&1 || exit 16

# Let the agent's pipeline drain, then stop it the way systemd does.
sleep 1
kill -TERM "$agent"
wait "$agent"
agent_rc=$?
echo "== agent-exit"
echo "$agent_rc"
echo "== agent-log"
cat /tmp/agent.out
echo "== events"
fleet-agent events --json --data "$data"

# A reader that stops reading: the kernel drops what overflows its receive queue
# and tells the next frame how many (SO_RXQ_OVFL). Every frame played must be
# either recorded or counted as dropped.
fleet-agent can record --interface vcan0 /tmp/stalled.log 2>/tmp/stalled.err &
stalled=$!
i=0
until grep -q "recording vcan0" /tmp/stalled.err || [ "$i" -gt 300 ]; do
    i=$((i + 1))
    sleep 0.1
done
kill -STOP "$stalled"
fleet-agent can play "$truck" --interface vcan0 --speed 0 2>&1 || exit 14
kill -CONT "$stalled"
sleep 1
fleet-agent can play "$errors" --interface vcan0 --speed 0 2>&1 || exit 15
sleep 1
kill -INT "$stalled"
wait "$stalled"
stalled_rc=$?
echo "== stalled-record"
cat /tmp/stalled.err
echo "exit $stalled_rc"
echo "== recorded-log"
gzip -c /tmp/rec.log | base64
echo "== end"
