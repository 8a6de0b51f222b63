# kill_ours PATTERN PID...: SIGKILL each PID whose command line holds
# PATTERN. A cleanup's PIDs come from lists and pidfiles kept since the
# process started; one that exited since may have been reaped and its PID
# given to another test's process (pid_max is 32768 here, and a suite
# starts thousands), which a bare kill -9 would end.
kill_ours() {
	local pat=$1 pid
	shift
	for pid in "$@"; do
		case $pid in ''|*[!0-9]*) continue ;; esac
		tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null |
		    grep -qF -- "$pat" && kill -9 "$pid" 2>/dev/null
	done
	return 0
}
