/*
 * The command table: every "qdesk GROUP VERB", the daemon command it maps
 * to, its arguments and how its reply is printed. Adding a command is one
 * entry here; usage and help are generated from it.
 */
#include <stdio.h>
#include <string.h>

#include "compat.h"
#include "qdesk.h"

#define NAME_POS(meta)	{ meta, "name", CTL_STR, 0 }

/* The desktop device flags of vm create and pool create (issue 11). */
#define DEV_OPTS \
	{ "--video",	"video",	CTL_STR,	0 }, \
	{ "--heads",	"heads",	CTL_INT,	0 }, \
	{ "--audio",	"audio",	CTL_BOOL,	0 }, \
	{ "--usbredir",	"usbredir",	CTL_INT,	0 }, \
	{ "--balloon",	"balloon",	CTL_BOOL,	0 }, \
	{ "--clipboard", "clipboard",	CTL_BOOL,	0 }, \
	{ "--os",	"os",		CTL_STR,	0 }
#define DEV_USAGE \
	"[--os generic|linux|windows10|windows11] " \
	"[--video vga|qxl|virtio] [--heads N] [--audio] " \
	"[--usbredir N] [--balloon] [--clipboard]"

static const struct ctl_arg vm_create_opts[] = {
	{ "--memory",	"memory",	CTL_INT,	0 },
	{ "--vcpus",	"vcpus",	CTL_INT,	0 },
	{ "--accel",	"accel",	CTL_STR,	0 },
	{ "--machine",	"machine",	CTL_STR,	0 },
	{ "--cpu",	"cpu",		CTL_STR,	0 },
	{ "--kernel",	"kernel",	CTL_PATH,	0 },
	{ "--initrd",	"initrd",	CTL_PATH,	0 },
	{ "--append",	"append",	CTL_STR,	0 },
	{ "--disk",	"disk",		CTL_PATH,	0 },
	{ "--disk-format", "disk_format", CTL_STR,	0 },
	{ "--from",	"from",		CTL_STR,	0 },
	{ "--store",	"store",	CTL_STR,	0 },
	{ "--net",	"nets",		CTL_STRLIST,	0 },
	{ "--display",	"display",	CTL_STR,	0 },
	{ "--listen",	"listen",	CTL_STR,	0 },
	{ "--restart",	"restart",	CTL_STR,	0 },
	{ "--autostart", "autostart",	CTL_BOOL,	0 },
	{ "--firmware",	"firmware",	CTL_STR,	0 },
	{ "--tpm",	"tpm",		CTL_BOOL,	0 },
	DEV_OPTS,
	{ "--agent",	"agent",	CTL_BOOL,	0 },
	{ "--profile",	"profile",	CTL_STR,	0 },
	{ "--host",	"host",		CTL_STR,	0 },
	{ NULL, NULL, 0, 0 }
};

static const struct ctl_arg vm_stop_opts[] = {
	{ "--force",	"force",	CTL_BOOL,	0 },
	{ "--timeout",	"timeout",	CTL_INT,	0 },
	{ NULL, NULL, 0, 0 }
};

static const struct ctl_arg vm_migrate_opts[] = {
	{ "--storage",	"storage",	CTL_STR,	0 },
	{ "--downtime",	"downtime",	CTL_INT,	0 },
	{ "--timeout",	"timeout",	CTL_INT,	0 },
	{ "--bandwidth", "bandwidth",	CTL_INT,	0 },
	{ NULL, NULL, 0, 0 }
};

static const struct ctl_arg host_drain_opts[] = {
	{ "--live",	"live",		CTL_BOOL,	0 },
	{ NULL, NULL, 0, 0 }
};

static const struct ctl_arg timeout_opts[] = {
	{ "--timeout",	"timeout",	CTL_INT,	0 },
	{ NULL, NULL, 0, 0 }
};

static const struct ctl_arg vm_console_opts[] = {
	{ "--follow",	"follow",	CTL_BOOL,	CTL_LOCAL },
	{ NULL, NULL, 0, 0 }
};

