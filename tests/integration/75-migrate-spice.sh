#!/usr/bin/env bash
# SPICE across a live migration (issue 14), `scripts/cluster up 2`, a TCG
# Linux guest. Each host's SPICE CA is issued by the cluster's SPICE
# root (not the cluster CA, which the cluster's listeners trust), so a
# viewer trusts one anchor (the ticket's ca is that root) and checks
# either host with it; the source's ticket goes along in migrate.prepare,
# so after `vm migrate` a viewer with the .vv it had before (same
# password, same ca, same host-subject) links to the target's QEMU; a
# wrong password is still refused there. Through the broker's proxy: a
# viewer linked before the migration (portal console, spice-probe via
# the proxy) to the source, and one reconnecting after it (a new
# console, the same ca) to the target: a desktop's SPICE server listens
# on the cluster address of the host it runs on.
# A remote-viewer linked directly (a .vv naming the host's address)
# follows the migration seamlessly (client_migrate_info: the target's
# address, tls-port, port 0, subject): all its channels end up on the
# target, none on the source.
# A remote-viewer linked through the broker's proxy (the portal's .vv)
# follows the migration back while linked: client_migrate_info names its
# proxy ticket, and the proxy tunnels that CONNECT to the target. It
# follows a second migration too, after the qmpd that sends it there
# restarted: migrate.prepare carried the ticket to that host, whose
# qmpd keeps it (and the password) in the VM's record.
. "$(dirname "$0")/lib.sh"

[ "$(id -u)" = 0 ] || skip "needs root (network namespaces)"
[ -r /dev/kvm ] || skip "no /dev/kvm"
. "$top/tests/lib/cluster-lib.sh"
. "$top/tests/lib/xvfb.sh"
RV_PID=
EXTRA_CLEANUP='rv_cleanup'
rv_cleanup() {
	[ -n "$RV_PID" ] && kill "$RV_PID" 2>/dev/null
	xvfb_stop
}
xvfb_need remote-viewer
PROBE=$top/build/broker/spice-probe
[ -x "$PROBE" ] || fail "no $PROBE (ninja -C build)"
cluster_test_up 2 5 5

inns() { local ns=${1}_NETNS; shift; ip netns exec "${!ns}" "$@"; }
# spice-probe from host h's namespace to its address: probe h PORT PW
probe() {
	inns "$1" timeout 60 "$PROBE" "$(addr_of "$1")" "$2" "$3" --ca "$T/ca.pem" \
	    --host-subject "$SUBJECT" --timeout 30
}

cluster_wait_up

# Users are the cluster's (etcd): added once, seen by every host.
echo alice-pw-1 | hq h1 user add alice --password-stdin >/dev/null ||
	fail "user add alice on h1"
cluster_wait_user alice
hqq h1 vm create desk --accel tcg --memory 256 --kernel "$GUESTS/vmlinuz" \
    --initrd "$GUESTS/initrd.img" --append "console=ttyS0 no_timer_check" >/dev/null
hqq h1 vm start desk >/dev/null
src=$(runs_on desk)
case $src in h1|h2) ;; *) fail "desk runs on '$src'" ;; esac
hqq "$src" desktop assign alice desk >/dev/null
dst=$(other "$src")

