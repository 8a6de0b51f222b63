#!/usr/bin/env python3
"""Boot every artifact of scripts/mkguest for real and check what it promises.

    python3 scripts/guest/selftest.py [GUESTDIR]   (default build/guests)

Why: the guests are the fixtures of qdesk's integration tests; when one of
them silently stops printing READY or ignoring the power button, every test
above fails in a confusing way.  This prints one line per check with the
measured time, and "N passed, N failed" at the end.  Standard library only.
Boot sectors run under KVM (falls back to TCG when /dev/kvm cannot run a
VM), Linux guests under TCG, as on qdesk's CI machine.
"""
import json, os, shutil, socket, subprocess, sys, tempfile, threading, time

QEMU = "qemu-system-x86_64"
BASE = [QEMU, "-nodefaults", "-no-user-config", "-display", "none"]
results = []
vms = []  # every QEMU started, killed at exit even when a check throws


def check(name, ok, detail=""):
    results.append(ok)
    print(f"{'PASS' if ok else 'FAIL'} {name} {detail}", flush=True)


def wait_for(pred, timeout, step=0.05):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(step)
    return False


def read(path):
    try:
        with open(path, "rb") as f:
            return f.read().decode("latin-1")
    except FileNotFoundError:
        return ""


class Qmp:
    """Minimal QMP client: enough for commands and waiting for events."""

    def __init__(self, path):
        wait_for(lambda: os.path.exists(path), 10)
        self.s = socket.socket(socket.AF_UNIX)
        self.s.connect(path)
        self.f = self.s.makefile("rw")
        self.events = []
        json.loads(self.f.readline())  # greeting
        self.cmd("qmp_capabilities")

    def cmd(self, name, **args):
        self.f.write(json.dumps({"execute": name, "arguments": args}) + "\n")
        self.f.flush()
        while True:
            msg = json.loads(self.f.readline())
            if "event" in msg:
                self.events.append(msg)
            else:
                return msg

    def event(self, name, timeout):
        self.s.settimeout(timeout)
        try:
            while not any(e["event"] == name for e in self.events):
                line = self.f.readline()
                if not line:
                    return False
                self.events.append(json.loads(line))
            return True
        except (socket.timeout, OSError):
            return False
        finally:
            self.s.settimeout(None)


class Vm:
    """QEMU with a QMP socket and the serial on a unix socket + logfile."""

    def __init__(self, tmp, name, args, serial=True):
        self.log = os.path.join(tmp, name + ".log")
        self.qmp_path = os.path.join(tmp, name + ".qmp")
        self.ser_path = os.path.join(tmp, name + ".ser")
        argv = BASE + args + ["-qmp", f"unix:{self.qmp_path},server=on,wait=off"]
        if serial:
            argv += ["-chardev", f"socket,id=s0,path={self.ser_path},server=on,"
                     f"wait=off,logfile={self.log}", "-serial", "chardev:s0"]
        for p in (self.log, self.qmp_path, self.ser_path):
            if os.path.exists(p):
                os.unlink(p)
        self.t0 = time.monotonic()
        self.p = subprocess.Popen(argv, stderr=subprocess.DEVNULL)
        vms.append(self)
        self.qmp = Qmp(self.qmp_path)
        self.ser = None

    def out(self):
        return read(self.log)

    def wait_text(self, text, timeout, after=0):
        ok = wait_for(lambda: text in self.out()[after:] or self.p.poll() is not None,
                      timeout)
        return ok and text in self.out()[after:]

    def type(self, line):
        if self.ser is None:
            self.ser = socket.socket(socket.AF_UNIX)
            self.ser.connect(self.ser_path)
            # A connected client must read: QEMU writes the UART's output one
            # byte per send, each byte costs a whole skb, and the socket
            # buffer fills after ~280 bytes, stalling the guest console.  The
            # logfile has the same bytes, so discard them here.
            threading.Thread(target=self._drain, daemon=True).start()
        self.ser.sendall(line.encode() + b"\n")

    def _drain(self):
        try:
            while self.ser.recv(65536):
                pass
        except OSError:
            pass

    def elapsed(self):
        return time.monotonic() - self.t0

    def exited(self, timeout):
        try:
            self.p.wait(timeout)
            return True
        except subprocess.TimeoutExpired:
            return False

    def kill(self):
        if self.p.poll() is None:
            self.p.kill()
            self.p.wait()


def kvm_works():
    try:
        r = subprocess.run(BASE + ["-accel", "kvm", "-S", "-monitor", "stdio"],
                           input=b"quit\n", capture_output=True, timeout=20)
        return r.returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def test_bootsect(g, tmp):
    accel = "kvm" if kvm_works() else "tcg"
    for machine in ("pc", "q35"):
        vm = Vm(tmp, f"boot-{machine}", ["-accel", accel, "-machine", machine,
             "-vga", "std", "-drive", f"file={g}/boot.img,format=raw,if=ide"])
        ok = vm.wait_text("QDESK TINY GUEST UP\r\n", 60)
        check(f"boot.img {machine}/{accel} prints line", ok, f"{vm.elapsed():.2f}s")
        # Screendump: a PPM whose pixels are not all one colour.
        ppm = os.path.join(tmp, f"boot-{machine}.ppm")
        vm.qmp.cmd("screendump", filename=ppm)
        data = read(ppm).encode("latin-1")
        body = data[data.index(b"255\n") + 4:] if b"255\n" in data else b""
        check(f"boot.img {machine} screen not blank", len(set(body[i:i + 3]
              for i in range(0, len(body), 3))) > 1)
        vm.kill()
    for machine in ("pc", "q35"):
        t0 = time.monotonic()
        r = subprocess.run(BASE + ["-accel", accel, "-machine", machine,
                           "-drive", f"file={g}/boot-exit.img,format=raw,if=ide",
                           "-serial", f"file:{tmp}/exit.log",
                           "-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"],
                           capture_output=True, timeout=120)
        check(f"boot-exit.img {machine}/{accel} exits 33 after the line",
              r.returncode == 33 and "GUEST UP" in read(f"{tmp}/exit.log"),
              f"rc={r.returncode} {time.monotonic() - t0:.2f}s")


