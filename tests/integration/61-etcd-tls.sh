#!/usr/bin/env bash
# The etcd client over TLS with client certificates: an etcd that demands
# them (--client-cert-auth) serves put, range and a watch to a client with
# a certificate of its CA, and refuses, with the TLS reason in the error,
# a client without one and one signed by another CA; a client that does
# not trust the server's CA refuses it, with the TLS reason in the error.
. "$(dirname "$0")/lib.sh"

etcd_drive_need etcd openssl ip

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
exit 0
