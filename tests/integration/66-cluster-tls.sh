#!/usr/bin/env bash
# The cluster's mutual TLS (issue 13): `qdesk cluster init` makes the
# cluster CA and publishes it in etcd (/qdesk/v1/cluster), again is fine,
# another CA is refused; `qdesk cluster cert` issues host, broker and admin
# certificates; qmpd --listen serves the admin protocol over TLS with the
# role from the client certificate: the admin CLI works remotely
# (`qdesk --host ADDR:PORT --cert DIR`), a host and a broker get their own
# roles and no more; a certificate of another CA, a CN that names no role,
# no certificate and a plain-TCP client are each refused with a clear
# error, and a bad --listen value is a one-line error.
. "$(dirname "$0")/lib.sh"
. "$top/tests/lib/cluster-tls-lib.sh"

[ "$(id -u)" = 0 ] || skip "needs root (network namespace)"
need_tools etcd openssl ip jq socat

net_up
cluster_init
out=$CLUSTER_INIT
[[ $out == "cluster CA $CA/ca.pem made "* ]] || fail "cluster init: $out"
[ "$(stat -c %a "$CA/ca-key.pem")" = 600 ] || fail "the CA key is not 0600"
got=$(eget cluster)
[ "$(echo "$got" | jq -r .version)" = 1 ] || fail "/qdesk/v1/cluster: $got"
[ "$(echo "$got" | jq -r .ca)" = "$(cat "$CA/ca.pem")" ] ||
	fail "the CA in etcd is not $CA/ca.pem"
openssl x509 -in "$CA/ca.pem" -noout -text | grep -q "CA:TRUE" ||
	fail "the cluster CA is not a CA"
out=$(inns "$QDESK_BIN" cluster init --etcd "$ETCD" --dir "$CA" 2>&1) ||
	fail "cluster init again: $out"
[[ $out == *" kept "* ]] || fail "cluster init again: $out"
# Another CA against the same etcd: refused (its files are still made,
# and serve below as a rogue CA).
out=$(inns "$QDESK_BIN" cluster init --etcd "$ETCD" --dir "$T/other" 2>&1) &&
	fail "a second CA was published: $out"
[ "$out" = "qdesk: cluster init: etcd at $ETCD already holds another cluster's CA (/qdesk/v1/cluster): use that cluster's CA directory, or a fresh etcd" ] ||
	fail "a second CA: $out"
