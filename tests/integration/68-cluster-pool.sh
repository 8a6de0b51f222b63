#!/usr/bin/env bash
# Users, departments, pools and assignments in etcd (issue 13):
# `scripts/cluster up 3`, each host with the template; users added on
# different hosts are every host's (the broker's logins all go to one
# host); a floating stateless pool of 6 made on h2 is the cluster's
# (members defined in etcd, placed when handed out); 6 users log in
# through the portal, each gets their own desktop, the 6 run on at least
# 2 hosts (each QEMU in exactly one host's process table), and each
# user's console ticket names the host that runs it and links SPICE
# through the broker's proxy to it. A logout gives the desktop back: its
# host kills it, resets it from the template and frees it; two hosts
# asked at once for the one free desktop give it to one user only (CAS
# on owners/VM), the other is told none is free. A user added
# on h1 logs in and reaches a desktop pinned to h2 that h3 assigned;
# an assignment goes when its VM is deleted. Bad
# input: a pool on an unknown template, a user or pool that exists.
# Then pool resize up and down across hosts (never a desktop in use), a
# failed start that releases its claim, pool set, and pool rm refused
# while a desktop is in use, accepted once it is free; --prestart.
. "$(dirname "$0")/lib.sh"

[ "$(id -u)" = 0 ] || skip "needs root (network namespaces)"
[ -r /dev/kvm ] || skip "no /dev/kvm"
need_tools etcd jq curl
. "$top/tests/lib/cluster-lib.sh"
PROBE=$top/build/broker/spice-probe
cluster_test_up 3 5 5
PROXY=${PORTAL#https://}
PROXY=${PROXY%:*}:3128

# The template on every host (placement clones it where it places).
tpl_on_every_host

# Users and a department, added on different hosts, are everyone's.
hqq h3 dept add sales >/dev/null
for i in 1 2 3 4 5 6; do
	h=h$(( (i - 1) % 3 + 1 ))
	echo "pw-u$i-secret" | hqq "$h" user add "u$i" --dept sales --password-stdin >/dev/null
done
for h in $HOSTS; do
	until_ok 10 "$h sees all 6 users" \
	    "[ \"\$(hq $h --json user list | jq '[.users[] | select(.dept == \"sales\")] | length')\" = 6 ]"
done
out=$(hq h2 user add u1 --password-stdin <<<"pw" 2>&1) && fail "u1 added twice: $out"
[ "$out" = "qdesk: AlreadyExists: a user named u1 already exists" ] ||
	fail "u1 again on h2 said: $out"
out=$(hq h1 dept rm sales 2>&1) && fail "sales removed with users"
echo "$out" | grep -q "department sales still has 6 users" || fail "dept rm sales said: $out"
[ "$(eget users/u4 | jq -r '.dept + " " + (.hash | startswith("$y$") | tostring)')" = "sales true" ] ||
	fail "users/u4 in etcd: $(eget users/u4)"
log "users and departments added on any host are every host's (etcd), a duplicate refused: ok"

# Bad pools, then the pool, made on h2, everyone's.
out=$(hq h1 pool create bad --template nosuch --size 2 --accel kvm 2>&1) &&
	fail "a pool on an unknown template: $out"
[ "$out" = "qdesk: NotFound: no image named nosuch (qdesk image list)" ] ||
	fail "pool on an unknown template said: $out"
hqq h2 pool create lin --template tpl --size 6 --mode floating --stateless \
    --dept sales --accel kvm --memory 32 --display spice --listen 0.0.0.0 >/dev/null
for h in $HOSTS; do
	until_ok 10 "$h sees pool lin with 6 free desktops" \
	    "[ \"\$(hq $h --json pool show lin | jq -c '[.count, .free]')\" = '[6,6]' ]"
done
out=$(hq h3 pool create lin --template tpl --size 1 --accel kvm 2>&1) &&
	fail "pool lin made twice: $out"
[ "$out" = "qdesk: AlreadyExists: a pool named lin already exists" ] ||
	fail "pool lin again on h3 said: $out"
[ "$(eget vms/lin-6 | jq -r '.def.from + " " + .def.pool')" = "tpl lin" ] ||
	fail "vms/lin-6: $(eget vms/lin-6)"
[ -z "$(runs_on lin-1)" ] || fail "lin-1 runs before anyone has it"
log "pool lin (floating, stateless, 6) made on h2, in etcd, seen by every host: ok"

# The portal: 6 users log in, each is handed a desktop of their own.
api() {
	local u=$1 method=$2 path=$3 body=${4:-}
	local args=(-sk -o "$T/api.body" -w '%{http_code}' -b "$T/jar-$u" -c "$T/jar-$u" -X "$method")
	if [ "$method" = POST ]; then
		args+=(-H 'X-Qdesk: 1' -H 'Content-Type: application/json' --data "${body:-{\}}")
	fi
	CODE=$(inet curl --max-time 240 "${args[@]}" "$PORTAL$path") || CODE=000
	BODY=$(cat "$T/api.body" 2>/dev/null)
}
expect() { [ "$CODE" = "$1" ] || fail "wanted HTTP $1, got $CODE: $BODY${2:+ ($2)}"; }
field() { printf '%s' "$BODY" | jq -r "$1"; }
declare -A DESK
for i in 1 2 3 4 5 6; do
	api u$i POST /api/login "{\"user\":\"u$i\",\"password\":\"pw-u$i-secret\"}"
	expect 200 "login u$i"
	api u$i GET /api/desktops
	expect 200 "desktops of u$i"
	[ "$(field length)" = 1 ] && [ "$(field '.[0].pool')" = lin ] &&
	    [ "$(field '.[0].state')" = running ] || fail "u$i got: $BODY"
	DESK[u$i]=$(field '.[0].name')
	api u$i GET /api/desktops
	[ "$(field '.[0].name')" = "${DESK[u$i]}" ] || fail "u$i's second list: $BODY"
done
[ "$(printf '%s\n' "${DESK[@]}" | sort -u | wc -l)" = 6 ] ||
	fail "6 users, desktops: ${DESK[*]}"
for i in 1 2 3 4 5 6; do
	[ "$(eget "owners/${DESK[u$i]}" | jq -r .login)" = "u$i" ] ||
		fail "owners/${DESK[u$i]}: $(eget "owners/${DESK[u$i]}")"
done
hosts_used=
declare -A WHERE
for i in 1 2 3 4 5 6; do
	d=${DESK[u$i]}
	w=$(runs_on "$d")
	case "$w" in h[1-3]) ;; *) fail "$d runs on '$w', not on exactly one host";; esac
	[ "$(eget "placement/$d" | jq -r .host)" = "$w" ] ||
		fail "$d runs on $w, placement says $(eget "placement/$d")"
	WHERE[$d]=$w
	hosts_used="$hosts_used $w"
