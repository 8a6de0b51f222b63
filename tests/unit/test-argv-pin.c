/*
 * vm-argv-pin.c: PCI places from a real query-pci answer (QEMU 7.2, q35,
 * firmware run so the root ports are numbered, a NIC behind qdesk-rp1:
 * tests/golden/pci/query-pci-q35.json), through migrate.prepare's JSON
 * and back, and the entries the target refuses.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "check.h"
#include "compat.h"
#include "vm.h"
#include "xmalloc.h"

static void
test_query(const char *dir)
{
	struct vm_pci_pins		 p, q;
	const struct vm_pci_pin		*x;
	json_t				*ret, *wire;
	char				 path[4096], *cause = NULL;
	u_int				 i;

	snprintf(path, sizeof path, "%s/query-pci-q35.json", dir);
	ret = json_load_file(path, 0, NULL);
	CHECK(ret != NULL);
	if (ret == NULL)
		return;
	CHECK(vm_pci_pins_query(ret, &p, &cause) == 0);
	/* video0 usb0 net0-nic qdesk-rp0 qdesk-rp1 net1-nic; no built-ins. */
	CHECK(p.n == 6);
	CHECK((x = vm_pci_pins_find(&p, "net0-nic")) != NULL &&
	    *x->bus == '\0' && x->slot == 3 && x->func == 0);
	CHECK((x = vm_pci_pins_find(&p, "qdesk-rp1")) != NULL &&
	    *x->bus == '\0' && x->slot == 5);
	CHECK((x = vm_pci_pins_find(&p, "net1-nic")) != NULL &&
	    strcmp(x->bus, "qdesk-rp1") == 0 && x->slot == 0);
	/* The wire format reads back to the same places. */
	wire = vm_pci_pins_to_json(&p);
	CHECK(vm_pci_pins_from_json(wire, &q, &cause) == 0);
	CHECK(q.n == p.n);
	for (i = 0; i < p.n && i < q.n; i++)
		CHECK(strcmp(p.v[i].id, q.v[i].id) == 0 &&
		    strcmp(p.v[i].bus, q.v[i].bus) == 0 &&
		    p.v[i].slot == q.v[i].slot && p.v[i].func == q.v[i].func);
	json_decref(wire);
	json_decref(ret);
	/* No root bus in the answer. */
	ret = json_pack("[]");
	CHECK(vm_pci_pins_query(ret, &p, &cause) == -1);
	CHECK_STR(cause, "query-pci answered without a root bus");
	free(cause);
	json_decref(ret);
}

/* Entries the target refuses, each with its one line. */
static void
test_refused(void)
{
	static const struct {
		const char	*json;
		const char	*err;
	} cases[] = {
		{ "{}", "the PCI layout is not a list" },
		{ "[{\"id\": \"a\", \"slot\": 1, \"function\": 0}]",
		  "PCI layout entry 0 lacks id, bus, slot or function" },
		{ "[{\"id\": \"a\", \"bus\": \"\", \"slot\": 32, "
		  "\"function\": 0}]",
		  "PCI device a at slot 32 function 0: out of range" },
		{ "[{\"id\": \"a\", \"bus\": \"x,y\", \"slot\": 1, "
		  "\"function\": 0}]",
		  "PCI device id 'a' on bus 'x,y' is not a plain word" },
		{ "[{\"id\": \"a\", \"bus\": \"\", \"slot\": 1, "
		  "\"function\": 0}, {\"id\": \"a\", \"bus\": \"\", "
		  "\"slot\": 2, \"function\": 0}]",
		  "PCI device a is listed twice" },
	};
	struct vm_pci_pins	 p;
	json_t			*j;
	char			*cause;
	size_t			 i;

	for (i = 0; i < nitems(cases); i++) {
		cause = NULL;
		j = json_loads(cases[i].json, 0, NULL);
		CHECK(j != NULL);
		CHECK(vm_pci_pins_from_json(j, &p, &cause) == -1);
		CHECK_STR(cause, cases[i].err);
		free(cause);
		json_decref(j);
	}
}

int
main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: test-argv-pin GOLDEN-DIR\n");
		return (2);
	}
	test_query(argv[1]);
	test_refused();
	return (check_exit());
}
