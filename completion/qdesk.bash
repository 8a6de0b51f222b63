# bash completion for qdesk(1). Groups, verbs and options come from the
# CLI's own command table through `qdesk help`, so a new command needs no
# change here.

# The usage lines of qdesk help [GROUP], one per command, folds joined.
_qdesk_usage()
{
	"$1" help ${2:+"$2"} 2>/dev/null | awk '
		/^  qdesk / { if (line != "") print line; line = $0; next }
		/^   / { sub(/^ +/, " "); line = line $0 }
		END { if (line != "") print line }'
}

_qdesk()
{
	local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD-1]}
	local cmd=${COMP_WORDS[0]} i=1 group= verb= words

	case $prev in
	--socket|--vv|--disk|--kernel|--initrd)
		COMPREPLY=($(compgen -f -- "$cur"))
		return ;;
	--cert|--dir)
		COMPREPLY=($(compgen -d -- "$cur"))
		return ;;
	--timeout|--memory|--vcpus|--expires|--size|--prestart|--grace)
		return ;;
	esac

	# Global options come before the group.
	while [ $i -lt $COMP_CWORD ]; do
		case ${COMP_WORDS[i]} in
		--socket|--timeout|--host|--cert) i=$((i + 2)) ;;
		-*) i=$((i + 1)) ;;
		*) break ;;
		esac
	done
	if [ $i -ge $COMP_CWORD ]; then
		if [[ $cur == -* ]]; then
			words="--socket --host --cert --json --timeout --help --version"
		else
			words=$({ echo help; _qdesk_usage "$cmd" |
			    awk '{ print $2 }'; } | sort -u)
		fi
		COMPREPLY=($(compgen -W "$words" -- "$cur"))
		return
	fi
	group=${COMP_WORDS[i]}
	if [ "$group" = help ]; then
		[ $((i + 1)) -eq $COMP_CWORD ] && COMPREPLY=($(compgen -W \
		    "$(_qdesk_usage "$cmd" | awk '{ print $2 }' | sort -u)" \
		    -- "$cur"))
		return
	fi

	# A verb is a lower-case third word; status and events have none.
	if [ $((i + 1)) -eq $COMP_CWORD ] && [[ $cur != -* ]]; then
		words=$(_qdesk_usage "$cmd" "$group" |
		    awk '$3 ~ /^[a-z][a-z-]*$/ { print $3 }')
		if [ -n "$words" ]; then
			COMPREPLY=($(compgen -W "$words" -- "$cur"))
			return
		fi
	fi
	verb=${COMP_WORDS[i+1]}

	if [[ $cur == -* ]]; then
		words=$(_qdesk_usage "$cmd" "$group" | awk -v v="$verb" '
			$3 == v || $3 !~ /^[a-z][a-z-]*$/ {
				for (i = 3; i <= NF; i++)
					while (match($i, /--[a-z][a-z-]*/)) {
						print substr($i, RSTART, RLENGTH)
						$i = substr($i, RSTART + RLENGTH)
					}
			}')
		COMPREPLY=($(compgen -W "$words --json --help" -- "$cur"))
		return
	fi
	COMPREPLY=($(compgen -f -- "$cur"))
}
complete -F _qdesk qdesk
