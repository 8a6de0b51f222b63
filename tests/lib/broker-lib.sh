# Shared by the broker's integration tests (tests/integration/3*.sh), after
# tests/integration/lib.sh: a real qmpd with the broker role, a broker as
# qdesk-broker on free loopback ports, users and tiny desktops made through
# the CLI, and curl with one cookie jar per user.
#
# QDESK_BUILD=DIR takes qmpd, qdesk, qdesk-broker and spice-probe from
# another meson build dir than build/.

BUILD=${QDESK_BUILD:-$top/build}
QMPD=$(qmpd_uids_wrap "$BUILD/qmpd/qmpd")
QDESK_BIN=$BUILD/cli/qdesk
BROKER=$BUILD/broker/qdesk-broker
PROBE=$BUILD/broker/spice-probe
BROKER_USER=qdesk-broker
BROKER_LOG=$T/broker.log
BROKER_PID=
RESULTS=$top/build/test-results
EXTRA_CLEANUP='stop_broker'

for f in "$QMPD" "$QDESK_BIN" "$BROKER" "$PROBE"; do
	[ -x "$f" ] || fail "$f is not built (ninja -C $BUILD)"
done

# The broker's own unprivileged user, as scripts/setup would make it.
getent passwd "$BROKER_USER" >/dev/null ||
	useradd -r -M -d /nonexistent -s /usr/sbin/nologin "$BROKER_USER" ||
	fail "cannot create user $BROKER_USER"

# Its ports: lib.sh's free_port, this test's own.
HTTPS_PORT=$(free_port)
PROXY_PORT=$(free_port)
RDP_PORT=$(free_port)
URL=https://127.0.0.1:$HTTPS_PORT

broker_fail() {
	if [ -f "$BROKER_LOG" ]; then
		log "last lines of broker.log:"
		tail -n 25 "$BROKER_LOG" >&2
	fi
	fail "$@"
}

# Start the broker; wait until it serves HTTPS and reaches qmpd.
start_broker() {
	"$BROKER" -f -v --state-dir "$STATE" --user "$BROKER_USER" \
	    --https "127.0.0.1:$HTTPS_PORT" \
	    --spice-proxy "127.0.0.1:$PROXY_PORT" --rdp "127.0.0.1:$RDP_PORT" \
	    "$@" >>"$BROKER_LOG" 2>&1 &
	BROKER_PID=$!
	local i
	for i in $(seq 1 100); do
		curl -skf "$URL/api/health" >/dev/null 2>&1 && return 0
		kill -0 "$BROKER_PID" 2>/dev/null ||
			broker_fail "qdesk-broker exited at start"
		sleep 0.1
	done
	broker_fail "qdesk-broker did not come up (or never reached qmpd)"
}

stop_broker() {
	[ -n "$BROKER_PID" ] || return 0
	kill -TERM "$BROKER_PID" 2>/dev/null
	wait "$BROKER_PID" 2>/dev/null
	BROKER_PID=
}

# api WHO METHOD PATH [JSON]: one API call with WHO's cookie jar. Sets
# CODE (HTTP status) and BODY; POSTs carry the X-Qdesk header.
api() {
	local who=$1 method=$2 path=$3 body=${4:-}
	local args=(-sk -o "$T/api.body" -w '%{http_code}' -b "$T/jar.$who"
	    -c "$T/jar.$who" -X "$method")
	if [ "$method" = POST ]; then
		[ -n "$body" ] || body='{}'
		args+=(-H 'X-Qdesk: 1' -H 'Content-Type: application/json'
		    --data "$body")
	fi
	CODE=$(curl "${args[@]}" "$URL$path") || CODE=000
	BODY=$(cat "$T/api.body" 2>/dev/null)
}

# expect CODE: the last api call answered with this status.
expect() {
	[ "$CODE" = "$1" ] || broker_fail "wanted HTTP $1, got $CODE: $BODY${2:+ ($2)}"
}

login() {
	api "$1" POST /api/login "{\"user\":\"$1\",\"password\":\"$2\"}"
}

# add_user LOGIN PASSWORD
add_user() {
	printf '%s\n' "$2" | q user add "$1" --name "User $1" --password-stdin \
	    >/dev/null 2>"$T/last.err" ||
		fail "user add $1: $(cat "$T/last.err")"
}

