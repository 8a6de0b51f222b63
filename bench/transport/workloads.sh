# bench/transport/workloads.sh, sourced by bench/transport/run (issue 12):
# the workloads measured at a real client's screen, and the browser path.
#
#   keys    the Linux console, cursor hidden, typed into by the client at
#           5 keys a second ('x' and BackSpace in turn): key press to pixel
#           p50/p95 and the bytes of typing;
#   scroll  the same console scrolling: the guest prints 20 lines a second;
#   still   the same console, cursor hidden, nothing moving: an idle
#           desktop with no blinking cursor (idle is the blinking one);
#   video1080  video.img's motion at 1920x1080 (video1080.img), through
#           the run's own clients like video.
#   video-kvm, video-kvm768  the same scene painted at 30 frames/s by a
#           KVM guest (video-kvm.img at 1920x1080, video-kvm768.img at
#           1024x768; scripts/guest/video-kvm.c): the transport measured
#           against a guest that is not the bottleneck.
#   video-kvm-nospice  video-kvm on a VM without SPICE (--display none:
#           std VGA, reached only through the RDP gateway or the browser),
#           where QEMU does not also copy each frame for SPICE.
#
# keys, scroll and still, and every workload on the browser path, are
# measured here, not by run's loop: a real client with a screen (SPICE:
# remote-viewer; RDP paths: xfreerdp with the path's PATH_RDP_ARGS; browser:
# noVNC in headless Chromium) is started, connected and left until its
# screen is still, and only then are the wire, the broker's and QEMU's CPU
# counted, over SECS: steady state, without logins, handshakes and the
# first full screen (which would dominate a 1 Kbit/s figure). Frames/s is
# what changed on the client's screen (keylat, bench/transport/keylat.c),
# or noVNC's blits to the page's canvas. Rows have run's format plus two
# columns, key press to pixel p50 and p95 in ms.

KEYLAT=$BUILD/bench/keylat
BROWSER_NODE=$top/build/portal-test

WL_GUEST+=([keys]=linux [scroll]=linux [still]=linux [video1080]=video1080
    [video-kvm]=video-kvm [video-kvm768]=video-kvm768
    [video-kvm-nospice]=video-kvm-nospice)
WL_UP+=([video1080]="QDESK VIDEO UP" [video-kvm]="QDESK VIDEO UP"
    [video-kvm768]="QDESK VIDEO UP" [video-kvm-nospice]="QDESK VIDEO UP")
PATH_RUN+=([browser]=wl_row)
PATH_PROFILE+=([browser]=lan)
WL_STEADY=" keys scroll still "
WL_CLIENT=

# wl_owns WORKLOAD PATH: this file measures that row.
wl_owns() { [[ $WL_STEADY == *" $1 "* ]] || [ "$2" = browser ]; }

# wl_need: what the rows here need, checked once before the first.
wl_need() {
	local c
	for c in "$KEYLAT" remote-viewer chromium node npm; do
		command -v "$c" >/dev/null || fail "$c is not installed or built (scripts/setup, ninja -C build)"
	done
	# The one install of broker-lib.sh, under its lock (BROWSER_NODE is
	# its NODE_DIR): a test beside this one may be installing it too.
	need_playwright fail
}

# wl_booted VM: say the size of its screen (QEMU's screendump), once up;
# a console guest is left until its QEMU is quiet (under 10% of a core
# over a second, 20 s at most), so boot leftovers stay out of the first row.
wl_booted() {
	local c0 c1
	q vm screenshot "$1" "$T/$1.ppm" >/dev/null 2>&1 &&
		log "$1 screen $(identify -format '%wx%h' "$T/$1.ppm")"
	[[ $1 == linux-* ]] || return 0
	for _ in $(seq 1 20); do
		c0=$(cpu_ticks "$(vm_pid "$1")")
		sleep 1
		c1=$(cpu_ticks "$(vm_pid "$1")")
		[ $(( (c1 - c0) * 100 / $(getconf CLK_TCK) )) -lt 10 ] && return 0
	done
}

