#!/usr/bin/env bash
# The broker role, spoken as the real qdesk-broker user over the admin
# socket: user.auth (good, bad, unknown, locked after 5 failures, still
# locked after a qmpd kill -9),
# desktop.mine (only the user's own), desktop.power start on a tiny
# boot-sector VM, desktop.console (a SPICE password the probe accepts, and
# the session is recorded for the user), another user's desktop refused
# with nothing changed, admin commands refused, and a uid that is neither
# root nor the broker turned away at the door.
. "$(dirname "$0")/lib.sh"

[ -r /dev/kvm ] || skip "no /dev/kvm"
command -v setpriv >/dev/null || skip "no setpriv (util-linux)"
if ! getent passwd qdesk-broker >/dev/null; then
	useradd -r -M -d /nonexistent -s /usr/sbin/nologin qdesk-broker ||
		fail "cannot create the qdesk-broker user"
fi
PROBE=$top/build/broker/spice-probe

# jq -e that fails on empty input too (jq 1.6 says yes to nothing).
jcheck() {
	local in
	in=$(cat)
	[ -n "$in" ] && jq -e "$@" <<<"$in" >/dev/null
}

# The company's own CA, as an admin installs it: a server certificate it
# signed, put in DIR/spice-tls before qmpd's first start. Viewers must get
# the CA (not the server certificate) and link by the chain.
tls=$STATE/spice-tls
mkdir -p "$tls"
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/O=Example/CN=Example CA" \
    -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign \
    -keyout "$T/ca-key.pem" -out "$tls/ca-cert.pem" 2>"$T/openssl.log" &&
openssl req -newkey rsa:2048 -nodes -subj "/O=Example/OU=Desktops/CN=spice.example.com" \
    -keyout "$tls/server-key.pem" -out "$T/server.csr" 2>>"$T/openssl.log" &&
openssl x509 -req -in "$T/server.csr" -CA "$tls/ca-cert.pem" -CAkey "$T/ca-key.pem" \
    -CAcreateserial -days 2 -out "$tls/server-cert.pem" 2>>"$T/openssl.log" ||
	fail "openssl: $(cat "$T/openssl.log")"
start_qmpd --broker-user qdesk-broker
q --json status | jcheck '.accels | index("kvm")' >/dev/null ||
	skip "qmpd says KVM is not usable here"

# Requests as uid $1, one JSON reply line each; the hello line first.
as_uid() {
	local who=$1
	shift
	setpriv --reuid="$who" --regid="$(id -g "$who")" --clear-groups \
	    /usr/bin/python3 - "$QDESK_SOCKET" "$@" <<'EOF'
import json, socket, sys
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
f = s.makefile("rw")
print(f.readline().strip())
for i, a in enumerate(sys.argv[2:]):
    cmd, _, args = a.partition(" ")
    f.write(json.dumps({"id": i, "cmd": cmd,
        "args": json.loads(args or "{}")}) + "\n")
    f.flush()
    print(f.readline().strip())
EOF
}

# One request as the broker: its reply line.
breq() { as_uid qdesk-broker "$1 $2" | tail -n 1; }

# Expect an error class (and optionally a description) from one request.
brefused() {
	local r
	r=$(breq "$1" "$2")
	jcheck --arg c "$3" '.error.class == $c' <<<"$r" >/dev/null ||
		fail "$1 $2: wanted $3, got $r"
	if [ -n "${4:-}" ]; then
		jcheck --arg d "$4" '.error.desc == $d' <<<"$r" >/dev/null ||
			fail "$1 $2: wanted '$4', got $r"
	fi
}

# The broker is told apart from an admin by its uid.
hello=$(as_uid qdesk-broker | head -n 1)
jcheck '.qdesk.protocol == 1' <<<"$hello" >/dev/null ||
	fail "the broker was not greeted: $hello"