# add_desktop NAME OWNER: a tiny SPICE desktop under KVM, assigned.
add_desktop() {
	local disk
	disk=$(tiny_disk "$1")
	qq vm create "$1" --accel kvm --memory 32 --disk "$disk" \
	    --display spice >/dev/null
	qq desktop assign "$2" "$1" >/dev/null
}

# alice_and_bob: a qmpd for the broker, alice with desktop d1 and bob
# with d2 (tiny KVM desktops, stopped).
alice_and_bob() {
	start_qmpd --broker-user "$BROKER_USER"
	need_kvm
	add_user alice alice-pw-1
	add_user bob bob-pw-2
	add_desktop d1 alice
	add_desktop d2 bob
}

# A field of the last BODY.
field() { printf '%s' "$BODY" | jq -r ".$1"; }

# spice_trust: keep the certificate and subject of the last console
# answer (BODY) for probe and via: qmpd's SPICE ports speak TLS only, and
# a viewer trusts exactly what the answer gives it.
SPICE_CA=$T/spice-ca.pem
SPICE_SUBJECT=
spice_trust() {
	[ "$(field tls)" = true ] || fail "the console answer is not TLS: $BODY"
	field ca | sed '/^$/d' >"$SPICE_CA"
	SPICE_SUBJECT=$(field host_subject)
	grep -q "BEGIN CERTIFICATE" "$SPICE_CA" && [ -n "$SPICE_SUBJECT" ] ||
		fail "the console answer lacks its certificate: $BODY"
}

# vv_ca FILE.vv: the .vv file's ca= as PEM (its \n are newlines).
vv_ca() { sed -n 's/^ca=//p' "$1" | sed 's/\\n/\n/g' | sed '/^$/d'; }

# probe PASSWORD PORT [args]: the SPICE handshake over TLS, straight to
# loopback (spice_trust first).
probe() {
	local pw=$1 port=$2
	shift 2
	"$PROBE" 127.0.0.1 "$port" "$pw" --ca "$SPICE_CA" \
	    --host-subject "$SPICE_SUBJECT" "$@"
}

need_kvm() {
	[ -r /dev/kvm ] || skip "no /dev/kvm"
	q --json status | jq -e '.accels | index("kvm")' >/dev/null ||
		skip "qmpd says KVM is not usable here"
}

# xf ARGS...: xfreerdp +auth-only (a .rdp file must come first); its exit
# status, its output in $T/xf.log.
xf() {
	HOME=$T timeout 120 xfreerdp "$@" /cert:ignore +auth-only \
	    >"$T/xf.log" 2>&1
}

# need_playwright skip|fail: chromium, node and playwright-core (installed
# once into build/portal-test, NODE_DIR) to drive it, or skip or fail.
# Tests that run at once (39 and the transport bench of 37 in a fresh
# clone) install it one at a time, under a lock: the second finds it.
PLAYWRIGHT_VERSION=1.65.1
NODE_DIR=$top/build/portal-test
need_playwright() {
	local verdict=$1 fd rc=0
	command -v chromium >/dev/null ||
		$verdict "no chromium (apt-get install chromium)"
	command -v node >/dev/null && command -v npm >/dev/null ||
		$verdict "no node/npm to drive chromium"
	# Looked at under the lock: an install under way may have
	# written package.json and not yet the rest.
	mkdir -p "$NODE_DIR"
	exec {fd}>>"$top/build/.portal-test.lock" && flock "$fd" ||
		fail "cannot lock build/.portal-test.lock"
	if [ ! -f "$NODE_DIR/node_modules/playwright-core/package.json" ]; then
		log "installing playwright-core $PLAYWRIGHT_VERSION into $NODE_DIR"
		npm install --prefix "$NODE_DIR" --no-audit --no-fund --silent \
		    "playwright-core@$PLAYWRIGHT_VERSION" >"$T/npm.log" 2>&1 || rc=1
	fi
	exec {fd}>&-
	[ $rc = 0 ] ||
		$verdict "npm install playwright-core failed: $(tail -3 "$T/npm.log")"
}
