#!/usr/bin/env bash
# test: idle  (etcd over TLS and a qmpd, no TCG: measured 2 s of CPU in 23 s)
# The etcd client over TLS with client certificates: an etcd that demands
# them (--client-cert-auth) serves put, range and a watch to a client with
# a certificate of its CA, and refuses, with the TLS reason in the error,
# a client without one and one signed by another CA; a client that does
# not trust the server's CA refuses it, with the TLS reason in the error.
# qmpd --cluster joins through it with its cluster file's etcd_ca,
# etcd_cert and etcd_key; one with another CA's certificate does not,
# and exits on SIGTERM while it still tries.
. "$(dirname "$0")/lib.sh"

etcd_drive_need etcd openssl ip jq

NS=qdt-etcdtls-$$
ETCD_PID=
WATCH_PID=
tls_cleanup() {
	[ -n "$WATCH_PID" ] && kill "$WATCH_PID" 2>/dev/null
	if [ -n "$ETCD_PID" ] && tr '\0' ' ' <"/proc/$ETCD_PID/cmdline" \
	    2>/dev/null | grep -q -- "--data-dir $T/etcd "; then
		kill -9 "$ETCD_PID"
		wait "$ETCD_PID" 2>/dev/null
	fi
	ip netns del "$NS" 2>/dev/null
}
EXTRA_CLEANUP=tls_cleanup

ca() {
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
	    -nodes -keyout "$T/$1.key" -subj "/CN=$1" -days 2 \
	    -out "$T/$1.crt" 2>"$T/openssl.err" || fail "openssl: $(cat "$T/openssl.err")"
}
# leaf NAME SAN CA
leaf() {
	openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
	    -nodes -keyout "$T/$1.key" -subj "/CN=$1" -out "$T/$1.csr" \
	    2>"$T/openssl.err" || fail "openssl: $(cat "$T/openssl.err")"
	printf 'subjectAltName=%s\nextendedKeyUsage=serverAuth,clientAuth\n' \
	    "$2" >"$T/$1.ext"
	openssl x509 -req -in "$T/$1.csr" -CA "$T/$3.crt" -CAkey "$T/$3.key" \
	    -CAcreateserial -days 2 -extfile "$T/$1.ext" -out "$T/$1.crt" \
	    2>"$T/openssl.err" || fail "openssl: $(cat "$T/openssl.err")"
}
ca ca
ca other
leaf server IP:127.0.0.1 ca
leaf h1 DNS:h1 ca
leaf rogue DNS:h1 other

ip netns add "$NS" || fail "cannot create namespace $NS"
ip netns exec "$NS" ip link set lo up
ip netns exec "$NS" etcd --name t --data-dir "$T/etcd" \
    --listen-client-urls https://127.0.0.1:23799 \
    --advertise-client-urls https://127.0.0.1:23799 \
    --listen-peer-urls http://127.0.0.1:23798 \
    --initial-advertise-peer-urls http://127.0.0.1:23798 \
    --initial-cluster t=http://127.0.0.1:23798 \
    --cert-file "$T/server.crt" --key-file "$T/server.key" \
    --trusted-ca-file "$T/ca.crt" --client-cert-auth \
    --logger zap --log-level warn >"$T/etcd.log" 2>&1 &
ETCD_PID=$!

