package bench

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/PID/stat:
// 100 on every Linux architecture the benchmark runs on.
const clockTicks = 100

// procInfo is what the benchmark reads about a daemon process.
type procInfo struct {
	PID     int
	Comm    string
	RSS     int64   // bytes
	CPUSecs float64 // user + system
}

// nsProcs lists the processes in a network namespace whose command name is
// one of comms (all if none given).
func nsProcs(nsName string, comms ...string) ([]procInfo, error) {
	out, err := exec.Command("ip", "netns", "pids", nsName).Output()
	if err != nil {
		return nil, fmt.Errorf("ip netns pids %s: %w", nsName, err)
	}
	var ps []procInfo
	for _, f := range strings.Fields(string(out)) {
		pid, err := strconv.Atoi(f)
		if err != nil {
			continue
		}
		p, err := readProc(pid)
		if err != nil {
			continue // exited meanwhile
		}
		if len(comms) == 0 || containsStr(comms, p.Comm) {
			ps = append(ps, p)
		}
	}
	return ps, nil
}

func containsStr(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// readProc reads a process's name, resident memory and CPU time.
func readProc(pid int) (procInfo, error) {
	p := procInfo{PID: pid}
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return p, err
	}
	sc := bufio.NewScanner(bytes.NewReader(status))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		v = strings.TrimSpace(v)
		switch k {
		case "Name":
			p.Comm = v
		case "VmRSS":
			kb, err := strconv.ParseInt(strings.TrimSuffix(v, " kB"), 10, 64)
			if err == nil {
				p.RSS = kb * 1024
			}
		}
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return p, err
	}
	cpu, err := parseStatCPU(string(stat))
	if err != nil {
		return p, fmt.Errorf("/proc/%d/stat: %w", pid, err)
	}
	p.CPUSecs = cpu
	return p, nil
}

// parseStatCPU returns utime + stime in seconds from a /proc/PID/stat line.
// The command name (field 2) may hold spaces and parentheses, so fields
// are counted from the last ')'.
func parseStatCPU(stat string) (float64, error) {
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, fmt.Errorf("no ')' in %q", stat)
	}
	f := strings.Fields(stat[i+1:])
	// After the name: state(3) ppid(4) ... utime(14) stime(15).
	if len(f) < 13 {
		return 0, fmt.Errorf("short stat line %q", stat)
	}
	u, err1 := strconv.ParseUint(f[11], 10, 64)
	s, err2 := strconv.ParseUint(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("bad utime/stime in %q", stat)
	}
	return float64(u+s) / clockTicks, nil
}

// sumProcs adds the RSS and CPU time of processes.
func sumProcs(ps []procInfo) (rss int64, cpu float64) {
	for _, p := range ps {
		rss += p.RSS
		cpu += p.CPUSecs
	}
	return rss, cpu
}
