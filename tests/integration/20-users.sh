#!/usr/bin/env bash
# Departments, users and desktop assignment through the CLI: dept add,
# list, rm refused while used; user add with a password from stdin, list
# without hashes, passwd, disable (then user.auth is refused), rm refused
# while the user has desktops; assign, unassign, desktop list; and the
# assignment goes with a deleted VM.
. "$(dirname "$0")/lib.sh"

start_qmpd

# jq -e that fails on empty input too (jq 1.6 says yes to nothing).
jcheck() {
	local in
	in=$(cat)
	[ -n "$in" ] && jq -e "$@" <<<"$in" >/dev/null
}

# Departments, one under another.
qq dept add sales >/dev/null
qq dept add emea --parent sales >/dev/null
q_status 1 dept add emea
grep -q AlreadyExists "$T/last.err" || fail "duplicate dept: $(cat "$T/last.err")"
q_status 1 dept add apac --parent nowhere
grep -q "no department named nowhere" "$T/last.err" ||
	fail "unknown parent: $(cat "$T/last.err")"
q_status 1 dept add "Bad Name"
grep -q InvalidArgument "$T/last.err" || fail "bad dept name accepted"
q --json dept list | jcheck '.depts | length == 2' >/dev/null ||
	fail "dept list: $(q --json dept list)"
[ "$(q --json dept list | jq -r '.depts[] | select(.name=="emea") | .parent')" = sales ] ||
	fail "emea's parent is not sales"

# Users: a password only from stdin, never echoed back as a hash.
qq user add alice --name "Alice Martin" --dept emea --password-stdin \
    <<<'S3cret pass' >/dev/null
qq user add bob --dept sales </dev/null >/dev/null
qq user add j.smith_2 --admin --password-stdin <<<'x' >/dev/null
q_status 1 user add Alice </dev/null
grep -q "invalid login" "$T/last.err" || fail "upper-case login accepted"
q_status 1 user add carol --dept nowhere </dev/null
grep -q "no department named nowhere" "$T/last.err" ||
	fail "user in unknown dept: $(cat "$T/last.err")"
q_status 1 user add alice </dev/null
grep -q AlreadyExists "$T/last.err" || fail "duplicate user accepted"
q_status 2 user add dave --password-stdin </dev/null
list=$(q --json user list)
[ "$(jq '.users | length' <<<"$list")" = 3 ] || fail "user list: $list"
grep -q '\$y\$' <<<"$list" && fail "user list shows a hash: $list"
jcheck '.users[] | select(has("hash"))' <<<"$list" >/dev/null &&
	fail "user list has a hash field"
jcheck '.users[] | select(.login=="alice") | .password == true and
    .name == "Alice Martin" and .dept == "emea" and .admin == false' \
    <<<"$list" >/dev/null || fail "alice: $list"
jcheck '.users[] | select(.login=="bob") | .password == false' <<<"$list" \
    >/dev/null || fail "bob has a password: $list"
jcheck '.users[] | select(.login=="j.smith_2") | .admin == true' <<<"$list" \
    >/dev/null || fail "j.smith_2 is not admin: $list"
q user list | grep -q '^LOGIN' || fail "user list has no header"
# The hash is in the database, and it is yescrypt.
grep -qa '\$y\$' "$STATE/db/data.mdb" || fail "no yescrypt hash stored"
grep -qa 'S3cret pass' "$STATE/db/data.mdb" && fail "plain password stored"

# user.auth (as admin here; the broker test does it as the broker).
q_req user.auth '{"login":"alice","password":"S3cret pass"}' |
	jcheck '.return.login == "alice" and .return.dept == "emea"' >/dev/null ||
	fail "alice cannot log in"
q_req user.auth '{"login":"alice","password":"wrong"}' |
	jcheck '.error.class == "AuthFailed"' >/dev/null ||
	fail "a wrong password was not AuthFailed"
q_req user.auth '{"login":"bob","password":"anything"}' |
	jcheck '.error.desc == "invalid login or password"' >/dev/null ||
	fail "bob without a password got in, or another message"

# passwd: the old password stops working, the new one works.
qq user passwd alice --password-stdin <<<'N3w pass' >/dev/null
q_req user.auth '{"login":"alice","password":"S3cret pass"}' |
	jcheck '.error.class == "AuthFailed"' >/dev/null ||
	fail "the old password still works"
q_req user.auth '{"login":"alice","password":"N3w pass"}' |
	jcheck '.return.login == "alice"' >/dev/null ||
	fail "the new password does not work"
