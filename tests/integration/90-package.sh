#!/usr/bin/env bash
# The Debian package as a new admin gets it: built from the tree with
# dpkg-buildpackage (scripts/package: once per content, started by
# scripts/test at the beginning of its run), lintian with no error, then
# installed with apt into a fresh root: a private mount namespace whose
# /etc, /usr and /var are overlays on the host's (writes land in this
# test's dir, never on the host), with
# the host's qdesk users and state dir removed from the overlay first and
# a network namespace of its own. There it checks every file, mode, user
# and unit, runs systemd-analyze verify on both units, starts qmpd and
# the broker exactly as their units' ExecStart lines say, and boots the
# tiny guest through the portal and the SPICE proxy; a qmpd restart as
# systemd does it (SIGTERM to qmpd alone) leaves the desktop running. It
# ends with apt purge. The host is checked untouched afterwards.
#
# The part inside the namespaces is this same script run with --inside.

if [ "${1:-}" = --inside ]; then
	inside=1
	T=$2
	top=$3
	. "$top/tests/lib/kill-ours.sh"
	TEST_NAME=90-package
	log() { printf '%s: %s\n' "$TEST_NAME" "$*" >&2; }
	fail() {
		log "FAIL: $*"
		for f in "$T"/qmpd.log "$T"/broker.log; do
			[ -s "$f" ] && { log "last lines of $f:"; tail -n 20 "$f" >&2; }
		done
		exit 1
	}
else
	inside=0
	. "$(dirname "$0")/lib.sh"
fi
set -u

units="qmpd.service qdesk-broker.service"

# Every file the package must hold, with its mode.
expected_files="
0755 /usr/sbin/qmpd
0755 /usr/sbin/qdesk-broker
0755 /usr/bin/qdesk
0644 /lib/systemd/system/qmpd.service
0644 /lib/systemd/system/qdesk-broker.service
0644 /usr/lib/sysusers.d/qdesk.conf
0644 /usr/lib/tmpfiles.d/qdesk.conf
0644 /usr/share/bash-completion/completions/qdesk
0644 /usr/share/man/man1/qdesk.1.gz
0644 /usr/share/man/man8/qmpd.8.gz
0644 /usr/share/man/man8/qdesk-broker.8.gz
0644 /usr/share/doc/qdesk/copyright
0644 /usr/share/doc/qdesk/changelog.Debian.gz
"