static const struct ctl_arg vm_ticket_opts[] = {
	{ "--expires",	"expires",	CTL_INT,	0 },
	{ "--vv",	"vv",		CTL_STR,	CTL_LOCAL },
	{ NULL, NULL, 0, 0 }
};

static const struct ctl_arg events_opts[] = {
	{ "--vm",	"vm",		CTL_STR,	0 },
	{ NULL, NULL, 0, 0 }
};

static const struct ctl_arg image_in_store_opts[] = {
	{ "--store",	"store",	CTL_STR,	0 },
	{ NULL, NULL, 0, 0 }
};

static const struct ctl_arg image_import_opts[] = {
	{ "--format",	"format",	CTL_STR,	0 },
	{ "--store",	"store",	CTL_STR,	0 },
	{ NULL, NULL, 0, 0 }
};

static const struct ctl_arg image_gc_opts[] = {
	{ "--dry-run",	"dry_run",	CTL_BOOL,	0 },
	{ NULL, NULL, 0, 0 }
};

static const struct ctl_arg net_create_opts[] = {
	{ "--subnet",	"subnet",	CTL_STR,	CTL_REQUIRED },
	{ "--mode",	"mode",		CTL_STR,	0 },
	{ "--uplink",	"uplink",	CTL_STR,	0 },
	{ NULL, NULL, 0, 0 }
};

static const struct ctl_arg dept_add_opts[] = {
	{ "--parent",	"parent",	CTL_STR,	0 },
	{ NULL, NULL, 0, 0 }
};

static const struct ctl_arg user_add_opts[] = {
	{ "--name",	"name",		CTL_STR,	0 },
	{ "--dept",	"dept",		CTL_STR,	0 },
	{ "--admin",	"admin",	CTL_BOOL,	0 },
	{ "--password-stdin", "password_stdin", CTL_BOOL, CTL_LOCAL },
	{ NULL, NULL, 0, 0 }
};

static const struct ctl_arg user_passwd_opts[] = {
	{ "--password-stdin", "password_stdin", CTL_BOOL, CTL_LOCAL },
	{ NULL, NULL, 0, 0 }
};

static const struct ctl_arg desktop_list_opts[] = {
	{ "--user",	"login",	CTL_STR,	0 },
	{ NULL, NULL, 0, 0 }
};

static const struct ctl_arg pool_create_opts[] = {
	{ "--template",	"template",	CTL_STR,	CTL_REQUIRED },
	{ "--size",	"size",		CTL_INT,	CTL_REQUIRED },
	{ "--prestart",	"prestart",	CTL_INT,	0 },
	{ "--mode",	"mode",		CTL_STR,	0 },
	{ "--stateless", "stateless",	CTL_BOOL,	0 },
	{ "--dept",	"dept",		CTL_STR,	0 },
	{ "--memory",	"memory",	CTL_INT,	0 },
	{ "--vcpus",	"vcpus",	CTL_INT,	0 },
	{ "--net",	"nets",		CTL_STRLIST,	0 },
	{ "--kernel",	"kernel",	CTL_PATH,	0 },
	{ "--initrd",	"initrd",	CTL_PATH,	0 },
	{ "--append",	"append",	CTL_STR,	0 },
	{ "--accel",	"accel",	CTL_STR,	0 },
	{ "--display",	"display",	CTL_STR,	0 },
	{ "--listen",	"listen",	CTL_STR,	0 },
	{ "--on-disconnect", "on_disconnect", CTL_STR,	0 },
	{ "--grace",	"grace",	CTL_INT,	0 },
	{ "--firmware",	"firmware",	CTL_STR,	0 },
	{ "--tpm",	"tpm",		CTL_BOOL,	0 },
	DEV_OPTS,
	{ "--agent",	"agent",	CTL_BOOL,	0 },
	{ "--profile",	"profile",	CTL_STR,	0 },
	{ NULL, NULL, 0, 0 }
};