qq user add alice --name "Alice" --password-stdin <<<'alice pw' >/dev/null
qq user add bob --password-stdin <<<'bob pw' >/dev/null
qq user add carol --password-stdin <<<'carol pw' >/dev/null
da=$(tiny_disk desk-a)
db=$(tiny_disk desk-b)
qq vm create desk-a --accel kvm --disk "$da" --memory 32 --display spice >/dev/null
qq vm create desk-b --accel kvm --disk "$db" --memory 32 --display spice >/dev/null
qq vm create spare --accel kvm --disk "$(tiny_disk spare)" --memory 32 --display none >/dev/null
qq desktop assign alice desk-a >/dev/null
qq desktop assign bob desk-b >/dev/null

# user.auth: good, wrong password, unknown user (the same words).
r=$(breq user.auth '{"login":"alice","password":"alice pw","client":"192.0.2.7"}')
jcheck '.return == {"login":"alice","name":"Alice","dept":null,"admin":false}' \
    <<<"$r" >/dev/null || fail "alice's login: $r"
brefused user.auth '{"login":"alice","password":"nope"}' AuthFailed \
    "invalid login or password"
brefused user.auth '{"login":"mallory","password":"x"}' AuthFailed \
    "invalid login or password"
brefused user.auth '{"login":"../etc","password":"x"}' AuthFailed \
    "invalid login or password"
grep -q "login alice from 192.0.2.7" "$QMPD_LOG" || fail "no login logged"

# Five failures lock the login; then even the right password is refused.
for i in 1 2 3 4 5; do
	brefused user.auth '{"login":"carol","password":"bad"}' AuthFailed
done
r=$(breq user.auth '{"login":"carol","password":"carol pw"}')
jcheck '.error.class == "Locked"' <<<"$r" >/dev/null ||
	fail "carol is not locked after 5 failures: $r"
jq -r .error.desc <<<"$r" |
    grep -Eq '^too many failed logins for carol; try again in [0-9]+ s$' ||
	fail "lock message: $r"
grep -q "login carol .*locked for 300 s" "$QMPD_LOG" || fail "lock not logged"
# Others are not locked with her; the portal and RDP share this count.
breq user.auth '{"login":"alice","password":"alice pw"}' |
	jcheck '.return.login == "alice"' >/dev/null || fail "alice locked too"
# A qmpd restart (even kill -9) neither unlocks carol nor forgets that
# dave failed three times: two more lock him.
for i in 1 2 3; do
	brefused user.auth '{"login":"dave","password":"bad"}' AuthFailed
done
kill9_qmpd
start_qmpd --broker-user qdesk-broker
breq user.auth '{"login":"carol","password":"carol pw"}' |
	jcheck '.error.class == "Locked"' >/dev/null ||
	fail "carol was unlocked by a qmpd restart"
brefused user.auth '{"login":"dave","password":"bad"}' AuthFailed
brefused user.auth '{"login":"dave","password":"bad"}' AuthFailed
breq user.auth '{"login":"dave","password":"bad"}' |
	jcheck '.error.class == "Locked"' >/dev/null ||
	fail "dave's failures before the restart were forgotten"
breq user.auth '{"login":"alice","password":"alice pw"}' |
	jcheck '.return.login == "alice"' >/dev/null || fail "alice locked after restart"

# desktop.mine: each sees only their own.
r=$(breq desktop.mine '{"login":"alice"}')
jcheck '.return.desktops | length == 1 and .[0].name == "desk-a" and
    .[0].state == "stopped" and .[0].spice.port > 0' <<<"$r" >/dev/null ||
	fail "alice's desktops: $r"
breq desktop.mine '{"login":"bob"}' |
	jcheck '[.return.desktops[].name] == ["desk-b"]' >/dev/null ||
	fail "bob's desktops"
breq desktop.mine '{"login":"carol"}' |
	jcheck '.return.desktops == []' >/dev/null || fail "carol has desktops"

# Power and console on her own desktop.
r=$(breq desktop.power '{"login":"alice","vm":"desk-a","action":"start"}')
jcheck '.return.state == "running"' <<<"$r" >/dev/null ||
	fail "desktop.power start: $r"
[ "$(vm_field desk-a state)" = running ] || fail "desk-a is not running"
brefused desktop.power '{"login":"alice","vm":"desk-a","action":"explode"}' \
    InvalidArgument
