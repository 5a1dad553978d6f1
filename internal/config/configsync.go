package config

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
)

// ConfigSync configures the configuration checksums' exclusions and the
// sync of the ruleset from the primary (FGCP's configuration sync).
// Checksums are always computed and compared; only the sync is opt-in.
type ConfigSync struct {
	Enabled bool     `yaml:"enabled"` // the primary's synced parts are applied on the subordinates; default false
	Parts   []string `yaml:"parts"`   // parts synced, default [ruleset] (the only one that can be, for now)
	// Exclude names what is member-specific: left out of the checksums and
	// of the sync.
	Exclude     SyncExclude `yaml:"exclude"`
	MaxSize     int         `yaml:"max_size"`     // bytes, largest ruleset synced, default 4 MiB
	Port        int         `yaml:"port"`         // TCP, default 704
	RouteTables []int       `yaml:"route_tables"` // routing tables checksummed besides main
}

// SyncExclude names member-specific tables, chains and interfaces.
type SyncExclude struct {
	Tables     []string `yaml:"tables"`     // "family name" or "name"
	Chains     []string `yaml:"chains"`     // "family table chain" or "table chain"
	Interfaces []string `yaml:"interfaces"` // rules matching them by name and routes through them
}

const (
	DefaultSyncMaxSize = 4 << 20
	DefaultSyncPort    = 704
	minSyncMaxSize     = 1 << 10
	maxSyncMaxSize     = 64 << 20
)

// SyncableParts are the parts config_sync.parts may name.
var SyncableParts = []string{"ruleset"}

var nftFamilies = []string{"ip", "ip6", "inet", "arp", "bridge", "netdev"}

func applyConfigSyncDefaults(c *ConfigSync, set func(string) bool) {
	if !set("config_sync.parts") {
		c.Parts = slices.Clone(SyncableParts)
	}
	def(set, "config_sync.max_size", &c.MaxSize, DefaultSyncMaxSize)
	def(set, "config_sync.port", &c.Port, DefaultSyncPort)
}

func checkConfigSync(ck *checker, c *ConfigSync) {
	for i, p := range c.Parts {
		if !slices.Contains(SyncableParts, p) {
			ck.add(fmt.Sprintf("config_sync.parts[%d]", i), "%q cannot be synced (syncable: %s; every part is checksummed)", p, strings.Join(SyncableParts, ", "))
		}
	}
	ck.intRange("config_sync.max_size", c.MaxSize, minSyncMaxSize, maxSyncMaxSize)
	ck.intRange("config_sync.port", c.Port, 1, 65535)
	for i, t := range c.RouteTables {
		if t <= 0 || t > 1<<32-1 {
			ck.add(fmt.Sprintf("config_sync.route_tables[%d]", i), "must be a routing table number from 1 to 4294967295, got %d", t)
		}
	}
	nftNames(ck, "config_sync.exclude.tables", c.Exclude.Tables, 1, "[family] table")
	nftNames(ck, "config_sync.exclude.chains", c.Exclude.Chains, 2, "[family] table chain")
	checkNames(ck, "config_sync.exclude.interfaces", c.Exclude.Interfaces)
}

// nftNames checks names of nwords words, optionally preceded by a family.
func nftNames(ck *checker, key string, names []string, nwords int, form string) {
	for i, s := range names {
		w := strings.Fields(s)
		switch {
		case len(w) == nwords:
		case len(w) == nwords+1 && slices.Contains(nftFamilies, w[0]):
		default:
			ck.add(fmt.Sprintf("%s[%d]", key, i), "want %q (family one of %s), got %q", form, strings.Join(nftFamilies, ", "), s)
		}
	}
}

// ClusterWide is the part of the configuration every member must share,
// as the text its checksum is computed over: everything but the keys that
// are each member's own (node_id, priority, key_file, control_socket,
// control_group, state_dir, metrics_listen, notify, log_level, the
// heartbeat links and their peers, session_pickup.links).
func (c *Config) ClusterWide() ([]byte, error) {
	cw := *c
	cw.NodeID, cw.Priority, cw.KeyFile = "", 0, ""
	cw.ControlSocket, cw.ControlGroup, cw.StateDir = "", "", ""
	cw.MetricsListen, cw.Notify, cw.LogLevel = "", "", ""
	cw.Heartbeat.Links = nil
	cw.SessionPickup.Links = nil
	b, err := json.MarshalIndent(cw, "", " ")
	if err != nil {
		return nil, fmt.Errorf("cluster-wide configuration: %w", err)
	}
	return append(b, '\n'), nil
}
