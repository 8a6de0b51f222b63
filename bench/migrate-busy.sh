# Sourced by bench/migrate.sh: the busy guest under KVM (issue 14).
#
# The guests are boot sectors from scripts/mkguest (scripts/guest/busy.s)
# that print "CTR tick pass page bad" on COM1 every 50 ms and dirty RAM
# at a fixed rate from 16 MiB up, checking each page before rewriting
# it: busy-idle (no writes), busy-slow (8 MiB/s over 64 MiB), busy-fast
# (64 MiB/s over 512 MiB, or less in a smaller guest). Each row: N
# migrations back and forth through two qmpds (qmpd's downtime-limit
# 100 ms, --timeout as given), then one full pass of the guest after
# the last move, so every page it dirties has been checked on the side
# it ended on; a bad page marks the row CORRUPT, its figures then
# worthless. BUSY_IMAGES picks the guests, BUSY_TIMEOUT qmpd's --timeout. libvirt's rows (bench/migrate-libvirt.sh) run the same
# images in the same run.

BUSY_TIMEOUT=${BUSY_TIMEOUT:-60}
BUSY_IMAGES=${BUSY_IMAGES:-busy-idle.img busy-slow.img busy-fast.img}
# The guest prints hex (and CR LF); mawk has no strtonum.
BUSY_HEX='function hex(s, i, d, n) { n = 0; for (i = 1; i <= length(s); i++)
    if (d = index("0123456789ABCDEF", substr(s, i, 1))) n = n * 16 + d - 1
    return n }'

# busy_pos LOG: "pass page bad" of the last counter line in LOG.
busy_pos() {
	awk "$BUSY_HEX"'
	    $1 == "CTR" && NF >= 5 { p = $3; g = $4; b = $5 }
	    END { if (p != "") printf "%d %d %d\n", hex(p), hex(g), hex(b) }' \
	    "$@" 2>/dev/null
}

# busy_pages LOG: the region size in pages ("QDESK BUSY UP <pages>").
busy_pages() {
	awk "$BUSY_HEX"'/QDESK BUSY UP/ { print hex($4); exit }' "$1"
}

# busy_wait LOG... -- SECONDS TEST: until busy_pos of the LOGs passes TEST
# (an awk condition on p, g, b), or die.
busy_wait() {
	local logs=() i pos
	while [ "$1" != -- ]; do logs+=("$1"); shift; done
	shift
	for i in $(seq 1 $(($1 * 10))); do
		pos=$(cat "${logs[@]}" 2>/dev/null | busy_pos)
		[ -n "$pos" ] && awk -v c="$pos" "BEGIN { split(c, a, \" \");
		    p = a[1]; g = a[2]; b = a[3]; exit !($2) }" && return 0
		sleep 0.1
	done
	die "busy guest: no counter line with $2 within $1 s: $(tail -n 1 "${logs[0]}" 2>/dev/null)"
}

# The guest's dirtying rate in MiB/s over the follow log of a migration.
busy_rate() { # FOLLOW PAGES
	awk -v np="$2" "$BUSY_HEX"'
	    $3 == "CTR" && NF >= 7 { n = hex($5) * np + hex($6)
	    if (t0 == "") { t0 = $1; n0 = n } t1 = $1; n1 = n }
	    END { printf "%d\n", (t1 > t0 ? (n1 - n0) * 4096 / (t1 - t0) / 1048576 : 0) }' "$1"
}