# wl_load WORKLOAD VM start|stop: what the guest does while measured.
wl_load() {
	case $1:$3 in
	keys:start|still:start)
		serial_send "$2" 'clear >/dev/tty1; printf "\033[?25l" >/dev/tty1' ;;
	scroll:start)
		serial_send "$2" 'i=0; while :; do i=$((i+1)); echo "$i $(date) the quick brown fox jumps over the lazy dog" >/dev/tty1; sleep 0.05; done &' ;;
	scroll:stop)
		serial_send "$2" 'kill %1; wait; clear >/dev/tty1' ;;
	*:stop)
		serial_send "$2" 'printf "\033[?25h" >/dev/tty1; clear >/dev/tty1' ;;
	esac
}

# wl_client_stop: end the client of the row, by its PID.
wl_client_stop() {
	wl_pcap_stop
	[ -n "$WL_CLIENT" ] || return 0
	kill "$WL_CLIENT" 2>/dev/null
	wait "$WL_CLIENT" 2>/dev/null
	WL_CLIENT=
}

# wl_client_start PATH VM: remote-viewer or xfreerdp in the client
# namespace, on the bench's Xvfb; back once a window shows.
wl_client_start() {
	local p=$1 n=$2 code
	case $p in
	spice-*)
		login "$n" bench-pw
		expect 200
		code=$(curl -sk -o "$T/$n.vv" -w '%{http_code}' -b "$T/jar.$n" \
		    "$URL/api/desktops/$n/console.vv")
		[ "$code" = 200 ] || broker_fail "console.vv of $n: HTTP $code"
		sed -i "s|^proxy=.*|proxy=http://10.77.0.1:$PROXY_PORT|" "$T/$n.vv"
		HOME=$T ip netns exec "$NS_C" remote-viewer --debug "$T/$n.vv" \
		    >"$T/rv-$n.log" 2>&1 &
		;;
	*)
		HOME=$T ip netns exec "$NS_C" xfreerdp /cert:ignore \
		    /v:10.77.0.1:"$RDP_PORT" /u:"$n" /p:bench-pw /size:1024x768 \
		    ${PATH_RDP_ARGS[$p]:-} >"$T/xf-$n.log" 2>&1 &
		;;
	esac
	WL_CLIENT=$!
	for _ in $(seq 1 300); do
		xdotool search --onlyvisible --name . >/dev/null 2>&1 && return 0
		alive "$WL_CLIENT" || break
		sleep 0.1
	done
	broker_fail "the $p client of $n showed no window: $(cat "$T/rv-$n.log" "$T/xf-$n.log" 2>/dev/null | tail -5)"
}

# wl_sample VM: the wire's bytes, the broker's and QEMU's CPU ticks, the
# time, then the client's bytes and packets down (rx) and up (tx).
wl_sample() {
	local s=/sys/class/net/qtb-c/statistics
	echo "$(wire_bytes) $(cpu_ticks "$BROKER_PID") $(cpu_ticks "$(vm_pid "$1")") $(date +%s.%N)" \
	    $(ip netns exec "$NS_C" cat $s/rx_bytes $s/rx_packets $s/tx_bytes $s/tx_packets)
}

# wl_pcap_start NAME, wl_pcap_stop: with TRANSPORT_PCAP=DIR, the client
# veth's packets of the measured window (where the bytes go), in
# DIR/NAME.pcap (NAME is WORKLOAD-PATH-LINK).
WL_PCAP=
wl_pcap_start() {
	[ -n "${TRANSPORT_PCAP:-}" ] || return 0
	command -v tcpdump >/dev/null || fail "TRANSPORT_PCAP needs tcpdump"
	ip netns exec "$NS_C" tcpdump -Z root -i qtb-c -s 256 -U -w \
	    "$TRANSPORT_PCAP/$1.pcap" 2>/dev/null &
	WL_PCAP=$!
	sleep 0.5
}
wl_pcap_stop() {
	[ -n "$WL_PCAP" ] || return 0
	kill "$WL_PCAP"
	wait "$WL_PCAP" 2>/dev/null
	WL_PCAP=
}

