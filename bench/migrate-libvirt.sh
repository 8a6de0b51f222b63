# Sourced by bench/migrate.sh: libvirt's `virsh migrate --live` as the
# anchor (issue 14), the same tiny TCG guest (256 MiB, the same kernel,
# initrd and command line, no disk) between two private session
# libvirtds on this machine, in the same run as qdesk's migrations.
#
# Each daemon runs as the VM user with its own XDG dirs under $T/lvN (its
# unix socket, config, logs; no TCP port, no network defined) and its own
# host_uuid in its libvirtd.conf: libvirt refuses a migration between two
# daemons with the same host UUID ("the same host"). The stream goes over
# tcp://127.0.0.1 (libvirt's own port range), libvirt's defaults
# otherwise (QEMU's 300 ms downtime limit; qdesk's is 100 ms). Figures
# from `virsh domjobinfo --completed` on the target: "Total downtime" and
# "Time elapsed".
#
# Needs libvirt-daemon-system and libvirt-clients (Debian): installed
# here when missing, the bench's own setup.

LV_PIDS=
LV_USER=${QDESK_VM_USER:-qdesk-vm}

lv_setup() {
	[ -x /usr/sbin/libvirtd ] && command -v virsh >/dev/null && return 0
	note "installing libvirt-daemon-system libvirt-clients (the anchor)"
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
	    --no-install-recommends libvirt-daemon-system libvirt-clients \
	    libvirt-daemon-driver-qemu >"$T/apt.log" 2>&1 ||
		die "apt-get install libvirt: $(tail -n 2 "$T/apt.log")"
}

lv_env() { # N: the environment of daemon N and its clients
	local L=$T/lv$1
	echo HOME="$L/home" XDG_RUNTIME_DIR="$L/run" XDG_CONFIG_HOME="$L/cfg" \
	    XDG_CACHE_HOME="$L/cache" XDG_DATA_HOME="$L/data"
}

lvsh() { # N ARGS: virsh against daemon N
	local n=$1
	shift
	# shellcheck disable=SC2046
	setpriv --reuid="$LV_USER" --regid="$LV_USER" --init-groups \
	    env $(lv_env "$n") virsh -q -c qemu:///session "$@"
}

lv_up() { # N
	local L=$T/lv$1 i pid
	mkdir -p "$L/home" "$L/run" "$L/cfg/libvirt" "$L/cache" "$L/data"
	printf 'host_uuid = "%s"\n' "$(cat /proc/sys/kernel/random/uuid)" \
	    >"$L/cfg/libvirt/libvirtd.conf"
	chown -R "$LV_USER" "$L"
	chmod 700 "$L/run"
	# shellcheck disable=SC2046
	setpriv --reuid="$LV_USER" --regid="$LV_USER" --init-groups \
	    env $(lv_env "$1") /usr/sbin/libvirtd >"$L/libvirtd.log" 2>&1 &
	pid=$!
	LV_PIDS="$LV_PIDS $pid"
	for i in $(seq 1 200); do
		[ -S "$L/run/libvirt/libvirt-sock" ] &&
		    lvsh "$1" version >/dev/null 2>&1 && return 0
		kill -0 "$pid" 2>/dev/null ||
			die "libvirtd $1 exited: $(tail -n 2 "$L/libvirtd.log")"
		sleep 0.1
	done
	die "libvirtd $1 does not answer: $(tail -n 2 "$L/libvirtd.log")"
}

# Both daemons, their QEMUs and virtlogds: by pid, and by the private
# dirs in their command lines or environment.
lv_down() {
	local p
	for p in $LV_PIDS; do kill -TERM "$p" 2>/dev/null; done
	for p in /proc/[0-9]*; do
		[ "${p#/proc/}" = $$ ] && continue
		if { tr '\0' ' ' <"$p/cmdline"; } 2>/dev/null | grep -qF "$T/lv"; then
			kill -9 "${p#/proc/}" 2>/dev/null
		elif { grep -qzF "XDG_RUNTIME_DIR=$T/lv" "$p/environ"; } 2>/dev/null; then
			kill -9 "${p#/proc/}" 2>/dev/null
		fi
	done
	LV_PIDS=
}