# The broker's portal and SPICE proxy, from the bridge's namespace.
BROKER_LOG=$RUN_DIR/broker.log
PROXY=${PORTAL#https://}
PROXY=${PROXY%:*}:3128
broker_fail() {
	log "last lines of the broker's log:"
	tail -n 25 "$BROKER_LOG" >&2
	fail "$@"
}
expect() { [ "$CODE" = "$1" ] || broker_fail "wanted HTTP $1, got $CODE: $BODY${2:+ ($2)}"; }
# A console through the portal, then spice-probe through the proxy:
# proxy_console WHEN HOST (where desk runs); leaves its ca in $T/WHEN.pem
proxy_console() {
	local out port
	api POST /api/desktops/desk/console
	expect 200 "console of desk $1"
	[ "$(field host)" = "$(addr_of "$2")" ] ||
		broker_fail "$1: the console names $(field host), not $2's address"
	field ca | sed '/^$/d' >"$T/$1.pem"
	port=$(field port)
	out=$(ip netns exec "$ETCD_NETNS" timeout 60 "$PROBE" unused "$port" \
	    "$(field password)" --proxy "$PROXY" --ticket "$(field ticket)" \
	    --ca "$T/$1.pem" --host-subject "$(field host_subject)" \
	    --timeout 30 2>&1) ||
		broker_fail "$1: spice-probe through the proxy to desk on $2: $out"
	grep -q "tunnelled to desk port $port" "$BROKER_LOG" ||
		broker_fail "$1: no tunnel to desk port $port in the broker's log"
}
addr_of() { local a=${1}_ADDR; echo "${!a}"; }
api POST /api/login '{"user":"alice","password":"alice-pw-1"}'
expect 200 login
proxy_console before "$src"
log "before: a viewer through the broker's proxy links to desk on $src: ok"

# The ticket a viewer got before: its anchor is the cluster's SPICE root.
tk=$(hqq "$src" --json vm ticket desk --expires 600)
PW=$(echo "$tk" | jq -r .password)
port0=$(echo "$tk" | jq -r .port)
SUBJECT=$(echo "$tk" | jq -r .host_subject)
echo "$tk" | jq -r .ca >"$T/ca.pem"
openssl x509 -in "$T/ca.pem" -noout -fingerprint >"$T/fp-ticket" &&
    openssl x509 -in "$CA/spice-ca.pem" -noout -fingerprint >"$T/fp-root" ||
	fail "ticket's ca or the SPICE root unreadable: $tk"
cmp -s "$T/fp-ticket" "$T/fp-root" ||
	fail "the ticket's ca is not the cluster's SPICE root: $(cat "$T/fp-ticket")"
# A host's SPICE CA is the SPICE root's, never the cluster CA's: its key
# on a host must not sign certificates the cluster's listeners take.
for h in $HOSTS; do
	openssl verify -CAfile "$CA/spice-ca.pem" "$CA/spice-$h/cert.pem" >/dev/null 2>&1 ||
		fail "$h's SPICE CA is not issued by the SPICE root"
	openssl verify -CAfile "$CA/ca.pem" "$CA/spice-$h/cert.pem" >/dev/null 2>&1 &&
		fail "$h's SPICE CA chains to the cluster CA"
	cmp -s "$CA/spice-$h/cert.pem" "$(state_of "$h")/spice-tls/ca-cert.pem" ||
		fail "$h's qmpd does not use its SPICE CA"
done
out=$(probe "$src" "$port0" "$PW" 2>&1) ||
	fail "spice-probe to desk on $src before: $out"
log "before: a viewer trusting the SPICE root links to desk on $src: ok"

# A viewer linked directly (its .vv names the host's address), which
# QEMU's client_migrate_info sends to the target.
hqq "$src" vm ticket desk --expires 600 --vv "$T/direct.vv" >/dev/null
# A new ticket replaces the password: the one that goes along.
PW=$(sed -n 's/^password=//p' "$T/direct.vv")
xvfb_start
HOME=$T ip netns exec "$ETCD_NETNS" remote-viewer --debug --spice-debug "$T/direct.vv" >"$T/rv.log" 2>&1 &
RV_PID=$!
for i in $(seq 1 300); do
	ip netns exec "$ETCD_NETNS" ss -tnp | grep "pid=$RV_PID," | grep -q "$(addr_of "$src"):$port0" && break
	alive "$RV_PID" || fail "remote-viewer exited: $(tail -n 20 "$T/rv.log")"
	sleep 0.1
done
ip netns exec "$ETCD_NETNS" ss -tnp | grep "pid=$RV_PID," | grep -q "$(addr_of "$src"):$port0" ||
	fail "remote-viewer did not link to $src: $(tail -n 20 "$T/rv.log")"
sleep 2
out=$(hqq "$src" --json vm migrate desk "$dst")
[ "$(runs_on desk)" = "$dst" ] || fail "after: desk runs on '$(runs_on desk)', not $dst"
log "migrated $src -> $dst: downtime $(echo "$out" | jq .migration.downtime_ms) ms"

port1=$(hqq "$dst" --json vm show desk | jq -r .spice.port)
[ -n "$port1" ] && [ "$port1" != null ] || fail "desk on $dst has no SPICE port"
# Before any other client: SPICE lets one in, a new one ends the last.
sleep 2
alive "$RV_PID" || fail "remote-viewer exited with the migration: $(grep -i migrat "$T/rv.log" | tail -n 10)"
ip netns exec "$ETCD_NETNS" ss -tnp | grep "pid=$RV_PID," >"$T/rv.ss"
grep -q "$(addr_of "$dst"):$port1" "$T/rv.ss" ||
	fail "remote-viewer is not linked to $dst:$port1 after: $(cat "$T/rv.ss"); $(grep -i migrat "$T/rv.log" | tail -n 10)"
grep -q "migration (seamless): connections all ok" "$T/rv.log" ||
	fail "remote-viewer did not migrate seamlessly: $(grep -i migrat "$T/rv.log" | tail -n 10)"
grep -q "$(addr_of "$src"):$port0" "$T/rv.ss" &&
	fail "remote-viewer still holds a connection to $src: $(cat "$T/rv.ss")"
log "a viewer linked directly followed desk to $dst seamlessly (remote-viewer: all channels migrated, $(grep -c . "$T/rv.ss") connections there)"
kill "$RV_PID"; RV_PID=
out=$(probe "$dst" "$port1" "$PW" 2>&1) ||
	fail "spice-probe to desk on $dst with the ticket from $src: $out"
log "after: the same password, ca and subject link to desk on $dst: ok"
rc=0
out=$(probe "$dst" "$port1" "not-$PW" 2>&1) || rc=$?
[ "$rc" = 1 ] || fail "a wrong password on $dst: exit $rc: $out"
log "a wrong password is refused on $dst: ok"
proxy_console after "$dst"
cmp -s "$T/before.pem" "$T/after.pem" ||
	broker_fail "the console's ca changed with the host: a viewer would not trust $dst"
log "after: a viewer reconnecting through the proxy links to desk on $dst, same ca: ok"

# A remote-viewer linked THROUGH the broker's proxy (the portal's .vv,
# proxy=) follows desk's migration back to $src while linked: the
# source's client_migrate_info names its proxy ticket (mig-TICKET), and
# the proxy sends that CONNECT to the target the source names.
ip netns exec "$ETCD_NETNS" curl -sk -o "$T/proxy.vv" -w '%{http_code}' \
    -b "$T/jar" "$PORTAL/api/desktops/desk/console.vv" >"$T/vv.code" ||
	broker_fail "console.vv: curl failed"
[ "$(cat "$T/vv.code")" = 200 ] || broker_fail "console.vv: HTTP $(cat "$T/vv.code")"
grep -q "^proxy=http://$PROXY" "$T/proxy.vv" ||
	fail "the .vv does not go through the proxy $PROXY: $(grep proxy "$T/proxy.vv")"
# remote-viewer deletes the .vv (delete-this-file): its ticket now.
vvticket=$(sed -n 's/^host=//p' "$T/proxy.vv")
case $vvticket in qdesk-desk-*) ;; *) fail "the .vv's host is not a ticket for desk: '$vvticket'" ;; esac
HOME=$T ip netns exec "$ETCD_NETNS" remote-viewer --debug --spice-debug "$T/proxy.vv" >"$T/rvp.log" 2>&1 &
RV_PID=$!
# Linked: its main channel is a SPICE client of desk on $dst.
for i in $(seq 1 300); do
	[ "$(hqq "$dst" --json vm show desk | jq '.spice_clients | length')" -ge 1 ] && break
	alive "$RV_PID" || fail "remote-viewer (proxy) exited: $(tail -n 20 "$T/rvp.log")"
	sleep 0.1