# --- inside: the fresh root ----------------------------------------------
if [ $inside = 1 ]; then
	PIDS=$T/pids		# every process started here, for both cleanups
	QMPD_PID= BROKER_PID=
	inner_cleanup() {
		local status=$? pid f
		for pid in $BROKER_PID $QMPD_PID; do
			kill -TERM "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
		done
		for f in /var/lib/qdesk/vms/*/qemu.pid; do
			[ -f "$f" ] && kill_ours /var/lib/qdesk "$(cat "$f")"
		done
		exit $status
	}
	trap inner_cleanup EXIT
	trap 'exit 130' INT TERM

	# Overlays first; nothing below may run unless they are in place.
	for d in etc usr var; do
		mkdir -p "$T/ov/$d/upper" "$T/ov/$d/work"
		mount -t overlay overlay -o "lowerdir=/$d,upperdir=$T/ov/$d/upper,workdir=$T/ov/$d/work" "/$d" ||
			fail "overlay on /$d"
		[ "$(findmnt -no FSTYPE "/$d")" = overlay ] ||
			fail "/$d is not this test's overlay"
	done
	# dpkg's database: the copy made under the host's dpkg locks, so an
	# apt run on the host meanwhile is neither seen half done nor touched.
	mount --bind "$T/dpkg" /var/lib/dpkg || fail "bind $T/dpkg"
	# Were systemd running, the maintainer scripts would talk to it.
	[ -d /run/systemd/system ] && mount -t tmpfs tmpfs /run/systemd
	ip link set lo up || fail "lo up"

	# A fresh root: none of qdesk's users, groups or state.
	for f in /etc/passwd /etc/shadow /etc/group /etc/gshadow; do
		[ -f "$f" ] || continue
		sed -i -E '/^(qdesk|qdesk-vm|qdesk-broker):/d' "$f"
		sed -i -E '/^kvm:/{s/([:,])qdesk-vm(,|$)/\1\2/; s/,$//}' "$f"
	done
	rm -rf /var/lib/qdesk
	getent passwd qdesk-vm qdesk-broker && fail "users left in the fresh root"
	! dpkg-query -W qdesk >/dev/null 2>&1 || fail "qdesk already installed"

	# As README's Install section says.
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
	    --no-install-recommends "$T/deb/qdesk.deb" >"$T/apt.log" 2>&1 ||
		fail "apt-get install: $(tail -n 15 "$T/apt.log")"
	log "installed: $(dpkg-query -W -f '${Package} ${Version} ${Status}' qdesk)"

	# Files and modes, and nothing else in the package.
	printf '%s\n' "$expected_files" | while read -r mode path; do
		[ -n "$path" ] || continue
		[ "$(stat -c '%a %U:%G' "$path" 2>/dev/null)" = "${mode#0} root:root" ] ||
			fail "$path: $(stat -c '%a %U:%G' "$path" 2>&1), wanted ${mode#0} root:root"
	done || exit 1
	dpkg -L qdesk | while read -r path; do
		[ -d "$path" ] && continue
		printf '%s\n' "$expected_files" | grep -q " $path\$" ||
			fail "the package holds $path, which this test does not know"
	done || exit 1
	/usr/bin/qdesk --version | grep -q '^qdesk [0-9]' || fail "qdesk --version"

	# Users and groups from sysusers, the state dir from tmpfiles.
	for u in qdesk-broker; do
		IFS=: read -r _ _ uid _ _ home shell <<<"$(getent passwd $u)"
		[ -n "$uid" ] || fail "no user $u"
		[ "$uid" -gt 0 ] && [ "$uid" -lt 1000 ] || fail "$u is uid $uid, not a system user"
		[ "$home" = /nonexistent ] && [ "$shell" = /usr/sbin/nologin ] ||
			fail "$u: home $home, shell $shell"
	done
	getent group qdesk >/dev/null || fail "no group qdesk"
	getent group kvm >/dev/null || fail "no group kvm"
	getent passwd qdesk-vm >/dev/null && fail "the package made qdesk-vm"
	[ "$(stat -c '%a %U:%G' /var/lib/qdesk)" = "711 root:root" ] ||
		fail "/var/lib/qdesk: $(stat -c '%a %U:%G' /var/lib/qdesk)"

	# Units: verified, installed but enabled by nobody.
	out=$(cd / && systemd-analyze verify $(printf '/lib/systemd/system/%s ' $units) 2>&1) ||
		fail "systemd-analyze verify: $out"
	[ -z "$out" ] || fail "systemd-analyze verify says: $out"
	for u in $units; do
		ls /etc/systemd/system/*.wants/$u 2>/dev/null &&
			fail "$u was enabled by the package"
	done
	grep -qx 'KillMode=process' /lib/systemd/system/qmpd.service ||
		fail "qmpd.service would kill the VMs on stop"
	grep -qx 'After=network-online.target qmpd.service' \
	    /lib/systemd/system/qdesk-broker.service || fail "broker unit order"
	man -w qdesk qmpd qdesk-broker >/dev/null || fail "man pages not found by man"

	# bash completion, from the installed CLI's own table.
	comp=$(bash -c '. /usr/share/bash-completion/completions/qdesk
	    COMP_WORDS=(qdesk vm st); COMP_CWORD=2; _qdesk; echo "${COMPREPLY[*]}"')
	[ "$comp" = "start stop" ] || fail "completion of 'qdesk vm st': $comp"

	# start UNIT LOG: run the unit's ExecStart line as it stands.
	start_unit() {
		local line argv
		line=$(sed -n 's/^ExecStart=//p' "/lib/systemd/system/$1")
		case $line in
		/*) ;;
		*) fail "$1: ExecStart is not an absolute command: $line" ;;
		esac
		case $line in
		*[%\"\'\$]*) fail "$1: ExecStart needs systemd's expansion: $line" ;;
		esac
		read -ra argv <<<"$line"
		"${argv[@]}" >>"$2" 2>&1 </dev/null &
		STARTED=$!
		echo "$STARTED" >>"$PIDS"
	}
	export QDESK_SOCKET=/var/lib/qdesk/qmpd.sock
	q() { /usr/bin/qdesk "$@"; }
	# wait_up WHAT PID CMD...: until CMD succeeds while PID lives. A first
	# start makes RSA keys (qmpd's SPICE CA, the broker's certificate).
	wait_up() {
		local what=$1 pid=$2 i
		shift 2
		for i in $(seq 1 300); do
			"$@" >/dev/null 2>&1 && return 0
			kill -0 "$pid" 2>/dev/null || fail "$what exited at start"
			sleep 0.1
		done
		fail "$what did not come up in 30 s"
	}
	start_unit qmpd.service "$T/qmpd.log"
	QMPD_PID=$STARTED
	wait_up qmpd "$QMPD_PID" q status
	# 0666 with --broker-user: the role comes from the peer's uid and gid.
	[ "$(stat -c '%a %U:%G' /var/lib/qdesk/qmpd.sock)" = "666 root:qdesk" ] ||
		fail "qmpd.sock: $(stat -c '%a %U:%G' /var/lib/qdesk/qmpd.sock)"
	q --json status | jq -e '.accels | index("kvm")' >/dev/null ||
		{ log "SKIP: qmpd says KVM is not usable here"; exit 77; }

	start_unit qdesk-broker.service "$T/broker.log"
	BROKER_PID=$STARTED
	wait_up qdesk-broker "$BROKER_PID" curl -skf https://127.0.0.1:8443/api/health
	[ "$(awk '/^Uid:/ {print $2}' /proc/$BROKER_PID/status)" = \
	    "$(id -u qdesk-broker)" ] || fail "the broker does not run as qdesk-broker"

	# The admin's part: a desktop and its user.
	cp "$top/build/guests/boot.img" "$T/desk1.img"
	out=$(q vm create desk1 --accel kvm --memory 32 --disk "$T/desk1.img" \
	    --display spice 2>&1) || fail "vm create: $out"
	out=$(echo demo-password | q user add demo --name "Demo User" \
	    --password-stdin 2>&1) || fail "user add: $out"
	out=$(q desktop assign demo desk1 2>&1) || fail "desktop assign: $out"

	# The user's part, through the portal. Each call to the broker is
	# bounded (-m 60, timeout 60): one that hangs fails at its own step
	# instead of at scripts/test's 300 s limit with nothing said (a CI
	# run under load 30 did that, after "installed").
	url=https://127.0.0.1:8443
	post() {
		local body=${2:-}
		[ -n "$body" ] || body='{}'
		curl -sk -m 60 -b "$T/jar" -c "$T/jar" -X POST -H 'X-Qdesk: 1' \
		    -H 'Content-Type: application/json' --data "$body" \
		    -o "$T/body" -w '%{http_code}' "$url$1"
	}
	curl -skf -m 60 "$url/" | grep -qi '<html' || fail "no portal page at /"
	code=$(post /api/login '{"user":"demo","password":"demo-password"}')
	[ "$code" = 200 ] || fail "login: $code $(cat "$T/body")"
	curl -skf -m 60 -b "$T/jar" "$url/api/desktops" >"$T/body" || fail "GET desktops"
	jq -e '.[] | select(.name == "desk1")' "$T/body" >/dev/null ||
		jq -e '.desktops[] | select(.name == "desk1")' "$T/body" >/dev/null ||
		fail "desk1 is not demo's: $(cat "$T/body")"
	code=$(post /api/desktops/desk1/start)
	[ "$code" = 200 ] || fail "start from the portal: $code $(cat "$T/body")"
	out=$(q vm wait desk1 running --timeout 30 2>&1) || fail "vm wait: $out"
	qemu=$(cat /var/lib/qdesk/vms/desk1/qemu.pid)
	echo "$qemu" >>"$PIDS"
	# A uid of its own from qmpd's default --vm-uids range, with group kvm.
	quid=$(stat -c %u /proc/$qemu)
	[ "$quid" -ge 2000000000 ] && [ "$quid" -le 2000099999 ] ||
		fail "QEMU runs as uid $quid, not one of the VM range"
	grep -q "^Groups:.*\b$(getent group kvm | cut -d: -f3)\b" /proc/$qemu/status ||
		fail "QEMU lacks group kvm: $(grep ^Groups: /proc/$qemu/status)"
	for i in $(seq 1 300); do
		q vm console desk1 | grep -q "QDESK TINY GUEST UP" && break
		sleep 0.1
	done
	q vm console desk1 | grep -q "QDESK TINY GUEST UP" ||
		fail "the guest did not boot: $(q vm console desk1 | tail -c 300)"

	# remote-viewer's part: the .vv file, through the SPICE proxy.
	curl -skf -m 60 -b "$T/jar" -o "$T/desk1.vv" "$url/api/desktops/desk1/console.vv" ||
		fail "GET console.vv"
	vv() { sed -n "s/^$1=//p" "$T/desk1.vv"; }
	sed -n 's/^ca=//p' "$T/desk1.vv" | sed 's/\\n/\n/g' | sed '/^$/d' >"$T/ca.pem"
	[ "$(vv proxy)" = http://127.0.0.1:3128 ] || fail ".vv proxy: $(vv proxy)"
	out=$(timeout 60 "$top/build/broker/spice-probe" "$(vv host)" "$(vv tls-port)" \
	    "$(vv password)" --proxy 127.0.0.1:3128 --ca "$T/ca.pem" \
	    --host-subject "$(vv host-subject)" 2>&1) ||
		fail "the .vv file does not reach the desktop: $out"

	# A restart as systemd does it with KillMode=process: the desktop runs on.
	kill -TERM "$QMPD_PID"
	wait "$QMPD_PID" 2>/dev/null
	QMPD_PID=
	alive() { [ -d "/proc/$1" ] && ! grep -q '^State:.*Z' "/proc/$1/status"; }
	alive "$qemu" || fail "stopping qmpd stopped the desktop"
	start_unit qmpd.service "$T/qmpd.log"
	QMPD_PID=$STARTED
	wait_up "the second qmpd" "$QMPD_PID" q status
	[ "$(q --json vm show desk1 | jq -r '.state, .pid' | tr '\n' ' ')" = \
	    "running $qemu " ] || fail "after the restart: $(q vm show desk1)"
	code=$(post /api/desktops/desk1/console)
	[ "$code" = 200 ] || fail "console after a qmpd restart: $code $(cat "$T/body")"

	out=$(q vm kill desk1 2>&1) || fail "vm kill: $out"
	kill -TERM "$BROKER_PID" "$QMPD_PID"
	wait "$BROKER_PID" "$QMPD_PID" 2>/dev/null
	BROKER_PID= QMPD_PID=

	# Removal: the package goes, nothing is left running.
	DEBIAN_FRONTEND=noninteractive apt-get purge -y -q qdesk >>"$T/apt.log" 2>&1 ||
		fail "apt-get purge: $(tail -n 15 "$T/apt.log")"
	[ -e /usr/sbin/qmpd ] && fail "purge left /usr/sbin/qmpd"
	[ -e /lib/systemd/system/qmpd.service ] && fail "purge left qmpd.service"
	log "inside: ok"
	exit 0
fi

# --- outside: build, lint, run the inside, check the host ----------------
for tool in dpkg-buildpackage lintian unshare systemd-analyze jq; do
	command -v $tool >/dev/null || fail "$tool missing (scripts/setup installs it)"
done
[ -x "$top/build/broker/spice-probe" ] || fail "build/broker/spice-probe is not built"
[ -r /dev/kvm ] || skip "no /dev/kvm"

# The .deb of this tree (scripts/package: built once per content; while
# scripts/test's own build of it is under way, this waits for it).
cd "$top" || fail "cd $top"
start=$(date +%s)
cache=$("$top/scripts/package" 2>"$T/build.log") ||
	fail "building the package: $(tail -n 25 "$T/build.log")"
log "$(tail -n 1 "$T/build.log") (had it after $(( $(date +%s) - start )) s)"
mkdir -p "$T/deb"
cp "$cache/qdesk.deb" "$T/deb/qdesk.deb"

# lintian: errors fail the test, warnings are shown.
lintian --pedantic -I "$cache"/qdesk_*.changes >"$T/lintian.log" 2>&1
grep -v '^running with root privileges' "$T/lintian.log" | sed 's/^/lintian: /' >&2
grep -q '^E: ' "$T/lintian.log" && fail "lintian found errors"

# The host before.
host_state() {
	dpkg-query -W -f '${Status}\n' qdesk 2>/dev/null
	ls -l /usr/sbin/qmpd /usr/sbin/qdesk-broker /usr/bin/qdesk \
	    /lib/systemd/system/qmpd.service /usr/lib/sysusers.d/qdesk.conf 2>&1
	getent passwd qdesk-vm qdesk-broker
	getent group qdesk
}
host_state >"$T/host.before"

# A consistent copy of the host's dpkg database, taken while holding its
# locks (fcntl locks, as dpkg and apt take them; waiting as apt's
# DPkg::Lock::Timeout does, for at most 120 s).
python3 - "$T/dpkg" <<'PY' || fail "no consistent copy of /var/lib/dpkg"
import fcntl, os, shutil, sys, time
deadline = time.time() + 120
fds = []
for name in ("lock-frontend", "lock"):
    fd = os.open("/var/lib/dpkg/" + name, os.O_RDWR | os.O_CLOEXEC)
    while True:
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except OSError:
            if time.time() > deadline:
                sys.exit("the host's dpkg stayed locked for 120 s")
            time.sleep(0.5)
    fds.append(fd)
if os.listdir("/var/lib/dpkg/updates"):
    sys.exit("the host's dpkg was interrupted (dpkg --configure -a)")
shutil.copytree("/var/lib/dpkg", sys.argv[1], symlinks=True)
PY

# Only processes of the installed package (state in /var/lib/qdesk, which
# no other test uses): a listed PID may be another test's by now.
EXTRA_CLEANUP='kill_ours /var/lib/qdesk $(cat "$T/pids" 2>/dev/null)
	for f in "$T"/ov/var/upper/lib/qdesk/vms/*/qemu.pid; do
		[ -f "$f" ] && kill_ours /var/lib/qdesk "$(cat "$f")"; done'
# The installed qmpd runs on its default VM uid range: no other test's
# qmpd may use it meanwhile (lib.sh).
vm_uids_default
unshare --mount --net --propagation private \
    bash "$top/tests/integration/90-package.sh" --inside "$T" "$top"
rc=$?
[ $rc = 0 ] || exit $rc

host_state >"$T/host.after"
cmp -s "$T/host.before" "$T/host.after" ||
	fail "the host changed: $(diff "$T/host.before" "$T/host.after")"
[ -e /var/lib/dpkg/info/qdesk.list ] && fail "qdesk is in the host's dpkg database"
log ok