# lv_xml TYPE NAME MIB OS DEVICES: a domain of one vCPU on QEMU's pc
# machine, its serial console to $T/lvg/NAME.serial; OS and DEVICES are
# the lines that boot it (inside <os>, inside <devices>).
lv_xml() {
	cat <<XML
<domain type='$1'>
  <name>$2</name>
  <memory unit='MiB'>$3</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
$4
  </os>
  <devices>
    <emulator>$(command -v qemu-system-x86_64)</emulator>
${5:+$5
}    <serial type='file'><source path='$T/lvg/$2.serial' append='on'/><target port='0'/></serial>
    <video><model type='vga'/></video>
    <memballoon model='none'/>
  </devices>
</domain>
XML
}

# The tiny Linux guest under TCG: kernel and initrd, no disk.
lv_domain() { # NAME MIB
	lv_xml qemu "$1" "$2" "    <kernel>$T/lvg/vmlinuz</kernel>
    <initrd>$T/lvg/initrd.img</initrd>
    <cmdline>console=ttyS0</cmdline>"
}

# The busy guest's boot sector (bench/migrate-busy.sh) under KVM, on
# IDE like qdesk's, the image shared by both daemons.
lv_domain_busy() { # NAME MIB
	lv_xml kvm "$1" "$2" "    <boot dev='hd'/>" \
	    "    <disk type='file' device='disk'>
      <driver name='qemu' type='raw'/>
      <source file='$T/lvg/$1.img'/>
      <target dev='hda' bus='ide'/>
    </disk>"
}

# lv_create_idle NAME MIB: the tiny Linux guest started on daemon 1,
# once its shell prompt is on the serial console (or 30 s went by).
lv_create_idle() {
	local i
	lv_domain "$1" "$2" >"$T/$1.xml"
	lvsh 1 create "$T/$1.xml" >/dev/null || die "virsh create $1"
	for i in $(seq 1 100); do
		grep -aq "# " "$T/lvg/$1.serial" 2>/dev/null && break
		sleep 0.3
	done
}

# One migration of NAME from daemon FROM to TO (further arguments go to
# virsh migrate): "downtime_ms total_ms wall_ms ram_mib".
lv_migrate() {
	local name=$1 from=$2 to=$3 t0 t1 info
	shift 3
	t0=$(date +%s%3N)
	lvsh "$from" migrate --live --unsafe "$name" \
	    "qemu+unix:///session?socket=$T/lv$to/run/libvirt/libvirt-sock" \
	    --migrateuri tcp://127.0.0.1 "$@" >"$T/lv-mig.log" 2>&1 ||
		die "virsh migrate $from -> $to: $(tail -n 2 "$T/lv-mig.log")"
	t1=$(date +%s%3N)
	info=$(lvsh "$to" domjobinfo "$name" --completed)
	echo "$(awk -F: '/Total downtime/ { print $2 + 0 }' <<<"$info") $(awk -F: '/Time elapsed:/ { print $2 + 0; exit }' <<<"$info") $((t1 - t0)) $(awk -F: '/Memory processed/ { v = $2 + 0; if ($2 ~ /GiB/) v *= 1024; if ($2 ~ /KiB/) v /= 1024; printf "%d", v }' <<<"$info")"
}