done
[ "$(hqq "$dst" --json vm show desk | jq '.spice_clients | length')" -ge 1 ] ||
	fail "remote-viewer did not link to desk on $dst through the proxy: $(tail -n 20 "$T/rvp.log")"
ip netns exec "$ETCD_NETNS" ss -tnp | grep "pid=$RV_PID," | grep -q "$PROXY" ||
	fail "remote-viewer holds no connection to the proxy $PROXY"
sleep 2
out=$(hqq "$dst" --json vm migrate desk "$src")
[ "$(runs_on desk)" = "$src" ] || fail "back: desk runs on '$(runs_on desk)', not $src"
log "migrated back $dst -> $src: downtime $(echo "$out" | jq .migration.downtime_ms) ms"
port2=$(hqq "$src" --json vm show desk | jq -r .spice.port)
[ -n "$port2" ] && [ "$port2" != null ] || fail "desk on $src has no SPICE port"
sleep 2
alive "$RV_PID" || fail "remote-viewer (proxy) exited with the migration: $(grep -i migrat "$T/rvp.log" | tail -n 10)"
grep -q "migration (seamless): connections all ok" "$T/rvp.log" ||
	broker_fail "remote-viewer through the proxy did not migrate seamlessly: $(grep -i migrat "$T/rvp.log" | tail -n 10)"