done
n=$(printf '%s\n' $hosts_used | sort -u | wc -l)
[ "$n" -ge 2 ] || fail "the 6 desktops run on $n host(s): $hosts_used"
[ "$(hq h1 --json pool show lin | jq -c '[.in_use, .free]')" = '[6,0]' ] ||
	fail "pool lin on h1: $(hq h1 --json pool show lin | jq -c .)"
log "6 logins through the portal, 6 desktops of pool lin on $n hosts ($(printf '%s\n' $hosts_used | sort | uniq -c | tr -s ' \n' ' ')): ok"

# Each console: the ticket names the desktop's host; the proxy links it.
for i in 1 2 3 4 5 6; do
	d=${DESK[u$i]} h=${WHERE[${DESK[u$i]}]}
	addr=${h}_ADDR
	api u$i POST "/api/desktops/$d/console"
	expect 200 "console of $d for u$i"
	[ "$(field .host)" = "${!addr}" ] ||
		fail "$d runs on $h (${!addr}), its ticket names $(field .host)"
	field .ca | sed '/^$/d' >"$T/ca-$i.pem"
	out=$(inet "$PROBE" unused "$(field .port)" "$(field .password)" --proxy "$PROXY" \
	    --ticket "$(field .ticket)" --ca "$T/ca-$i.pem" \
	    --host-subject "$(field .host_subject)" 2>&1) ||
		fail "spice-probe through the proxy to $d on $h: $out"
done
log "each console ticket leads through the proxy to the desktop's host: ok"

# u1 logs out: the desktop goes back, its host kills it, resets it from
# the template and frees it (owners/ gone); the pool has 1 free.
d=${DESK[u1]} h=${WHERE[${DESK[u1]}]}
api u1 POST /api/logout
expect 200 "logout u1"
until_ok 60 "$d back in pool lin, reset and free" \
    "[ -z \"\$(eget owners/$d)\" ] && [ -z \"\$(runs_on $d)\" ]"
lf=${h}_LOG
grep -q "cluster: $d: reset from its template, free again" "${!lf}" ||
	fail "$h did not reset $d: $(grep "$d" "${!lf}" | tail -n 5)"