out=$(q cluster init --etcd http://127.0.0.1:1 --dir "$T/x" 2>&1) &&
	fail "init without etcd succeeded"
[ "$(echo "$out" | wc -l)" = 1 ] && [[ $out == "qdesk: cluster init: etcd at http://127.0.0.1:1: "* ]] ||
	fail "init with no etcd: $out"
log "cluster init: CA made, in etcd, kept on a re-run, another refused: ok"

# cluster cert: leaves of the CA with the role's CN.
qq cluster cert host h1 --dir "$CA" --addr 127.0.0.1 >/dev/null
qq cluster cert host h2 --dir "$CA" >/dev/null
qq cluster cert broker b1 --dir "$CA" >/dev/null
out=$(qq cluster cert admin alice --dir "$CA")
[ "$out" = "alice: certificate \"admin:alice\" in $CA/admin-alice (cert.pem, key.pem, ca.pem)" ] ||
	fail "cluster cert admin: $out"
qq cluster cert admin rogue --dir "$T/other" >/dev/null
for d in host-h1 host-h2 broker-b1 admin-alice; do
	openssl verify -CAfile "$CA/ca.pem" "$CA/$d/cert.pem" >/dev/null 2>&1 ||
		fail "$d: not signed by the cluster CA"
	cmp -s "$CA/ca.pem" "$CA/$d/ca.pem" || fail "$d: no ca.pem beside it"
done
openssl x509 -in "$CA/host-h1/cert.pem" -noout -subject | grep -q "CN = host:h1" ||
	fail "host h1's CN: $(openssl x509 -in "$CA/host-h1/cert.pem" -noout -subject)"
openssl x509 -in "$CA/host-h1/cert.pem" -noout -ext subjectAltName |
	grep -q "IP Address:127.0.0.1" || fail "host h1 has no IP SAN"
openssl x509 -in "$CA/broker-b1/cert.pem" -noout -subject | grep -q "CN = broker$" ||
	fail "the broker's CN"
openssl x509 -in "$CA/admin-alice/cert.pem" -noout -ext extendedKeyUsage |
	grep -q "TLS Web Client Authentication" || fail "no clientAuth usage"
out=$(q cluster cert guest x --dir "$CA" 2>&1); [ $? = 2 ] || fail "KIND guest: $out"
[ "$out" = 'qdesk: cluster cert: KIND must be host, broker, admin or spice, not "guest"' ] ||
	fail "KIND guest: $out"
out=$(q cluster cert admin bob --dir "$T/nothing" 2>&1) && fail "cert without a CA"
[ "$out" = "qdesk: cluster cert: no CA in $T/nothing (qdesk cluster init --etcd URLS --dir $T/nothing makes it)" ] ||
	fail "cert without a CA: $out"
log "cluster cert: host, broker, admin leaves with their CNs: ok"

# A CN that names no role, signed by the right CA.
mkdir -p "$T/guest"
openssl req -new -newkey rsa:2048 -nodes -keyout "$T/guest/key.pem" \
    -subj "/CN=guest" -out "$T/guest.csr" 2>/dev/null || fail "openssl req"
printf 'extendedKeyUsage=clientAuth\n' >"$T/guest.ext"
openssl x509 -req -in "$T/guest.csr" -CA "$CA/ca.pem" -CAkey "$CA/ca-key.pem" \
    -CAcreateserial -days 2 -extfile "$T/guest.ext" -out "$T/guest/cert.pem" \
    2>/dev/null || fail "openssl x509"
cp "$CA/ca.pem" "$T/guest/"
mkdir -p "$T/nocert" && cp "$CA/ca.pem" "$T/nocert/"

# qmpd with a cluster file and --listen, in the namespace.
cat >"$T/cluster.json" <<EOF
{"name": "h1", "etcd": ["$ETCD"], "listen": "127.0.0.1:7443",
 "ca": "$CA/host-h1/ca.pem", "cert": "$CA/host-h1/cert.pem",
 "key": "$CA/host-h1/key.pem"}
EOF
# Bad --listen values: one line each, before anything starts.
for bad in nonsense 127.0.0.1: 127.0.0.1:0 127.0.0.1:70000 host.example:7443; do
	out=$("$QMPD" -f --state-dir "$T/bad" --cluster "$T/cluster.json" \
	    --listen "$bad" 2>&1) && fail "--listen $bad accepted"
	[ "$(echo "$out" | wc -l)" = 1 ] && [[ $out == *"--listen \"$bad\": want ADDR:PORT"* ]] ||
		fail "--listen $bad: $out"
done
out=$("$QMPD" -f --state-dir "$T/bad" --listen 127.0.0.1:7443 2>&1) &&
	fail "--listen without --cluster accepted"
[ "$(echo "$out" | wc -l)" = 1 ] && [[ $out == *"--listen needs --cluster FILE"* ]] ||
	fail "--listen without --cluster: $out"
log "bad --listen values: one-line errors: ok"

ip netns exec "$NS" "$QMPD" -f -v --state-dir "$STATE" --cluster "$T/cluster.json" \
    >>"$QMPD_LOG" 2>&1 &
QMPD_PID=$!
for i in $(seq 1 100); do
	grep -q "cluster: listening on 127.0.0.1:7443" "$QMPD_LOG" && break
	kill -0 "$QMPD_PID" 2>/dev/null || fail "qmpd exited at start"
	sleep 0.05
done
grep -q "cluster: listening on 127.0.0.1:7443" "$QMPD_LOG" || fail "qmpd does not listen"

# The admin CLI over TLS.
rq() { inns "$QDESK_BIN" --host 127.0.0.1:7443 "$@"; }
got=$(rq --cert "$CA/admin-alice" --json status) || fail "status over TLS: $got"
[ "$(echo "$got" | jq -r .state_dir)" = "$STATE" ] || fail "status over TLS: $got"
out=$(rq --cert "$CA/admin-alice" vm create tiny --memory 64 --accel kvm \
    --disk "$(tiny_disk tiny)" --display none 2>&1) || fail "vm create over TLS: $out"
[ "$(q --json vm show tiny | jq -r .name)" = tiny ] || fail "the VM is not there locally"
rq --cert "$CA/admin-alice" vm list | grep -q "^tiny " ||
	fail "vm list over TLS: $(rq --cert "$CA/admin-alice" --json vm list)"
grep -q "cluster: 127.0.0.1:[0-9]* connected as admin:alice" "$QMPD_LOG" ||
	fail "the log does not name the admin"
QDESK_HOST=127.0.0.1:7443 QDESK_CERT=$CA/admin-alice inns "$QDESK_BIN" status >/dev/null ||
	fail "QDESK_HOST and QDESK_CERT"
log "the admin CLI over mutual TLS: ok"

# Roles from the CN: a host and a broker may not administer...
out=$(rq --cert "$CA/host-h2" status 2>&1) && fail "a host ran server.status"
[ "$out" = "qdesk: PermissionDenied: server.status is for administrators" ] ||
	fail "a host's status: $out"
grep -q "host:h2 at 127.0.0.1:[0-9]* denied server.status" "$QMPD_LOG" ||
	fail "qmpd's log does not name the host it denied"
out=$(rq --cert "$CA/broker-b1" vm start tiny 2>&1) && fail "the broker ran vm.start"
[[ $out == "qdesk: PermissionDenied: "* ]] || fail "the broker's vm start: $out"
# ... but do what their role allows (desktop.mine is the broker's).
raw() {
	printf '%s\n' "$2" | inns timeout 10 openssl s_client -quiet -no_ign_eof \
	    -connect 127.0.0.1:7443 -CAfile "$CA/ca.pem" \
	    -cert "$1/cert.pem" -key "$1/key.pem" 2>/dev/null | sed -n 2p
}
for who in broker-b1 host-h2; do
	got=$(raw "$CA/$who" '{"id":1,"cmd":"desktop.mine","args":{"login":"nobody"}}')
	echo "$got" | jq -e '.id == 1 and .error.class != "PermissionDenied"' >/dev/null ||
		fail "$who: desktop.mine: $got"
done
log "roles from the certificate: host and broker limited to theirs: ok"

# Refused: another CA, a CN with no role, no certificate, plain TCP, and
# a server of another CA for the client.
# (a rogue certificate, but the cluster's ca.pem to check the host with)
mkdir -p "$T/mixed" && cp "$T/other/admin-rogue/"*.pem "$T/mixed/" && cp "$CA/ca.pem" "$T/mixed/"
out=$(rq --cert "$T/mixed" status 2>&1); st=$?
[ $st = 3 ] && [ "$(echo "$out" | wc -l)" = 1 ] &&
    [[ $out == "qdesk: cannot reach qmpd at 127.0.0.1:7443: the host refused our certificate: it is not of this cluster's CA ("* ]] ||
	fail "another CA's certificate (exit $st): $out"
grep -q "cluster: refused 127.0.0.1:[0-9]*: TLS: certificate verify failed: unable to get local issuer certificate (a certificate not of this cluster's CA)" "$QMPD_LOG" ||
	fail "qmpd's log does not say why it refused another CA"
out=$(rq --cert "$T/guest" status 2>&1); st=$?
[ $st = 1 ] && [ "$out" = 'qdesk: PermissionDenied: certificate CN "guest" names no role (host:NAME, broker or admin:NAME)' ] ||
	fail "CN guest (exit $st): $out"
out=$(rq --cert "$T/nocert" status 2>&1); st=$?
[ $st = 3 ] && [[ $out == "qdesk: cannot reach qmpd at 127.0.0.1:7443: the host wants a client certificate of the cluster CA and none was given"* ]] ||
	fail "no certificate (exit $st): $out"
grep -q "cluster: refused 127.0.0.1:[0-9]*: TLS: .*(no client certificate)" "$QMPD_LOG" ||
	fail "qmpd's log does not say it refused a client without a certificate"
out=$(rq --cert "$CA/admin-alice" --timeout 5 status 2>&1 </dev/null) || fail "after refusals: $out"
got=$(printf '{"id":1,"cmd":"server.status"}\n' |
    inns socat -T 5 - TCP:127.0.0.1:7443 2>&1)
echo "$got" | jq -e '.error.class == "PermissionDenied" and (.error.desc | test("speaks TLS with a client certificate"))' >/dev/null ||
	fail "plain TCP: $got"
out=$(inns "$QDESK_BIN" --host 127.0.0.1:23799 --cert "$CA/admin-alice" status 2>&1) &&
	fail "the CLI took etcd's plain port for a host"
[[ $out == *"it does not speak TLS as a qdesk host does"* ]] || fail "the CLI on a plain port: $out"
ip netns exec "$NS" timeout 10 socat TCP-LISTEN:7444,bind=127.0.0.1,reuseaddr \
    SYSTEM:'echo "{\"qdesk\":{\"version\":\"0.1.0\",\"protocol\":1}}"; sleep 2' &
NET_PIDS="$NET_PIDS $!"
for i in $(seq 1 50); do
	out=$(inns "$QDESK_BIN" --host 127.0.0.1:7444 --cert "$CA/admin-alice" status 2>&1) &&
		fail "the CLI took a plain qmpd-like port for a host"
	[[ $out == *"Connection refused"* ]] || break
	sleep 0.1
done
[[ $out == *"it does not speak TLS as a qdesk host does"* ]] || fail "the CLI on a plain qmpd-like port: $out"
mkdir -p "$T/wrongca" && cp "$CA/admin-alice/"*.pem "$T/wrongca/" && cp "$T/other/ca.pem" "$T/wrongca/"
out=$(rq --cert "$T/wrongca" status 2>&1) && fail "a host of another CA was trusted"
[[ $out == *"the host's certificate is not of the cluster CA in this directory"* ]] ||
	fail "a host of another CA: $out"
out=$(q --host 127.0.0.1:7443 status 2>&1); [ $? = 2 ] || fail "--host without --cert: $out"
[[ $out == "qdesk: --host needs --cert DIR"* ]] || fail "--host without --cert: $out"
# The daemon is still fine, locally and remotely.
q status >/dev/null || fail "qmpd does not answer locally after the refusals"
rq --cert "$CA/admin-alice" status >/dev/null || fail "qmpd does not answer over TLS after the refusals"
log "another CA, a CN with no role, no certificate, plain TCP: refused, said why: ok"
exit 0