grep -q "tunnelled to desk port $port2 on $(addr_of "$src") (migration)" "$BROKER_LOG" ||
	broker_fail "no migration tunnel to desk port $port2 on $src in the broker's log"
# proxy_only TO PORT FROM OLDPORT: the viewer talks only to the proxy;
# the proxy (in etcd's namespace) holds tunnels to desk on TO:PORT (n of
# them, set here) and none to its old QEMU on FROM:OLDPORT.
proxy_only() {
	ip netns exec "$ETCD_NETNS" ss -tnp | grep "pid=$RV_PID," >"$T/rvp.ss"
	grep -q "$(addr_of "$1"):\|$(addr_of "$3"):" "$T/rvp.ss" &&
		fail "remote-viewer bypassed the proxy: $(cat "$T/rvp.ss")"
	ip netns exec "$ETCD_NETNS" ss -tn state established >"$T/proxy.ss"
	n=$(grep -c "$(addr_of "$1"):$2\b" "$T/proxy.ss")
	[ "$n" -ge 1 ] || broker_fail "the proxy holds no tunnel to desk on $1:$2: $(cat "$T/proxy.ss")"
	grep -q "$(addr_of "$3"):$4\b" "$T/proxy.ss" &&
		broker_fail "a tunnel to desk's old QEMU on $3:$4 is still open: $(cat "$T/proxy.ss")"
}
proxy_only "$src" "$port2" "$dst" "$port1"
# Still showing the guest: its display channel came along, and its
# window holds what the host's QEMU shows (the guest's screen somewhere
# under the menus; the cursor blinks: retry): rv_shows HOST sets best.
grep -q "display-[0-9]*:0: migrating channel" "$T/rvp.log" ||
	fail "remote-viewer's display channel did not migrate: $(grep -i migrat "$T/rvp.log" | tail -n 10)"
win=$(DISPLAY=$DISPLAY xdotool search --onlyvisible --pid "$RV_PID" 2>/dev/null | tail -n 1)
[ -n "$win" ] || fail "no remote-viewer window"
rv_shows() {
	local i rmse
	best=1
	for i in $(seq 1 20); do
		hqq "$1" vm screenshot desk "$T/qmp.ppm" >/dev/null
		import -window "$win" "$T/rvp.png" 2>/dev/null || fail "import of remote-viewer's window failed"
		rmse=$(compare -metric RMSE -subimage-search "$T/rvp.png" "$T/qmp.ppm" null: 2>&1 |
		    sed -n 's/^[^(]*(\([0-9.e-]*\)).*/\1/p')
		[ -n "$rmse" ] || rmse=1
		best=$(python3 -c "print(min($best, $rmse))")
		python3 -c "import sys; sys.exit(0 if $rmse < 0.02 else 1)" && break
		sleep 0.5
	done
	python3 -c "import sys; sys.exit(0 if $best < 0.02 else 1)" ||
		fail "remote-viewer does not show desk's screen on $1 after the migration (RMSE $best)"
	# A one-colour screen would match any blank stretch of the window.
	colours=$(identify -format '%k' "$T/qmp.ppm")
	[ "$colours" -ge 2 ] || fail "desk's screen on $1 is one colour: the comparison proves nothing"
}
rv_shows "$src"
log "a viewer linked through the proxy followed desk back to $src seamlessly ($n tunnels to $src:$port2, none to $dst; its window shows the guest, RMSE $best, $colours colours)"