until_ok 10 "pool lin with 1 free on h3" \
    "[ \"\$(hq h3 --json pool show lin | jq -c '[.in_use, .free]')\" = '[5,1]' ]"
log "a logout gives the desktop back: stopped, reset on its host, free: ok"

# Two hosts hand out the one free desktop at once (desktop.acquire on
# h2's and h3's sockets together, for r1 and r2): exactly one gets it,
# the other is told none is free; owners/ names the winner.
echo pw-r1-secret | hqq h2 user add r1 --dept sales --password-stdin >/dev/null
echo pw-r2-secret | hqq h3 user add r2 --dept sales --password-stdin >/dev/null
for h in h2 h3; do
	until_ok 10 "$h sees r1, r2 and one free desktop" \
	    "[ \"\$(hq $h --json user list | jq '[.users[] | select(.login | test(\"^r[12]$\"))] | length')\" = 2 ] &&
	     [ \"\$(hq $h --json pool show lin | jq .free)\" = 1 ]"
done
# One process sends both (cluster_race): the loser's claim then usually
# reaches etcd and loses there, the path test 86 repeats.
cluster_race "$h2_SOCKET" r1 "$h3_SOCKET" r2 >"$T/race" 2>&1
sed -n 1p "$T/race" >"$T/acq-r1"
sed -n 2p "$T/race" >"$T/acq-r2"
# The loser's qmpd once died right after telling its user none is free.
for h in h2 h3; do
	hq "$h" status >/dev/null ||
		fail "the qmpd of $h is gone after the race: r1 got $(cat "$T/acq-r1"), r2 got $(cat "$T/acq-r2")"
done
won=$(cat "$T/acq-r1" "$T/acq-r2" | jq -r 'select(.return.name != null) | .return.name')
busy=$(cat "$T/acq-r1" "$T/acq-r2" | jq -r 'select(.error.class == "Busy") | .error.desc')
[ "$(echo "$won" | grep -c .)" = 1 ] && [ "$(echo "$busy" | grep -c .)" = 1 ] ||
	fail "one free desktop, two hosts: r1 got $(cat "$T/acq-r1"), r2 got $(cat "$T/acq-r2")"
[ "$won" = "$d" ] || fail "the free desktop was $d, $won was handed out"
winner=$(grep -l '"return"' "$T/acq-r1" "$T/acq-r2" | sed 's/.*acq-//')
[ "$(eget "owners/$d" | jq -r .login)" = "$winner" ] ||
	fail "owners/$d: $(eget "owners/$d"), $winner got it"
[ "$(runs_on "$d" | wc -w)" = 1 ] || fail "$d runs on '$(runs_on "$d")'"
log "two hosts, one free desktop, two users at once: $winner got $d, the other was told none is free: ok"

# u7, added on h1, is given (from h3) a desktop pinned to h2; they log
# in through the portal (the broker's logins go to h1), Start places it
# on h2, and the console leads through the proxy to h2.
echo "pw-u7-secret" | hqq h1 user add u7 --password-stdin >/dev/null
hqq h1 vm create solo --accel kvm --disk "$(tiny_disk solo)" --memory 32 \
    --display spice --listen 0.0.0.0 --host h2 >/dev/null
until_ok 10 "h3 sees u7 and solo" \
    "hq h3 --json user list | jq -e '.users[] | select(.login == \"u7\")' >/dev/null &&
     hq h3 vm show solo >/dev/null 2>&1"
hqq h3 desktop assign u7 solo >/dev/null
[ "$(eget owners/solo | jq -r .login)" = u7 ] || fail "owners/solo: $(eget owners/solo)"
for h in $HOSTS; do
	until_ok 10 "$h lists solo as u7's" \
	    "hq $h --json desktop list --user u7 | jq -e '.desktops[] | select(.vm == \"solo\")' >/dev/null"
done
api u7 POST /api/login '{"user":"u7","password":"pw-u7-secret"}'
expect 200 "login u7"
api u7 GET /api/desktops
expect 200 "desktops of u7"
[ "$(field '[.[].name] | join(" ")')" = solo ] || fail "u7's desktops: $BODY"
api u7 POST /api/desktops/solo/start
expect 200 "start solo for u7"
[ "$(field .state)" = running ] || fail "start solo answered $BODY"
[ "$(runs_on solo)" = h2 ] || fail "solo runs on '$(runs_on solo)', not h2"
api u7 POST /api/desktops/solo/console
expect 200 "console of solo"
[ "$(field .host)" = "$h2_ADDR" ] || fail "solo's ticket names $(field .host), not h2"
field .ca | sed '/^$/d' >"$T/ca-solo.pem"
out=$(inet "$PROBE" unused "$(field .port)" "$(field .password)" --proxy "$PROXY" \
    --ticket "$(field .ticket)" --ca "$T/ca-solo.pem" \
    --host-subject "$(field .host_subject)" 2>&1) ||
	fail "spice-probe through the proxy to solo on h2: $out"
out=$(hq h1 desktop assign u3 solo 2>&1) && fail "solo given twice: $out"
[ "$out" = "qdesk: AlreadyExists: VM solo is assigned to u7: unassign it first (qdesk desktop unassign solo)" ] ||
	fail "second assign of solo said: $out"
out=$(hq h2 user rm u7 2>&1) && fail "u7 removed with a desktop"
echo "$out" | grep -q "user u7 still has desktop solo" || fail "user rm u7 said: $out"
log "u7 (added on h1) logs in, starts solo (pinned to h2, assigned from h3), its console reaches h2: ok"

# An assignment goes from any host, and with its VM.
hqq h1 vm create solo2 --accel kvm --disk "$(tiny_disk solo2)" --memory 32 \
    --display none >/dev/null
until_ok 10 "h2 sees solo2" "hq h2 vm show solo2 >/dev/null 2>&1"
hqq h2 desktop assign u3 solo2 >/dev/null
until_ok 10 "h3 lists solo2 as u3's" \
    "hq h3 --json desktop list --user u3 | jq -e '.desktops[] | select(.vm == \"solo2\")' >/dev/null"
hqq h3 desktop unassign solo2 >/dev/null
[ -z "$(eget owners/solo2)" ] || fail "owners/solo2 after unassign: $(eget owners/solo2)"
hqq h3 desktop assign u3 solo2 >/dev/null
[ "$(eget owners/solo2 | jq -r .login)" = u3 ] || fail "owners/solo2: $(eget owners/solo2)"
hqq h2 vm delete solo2 >/dev/null
[ -z "$(eget owners/solo2)" ] || fail "owners/solo2 after vm delete: $(eget owners/solo2)"
log "assigned and unassigned from any host (owners/ in etcd), gone with its VM: ok"
# Resize across hosts: lin (6, all in use) grows to 8 on h1 (lin-7 and
# lin-8 defined in etcd, free everywhere); the user who was told none is
# free now gets one through h3; h2 cannot shrink it below the 7 in use,
# shrinking to 7 on h3 removes the free one only (gone from etcd and from
# every host).
hqq h1 pool resize lin 8 >/dev/null
for h in $HOSTS; do
	until_ok 10 "$h sees pool lin with 8 desktops, 2 free" \
	    "[ \"\$(hq $h --json pool show lin | jq -c '[.count, .free, .size]')\" = '[8,2,8]' ]"
done
loser=r1; [ "$winner" = r1 ] && loser=r2
acquire_pool() {
	python3 - "$1" "$2" "${3:-}" <<'EOF2'
import json, socket, sys
s = socket.socket(socket.AF_UNIX); s.settimeout(200); s.connect(sys.argv[1])
f = s.makefile("rw"); f.readline()
args = {"login": sys.argv[2]}
if sys.argv[3]: args["pool"] = sys.argv[3]
f.write(json.dumps({"id": 1, "cmd": "desktop.acquire", "args": args}) + "\n"); f.flush()
print(f.readline().strip())
EOF2
}
got=$(acquire_pool "$h3_SOCKET" "$loser" | jq -r '.return.name // .error.desc')
case "$got" in lin-7|lin-8) ;; *) fail "$loser after the resize got: $got";; esac
[ "$(runs_on "$got" | wc -w)" = 1 ] || fail "$got runs on '$(runs_on "$got")'"
spare=lin-8; [ "$got" = lin-8 ] && spare=lin-7
out=$(hq h2 pool resize lin 6 2>&1) && fail "lin shrank below its desktops in use: $out"
[ "$out" = "qdesk: InvalidState: pool lin has 7 desktops in use or being reset: it cannot shrink below 7 now" ] ||
	fail "lin resize 6 said: $out"