r=$(breq desktop.console '{"login":"alice","vm":"desk-a","expires":30}')
pw=$(jq -r '.return.password // empty' <<<"$r")
[ -n "$pw" ] || fail "desktop.console: $r"
port=$(jq -r .return.port <<<"$r")
jcheck --arg p "$pw" --arg port "$port" '.return.uri ==
    "spice://127.0.0.1?tls-port=" + $port + "&password=" + $p' <<<"$r" \
    >/dev/null || fail "console uri: $r"
# TLS only: the viewer trusts the certificate the answer carries.
jq -r .return.ca <<<"$r" | sed '/^$/d' >"$T/ca.pem"
subject=$(jq -r .return.host_subject <<<"$r")
cmp -s "$T/ca.pem" "$tls/ca-cert.pem" &&
    [ "$subject" = "O=Example,OU=Desktops,CN=spice.example.com" ] ||
	fail "the admin's CA is not what viewers get: $subject, $(head -2 "$T/ca.pem")"
if [ -x "$PROBE" ]; then
	"$PROBE" 127.0.0.1 "$port" "$pw" --ca "$T/ca.pem" \
	    --host-subject "$subject" --hold 3 >"$T/probe.out" 2>&1 &
	probe=$!
	for i in $(seq 1 50); do
		q --json session list --vm desk-a |
		    jcheck '.sessions[0].start > 0 and .sessions[0].end == null' \
		    2>/dev/null && break
		sleep 0.1
	done
	s=$(q --json session list --vm desk-a)
	jcheck '.sessions[0] | .user == "alice" and .end == null and
	    (.client | startswith("127.0.0.1:"))' <<<"$s" >/dev/null ||
		fail "no open session for alice: $s"
	wait "$probe" || fail "spice-probe: $(cat "$T/probe.out")"
	for i in $(seq 1 50); do
		q --json session list --vm desk-a |
		    jcheck '.sessions[0].end > 0' 2>/dev/null && break
		sleep 0.1
	done
	q --json session list | jcheck '.sessions[0] | .user == "alice" and
	    .end_reason == "client disconnected"' >/dev/null ||
		fail "the session did not end: $(q --json session list)"
	"$PROBE" 127.0.0.1 "$port" wrong-password --ca "$T/ca.pem" \
	    >/dev/null 2>&1
	[ $? = 1 ] || fail "spice-probe accepted a wrong password"
	# An admin's own .vv file: TLS port, the CA, the subject, 0600.
	q --json vm ticket desk-a --expires 30 |
	    jcheck '.tls == true and (.password | length) == 32 and
	    (.ca_file | endswith("/spice-tls/ca-cert.pem"))' ||
		fail "vm ticket: $(q --json vm ticket desk-a)"
	qq vm ticket desk-a --vv "$T/a.vv" >/dev/null
	[ "$(stat -c %a "$T/a.vv")" = 600 ] || fail "a.vv is $(stat -c %a "$T/a.vv")"
	vv() { sed -n "s/^$1=//p" "$T/a.vv"; }
	sed -n 's/^ca=//p' "$T/a.vv" | sed 's/\\n/\n/g' | sed '/^$/d' >"$T/a-ca.pem"
	cmp -s "$T/a-ca.pem" "$tls/ca-cert.pem" && [ "$(vv tls-port)" = "$port" ] &&
	    [ "$(vv host-subject)" = "$subject" ] || fail "a.vv: $(cat "$T/a.vv")"
	"$PROBE" "$(vv host)" "$(vv tls-port)" "$(vv password)" --ca "$T/a-ca.pem" \
	    --host-subject "$(vv host-subject)" >/dev/null 2>&1 ||
		fail "the password of vm ticket --vv does not link"
	# A ticket given before a qmpd restart still names its user when
	# the viewer links after it.
	r=$(breq desktop.console '{"login":"alice","vm":"desk-a","expires":60}')
	pw=$(jq -r .return.password <<<"$r")
	at=$(( $(jq -r .return.expires <<<"$r") - 60 ))
	kill9_qmpd
	start_qmpd --broker-user qdesk-broker
	"$PROBE" 127.0.0.1 "$port" "$pw" --ca "$T/ca.pem" --hold 1 \
	    >"$T/probe.out" 2>&1 || fail "spice-probe after restart: $(cat "$T/probe.out")"
	q --json session list --vm desk-a | jcheck --argjson at "$at" \
	    'any(.sessions[]; .ticket_at == $at and .user == "alice")' ||
		fail "the session after the restart (ticket at $at): $(q --json session list --vm desk-a)"