static const struct ctl_arg pool_set_opts[] = {
	{ "--prestart",	"prestart",	CTL_INT,	0 },
	{ "--on-disconnect", "on_disconnect", CTL_STR,	0 },
	{ "--grace",	"grace",	CTL_INT,	0 },
	{ "--profile",	"profile",	CTL_STR,	0 },
	{ NULL, NULL, 0, 0 }
};

static const struct ctl_arg cluster_init_opts[] = {
	{ "--etcd",	"etcd",		CTL_STR,	CTL_REQUIRED },
	{ "--dir",	"dir",		CTL_STR,	CTL_REQUIRED },
	{ "--etcd-ca",	"etcd_ca",	CTL_PATH,	0 },
	{ "--etcd-cert", "etcd_cert",	CTL_PATH,	0 },
	{ "--etcd-key",	"etcd_key",	CTL_PATH,	0 },
	{ NULL, NULL, 0, 0 }
};

static const struct ctl_arg cluster_cert_opts[] = {
	{ "--dir",	"dir",		CTL_STR,	CTL_REQUIRED },
	{ "--addr",	"addr",		CTL_STR,	0 },
	{ NULL, NULL, 0, 0 }
};

static const struct ctl_arg session_list_opts[] = {
	{ "--vm",	"vm",		CTL_STR,	0 },
	{ NULL, NULL, 0, 0 }
};

static const struct print_col session_cols[] = {
	{ "VM",		"vm",			COL_TEXT },
	{ "USER",	"user",			COL_TEXT },
	{ "CLIENT",	"client",		COL_TEXT },
	{ "VIA",	"via",			COL_TEXT },
	{ "START",	"start",		COL_TIME },
	{ "END",	"end",			COL_TIME },
	{ "WHY",	"end_reason",		COL_TEXT },
	{ NULL, NULL, 0 }
};

/* user import: one line per record, what became of it. */
static const struct print_col import_cols[] = {
	{ "KIND",	"kind",			COL_TEXT },
	{ "NAME",	"name",			COL_TEXT },
	{ "RESULT",	"result",		COL_TEXT },
	{ NULL, NULL, 0 }
};

static const struct print_col host_cols[] = {
	{ "NAME",	"name",			COL_TEXT },
	{ "ADDRESS",	"addr",			COL_TEXT },
	{ "STATE",	"state",		COL_TEXT },
	{ "DESKTOPS",	"desktops",		COL_TEXT },
	{ "MEM FREE",	"mem_free",		COL_MIB },
	{ "LEASE AGE",	"lease_age",		COL_TEXT },
	{ NULL, NULL, 0 }
};

static const struct ctl_arg image_store_opts[] = {
	{ "--shared",	"shared",	CTL_BOOL,	0 },
	{ NULL, NULL, 0, 0 }
};

static const struct print_col image_cols[] = {
	{ "NAME",	"name",			COL_TEXT },
	{ "KIND",	"kind",			COL_TEXT },
	{ "FORMAT",	"format",		COL_TEXT },
	{ "PARENT",	"parent",		COL_TEXT },
	{ "SIZE",	"virtual_size",		COL_BYTES },
	{ "USED",	"allocated_size",	COL_BYTES },
	{ "CHILDREN",	"children",		COL_TEXT },
	{ "USERS",	"users",		COL_TEXT },
	{ NULL, NULL, 0 }
};