drive() { ip netns exec "$NS" "$DRIVE" -e https://127.0.0.1:23799 -t 2000 "$@"; }
good=(-C "$T/ca.crt" -c "$T/h1.crt" -k "$T/h1.key")
ok=
for i in $(seq 1 100); do
	if out=$(drive "${good[@]}" put tls yes); then ok=1; break; fi
	sleep 0.2
done
[ -n "$ok" ] || fail "no put over TLS: $out; $(tail -n 5 "$T/etcd.log")"
out=$(drive "${good[@]}" get tls)
[ "$out" = $'tls=yes\ncount 1' ] || fail "range over TLS: $out"

drive "${good[@]}" watch tls 1 >"$T/watch.out" 2>&1 &
WATCH_PID=$!
for i in $(seq 1 100); do
	grep -q created "$T/watch.out" 2>/dev/null && break
	sleep 0.1
done
drive "${good[@]}" put tls again >/dev/null || fail "second put over TLS"
for i in $(seq 1 100); do
	kill -0 "$WATCH_PID" 2>/dev/null || break
	sleep 0.1
done
wait "$WATCH_PID" || fail "watch over TLS: $(cat "$T/watch.out")"
WATCH_PID=
grep -q '^PUT tls again' "$T/watch.out" ||
	fail "watch over TLS saw: $(cat "$T/watch.out")"
# Kept TLS connections carry many calls, several at a time.
out=$(drive "${good[@]}" bench 300 4) || fail "calls over kept TLS connections: $out"
log "over TLS: $(echo "$out" | tr '\n' ' ')"
log "put, range, watch over TLS with a client certificate: ok"

# Refused.  When etcd refuses the client's certificate, the TLS alert
# comes after the client's side of the handshake (TLS 1.3) and the reason
# reaches the client only most of the time: the error names the endpoint;
# when the client refuses the server, the reason is always there.
out=$(drive -C "$T/ca.crt" get tls) && fail "no client certificate, yet: $out"
[[ $out == "error "*"https://127.0.0.1:23799: "* ]] ||
	fail "no client certificate: unclear error: $out"
log "no client certificate: $out"
out=$(drive -C "$T/ca.crt" -c "$T/rogue.crt" -k "$T/rogue.key" get tls) &&
	fail "a certificate of another CA, yet: $out"
[[ $out == "error "*"https://127.0.0.1:23799: "* ]] ||
	fail "another CA: unclear error: $out"
out=$(drive -C "$T/other.crt" -c "$T/h1.crt" -k "$T/h1.key" get tls) &&
	fail "a server of an untrusted CA, yet: $out"
[[ $out == *"TLS: certificate verify failed"* ]] ||
	fail "untrusted server: unclear error: $out"
out=$(drive -C "$T/ca.crt" -c "$T/h1.crt" -k "$T/rogue.key" get tls) &&
	fail "a key that is not the certificate's, yet: $out"
[[ $out == "error "*"cannot use key"* ]] || fail "mismatched key: $out"
log "refused without a good certificate: ok"

# qmpd in cluster mode on this etcd (the cluster file's etcd_ca,
# etcd_cert, etcd_key): it joins over TLS (hosts/h1 in etcd, host list
# says up); one with a certificate of another CA never joins, and its
# log says why.
QMPD_ORIG=$QMPD
QMPD=$T/qmpd-in-ns
printf '#!/bin/sh\nexec ip netns exec %s %s "$@"\n' "$NS" "$QMPD_ORIG" >"$QMPD"
chmod 755 "$QMPD"
conf() { # NAME CERT LEASE_TTL
	printf '{"name": "%s", "etcd": ["https://127.0.0.1:23799"], "addr": "127.0.0.1",
 "etcd_ca": "%s", "etcd_cert": "%s", "etcd_key": "%s", "lease_ttl": %s, "fence_delay": 5}\n' \
	    "$1" "$T/ca.crt" "$T/$2.crt" "$T/$2.key" "$3" >"$T/$1.json"
}
conf h1 h1 5
start_qmpd --cluster "$T/h1.json"
for i in $(seq 1 100); do
	[ "$(q --json host list 2>/dev/null | jq -r '.hosts[] | select(.name == "h1") | .state')" = up ] && break
	sleep 0.1
done
[ "$(q --json host list | jq -r '.hosts[] | select(.name == "h1") | .state')" = up ] ||
	fail "qmpd over TLS: host list: $(q host list 2>&1); $(tail -n 5 "$QMPD_LOG")"
out=$(drive "${good[@]}" get /qdesk/v1/hosts/h1)
echo "$out" | grep -q '^/qdesk/v1/hosts/h1={.*"addr":"127.0.0.1"' || fail "hosts/h1 in etcd: $out"
# A 30 s lease: it is still joining (not yet given up for this lease)
# when it is told to stop below.
conf h2 rogue 30
mkdir -p "$T/s2"
"$QMPD" -f -v --state-dir "$T/s2" --cluster "$T/h2.json" >"$T/q2.log" 2>&1 &
Q2_PID=$!
EXTRA_CLEANUP="kill \$Q2_PID 2>/dev/null; $EXTRA_CLEANUP"
for i in $(seq 1 250); do	# its first read gives up after lease_ttl/2
	grep -q "cluster: etcd https://127.0.0.1:23799: .*(again in" "$T/q2.log" && break
	sleep 0.1
done
grep -q "cluster: etcd https://127.0.0.1:23799: .*(again in" "$T/q2.log" ||
	fail "qmpd with another CA's certificate does not say why it cannot reach etcd: $(tail -n 5 "$T/q2.log")"
out=$(drive "${good[@]}" get /qdesk/v1/hosts/h2)
[ "$out" = "count 0" ] || fail "h2 with another CA's certificate is in etcd: $out"
[ "$(q --json host list | jq '[.hosts[] | select(.name == "h2")] | length')" = 0 ] ||
	fail "h1 lists h2: $(q host list)"
log "qmpd --cluster over etcd's TLS joins; one with another CA's certificate does not: $(grep -m1 "cluster: etcd https" "$T/q2.log" | sed 's/.*cluster: //')"
# SIGTERM while it is still trying to join: it exits (a signal that came
# during the join was once spent on the join's loop, and qmpd ran on).
kill "$Q2_PID" 2>/dev/null
for i in $(seq 1 100); do
	alive "$Q2_PID" || break
	sleep 0.1
done
alive "$Q2_PID" && fail "qmpd still runs 10 s after SIGTERM during its cluster join: $(tail -n 3 "$T/q2.log")"
wait "$Q2_PID" 2>/dev/null
log "qmpd told to stop while joining exits: ok"
stop_qmpd
# Their fencing watchdogs (a qmpd that stops leaves one until its lease ends).
for f in "$STATE/cluster-watchdog.pid" "$T/s2/cluster-watchdog.pid"; do
	pid=$(cat "$f" 2>/dev/null) || continue
	tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "$T/" && kill "$pid" 2>/dev/null
done
exit 0