hqq h3 pool resize lin 7 >/dev/null
[ -z "$(eget "vms/$spare")" ] || fail "vms/$spare after the shrink: $(eget "vms/$spare")"
[ -n "$(eget "vms/$got")" ] || fail "vms/$got (in use) went with the shrink"
for h in $HOSTS; do
	until_ok 10 "$h sees pool lin with 7, all in use, $spare gone" \
	    "[ \"\$(hq $h --json pool show lin | jq -c '[.count, .free, .size]')\" = '[7,0,7]' ] &&
	     ! hq $h vm show $spare >/dev/null 2>&1"
done
log "pool lin resized 6 -> 8 on h1, $loser got $got via h3, a shrink below the 7 in use refused on h2, to 7 on h3 removed $spare only: ok"

# A start that fails gives the claim back: pool bad's one desktop boots
# a kernel that is gone; u7's login gets the start's error in one
# line and owners/bad-1 goes, so a second login fails the same way (not
# "none free"). pool set works in a cluster; pool rm is refused while
# the desktop is u7's and accepted once it is free.
echo junk >"$T/gone-kernel"
hqq h2 pool create bad --template tpl --size 1 --mode floating --accel kvm \
    --memory 32 --display none --kernel "$T/gone-kernel" >/dev/null
rm -f "$T/gone-kernel"
until_ok 10 "h3 sees pool bad" "hq h3 pool show bad >/dev/null 2>&1"
for try in 1 2; do
	res=$(acquire_pool "$h3_SOCKET" u7 bad)
	cls=$(echo "$res" | jq -r '.error.class // "none"')
	desc=$(echo "$res" | jq -r '.error.desc // ""')
	[ "$cls" != none ] && [ "$cls" != Busy ] && [ "$(printf '%s' "$desc" | wc -l)" = 0 ] ||
		fail "login $try of u7 to pool bad: $res"
	until_ok 10 "owners/bad-1 released after failed start $try" "[ -z \"\$(eget owners/bad-1)\" ]"
