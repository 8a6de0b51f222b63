#!/usr/bin/env bash
# Item 1 of issue 12's SPICE work: one guest under a bare QEMU (no qmpd),
# its display device and -spice options given on the command line, seen
# for SECONDS by tests/spice-probe --display (plaintext port on loopback:
# the bytes are SPICE messages, TLS adds ~1%). Prints one line: frames/s,
# draws, stream frames, KiB/s and Mbit/s, QEMU's CPU. As root; QEMU runs
# as qdesk-vm in a private dir that is removed on exit.
#
#   bench/transport/spice-options.sh redraw|video DEVICE "SPICE-OPTS" [SECONDS]
#   e.g. spice-options.sh redraw qxl-vga "image-compression=glz" 8
set -u
top=$(cd "$(dirname "$0")/../.." && pwd)
guest=${1:?redraw or video} dev=${2:?device} opts=${3-} secs=${4:-8}
case $guest in
redraw)	img=boot-redraw.img mem=32 up="" ;;
video)	img=video.img mem=512 up="QDESK VIDEO UP" ;;
*)	echo "spice-options.sh: unknown guest $guest (redraw or video)" >&2
	exit 2 ;;
esac
d=$(mktemp -d /tmp/qdesk-spiceopt.XXXXXX)
qp=
trap '[ -n "$qp" ] && kill "$qp" 2>/dev/null && wait "$qp" 2>/dev/null; rm -rf "$d"' EXIT
cp --sparse=always "$top/build/guests/$img" "$d/disk.img"
chown -R qdesk-vm "$d"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
setpriv --reuid qdesk-vm --regid "$(id -g qdesk-vm)" --clear-groups \
    qemu-system-x86_64 -accel tcg -machine pc -nodefaults -display none \
    -m "$mem" -device "$dev" -drive "file=$d/disk.img,format=raw,if=virtio" \
    -serial "file:$d/serial.log" \
    -spice "port=$port,addr=127.0.0.1,disable-ticketing=on${opts:+,$opts}" \
    >"$d/qemu.log" 2>&1 &
qp=$!
for _ in $(seq 1 120); do
	if [ -z "$up" ]; then sleep 4; break; fi
	grep -q "$up" "$d/serial.log" 2>/dev/null && { sleep 2; break; }
	sleep 1
done
kill -0 "$qp" 2>/dev/null || { echo "QEMU died: $(cat "$d/qemu.log")" >&2; exit 1; }
c0=$(awk '{print $14 + $15}' "/proc/$qp/stat")
out=$("$top/build/broker/spice-probe" 127.0.0.1 "$port" x --display "$secs" 2>&1 | grep ^display)
c1=$(awk '{print $14 + $15}' "/proc/$qp/stat")
echo "$guest $dev ${opts:-(defaults)}: $out; QEMU CPU $(( (c1 - c0) * 100 / $(getconf CLK_TCK) / secs ))%" |
    sed -E 's/\(([0-9]+) KiB\/s\)/(\1 KiB\/s, Mbit\/s~\1)/' |
    awk '{ if (match($0, /Mbit\/s~[0-9]+/)) { k = substr($0, RSTART + 7, RLENGTH - 7); sub(/Mbit\/s~[0-9]+/, sprintf("%.1f Mbit/s", k * 8 * 1024 / 1e6)) } print }'