/* Keep groups together: help lists them in this order. */
const struct ctl_command ctl_commands[] = {
	{ .group = "status", .cmd = "server.status", .usage = "",
	  .print = PRINT_OBJECT },

	{ .group = "vm", .verb = "create", .cmd = "vm.create",
	  .usage = "NAME [--memory MIB] [--vcpus N] [--accel auto|kvm|tcg] "
	    "[--machine pc|q35] [--cpu MODEL] "
	    "[--kernel FILE --initrd FILE --append STR | --disk FILE] "
	    "[--disk-format raw|qcow2] "
	    "[--from IMAGE [--store STORE]] [--net NETWORK]... [--display spice|none] "
	    "[--listen ADDR] [--restart no|on-crash|always] [--autostart] "
	    "[--firmware bios|uefi|uefi-secure] [--tpm] "
	    DEV_USAGE " [--agent] [--profile lan|wan] [--host HOST]",
	  .pos = { NAME_POS("NAME") }, .opts = vm_create_opts,
	  .print = PRINT_STATE },
	{ .group = "vm", .verb = "list", .cmd = "vm.list", .usage = "",
	  .print = PRINT_VM_TABLE },
	{ .group = "vm", .verb = "show", .cmd = "vm.show", .usage = "NAME",
	  .pos = { NAME_POS("NAME") }, .print = PRINT_VM },
	{ .group = "vm", .verb = "start", .cmd = "vm.start", .usage = "NAME",
	  .pos = { NAME_POS("NAME") }, .print = PRINT_STATE, .wait = 120 },
	{ .group = "vm", .verb = "stop", .cmd = "vm.stop",
	  .usage = "NAME [--force] [--timeout S]",
	  .pos = { NAME_POS("NAME") }, .opts = vm_stop_opts,
	  .print = PRINT_STATE, .wait = 60 },
	{ .group = "vm", .verb = "kill", .cmd = "vm.kill", .usage = "NAME",
	  .pos = { NAME_POS("NAME") }, .print = PRINT_STATE },
	{ .group = "vm", .verb = "reboot", .cmd = "vm.reboot", .usage = "NAME",
	  .pos = { NAME_POS("NAME") }, .print = PRINT_STATE },
	{ .group = "vm", .verb = "pause", .cmd = "vm.pause", .usage = "NAME",
	  .pos = { NAME_POS("NAME") }, .print = PRINT_STATE },
	{ .group = "vm", .verb = "resume", .cmd = "vm.resume", .usage = "NAME",
	  .pos = { NAME_POS("NAME") }, .print = PRINT_STATE },
	{ .group = "vm", .verb = "delete", .cmd = "vm.delete", .usage = "NAME",
	  .pos = { NAME_POS("NAME") }, .print = PRINT_DONE,
	  .done = "$name: deleted" },
	{ .group = "vm", .verb = "console", .cmd = "vm.console",
	  .usage = "NAME [--follow]",
	  .pos = { NAME_POS("NAME") }, .opts = vm_console_opts,
	  .run = run_console },
	{ .group = "vm", .verb = "screenshot", .cmd = "vm.screenshot",
	  .usage = "NAME FILE",
	  .pos = { NAME_POS("NAME"), { "FILE", "file", CTL_STR, CTL_LOCAL } },
	  .run = run_screenshot },
	{ .group = "vm", .verb = "wait", .cmd = "vm.wait",
	  .usage = "NAME STATE [--timeout S]",
	  .pos = { NAME_POS("NAME"), { "STATE", "state", CTL_STR, 0 } },
	  .opts = timeout_opts, .print = PRINT_STATE, .wait = 60 },
	{ .group = "vm", .verb = "ticket", .cmd = "vm.ticket",
	  .usage = "NAME [--expires S] [--vv FILE]",
	  .pos = { NAME_POS("NAME") }, .opts = vm_ticket_opts,
	  .print = PRINT_OBJECT, .run = run_ticket },
	{ .group = "vm", .verb = "migrate", .cmd = "vm.migrate",
	  .usage = "NAME HOST [--storage shared|copy] [--downtime MS] "
	    "[--timeout S (of RAM migration, default 300)] "
	    "[--bandwidth MIB/S]",
	  .pos = { NAME_POS("NAME"), { "HOST", "to", CTL_STR, 0 } },
	  .opts = vm_migrate_opts, .print = PRINT_OBJECT, .wait = 300,
	  .flags = CTL_WAIT_PLUS },
	{ .group = "vm", .verb = "template", .cmd = "vm.template",
	  .usage = "VM NAME",
	  .pos = { NAME_POS("VM"), { "NAME", "image", CTL_STR, 0 } },
	  .print = PRINT_DONE, .done = "$image: template made from $name" },
	{ .group = "vm", .verb = "snapshot", .cmd = "vm.snapshot",
	  .usage = "VM SNAP",
	  .pos = { NAME_POS("VM"), { "SNAP", "snapshot", CTL_STR, 0 } },
	  .print = PRINT_DONE, .done = "$name: snapshot $snapshot taken" },
	{ .group = "vm", .verb = "snapshots", .cmd = "vm.snapshots",
	  .usage = "VM", .pos = { NAME_POS("VM") }, .print = PRINT_LIST },
	{ .group = "vm", .verb = "revert", .cmd = "vm.revert",
	  .usage = "VM SNAP",
	  .pos = { NAME_POS("VM"), { "SNAP", "snapshot", CTL_STR, 0 } },
	  .print = PRINT_DONE, .done = "$name: reverted to $snapshot" },
	{ .group = "vm", .verb = "snapshot-rm", .cmd = "vm.snapshot_rm",
	  .usage = "VM SNAP",
	  .pos = { NAME_POS("VM"), { "SNAP", "snapshot", CTL_STR, 0 } },
	  .print = PRINT_DONE, .done = "$name: snapshot $snapshot removed" },
	{ .group = "vm", .verb = "reset-disk", .cmd = "vm.reset_disk",
	  .usage = "VM", .pos = { NAME_POS("VM") },
	  .print = PRINT_DONE, .done = "$name: disk reset" },
	{ .group = "vm", .verb = "reset-nvram", .cmd = "vm.reset_nvram",
	  .usage = "VM", .pos = { NAME_POS("VM") },
	  .print = PRINT_DONE, .done = "$name: NVRAM reset" },
	{ .group = "vm", .verb = "nic-add", .cmd = "vm.nic_add",
	  .usage = "VM NETWORK",
	  .pos = { NAME_POS("VM"), { "NETWORK", "network", CTL_STR, 0 } },
	  .print = PRINT_DONE, .done = "$name: nic added on $network" },
	{ .group = "vm", .verb = "nic-rm", .cmd = "vm.nic_rm",
	  .usage = "VM MAC",
	  .pos = { NAME_POS("VM"), { "MAC", "mac", CTL_STR, 0 } },
	  .print = PRINT_DONE, .done = "$name: nic $mac removed" },

	{ .group = "events", .cmd = "events.subscribe", .usage = "[--vm NAME]",
	  .opts = events_opts, .run = run_events },

	{ .group = "image", .verb = "import", .cmd = "image.import",
	  .usage = "NAME FILE [--format raw|qcow2] [--store STORE]",
	  .pos = { NAME_POS("NAME"), { "FILE", "file", CTL_PATH, 0 } },
	  .opts = image_import_opts, .print = PRINT_DONE,
	  .done = "$name: imported" },
	{ .group = "image", .verb = "clone", .cmd = "image.clone",
	  .usage = "PARENT NAME",
	  .pos = { { "PARENT", "parent", CTL_STR, 0 }, NAME_POS("NAME") },
	  .print = PRINT_DONE, .done = "$name: cloned from $parent" },
	{ .group = "image", .verb = "list", .cmd = "image.list",
	  .usage = "[--store STORE]", .opts = image_in_store_opts,
	  .print = PRINT_LIST, .list = "images", .cols = image_cols },
	{ .group = "image", .verb = "show", .cmd = "image.show",
	  .usage = "NAME [--store STORE]", .pos = { NAME_POS("NAME") },
	  .opts = image_in_store_opts, .print = PRINT_OBJECT },
	{ .group = "image", .verb = "rm", .cmd = "image.rm", .usage = "NAME",
	  .pos = { NAME_POS("NAME") }, .print = PRINT_DONE,
	  .done = "$name: removed" },
	{ .group = "image", .verb = "verify", .cmd = "image.verify",
	  .usage = "[NAME]",
	  .pos = { { "NAME", "name", CTL_STR, CTL_OPTIONAL } },
	  .print = PRINT_VERIFY },
	{ .group = "image", .verb = "gc", .cmd = "image.gc",
	  .usage = "[--dry-run]", .opts = image_gc_opts,
	  .print = PRINT_OBJECT },
	{ .group = "image", .verb = "flatten", .cmd = "image.flatten",
	  .usage = "NAME", .pos = { NAME_POS("NAME") }, .print = PRINT_DONE,
	  .done = "$name: flattened" },

	{ .group = "image", .verb = "store", .cmd = "image.store",
	  .usage = "add NAME PATH --shared",
	  .pos = { { "add", "action", CTL_STR, 0 }, NAME_POS("NAME"),
	    { "PATH", "path", CTL_STR, 0 } },
	  .opts = image_store_opts, .print = PRINT_DONE,
	  .done = "$name: store at $path" },

	{ .group = "net", .verb = "create", .cmd = "net.create",
	  .usage = "NAME --subnet CIDR [--mode nat|isolated|bridge] "
	    "[--uplink IFACE]",
	  .pos = { NAME_POS("NAME") }, .opts = net_create_opts,
	  .print = PRINT_DONE, .done = "$name: created" },
	{ .group = "net", .verb = "list", .cmd = "net.list", .usage = "",
	  .print = PRINT_LIST },
	{ .group = "net", .verb = "show", .cmd = "net.show", .usage = "NAME",
	  .pos = { NAME_POS("NAME") }, .print = PRINT_OBJECT },
	{ .group = "net", .verb = "rm", .cmd = "net.rm", .usage = "NAME",
	  .pos = { NAME_POS("NAME") }, .print = PRINT_DONE,
	  .done = "$name: removed" },

	{ .group = "dept", .verb = "add", .cmd = "dept.add",
	  .usage = "NAME [--parent DEPT]",
	  .pos = { NAME_POS("NAME") }, .opts = dept_add_opts,
	  .print = PRINT_DONE, .done = "$name: added" },
	{ .group = "dept", .verb = "list", .cmd = "dept.list", .usage = "",
	  .print = PRINT_LIST },
	{ .group = "dept", .verb = "rm", .cmd = "dept.rm", .usage = "NAME",
	  .pos = { NAME_POS("NAME") }, .print = PRINT_DONE,
	  .done = "$name: removed" },

	{ .group = "user", .verb = "add", .cmd = "user.add",
	  .usage = "LOGIN [--name \"Full Name\"] [--dept DEPT] [--admin] "
	    "[--password-stdin]",
	  .pos = { { "LOGIN", "login", CTL_STR, 0 } },
	  .opts = user_add_opts, .print = PRINT_DONE,
	  .done = "$login: added", .flags = CTL_PASSWORD },
	{ .group = "user", .verb = "passwd", .cmd = "user.passwd",
	  .usage = "LOGIN [--password-stdin]",
	  .pos = { { "LOGIN", "login", CTL_STR, 0 } },
	  .opts = user_passwd_opts, .print = PRINT_DONE,
	  .done = "$login: password changed",
	  .flags = CTL_PASSWORD|CTL_NEEDPASS },
	{ .group = "user", .verb = "disable", .cmd = "user.disable",
	  .usage = "LOGIN", .pos = { { "LOGIN", "login", CTL_STR, 0 } },
	  .print = PRINT_DONE, .done = "$login: disabled" },
	{ .group = "user", .verb = "enable", .cmd = "user.enable",
	  .usage = "LOGIN", .pos = { { "LOGIN", "login", CTL_STR, 0 } },
	  .print = PRINT_DONE, .done = "$login: enabled" },
	{ .group = "user", .verb = "rm", .cmd = "user.rm",
	  .usage = "LOGIN", .pos = { { "LOGIN", "login", CTL_STR, 0 } },
	  .print = PRINT_DONE, .done = "$login: removed" },
	{ .group = "user", .verb = "list", .cmd = "user.list", .usage = "",
	  .print = PRINT_LIST },
	{ .group = "user", .verb = "import", .cmd = "user.import",
	  .usage = "", .print = PRINT_LIST, .list = "records",
	  .cols = import_cols },

	{ .group = "desktop", .verb = "assign", .cmd = "desktop.assign",
	  .usage = "LOGIN VM",
	  .pos = { { "LOGIN", "login", CTL_STR, 0 },
	    { "VM", "vm", CTL_STR, 0 } },
	  .print = PRINT_DONE, .done = "$vm: assigned to $login" },
	{ .group = "desktop", .verb = "unassign", .cmd = "desktop.unassign",
	  .usage = "VM", .pos = { { "VM", "vm", CTL_STR, 0 } },
	  .print = PRINT_DONE, .done = "$vm: unassigned" },
	{ .group = "desktop", .verb = "list", .cmd = "desktop.list",
	  .usage = "[--user LOGIN]", .opts = desktop_list_opts,
	  .print = PRINT_LIST },

	{ .group = "pool", .verb = "create", .cmd = "pool.create",
	  .usage = "NAME --template IMAGE --size N [--prestart K] "
	    "[--mode dedicated|floating] [--stateless] [--dept DEPT] "
	    "[--memory MIB] [--vcpus N] [--net NETWORK]... [--kernel FILE] "
	    "[--initrd FILE] [--append ARGS] [--accel A] [--display D] "
	    "[--listen ADDR] [--on-disconnect none|shutdown|reset] [--grace S] "
	    "[--firmware bios|uefi|uefi-secure] [--tpm] " DEV_USAGE
	    " [--agent] [--profile lan|wan]",
	  .pos = { NAME_POS("NAME") }, .opts = pool_create_opts,
	  .print = PRINT_DONE, .done = "$name: created" },
	{ .group = "pool", .verb = "list", .cmd = "pool.list", .usage = "",
	  .print = PRINT_LIST },
	{ .group = "pool", .verb = "show", .cmd = "pool.show", .usage = "NAME",
	  .pos = { NAME_POS("NAME") }, .print = PRINT_OBJECT },
	{ .group = "pool", .verb = "resize", .cmd = "pool.resize",
	  .usage = "NAME N",
	  .pos = { NAME_POS("NAME"), { "N", "size", CTL_INT, 0 } },
	  .print = PRINT_DONE, .done = "$name: resized to $size" },
	{ .group = "pool", .verb = "rm", .cmd = "pool.rm", .usage = "NAME",
	  .pos = { NAME_POS("NAME") }, .print = PRINT_DONE,
	  .done = "$name: removed" },
	{ .group = "pool", .verb = "set", .cmd = "pool.set",
	  .usage = "NAME [--prestart K] [--on-disconnect none|shutdown|reset] "
	    "[--grace S] [--profile lan|wan]",
	  .pos = { NAME_POS("NAME") }, .opts = pool_set_opts,
	  .print = PRINT_OBJECT },

	/* Done by the CLI itself (cluster.c): the CA's key stays here. */
	{ .group = "cluster", .verb = "init", .cmd = "cluster.init",
	  .usage = "--etcd URLS --dir DIR [--etcd-ca FILE] [--etcd-cert FILE "
	    "--etcd-key FILE]",
	  .opts = cluster_init_opts, .run = run_cluster_init },
	{ .group = "cluster", .verb = "cert", .cmd = "cluster.cert",
	  .usage = "KIND NAME --dir DIR [--addr IP]",
	  .pos = { { "KIND", "kind", CTL_STR, 0 }, NAME_POS("NAME") },
	  .opts = cluster_cert_opts, .run = run_cluster_cert },
	{ .group = "host", .verb = "list", .cmd = "host.list", .usage = "",
	  .print = PRINT_LIST, .list = "hosts", .cols = host_cols },
	{ .group = "host", .verb = "drain", .cmd = "host.drain",
	  .usage = "HOST [--live]", .pos = { NAME_POS("HOST") },
	  .opts = host_drain_opts, .print = PRINT_DONE,
	  .done = "$name: draining", .wait = 1800 },
	{ .group = "host", .verb = "undrain", .cmd = "host.undrain",
	  .usage = "HOST", .pos = { NAME_POS("HOST") }, .print = PRINT_DONE,
	  .done = "$name: not draining" },

	{ .group = "session", .verb = "list", .cmd = "session.list",
	  .usage = "[--vm NAME]", .opts = session_list_opts,
	  .print = PRINT_LIST, .list = "sessions", .cols = session_cols },
};
const size_t ctl_commands_size = nitems(ctl_commands);