done
hqq h1 pool set bad --grace 30 --on-disconnect shutdown >/dev/null
until_ok 10 "h2 sees pool bad's new settings" \
    "[ \"\$(hq h2 --json pool show bad | jq -c '[.grace, .on_disconnect]')\" = '[30,\"shutdown\"]' ]"
log "a failed start releases the claim (u7 told: $desc); pool set from h1 seen on h2: ok"

hqq h1 pool create two --template tpl --size 2 --mode floating --accel kvm \
    --memory 32 --display none >/dev/null
until_ok 10 "h2 sees pool two" "hq h2 pool show two >/dev/null 2>&1"
t=$(acquire_pool "$h2_SOCKET" u7 two | jq -r '.return.name // .error.desc')
case "$t" in two-1|two-2) ;; *) fail "u7 from pool two got: $t";; esac
out=$(hq h3 pool rm two 2>&1) && fail "pool two removed while $t is u7's"
echo "$out" | grep -q "pool two has desktops in use: \[\"$t (u7)\"\]" || fail "pool rm two said: $out"
python3 - "$h3_SOCKET" "$t" <<'EOF2' >/dev/null
import json, socket, sys
s = socket.socket(socket.AF_UNIX); s.settimeout(60); s.connect(sys.argv[1])
f = s.makefile("rw"); f.readline()
f.write(json.dumps({"id": 1, "cmd": "desktop.release", "args": {"login": "u7", "vm": sys.argv[2]}}) + "\n"); f.flush()
print(f.readline().strip())
EOF2
until_ok 10 "owners/$t gone after the release" "[ -z \"\$(eget owners/$t)\" ]"
hqq h3 pool rm two >/dev/null
hqq h2 pool rm bad >/dev/null
for k in pools/two vms/two-1 vms/two-2 placement/$t pools/bad vms/bad-1; do
	until_ok 10 "$k gone from etcd" "[ -z \"\$(eget $k)\" ]"
done
for h in $HOSTS; do
	until_ok 60 "$h has no desktop of pools two and bad" \
	    "! hq $h vm show $t >/dev/null 2>&1 && ! hq $h vm show bad-1 >/dev/null 2>&1 &&
	     ! hq $h pool show two >/dev/null 2>&1"
done
until_ok 30 "$t (running when its pool went) killed" "[ -z \"\$(runs_on $t)\" ]"
log "pool rm refused while $t is u7's, accepted once free (its running desktop killed and removed where it ran): ok"
# Prestart: pool pre (3, --prestart 2) made on h3: two free members boot
# without a login (one host places them, counted from the cluster's
# view), not three; u7's login gets one of those already running, and
# the third boots so that two free ones run again.
hqq h3 pool create pre --template tpl --size 3 --prestart 2 --mode floating \
    --accel kvm --memory 32 --display none >/dev/null
