package config

import (
	"errors"
	"io/fs"
	"os"
	"os/user"
	"strconv"

	"github.com/hagate/hagate/internal/seal"
)

// CheckHost checks what the configuration names on this host: the key file,
// the control group and the notify command. Parse cannot: a file that is
// valid on the admin's laptop still fails on a firewall whose key file was
// never copied. `hagate check-config` runs it, and so does the unit before
// every start, so the failure shows then and not at the first failover.
// It returns every problem, each an *Error naming its key, joined.
func (c *Config) CheckHost() error {
	var ck checker
	if c.AuthEnabled() {
		checkKeyFile(&ck, c.KeyFile)
	}
	if c.ControlGroup != "" {
		checkGroup(&ck, c.ControlGroup)
	}
	if c.Notify != "" {
		checkExecutable(&ck, "notify", c.Notify)
	}
	checkCheckCommands(&ck, c.Checks)
	checkBridgePorts(&ck, c.Transparent)
	if len(ck.errs) == 0 {
		return nil
	}
	return joinErrors(ck.errs)
}

// checkKeyFile reads the key file as the daemon will.
func checkKeyFile(ck *checker, path string) {
	st, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		ck.add("key_file", "%s does not exist: create it with hagate genkey --output %s and copy it to every member", path, path)
		return
	case err != nil:
		ck.add("key_file", "%v", err)
		return
	case st.IsDir():
		ck.add("key_file", "%s is a directory, want the key file", path)
		return
	case st.Mode().Perm()&0o077 != 0:
		// The daemon refuses it too (seal.LoadKeyFile): a key others can read
		// is a key others can forge heartbeats with.
		ck.add("key_file", "%s is readable by group or others (mode %#o): chmod 600 %s", path, st.Mode().Perm(), path)
		return
	}
	data, err := os.ReadFile(path)
	if err != nil {
		ck.add("key_file", "%v", err)
		return
	}
	if _, err := seal.ParseKeys(data); err != nil {
		ck.add("key_file", "%s: %v", path, err)
	}
}

// checkGroup looks the control group up as the daemon will when it creates
// the control socket (a name, or a numeric gid).
func checkGroup(ck *checker, name string) {
	_, err := user.LookupGroup(name)
	var unknown user.UnknownGroupError
	switch {
	case err == nil:
	case errors.As(err, &unknown):
		if _, perr := strconv.ParseUint(name, 10, 32); perr == nil {
			return // a numeric gid needs no entry in /etc/group
		}
		ck.add("control_group", "group %q does not exist on this host: addgroup --system %s (the Debian package creates hagate)", name, name)
	default:
		ck.add("control_group", "look up group %q: %v", name, err)
	}
}

// checkExecutable checks that path is a file the daemon can execute.
func checkExecutable(ck *checker, key, path string) {
	st, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		ck.add(key, "%s does not exist", path)
	case err != nil:
		ck.add(key, "%v", err)
	case !st.Mode().IsRegular():
		ck.add(key, "%s is not a regular file", path)
	case st.Mode().Perm()&0o111 == 0:
		ck.add(key, "%s is not executable (mode %#o): chmod 755 %s", path, st.Mode().Perm(), path)
	}
}