# wl_settle VM: the browser's page is connected and still; wait until
# its only connection left is the console's WebSocket (the page load's
# kept-alive portal connections are closed by the broker 10 s after
# their last answer, ~26 packets once a page: not an idle screen's
# traffic, and logged here apart), 30 s at most.
wl_settle() {
	local i n s0 s1 t0
	s0=$(wl_sample "$1")
	t0=$(date +%s.%N)
	for i in $(seq 1 300); do
		n=$(ip netns exec "$NS_C" ss -Htn state established state \
		    close-wait state last-ack state fin-wait-1 state fin-wait-2 \
		    "( dport = :$HTTPS_PORT )" | wc -l)
		[ "$n" -le 1 ] && break
		sleep 0.1
	done
	s1=$(wl_sample "$1")
	log "browser page load's other connections closed after $(awk \
	    -v t0="$t0" -v s0="$s0" -v s1="$s1" 'BEGIN { split(s0, a, " ")
		split(s1, b, " "); printf "%.1f s (the link meanwhile: %d packets down, %d up)", \
		    b[4] - t0, b[6] - a[6], b[8] - a[8] }')$([ "$n" -le 1 ] ||
	    echo " ($n connections still open after 30 s)")"
}

# wl_browser VM WORKLOAD: noVNC in headless Chromium in the client
# namespace; samples around its "start" and "end"; sets S0, S1, OUT.
wl_browser() {
	local n=$1 mode=watch line closed t0=0 t1=0
	[ "$2" = keys ] && mode=keys
	closed=$(grep -c "browser console of $n closed" "$BROKER_LOG")
	rm -f "$T/browser.fifo" "$T/browser.in"
	mkfifo "$T/browser.fifo" "$T/browser.in"
	(cd "$BROWSER_NODE" && cp "$top/bench/transport/browser.mjs" . &&
	    exec ip netns exec "$NS_C" timeout $((secs + 120)) node browser.mjs \
	    "https://10.77.0.1:$HTTPS_PORT/" "$n" bench-pw "$n" "$secs" "$mode" \
	    <"$T/browser.in" >"$T/browser.fifo" 2>"$T/browser.err") &
	WL_CLIENT=$!
	# The browser closes only once the counters are read (browser.mjs).
	exec 7>"$T/browser.in"
	OUT=
	while read -r line; do
		case $line in
		# Only where the row's bytes are next to none (a still or
		# idle screen) do the page load's closes matter enough to
		# wait 10-18 s for them; elsewhere they are a few hundred
		# bytes of the window.
		still)	case $2 in still|idle) wl_settle "$n" ;; esac
			echo go >&7 ;;
		start)	wl_pcap_start "$2-browser-$LINK"
			S0=$(wl_sample "$n"); t0=$(wc -l <"$BROKER_LOG") ;;
		# Closed at once: node's stdin then ends, or it waits for
		# that before exiting, and this loop for its stdout.
		end)	S1=$(wl_sample "$n"); t1=$(wc -l <"$BROKER_LOG")
			wl_pcap_stop
			echo sampled >&7; exec 7>&- ;;
		'{'*)	OUT=$line ;;
		esac
	done <"$T/browser.fifo"
	exec 7>&-
	wait "$WL_CLIENT"
	WL_CLIENT=
	[ -n "$OUT" ] || broker_fail "the browser console of $n: $(tail -5 "$T/browser.err")"
	# The broker's own count of the console's messages (console-ws.c).
	for _ in 1 2 3 4 5 6 7 8 9 10; do
		[ "$(grep -c "browser console of $n closed" "$BROKER_LOG")" -gt "$closed" ] && break
		sleep 0.2
	done
	line=$(grep "browser console of $n closed" "$BROKER_LOG" | tail -1)
	log "broker: ${line#*: }"
	# QDESK_CONSOLE_TRACE=1 (console-ws.c): what the console carried in
	# the measured window, message by message, counted.
	[ "${QDESK_CONSOLE_TRACE:-}" = 1 ] || return 0
	log "console trace: $(grep -c "console $n trace:" "$BROKER_LOG") lines\
 in all, $(awk -v a="$t0" -v b="$t1" 'NR > a && NR <= b' "$BROKER_LOG" |
	    grep -c "console $n trace:") in the window"
	awk -v a="$t0" -v b="$t1" 'NR > a && NR <= b' "$BROKER_LOG" |
	    sed -n "s/.*console $n trace: //p" | sed 's/[0-9][0-9]* bytes/N bytes/' |
	    sort | uniq -c | while read -r line; do log "  $line"; done
}