/*
 * Find the entry for GROUP VERB; verb is ignored for a group that is a
 * command by itself. *known_group tells a caller whether to list the
 * group's commands or all of them when nothing matched.
 */
const struct ctl_command *
cmds_find(const char *group, const char *verb, int *known_group)
{
	const struct ctl_command	*ce;
	size_t				 i;

	*known_group = 0;
	for (i = 0; i < ctl_commands_size; i++) {
		ce = &ctl_commands[i];
		if (strcmp(ce->group, group) != 0)
			continue;
		*known_group = 1;
		if (ce->verb == NULL)
			return (ce);
		if (verb != NULL && strcmp(ce->verb, verb) == 0)
			return (ce);
	}
	return (NULL);
}

int
cmds_group_exists(const char *group)
{
	size_t	i;

	for (i = 0; i < ctl_commands_size; i++) {
		if (strcmp(ctl_commands[i].group, group) == 0)
			return (1);
	}
	return (0);
}

/* Split usage into words, keeping "[--kernel FILE ... | --disk FILE]" whole. */
static size_t
cmds_usage_word(const char *s, size_t *skip)
{
	size_t	n = 0, depth = 0;
	int	quote = 0;

	while (s[n] == ' ')
		n++;
	*skip = n;
	s += n;
	n = 0;
	while (s[n] != '\0') {
		if (s[n] == '"')
			quote = !quote;
		else if (!quote && s[n] == '[')
			depth++;
		else if (!quote && s[n] == ']' && depth > 0)
			depth--;
		else if (!quote && depth == 0 && s[n] == ' ')
			break;
		n++;
	}
	return (n);
}