def linux(g, tmp, name, append, extra):
    return Vm(tmp, name, ["-accel", "tcg", "-m", "256", "-kernel", f"{g}/vmlinuz",
              "-initrd", f"{g}/initrd.img", "-append", append,
              "-device", "virtio-net-pci,netdev=n0", "-netdev", "user,id=n0"] + extra)


def test_initrd(g, tmp):
    vm = linux(g, tmp, "initrd", "console=ttyS0 quiet", [])
    ok = vm.wait_text("QDESK GUEST READY", 60)
    check("initrd boots to READY (tcg)", ok, f"{vm.elapsed():.2f}s")
    check("initrd gets a DHCP lease", vm.wait_text("QDESK IP=eth0 10.0.2.15/24", 20),
          f"{vm.elapsed():.2f}s")
    vm.wait_text("# ", 10)
    n = len(vm.out())
    vm.type("echo MARK$((6*7))")
    check("serial shell runs a command", vm.wait_text("MARK42", 10, n))
    n = len(vm.out())
    vm.type("exit")
    # The kernel hangs up a serial tty when its session leader exits, which
    # drops input typed before the new shell starts: wait for its banner.
    vm.wait_text("built-in shell", 15, n)
    vm.wait_text("# ", 5, len(vm.out()) - 40)
    vm.type("echo AGAIN$((6*7))")
    check("shell respawns after exit", vm.wait_text("AGAIN42", 15, n))
    t0 = time.monotonic()
    vm.qmp.cmd("system_powerdown")
    ok = vm.exited(30)
    check("system_powerdown makes QEMU exit", ok and "QDESK GUEST POWEROFF" in vm.out(),
          f"{time.monotonic() - t0:.2f}s")
    vm.kill()

    vm = linux(g, tmp, "initrd-ns", "console=ttyS0 quiet", ["-no-shutdown"])
    vm.wait_text("QDESK GUEST READY", 60)
    t0 = time.monotonic()
    vm.qmp.cmd("system_powerdown")
    ok = vm.qmp.event("SHUTDOWN", 30)
    check("system_powerdown with -no-shutdown: SHUTDOWN event, QEMU stays",
          ok and vm.p.poll() is None, f"{time.monotonic() - t0:.2f}s")
    vm.qmp.cmd("quit")
    vm.exited(10)
    vm.kill()


def test_rootfs(g, tmp):
    disk = os.path.join(tmp, "rootfs-copy.qcow2")
    shutil.copy(f"{g}/rootfs.qcow2", disk)
    drive = ["-drive", f"file={disk},if=virtio,format=qcow2"]
    append = "console=ttyS0 quiet root=/dev/vda rw"
    vm = linux(g, tmp, "rootfs1", append, drive)
    ok = vm.wait_text("QDESK GUEST READY", 60)
    check("rootfs boots to READY (tcg)", ok and "QDESK ROOT=vda" in vm.out(),
          f"{vm.elapsed():.2f}s")
    vm.wait_text("# ", 10)
    n = len(vm.out())
    vm.type("echo hi > /data.txt; sync; echo WROTE$((6*7))")
    check("write a file through the serial shell", vm.wait_text("WROTE42", 10, n))
    vm.qmp.cmd("system_powerdown")
    check("rootfs powers off", vm.exited(30))
    vm.kill()
    r = subprocess.run(["qemu-img", "check", disk], capture_output=True)
    check("qcow2 consistent after poweroff", r.returncode == 0)
    # The guest remounted / read-only before power-off: ext4 must be clean.
    raw = os.path.join(tmp, "rootfs.raw")
    subprocess.run(["qemu-img", "convert", "-O", "raw", disk, raw], check=True)
    r = subprocess.run(["e2fsck", "-n", raw], capture_output=True, text=True)
    check("ext4 clean after poweroff", r.returncode == 0 and "clean" in r.stdout,
          r.stdout.strip().splitlines()[-1] if r.stdout.strip() else r.stderr)
    os.unlink(raw)

    vm = linux(g, tmp, "rootfs2", append, drive)
    vm.wait_text("QDESK GUEST READY", 60)
    vm.wait_text("# ", 10)
    n = len(vm.out())
    vm.type("cat /data.txt; echo END$((6*7))")
    ok = vm.wait_text("END42", 10, n)
    check("file survives a reboot", ok and "\nhi" in vm.out()[n:].replace("\r", ""))
    vm.qmp.cmd("system_powerdown")
    vm.exited(30)
    vm.kill()


def main():
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    g = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else f"{repo}/build/guests")
    tmp = tempfile.mkdtemp(prefix="qdesk-guest-")
    try:
        test_bootsect(g, tmp)
        test_initrd(g, tmp)
        test_rootfs(g, tmp)
    finally:
        for vm in vms:
            vm.kill()
        shutil.rmtree(tmp, ignore_errors=True)
    failed = results.count(False)
    print(f"{len(results) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