# wl_gfx_log N: the gateway's figures of the graphics pipeline session
# that just ended (rdp-gfx.c's rdp.gfx line, once there are more than N).
wl_gfx_log() {
	for _ in $(seq 1 20); do
		[ "$(grep -c 'event=rdp.gfx' "$BROKER_LOG")" -gt "$1" ] && break
		sleep 0.1
	done
	log "gateway:$(grep 'event=rdp.gfx' "$BROKER_LOG" | tail -1 | sed 's/.*event=rdp.gfx//')"
}

# wl_row WORKLOAD PATH LINK VM: one steady-state row in run's format,
# plus key press to pixel p50 and p95 (ms, or -).
wl_row() {
	local w=$1 p=$2 l=$3 n=$4 out fps p50=- p95=- gfx
	[ -n "${WL_NEEDED:-}" ] || { wl_need; WL_NEEDED=1; }
	load "$w" "$n" start
	if [ "$p" = browser ]; then
		LINK=$l wl_browser "$n" "$w"
		fps=$(jq -r '.frames / .secs' <<<"$OUT")
		if [ "$w" = keys ]; then
			p50=$(jq -r 'if .p50 then .p50 * 10 | round / 10 else "-" end' <<<"$OUT")
			p95=$(jq -r 'if .p95 then .p95 * 10 | round / 10 else "-" end' <<<"$OUT")
			log "$p $l: $(jq -c . <<<"$OUT")"
		fi
	else
		gfx=$(grep -c 'event=rdp.gfx' "$BROKER_LOG")
		wl_client_start "$p" "$n"
		# Let the first screen arrive and the client settle.
		"$KEYLAT" --watch --keys 3 --rate 1 >/dev/null
		wl_pcap_start "$w-$p-$l"
		S0=$(wl_sample "$n")
		if [ "$w" = keys ]; then
			out=$("$KEYLAT" --keys $((secs * 5)) --rate 5) ||
				broker_fail "keylat on $p: $out"
			log "$p $l: $out"
			p50=$(sed -n 's/.* p50 \([0-9.]*\) .*/\1/p' <<<"$out")
			p95=$(sed -n 's/.* p95 \([0-9.]*\) .*/\1/p' <<<"$out")
		else
			out=$("$KEYLAT" --watch --keys "$secs" --rate 1)
		fi
		S1=$(wl_sample "$n")
		wl_pcap_stop
		wl_client_stop
		fps=$(awk '{ print $2 }' <<<"$out")
		case $p in rdp-gfx|rdp-avc4*) wl_gfx_log "$gfx" ;; esac
	fi
	load "$w" "$n" stop
	# Where the bytes go: down and up, bytes and packets a second.
	log "$w $p $l: load average $(cut -d' ' -f1 /proc/loadavg); $(awk \
	    -v s0="$S0" -v s1="$S1" 'BEGIN { split(s0, a, " "); split(s1, b, " ")
		el = b[4] - a[4]
		printf "down %.0f B/s in %.1f packets/s, up %.0f B/s in %.1f packets/s",
		    (b[5] - a[5]) / el, (b[6] - a[6]) / el, (b[7] - a[7]) / el,
		    (b[8] - a[8]) / el }')"
	awk -v w="$w" -v p="$p" -v l="$l" -v fps="$fps" -v s0="$S0" -v s1="$S1" \
	    -v p50="${p50:--}" -v p95="${p95:--}" -v hz="$(getconf CLK_TCK)" 'BEGIN {
		split(s0, a, " "); split(s1, b, " "); el = b[4] - a[4]
		if (fps ~ /^[0-9]/ && p != "browser") fps = fps / el
		printf "%s\t%s\t%s\t%.1f\t%.5f\t%.0f\t%.0f\t%s\t%s\n", w, p, l,
		    fps, (b[5] - a[5] + b[7] - a[7]) * 8 / el / 1e6, (b[2] - a[2]) / hz / el * 100,
		    (b[3] - a[3]) / hz / el * 100, p50, p95 }'
}