/*
 * Print "qdesk GROUP VERB USAGE", folded below 80 columns with the
 * continuation lines indented under the first argument.
 */
static void
cmds_print(FILE *f, const char *prefix, const struct ctl_command *ce)
{
	char		 head[128];
	const char	*s = ce->usage;
	size_t		 col, indent, n, skip;

	if (ce->verb != NULL)
		snprintf(head, sizeof head, "%sqdesk %s %s", prefix, ce->group,
		    ce->verb);
	else
		snprintf(head, sizeof head, "%sqdesk %s", prefix, ce->group);
	fputs(head, f);
	col = indent = strlen(head) + 1;
	if (indent > 40)
		indent = strlen(prefix) + 8;
	for (;;) {
		n = cmds_usage_word(s, &skip);
		if (n == 0)
			break;
		s += skip;
		if (col + n > 79 && col > indent) {
			fprintf(f, "\n%*s", (int)indent, "");
			col = indent;
		} else {
			fputc(' ', f);
			col++;
		}
		fwrite(s, 1, n, f);
		col += n;
		s += n;
	}
	fputc('\n', f);
}

void
cmds_usage(FILE *f, const struct ctl_command *ce)
{
	cmds_print(f, "usage: ", ce);
}

/* List the commands of one group, or all of them when group is NULL. */
void
cmds_list(FILE *f, const char *group)
{
	size_t	i;

	for (i = 0; i < ctl_commands_size; i++) {
		if (group == NULL || strcmp(ctl_commands[i].group, group) == 0)
			cmds_print(f, "  ", &ctl_commands[i]);
	}
}

void
cmds_main_usage(FILE *f)
{
	fprintf(f, "usage: qdesk [--socket PATH | --host ADDR:PORT --cert DIR] "
	    "[--json]\n             [--timeout S] COMMAND [ARGS]\n"
	    "       qdesk help [GROUP]\n"
	    "commands:\n");
	cmds_list(f, NULL);
}