# One row: N migrations of IMG with RAM MiB, then the check.
busy_row() { # LABEL IMG RAM
	local label=$1 img=$2 ram=$3 vm here i out np pos p g b rate f
	BUSY_BAD=
	vm=busy$ram${img%.img}
	vm=${vm//-/}
	cp "$GUESTS/$img" "$T/$vm.img"
	qa vm create "$vm" --accel kvm --memory "$ram" --disk "$T/$vm.img" \
	    --disk-format raw >/dev/null || die "create $vm"
	qa vm start "$vm" >/dev/null || die "start $vm"
	# SeaBIOS alone takes ~17 s here (emulated); then one pass, so the
	# check is on for every page before the first move.
	busy_wait "$A/vms/$vm/serial.log" -- 120 'b >= 0'
	np=$(busy_pages "$A/vms/$vm/serial.log")
	[ "$np" -gt 0 ] && busy_wait "$A/vms/$vm/serial.log" -- 180 'p >= 1'
	here=$A
	: >"$T/busy"
	for i in $(seq 1 "$N"); do
		if out=$(busy_migrate "$vm" "$here"); then
			echo "$out $(busy_rate "$T/follow" "${np:-0}")" >>"$T/busy"
			here=$(on "$here")
		else
			echo "$out" | tail -n 1 >>"$T/busy.fail"
		fi
	done
	# Every page checked once more where the guest ended: from the
	# last move's position to the same one a pass later.
	f=$here/vms/$vm/serial.log
	if [ "$np" -gt 0 ]; then
		read -r p g b <<<"$(busy_pos "$f")"
		busy_wait "$f" -- 240 "p > $((p + 1)) || (p == $((p + 1)) && g >= $g)"
	fi
	read -r p g b <<<"$(busy_pos "$f")"
	if grep -aq CORRUPT "$A/vms/$vm/serial.log" "$B/vms/$vm/serial.log" 2>/dev/null || [ "${b:-1}" != 0 ]; then
		note "$label: CORRUPT: $b bad pages; the figures are worthless"
		BUSY_BAD=1
	fi
	busy_report "$label" "$np"
	qon "$here" vm stop "$vm" --force >/dev/null 2>&1
	qon "$here" vm delete "$vm" >/dev/null 2>&1
}

# One migration; on failure, the reason (qmpd's) and status 1.
busy_migrate() { # VM FROM
	local vm=$1 from=$2 to out
	to=$(on "$from")
	: >"$T/follow"
	python3 "$top/tests/lib/serial-follow.py" "$T/follow" \
	    "$from/vms/$vm/serial.log" "$to/vms/$vm/serial.log" &
	FOLLOW=$!
	sleep 0.3
	out=$(qon "$from" --json vm migrate "$vm" "unix:$to/qmpd.sock" \
	    --timeout "$BUSY_TIMEOUT" 2>&1)
	local st=$?
	sleep 1
	kill "$FOLLOW"; FOLLOW=
	if [ $st != 0 ]; then
		echo "$out"
		return 1
	fi
	jq -r --arg gap "$(follow_gap "$T/follow")" \
	    '.migration | "\(.downtime_ms) \(.total_ms) \(.ram_mb) \($gap)"' <<<"$out"
}

busy_report() { # LABEL PAGES
	local n dp50 dmax tp50 tmax rp50 gp50 gmax ratep50 over fails
	n=$(wc -l <"$T/busy")
	fails=0
	[ -f "$T/busy.fail" ] && fails=$(wc -l <"$T/busy.fail")
	if [ "$n" = 0 ]; then
		printf '%s: no migration completed (%d cancelled: %s)\n' "$1" \
		    "$fails" "$(tail -n 1 "$T/busy.fail")"
		rm -f "$T/busy.fail"
		return
	fi
	read -r dp50 dmax <<<"$(cut -d' ' -f1 "$T/busy" | pct)"
	read -r tp50 tmax <<<"$(cut -d' ' -f2 "$T/busy" | pct)"
	read -r rp50 x <<<"$(cut -d' ' -f3 "$T/busy" | pct)"
	read -r gp50 gmax <<<"$(cut -d' ' -f4 "$T/busy" | pct)"
	read -r ratep50 x <<<"$(cut -d' ' -f5 "$T/busy" | pct)"
	over=$(awk '$1 > 100' "$T/busy" | wc -l)
	printf '%s: downtime p50 %d max %d ms (%d of %d over 100 ms); total p50 %d max %d ms; RAM sent p50 %d MiB; counter gap p50 %d max %d ms; dirtying %d MiB/s; %d cancelled by --timeout %d; memory %s\n' \
	    "$1" "$dp50" "$dmax" "$over" "$n" "$tp50" "$tmax" "$rp50" \
	    "$gp50" "$gmax" "$ratep50" "$fails" "$BUSY_TIMEOUT" \
	    "$([ -z "${BUSY_BAD:-}" ] && echo intact || echo CORRUPT)"
	[ "$fails" -gt 0 ] && note "$1: cancelled: $(tail -n 1 "$T/busy.fail")"
	rm -f "$T/busy.fail"
}

# The hardest case qmpd allows: busy-fast with a 1 ms downtime limit
# and --timeout 10. Either it converges (the downtime it took) or qmpd
# cancels it and the guest runs on where it was; memory checked after.
busy_noconv() { # RAM
	local vm=noconv f here t0 out p g b what
	cp "$GUESTS/busy-fast.img" "$T/$vm.img"
	qa vm create "$vm" --accel kvm --memory "$1" --disk "$T/$vm.img" \
	    --disk-format raw >/dev/null || die "create $vm"
	qa vm start "$vm" >/dev/null || die "start $vm"
	busy_wait "$A/vms/$vm/serial.log" -- 120 'b >= 0'
	busy_wait "$A/vms/$vm/serial.log" -- 180 'p >= 1'
	t0=$(date +%s%3N)
	if out=$(qa --json vm migrate "$vm" "unix:$B/qmpd.sock" --downtime 1 \
	    --timeout 10 2>&1); then
		here=$B
		what=$(jq -r '.migration | "converged: downtime \(.downtime_ms) ms, total \(.total_ms) ms, \(.ram_mb) MiB sent"' <<<"$out")
	else
		here=$A
		what="not converged after $(($(date +%s%3N) - t0)) ms: $(tail -n 1 <<<"$out")"
	fi
	f=$here/vms/$vm/serial.log
	read -r p g b <<<"$(busy_pos "$f")"
	busy_wait "$f" -- 240 "p > $((p + 1)) || (p == $((p + 1)) && g >= $g)"
	read -r p g b <<<"$(busy_pos "$f")"
	printf 'KVM busy-fast %d MiB, --downtime 1 --timeout 10: %s; memory %s\n' \
	    "$1" "$what" \
	    "$([ "$b" = 0 ] && ! grep -aq CORRUPT "$f" && echo intact || echo CORRUPT)"
	qon "$here" vm stop "$vm" --force >/dev/null 2>&1
	qon "$here" vm delete "$vm" >/dev/null 2>&1
}

# The rows: idle, slow and fast at each RAM size, then a migration that
# cannot converge.
bench_busy() {
	local ram img
	[ -f "$GUESTS/busy-fast.img" ] || die "no $GUESTS/busy-fast.img: run scripts/mkguest"
	for ram in $RAMS; do
		for img in $BUSY_IMAGES; do
			busy_row "KVM ${img%.img} $ram MiB, n=$N" "$img" "$ram"
		done
	done
	busy_noconv "${RAMS##* }"
}
