#!/bin/sh
# Unit test of the man pages: each daemon's page lists exactly the options
# of its getopt_long table (and its short options), and every page passes
# mandoc's lint. qdesk(1) is checked against the CLI's table when
# qdesk-man makes it (a command without an entry fails the build and this
# test, which makes it again).
#
#   check-options.sh SRCDIR QDESK-MAN BUILT-QDESK.1
set -u
src=$1 gen=$2 built=$3
fail=0

# check PAGE SOURCE: long options of "longopts[]" and of "getopt_long".
check() {
	page=$1 source=$2
	code=$(sed -n '/longopts\[\] = {/,/};/s/^[[:space:]]*{ "\([a-z-]*\)".*/--\1/p' \
	    "$source" | sort -u)
	short=$(sed -n 's/.*getopt_long(argc, argv, "\([a-zA-Z]*\)".*/\1/p' \
	    "$source" | sed 's/\(.\)/-\1\n/g' | sed '/^$/d' | sort -u)
	doc=$(sed -n 's/^\.It Fl \(\\-\)\{0,1\}\([a-zA-Z-]*\).*/\1\2/p' "$page" |
	    sed 's/^\\-/--/; /^--/!s/^/-/' | sort -u)
	# ".It Fl h , Fl \-help" documents both.
	doc=$(printf '%s\n%s\n' "$doc" "$(sed -n \
	    's/^\.It Fl [a-z] , Fl \\-\([a-z-]*\).*/--\1/p' "$page")" |
	    sed '/^$/d' | sort -u)
	[ -n "$code" ] || { echo "FAIL: no longopts table in $source"; fail=1; }
	for o in $code $short; do
		echo "$doc" | grep -qx -- "$o" ||
			{ echo "FAIL: $page lacks $o ($source has it)"; fail=1; }
	done
	for o in $doc; do
		printf '%s\n%s\n' "$code" "$short" | grep -qx -- "$o" ||
			{ echo "FAIL: $page documents $o, which $source lacks"; fail=1; }
	done
}
check "$src/man/qmpd.8" "$src/qmpd/qmpd.c"
check "$src/man/qdesk-broker.8" "$src/broker/broker.c"

tmp=$(mktemp)
trap 'rm -f "$tmp"' EXIT
if "$gen" -s "$src/man/qdesk.1.in" "$tmp"; then
	cmp -s "$tmp" "$built" || { echo "FAIL: $built is stale"; fail=1; }
else
	echo "FAIL: qdesk-man: every command of cli/cmds.c needs its" \
	    "'.\\\" @cmd' entry in man/qdesk.1.in"
	fail=1
fi

for page in "$built" "$src/man/qmpd.8" "$src/man/qdesk-broker.8"; do
	out=$(mandoc -Tlint -W warning "$page" 2>&1) ||
		{ echo "FAIL: mandoc -Tlint $page:"; echo "$out"; fail=1; }
done
[ $fail = 0 ] && echo "man pages: ok"
exit $fail
