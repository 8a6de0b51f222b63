#!/usr/bin/env bash
# Hostile images are refused with a reason an admin can act on, at import
# and again at VM start (a file of the store tampered with after import):
# a backing file outside the store, "..", json:, a device, a loop to
# itself, a cycle, a malformed header, a missing backing format. No QEMU
# runs for a refused start, and the untouched chain still starts.
. "$(dirname "$0")/lib.sh"

start_qmpd

H=$T/hostile
mkdir -p "$H"
mk() { qemu-img create -q -f qcow2 "$@" || fail "qemu-img create $*"; }

# Set a big-endian 32-bit field of a file at an offset.
poke32() {
	python3 - "$1" "$2" "$3" <<'PY'
import struct, sys
with open(sys.argv[1], "r+b") as f:
    f.seek(int(sys.argv[2]))
    f.write(struct.pack(">I", int(sys.argv[3])))
PY
}

# End the header extensions where the backing format one is: no format.
drop_backing_format() {
	python3 - "$1" <<'PY'
import struct, sys
with open(sys.argv[1], "r+b") as f:
    h = f.read(65536)
    off = struct.unpack(">I", h[100:104])[0]
    while off + 8 <= len(h):
        t, l = struct.unpack(">II", h[off:off + 8])
        if t == 0:
            sys.exit("no backing format extension")
        if t == 0xe2792aca:
            f.seek(off)
            f.write(b"\0\0\0\0")
            sys.exit(0)
        off += 8 + ((l + 7) & ~7)
    sys.exit("no end of extensions")
PY
}

# --- at import: each file is refused, nothing lands in the store.
mk "$H/ok.qcow2" 64M
mk -u -b /etc/passwd -F raw "$H/outside.qcow2" 64M
mk -u -b ../../etc/shadow -F raw "$H/dotdot.qcow2" 64M
mk -u -b 'json:{"file.filename":"/etc/shadow"}' -F raw "$H/json.qcow2" 64M
mk -u -b /dev/vda -F raw "$H/device.qcow2" 64M
mk -u -b self.qcow2 -F qcow2 "$H/self.qcow2" 64M
mk -u -b cyc-b.qcow2 -F qcow2 "$H/cyc-a.qcow2" 64M
mk -u -b cyc-a.qcow2 -F qcow2 "$H/cyc-b.qcow2" 64M
cp "$H/ok.qcow2" "$H/malformed.qcow2"
poke32 "$H/malformed.qcow2" 20 99		# cluster_bits
mk -u -b ok.qcow2 -F qcow2 "$H/nofmt.qcow2" 64M
drop_backing_format "$H/nofmt.qcow2" || fail "could not drop the format"

refuse_import() {
	local name=$1 file=$2 want=$3
	shift 3
	q_status 1 image import "$name" "$file" "$@"
	grep -q -- "$want" "$T/last.err" ||
		fail "import $file: wanted '$want', got: $(cat "$T/last.err")"
	log "import $(basename "$file"): $(cat "$T/last.err")"
}
refuse_import e1 "$H/outside.qcow2" 'has a backing file ("/etc/passwd")'
refuse_import e2 "$H/dotdot.qcow2" 'has a backing file ("../../etc/shadow")'
refuse_import e3 "$H/json.qcow2" 'has a backing file ("json:'
refuse_import e4 "$H/device.qcow2" 'has a backing file ("/dev/vda")' 
refuse_import e5 /dev/null "not a regular file" --format raw
refuse_import e6 "$H/self.qcow2" "has a backing file"
refuse_import e7 "$H/cyc-a.qcow2" "has a backing file"
refuse_import e8 "$H/malformed.qcow2" "cluster_bits 99 out of range"
refuse_import e9 "$H/nofmt.qcow2" "has a backing file"
refuse_import e10 "$H/malformed.qcow2" "out of range" --format qcow2
[ "$(q --json image list | jq '.images | length')" = 0 ] ||
	fail "a refused import left an image"
[ -z "$(ls -A "$STATE/images")" ] ||
	fail "a refused import left files: $(ls -A "$STATE/images")"
# The good one goes in.
qq image import base "$H/ok.qcow2" >/dev/null

# --- at VM start: h runs on h-disk > x1 > base; tamper with the files.
qq image clone base x1 >/dev/null
qq vm create h --accel tcg --memory 64 --display none --from x1 \
    --kernel "$GUESTS/vmlinuz" >/dev/null
img_file() { echo "$STATE/images/$(q --json image show "$1" | jq -r .file)"; }
hf=$(img_file h-disk)
xf=$(img_file x1)
cp -p "$hf" "$T/h.pristine"
cp -p "$xf" "$T/x1.pristine"

refuse_start() {
	local want=$1 err
	q_status 1 vm start h
	grep -q -- "$want" "$T/last.err" ||
		fail "start: wanted '$want', got: $(cat "$T/last.err")"
	grep -q "refusing its disk" "$T/last.err" ||
		fail "start: the error does not say the disk: $(cat "$T/last.err")"
	[ "$(vm_field h state)" = stopped ] || fail "h is $(vm_field h state)"
	[ -z "$(vm_pid h)" ] || fail "a QEMU ran for a refused start"
	err=$(cat "$T/last.err")
	q_status 1 image verify h-disk
	grep -q "problem" "$T/last.err" || fail "verify saw nothing"
	log "start: $err"
	cp -p "$T/h.pristine" "$hf"
	cp -p "$T/x1.pristine" "$xf"
}
rebase() { qemu-img rebase -u -f qcow2 "$@" || fail "qemu-img rebase $*"; }

rebase -b /etc/passwd -F raw "$hf"
refuse_start "is an absolute path outside the image store"
rebase -b "../images/$(basename "$xf")" -F qcow2 "$hf"
refuse_start "has a '..' component"
rebase -b 'json:{"file.filename":"/etc/shadow"}' -F raw "$hf"
refuse_start "uses the json: pseudo-protocol"
mknod "$STATE/images/evil-dev" c 1 3
rebase -b evil-dev -F raw "$hf"
refuse_start "not a regular file"
rm -f "$STATE/images/evil-dev"
rebase -b "$(basename "$hf")" -F qcow2 "$hf"
refuse_start "loops"
rebase -b "$(basename "$hf")" -F qcow2 "$xf"
refuse_start "cycle"
poke32 "$hf" 20 99
refuse_start "cluster_bits 99 out of range"
drop_backing_format "$hf" || fail "could not drop the format"
refuse_start "no backing format"
# A lower link broken: the base's header, with a clean top.
cp -p "$(img_file base)" "$T/base.pristine"
poke32 "$(img_file base)" 0 0
refuse_start "bad magic"
cp -p "$T/base.pristine" "$(img_file base)"

# Untouched again, it starts: the refusals were the files' doing.
qq vm start h >/dev/null
[ "$(vm_field h state)" = running ] || fail "h did not start when clean"
qq vm kill h >/dev/null
out=$(qq --json image verify)
[ "$(echo "$out" | jq .ok)" = true ] || fail "verify: $out"
log ok