else
	log "no $PROBE: SPICE sessions not checked"
fi

# Another user's desktop: refused, logged, and nothing changes.
brefused desktop.power '{"login":"alice","vm":"desk-b","action":"start"}' \
    PermissionDenied "desktop desk-b is not yours"
brefused desktop.console '{"login":"alice","vm":"desk-b"}' \
    PermissionDenied "desktop desk-b is not yours"
brefused desktop.power '{"login":"alice","vm":"spare","action":"start"}' \
    PermissionDenied "desktop spare is not yours"
brefused desktop.power '{"login":"alice","vm":"nosuch","action":"start"}' \
    PermissionDenied "desktop nosuch is not yours"
[ "$(vm_field desk-b state)" = stopped ] || fail "desk-b was started"
[ "$(vm_field spare state)" = stopped ] || fail "spare was started"
grep -q "desktop.power of desktop desk-b for alice refused" "$QMPD_LOG" ||
	fail "the refusal was not logged"
brefused desktop.power '{"login":"bob","vm":"desk-a","action":"shutdown"}' \
    PermissionDenied "desktop desk-a is not yours"
brefused desktop.power '{"login":"bob","vm":"desk-a","action":"reboot"}' \
    PermissionDenied
brefused desktop.console '{"login":"bob","vm":"desk-a"}' PermissionDenied
[ "$(vm_field desk-a state)" = running ] || fail "bob changed desk-a"
[ "$(vm_field desk-a reason)" = null ] || fail "desk-a: $(vm_field desk-a reason)"

# A disabled user gets nothing, even for their own desktop.
qq user disable bob >/dev/null
brefused desktop.mine '{"login":"bob"}' PermissionDenied "user bob is disabled"
brefused desktop.power '{"login":"bob","vm":"desk-b","action":"start"}' \
    PermissionDenied
qq user enable bob >/dev/null

# Admin commands are not for the broker.
brefused vm.list '{}' PermissionDenied "vm.list is for administrators"
brefused vm.create "{\"name\":\"evil\",\"disk\":\"$da\"}" PermissionDenied
brefused vm.ticket '{"name":"desk-a"}' PermissionDenied
brefused vm.stop '{"name":"desk-a","force":true}' PermissionDenied
brefused user.list '{}' PermissionDenied
brefused user.add '{"login":"eve","password":"x"}' PermissionDenied
brefused desktop.assign '{"login":"alice","vm":"desk-b"}' PermissionDenied
brefused session.list '{}' PermissionDenied
brefused events.subscribe '{}' PermissionDenied
q_status 1 vm show evil
[ "$(vm_field desk-a state)" = running ] || fail "desk-a stopped"

# Shut down, as the user: answered at once, stopping.
r=$(breq desktop.power '{"login":"alice","vm":"desk-a","action":"shutdown"}')
jcheck '.return.state == "stopping" and
    .return.reason == "ACPI power-down by alice"' <<<"$r" >/dev/null ||
	fail "desktop.power shutdown: $r"
qq vm kill desk-a >/dev/null	# the boot-sector guest has no ACPI

# Neither root, nor group qdesk, nor the broker: refused at the door.
out=$(as_uid nobody 'vm.list {}' 2>&1)
jcheck '.error.class == "PermissionDenied"' <<<"$(head -n 1 <<<"$out")" \
    >/dev/null || fail "uid nobody was let in: $out"
grep -q '"return"' <<<"$out" && fail "uid nobody got an answer: $out"
grep -q "refused uid 65534" "$QMPD_LOG" || fail "the refusal of nobody not logged"
log ok