# The same viewer follows a second migration, back to $dst. Its tunnel
# to $src was opened during the first one, so $src's qmpd learnt its
# ticket from migrate.prepare (the broker's desktop.via went to $dst),
# and keeps it in desk's record: $src's qmpd restarts first (SIGTERM,
# desk runs on), and its next migration still sends the viewer through
# the proxy.
grep -q "desk: the source's viewer linked here as .*, through the proxy" "$(log_of "$src")" ||
	fail "$src's qmpd did not tie the viewer's tunnel to the carried ticket: $(grep -a 'desk:' "$(log_of "$src")" | tail -n 5)"
cluster_qmpd_restart "$src"
# It asks the re-attached QEMU which viewers are linked, and watches the
# hosts again.
for i in $(seq 1 100); do
	[ "$(hqq "$src" --json vm show desk | jq '.spice_clients | length')" -ge 1 ] &&
	    [ "$(hq "$src" --json host list | jq -r '[.hosts[] | select(.state == "up")] | length')" = 2 ] && break
	sleep 0.1
done
[ "$(hqq "$src" --json vm show desk | jq '.spice_clients | length')" -ge 1 ] ||
	fail "the restarted $src's qmpd does not see the viewer linked to desk"
out=$(hqq "$src" --json vm migrate desk "$dst")
[ "$(runs_on desk)" = "$dst" ] || fail "again: desk runs on '$(runs_on desk)', not $dst"
log "migrated again $src -> $dst (after $src's qmpd restarted): downtime $(echo "$out" | jq .migration.downtime_ms) ms"
port3=$(hqq "$dst" --json vm show desk | jq -r .spice.port)
[ -n "$port3" ] && [ "$port3" != null ] || fail "desk on $dst has no SPICE port"
sleep 2
alive "$RV_PID" || fail "remote-viewer (proxy) exited with the second migration: $(grep -i migrat "$T/rvp.log" | tail -n 10)"
[ "$(grep -c "migration (seamless): connections all ok" "$T/rvp.log")" -ge 2 ] ||
	broker_fail "remote-viewer through the proxy did not migrate seamlessly twice: $(grep -i migrat "$T/rvp.log" | tail -n 10)"
grep -q "tunnelled to desk port $port3 on $(addr_of "$dst") (migration)" "$BROKER_LOG" ||
	broker_fail "no migration tunnel to desk port $port3 on $dst in the broker's log"
proxy_only "$dst" "$port3" "$src" "$port2"
rv_shows "$dst"
log "the same viewer followed desk's second migration, to $dst, seamlessly ($n tunnels to $dst:$port3, none to $src; its window shows the guest, RMSE $best, $colours colours)"
src=$dst port2=$port3
# A migration CONNECT opens only while a tunnel with its very ticket is
# open: another (forged) one is refused while the viewer is linked, its
# own once the viewer is gone, expired or not.
connect_code() {
	ip netns exec "$ETCD_NETNS" curl -s -o /dev/null -w '%{http_connect}' \
	    --max-time 20 --proxytunnel -x "http://$PROXY" "http://$1/" 2>/dev/null
}
code=$(connect_code "mig-${vvticket%-*}-$(printf '0%.0s' $(seq 1 64)):$port2")
[ "$code" = 403 ] || broker_fail "a forged migration ticket: CONNECT answered $code, not 403"
kill "$RV_PID"; RV_PID=
for i in $(seq 1 100); do
	ip netns exec "$ETCD_NETNS" ss -tn state established | grep -q "$(addr_of "$src"):$port2\b" || break
	sleep 0.1
done
code=$(connect_code "mig-$vvticket:$port2")
[ "$code" = 403 ] || broker_fail "the viewer's migration ticket with no tunnel open: CONNECT answered $code, not 403"
[ "$(grep -c "no open tunnel holds its ticket" "$BROKER_LOG")" -ge 2 ] ||
	broker_fail "the broker's log does not say why the migration CONNECTs were refused"
log "a migration CONNECT without an open tunnel holding its ticket is refused: ok"
hqq "$src" vm stop desk --force >/dev/null
log "ok"