# A busy row through libvirt: N migrations back and forth of IMG with
# RAM MiB (virsh --timeout: after that libvirt suspends the guest to
# finish, its way out of a migration that does not converge), then one
# more pass of the guest and its check, as busy_row does for qdesk.
lv_busy_row() { # LABEL IMG RAM
	local label=$1 img=$2 ram=$3 name here there i f np p g b
	name=lvb$ram${img%.img}
	name=${name//-/}
	f=$T/lvg/$name.serial
	cp "$GUESTS/$img" "$T/lvg/$name.img"
	chown "$LV_USER" "$T/lvg/$name.img"
	lv_domain_busy "$name" "$ram" >"$T/$name.xml"
	lvsh 1 create "$T/$name.xml" >/dev/null || die "virsh create $name"
	busy_wait "$f" -- 120 'b >= 0'
	np=$(busy_pages "$f")
	[ "$np" -gt 0 ] && busy_wait "$f" -- 180 'p >= 1'
	here=1
	: >"$T/lvbusy"
	for i in $(seq 1 "$N"); do
		there=$((3 - here))
		: >"$T/follow"
		python3 "$top/tests/lib/serial-follow.py" "$T/follow" "$f" &
		FOLLOW=$!
		sleep 0.3
		read -r d t w r <<<"$(lv_migrate "$name" "$here" "$there" --timeout "$BUSY_TIMEOUT")"
		sleep 1
		kill "$FOLLOW"; FOLLOW=
		echo "$d $t $w $r $(awk '$3 == "CTR" { if (l != "" && $1 - l > m) m = $1 - l; l = $1 }
		    END { printf "%d", m * 1000 }' "$T/follow") $(busy_rate "$T/follow" "${np:-0}")" >>"$T/lvbusy"
		here=$there
	done
	if [ "$np" -gt 0 ]; then
		read -r p g b <<<"$(busy_pos "$f")"
		busy_wait "$f" -- 240 "p > $((p + 1)) || (p == $((p + 1)) && g >= $g)"
	fi
	read -r p g b <<<"$(busy_pos "$f")"
	local mem=intact
	if grep -aq CORRUPT "$f" || [ "${b:-1}" != 0 ]; then
		mem=CORRUPT
		note "libvirt $label: CORRUPT: $b bad pages; the figures are worthless"
	fi
	read -r dp50 dmax <<<"$(cut -d' ' -f1 "$T/lvbusy" | pct)"
	read -r tp50 tmax <<<"$(cut -d' ' -f2 "$T/lvbusy" | pct)"
	read -r wp50 wmax <<<"$(cut -d' ' -f3 "$T/lvbusy" | pct)"
	read -r rp50 x <<<"$(cut -d' ' -f4 "$T/lvbusy" | pct)"
	read -r gp50 gmax <<<"$(cut -d' ' -f5 "$T/lvbusy" | pct)"
	read -r ratep50 x <<<"$(cut -d' ' -f6 "$T/lvbusy" | pct)"
	printf 'libvirt %s: downtime p50 %d max %d ms; total (libvirt) p50 %d max %d ms; virsh migrate p50 %d max %d ms; RAM sent p50 %d MiB; largest counter gap p50 %d max %d ms; dirtying %d MiB/s; memory %s\n' \
	    "$label" "$dp50" "$dmax" "$tp50" "$tmax" "$wp50" "$wmax" "$rp50" \
	    "$gp50" "$gmax" "$ratep50" "$mem"
	lvsh "$here" destroy "$name" >/dev/null 2>&1
}

# The TCG rows: N migrations back and forth of the idle 256 MiB
# guest, then one per RAM size.
lv_tcg() {
	local i here there d t w dp50 dmax tp50 tmax wp50 wmax ram

	lv_create_idle lvidle 256
	here=1
	: >"$T/lvidle"
	for i in $(seq 1 "$N"); do
		there=$((3 - here))
		lv_migrate lvidle "$here" "$there" >>"$T/lvidle"
		here=$there
	done
	read -r dp50 dmax <<<"$(cut -d' ' -f1 "$T/lvidle" | pct)"
	read -r tp50 tmax <<<"$(cut -d' ' -f2 "$T/lvidle" | pct)"
	read -r wp50 wmax <<<"$(cut -d' ' -f3 "$T/lvidle" | pct)"
	printf 'libvirt: downtime p50 %d ms max %d ms; total (libvirt) p50 %d ms max %d ms; virsh migrate p50 %d ms max %d ms (n=%d)\n' \
	    "$dp50" "$dmax" "$tp50" "$tmax" "$wp50" "$wmax" "$N"
	lvsh "$here" destroy lvidle >/dev/null 2>&1
	for ram in $RAMS; do
		lv_create_idle "lvr$ram" "$ram"
		read -r d t w x <<<"$(lv_migrate "lvr$ram" 1 2)"
		printf 'libvirt: RAM %5d MiB: total %d ms (virsh %d ms), downtime %d ms\n' \
		    "$ram" "$t" "$w" "$d"
		lvsh 2 destroy "lvr$ram" >/dev/null 2>&1
	done
}

# The anchor's figures, as qdesk's above them: the TCG rows, the busy
# rows under KVM.
bench_libvirt_migrate() {
	local ram img

	lv_setup
	mkdir -p "$T/lvg"
	cp "$GUESTS/vmlinuz" "$GUESTS/initrd.img" "$T/lvg/"
	chown -R "$LV_USER" "$T/lvg"
	lv_up 1
	lv_up 2
	[ -n "$TCG" ] && lv_tcg
	if [ -n "$BUSY" ]; then
		for ram in $RAMS; do
			for img in $BUSY_IMAGES; do
				lv_busy_row "KVM ${img%.img} $ram MiB, n=$N" "$img" "$ram"
			done
		done
	fi
	lv_down
}
