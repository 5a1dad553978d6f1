package dist

import (
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// buildDeb runs dist/build-deb.sh (what make deb runs) into a temporary
// directory and returns the package.
func buildDeb(t *testing.T) string {
	t.Helper()
	cmd := exec.Command("./build-deb.sh", t.TempDir())
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("build-deb.sh: %v\n%s", err, stderr.String())
	}
	return lastLine(string(out))
}

func dpkgDeb(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command("dpkg-deb", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("dpkg-deb %q: %v\n%s", args, err, out)
	}
	return string(out)
}

// The package holds what the issue list asks for, the binary is static and
// stamped, the configuration is a conffile, and the maintainer scripts are
// there.
func TestDebContents(t *testing.T) {
	needRoot(t, "dpkg-deb", "go", "git")
	deb := buildDeb(t)

	if got := strings.TrimSpace(dpkgDeb(t, "-f", deb, "Package")); got != "hagate" {
		t.Errorf("Package %q", got)
	}
	listing := dpkgDeb(t, "-c", deb)
	for _, want := range []string{
		"-rwxr-xr-x root/root .* ./usr/bin/hagate",
		"./lib/systemd/system/hagate.service",
		"-rw-r----- root/root .* ./etc/hagate/hagate.yaml",
		"./usr/lib/sysctl.d/60-hagate.conf",
		"./usr/share/doc/hagate/examples/nftables-hagate.nft",
		"./usr/share/doc/hagate/config.md",
		"./usr/share/man/man1/hagate.1.gz",
		"./usr/share/man/man1/hagate-status.1.gz",
		"./usr/share/bash-completion/completions/hagate",
		"./usr/share/zsh/vendor-completions/_hagate",
	} {
		if !matchLine(listing, want) {
			t.Errorf("package lacks %s:\n%s", want, listing)
		}
	}
	if got := strings.TrimSpace(dpkgDeb(t, "-I", deb, "conffiles")); got != "/etc/hagate/hagate.yaml" {
		t.Errorf("conffiles %q, want /etc/hagate/hagate.yaml", got)
	}
	for _, script := range []string{"postinst", "prerm", "postrm"} {
		dpkgDeb(t, "-I", deb, script) // fails the test when missing
	}

	root := t.TempDir()
	dpkgDeb(t, "-x", deb, root)
	bin := filepath.Join(root, "usr/bin/hagate")
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Error("/usr/bin/hagate is dynamically linked (CGO_ENABLED=0 expected)")
		}
	}
	describe, err := exec.Command("git", "describe", "--tags", "--always", "--dirty").Output()
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(bin, "version").Output()
	if want := "hagate " + strings.TrimSpace(string(describe)) + "\n"; err != nil || string(out) != want {
		t.Errorf("hagate version: %q (%v), want %q", out, err, want)
	}
	// The unit runs what the package installs.
	unit, err := os.ReadFile(filepath.Join(root, "lib/systemd/system/hagate.service"))
	if err != nil || !strings.Contains(string(unit), "ExecStart=/usr/bin/hagate run") {
		t.Errorf("unit does not start /usr/bin/hagate: %v", err)
	}
}

func matchLine(listing, pattern string) bool {
	before, after, wild := strings.Cut(pattern, " .* ")
	for _, l := range strings.Split(listing, "\n") {
		if wild && strings.HasPrefix(l, before) && strings.HasSuffix(l, after) || !wild && strings.HasSuffix(l, pattern) {
			return true
		}
	}
	return false
}

// installScript runs in a throwaway copy of this host (an overlay of / in a
// private mount namespace, with its own /run so that no systemd of the host
// is told anything): dpkg -i, -r and -P for real, checking after each what
// is left.
const installScript = `set -eu
top=$1 deb=$2
mkdir -p "$top/upper" "$top/work" "$top/root"
mount -t overlay overlay -o "lowerdir=/,upperdir=$top/upper,workdir=$top/work" "$top/root"
mount -t tmpfs tmpfs "$top/root/run"
mount -t tmpfs tmpfs "$top/root/tmp"
mount --rbind /dev "$top/root/dev"
mount -t proc proc "$top/root/proc"
cp "$deb" "$top/root/tmp/hagate.deb"
exec chroot "$top/root" sh -eu -c '
fail() { echo "FAIL: $*"; exit 1; }
dpkg -i /tmp/hagate.deb
getent group hagate >/dev/null || fail "install: no hagate group"
[ -x /usr/bin/hagate ] || fail "install: no /usr/bin/hagate"
[ -f /etc/hagate/hagate.yaml ] || fail "install: no /etc/hagate/hagate.yaml"
hagate version
hagate genkey --output /etc/hagate/cluster.key
echo "# edited" >>/etc/hagate/hagate.yaml
dpkg -r hagate
[ ! -e /usr/bin/hagate ] || fail "remove: /usr/bin/hagate left"
[ -f /etc/hagate/hagate.yaml ] || fail "remove: the configuration went"
getent group hagate >/dev/null || fail "remove: the group went"
dpkg -i /tmp/hagate.deb
grep -q "# edited" /etc/hagate/hagate.yaml || fail "reinstall: the edited configuration was replaced"
dpkg -P hagate
[ ! -e /etc/hagate ] || fail "purge: /etc/hagate left: $(ls -A /etc/hagate)"
[ ! -e /var/lib/hagate ] || fail "purge: /var/lib/hagate left"
! getent group hagate >/dev/null || fail "purge: the group left"
[ -z "$(dpkg-query -W -f="\${db:Status-Status}" hagate 2>/dev/null)" ] || [ "$(dpkg-query -W -f="\${db:Status-Status}" hagate)" = not-installed ] || fail "purge: dpkg still knows hagate"
echo "install, remove, reinstall, purge: OK"
'
`

// The package installs, removes and purges cleanly, with the real dpkg and
// maintainer scripts, in a copy-on-write view of this host that vanishes
// with the test: the host's own packages, groups and files are untouched.
func TestDebInstallRemovePurge(t *testing.T) {
	needRoot(t, "dpkg", "dpkg-deb", "unshare", "chroot", "go", "git")
	deb := buildDeb(t)
	top := t.TempDir()
	out, err := exec.Command("unshare", "--mount", "--propagation", "private", "sh", "-c", installScript, "sh", top, deb).CombinedOutput()
	t.Logf("%s", out)
	if err != nil {
		if strings.Contains(string(out), "overlay") && !strings.Contains(string(out), "FAIL") {
			t.Skipf("no overlay file system here: %v", err)
		}
		t.Fatalf("install/remove/purge: %v", err)
	}
	if !strings.Contains(string(out), "install, remove, reinstall, purge: OK") {
		t.Fatal("the script did not finish")
	}
	// The host did not change.
	if err := exec.Command("getent", "group", "hagate").Run(); err == nil {
		if _, statErr := os.Stat("/usr/bin/hagate"); statErr == nil {
			t.Log("note: this host has hagate installed itself")
		} else {
			t.Error("the host has a hagate group after the test")
		}
	}
}