q_status 2 user passwd alice </dev/null
q_status 1 user passwd nobody --password-stdin <<<"x"
grep -q "no user named nobody" "$T/last.err" || fail "passwd of nobody"

# disable: refused with the same words as a wrong password.
qq user disable alice >/dev/null
[ "$(q --json user list | jq '.users[] | select(.login=="alice") | .disabled')" = true ] ||
	fail "alice is not shown disabled"
r=$(q_req user.auth '{"login":"alice","password":"N3w pass"}')
jcheck '.error.class == "AuthFailed" and
    .error.desc == "invalid login or password"' <<<"$r" >/dev/null ||
	fail "a disabled user got in: $r"
qq user enable alice >/dev/null
q_req user.auth '{"login":"alice","password":"N3w pass"}' |
	jcheck '.return.login == "alice"' >/dev/null ||
	fail "alice cannot log in once enabled"
q --json user list | jcheck '.users[] | select(.login=="alice") |
    .last_login > 0' >/dev/null || fail "no last_login for alice"

# A department with users (or sub-departments) stays.
q_status 1 dept rm emea
grep -q "still has 1 user (alice)" "$T/last.err" ||
	fail "dept rm with users: $(cat "$T/last.err")"
q_status 1 dept rm sales
grep -q "still has" "$T/last.err" || fail "dept rm sales: $(cat "$T/last.err")"
q_status 1 dept rm nowhere
grep -q NotFound "$T/last.err" || fail "dept rm nowhere"

# Desktops: assign, list, refuse a second owner, unassign.
d1=$(tiny_disk d1)
d2=$(tiny_disk d2)
qq vm create desk1 --disk "$d1" --memory 32 --display none >/dev/null
qq vm create desk2 --disk "$d2" --memory 32 --display none >/dev/null
qq desktop assign alice desk1 | grep -q "desk1: assigned to alice" ||
	fail "assign output"
qq desktop assign bob desk2 >/dev/null
qq desktop assign alice desk1 >/dev/null	# again: no change, no error
q_status 1 desktop assign bob desk1
grep -q "assigned to alice" "$T/last.err" ||
	fail "desk1 given to a second user: $(cat "$T/last.err")"
q_status 1 desktop assign nobody desk1
grep -q "no user named nobody" "$T/last.err" || fail "assign to nobody"
q_status 1 desktop assign alice nodesk
grep -q "no VM named nodesk" "$T/last.err" || fail "assign of no VM"
q --json desktop list | jcheck '.desktops | length == 2' >/dev/null ||
	fail "desktop list: $(q --json desktop list)"
[ "$(q --json desktop list --user alice | jq -r '[.desktops[].vm] | join(",")')" = desk1 ] ||
	fail "alice's desktops: $(q --json desktop list --user alice)"
[ "$(q --json desktop list --user bob | jq -r '.desktops[0].state')" = stopped ] ||
	fail "bob's desktop state"
q_status 1 desktop list --user nobody
[ "$(vm_field desk1 owner)" = alice ] || fail "vm show lacks the owner"

# A user with desktops is not removed; without, they are.
q_status 1 user rm alice
grep -q "still has desktop desk1" "$T/last.err" ||
	fail "user rm with a desktop: $(cat "$T/last.err")"
qq desktop unassign desk1 | grep -q "desk1: unassigned" || fail "unassign"
q_status 1 desktop unassign desk1
grep -q "not assigned" "$T/last.err" || fail "unassign twice"
[ "$(q --json desktop list --user alice | jq '.desktops | length')" = 0 ] ||
	fail "alice still has a desktop"
qq user rm alice >/dev/null
q_status 1 user rm alice
grep -q NotFound "$T/last.err" || fail "user rm twice"
qq dept rm emea >/dev/null
[ "$(q --json dept list | jq '.depts | length')" = 1 ] || fail "emea is still there"

# A deleted VM takes its assignment with it.
qq vm delete desk2 >/dev/null
[ "$(q --json desktop list --user bob | jq '.desktops | length')" = 0 ] ||
	fail "a deleted VM is still bob's desktop"
qq user rm bob >/dev/null

# Everything survives a qmpd restart.
stop_qmpd
start_qmpd
[ "$(q --json user list | jq -r '[.users[].login] | join(",")')" = j.smith_2 ] ||
	fail "users after restart: $(q --json user list)"
qq desktop assign j.smith_2 desk1 >/dev/null
stop_qmpd
start_qmpd
[ "$(q --json desktop list | jq -r '.desktops[0].login')" = j.smith_2 ] ||
	fail "assignment lost in a restart"
log ok