prerun() { local k; for k in 1 2 3; do [ -n "$(runs_on pre-$k)" ] && echo pre-$k; done; }
until_ok 60 "2 of pool pre's desktops booted" "[ \$(prerun | wc -l) = 2 ]"
[ "$(hq h1 --json pool show pre | jq -c '[.running, .free]')" = '[2,3]' ] ||
	fail "pool pre with prestart 2: $(hq h1 --json pool show pre | jq -c .)"
booted=$(prerun | tr '\n' ' ')
p=$(acquire_pool "$h1_SOCKET" u7 pre | jq -r '.return.name // .error.desc')
case " $booted" in *" $p "*) ;; *) fail "u7 got '$p', not one of the booted $booted";; esac
until_ok 60 "all 3 of pool pre run (1 in use, 2 free)" "[ \$(prerun | wc -l) = 3 ]"
until_ok 10 "pool pre shows 3 running, 2 free" \
    "[ \"\$(hq h2 --json pool show pre | jq -c '[.running, .free, .in_use]')\" = '[3,2,1]' ]"
log "pool pre keeps 2 free desktops booted ($booted), u7 got $p at once, the third booted after: ok"
# Failover of a stateless pool: kill -9 a host (not h1, the portal's)
# running lin desktops that u2..u6 have (qmpd and QEMUs) and take its
# link down: within 30 s each runs on another host (a fresh clone of tpl
# there), same name and owner, and the portal shows it running; host
# list says down. The host comes back: its stale copies are removed,
# never started; each desktop in one process table.
victim= best=0
for h in h2 h3; do
	n=0
	for i in 2 3 4 5 6; do
		[ "$(runs_on "${DESK[u$i]}")" = $h ] && n=$((n + 1))
	done
	[ $n -gt $best ] && { victim=$h; best=$n; }
done
[ -n "$victim" ] || fail "no desktop of u2..u6 on h2 or h3"
moved=
for i in 2 3 4 5 6; do
	[ "$(runs_on "${DESK[u$i]}")" = $victim ] && moved="$moved u$i"
done
vst=${victim}_STATE
# The watcher: each moved desktop on at most one host.
watch_twice $(for u in $moved; do echo "${DESK[$u]}"; done)
host_die "$victim"
t0=$DIED_AT
for u in $moved; do
	d=${DESK[$u]}
	# One deadline for all of them, from the death (not 30 s each).
	until_moved "$d" "$victim" 30
	log "$d ($u's) runs on $w $(( $(date +%s%3N) - t0 )) ms after $victim died"
	[ "$(eget "owners/$d" | jq -r .login)" = "$u" ] ||
		fail "owners/$d after the failover: $(eget "owners/$d")"
	for i in $(seq 1 50); do
		api $u GET /api/desktops
		[ "$(field "[.[] | select(.name == \"$d\")] | .[0].state")" = running ] && break
		sleep 0.1
	done
	[ "$(field "[.[] | select(.name == \"$d\")] | .[0].state")" = running ] ||
		fail "the portal shows $u: $BODY"
	el=$(( $(date +%s%3N) - t0 ))
	[ $el -le 30000 ] || fail "the portal shows $u $d running only $el ms after $victim died"
	log "the portal shows $u $d running $el ms after $victim died"
done
[ "$(host_state h1 "$victim")" = down ] || fail "h1's host list: $(hq h1 host list)"
log "kill -9 of $victim: the lin desktops of$moved run elsewhere, the portal shows them: ok"
vlg=${victim}_LOG
vlines=$(wc -l <"${!vlg}")
host_back "$victim"
until_ok 30 "h1 sees $victim up" '[ "$(host_state h1 "$victim")" = up ]'
for u in $moved; do
	d=${DESK[$u]}
	until_ok 30 "$victim's stale copy of $d removed" \
	    "grep -q 'cluster: $d: placed on .*: its stale copy here removed' \"\${!vlg}\" &&
	     [ ! -e \"\${!vst}/vms/$d\" ]"
done
sleep 2
for u in $moved; do
	d=${DESK[$u]} w=$(runs_on "${DESK[$u]}")
	case "$w" in h[1-3]) ;; *) fail "$d runs on '$w', not on exactly one host";; esac
	[ "$w" != $victim ] || fail "$d started again on $victim"
	tail -n +$((vlines + 1)) "${!vlg}" | grep -q "cluster: $d: placed here" &&
		fail "$victim started $d again after its return"
done
watch_twice_end
log "$victim back: its stale copies removed, never started, each desktop runs once: ok"
exit 0
