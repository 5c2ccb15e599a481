package padsim

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/posd-dev/posd/internal/atomicfile"
	"github.com/posd-dev/posd/terminal/abecs"
)

// Tap is a contactless card (or phone) tapped on the pad's reader. The
// embedded Chip gives its data and its decisions; Mode is EMV ("emv", the
// default: GCR answers card type 06 and GOC/FNC run as for a chip card) or
// magnetic stripe ("magstripe": card type 05, processed like a swipe).
//
// Cardholder verification follows the amount: at or above the contactless
// CVM limit, a CDCVM card has verified the cardholder on the device (9F34
// 010002: no PIN), any other card asks for an online PIN (GOC takes the next
// event, as for Chip.OnlinePIN); below it no CVM. The card approves offline
// (Chip.Decision "approve") only within the contactless floor limit. At or
// above the contactless transaction limit the pad answers GCR with 087
// (change interface) and drops the tap.
//
// Plain data, safe for concurrent reads.
type Tap struct {
	Chip
	// Mode is "emv" (default) or "magstripe".
	Mode string `json:"mode,omitempty"`
	// CDCVM says the device verifies its holder itself (a phone, a watch).
	CDCVM bool `json:"cdcvm,omitempty"`
	// FormFactor is tag 9F6E in hex (Visa form factor indicator), or "".
	FormFactor string `json:"form_factor,omitempty"`
}

// Tap modes.
const (
	TapEMV       = "emv"
	TapMagstripe = "magstripe"
)

// String returns "tap" and the masked PAN.
func (t Tap) String() string { return "tap " + t.Chip.String()[len("chip "):] }

func (t *Tap) validate() error {
	if err := t.Chip.validate(); err != nil {
		return errors.New(strings.Replace(err.Error(), "insert ", "tap ", 1))
	}
	switch t.Mode {
	case "", TapEMV, TapMagstripe:
	default:
		return errors.New(`tap mode must be "emv" or "magstripe"`)
	}
	if t.FormFactor != "" {
		if len(t.FormFactor)%2 != 0 || len(t.FormFactor) > 64 || strings.Trim(strings.ToUpper(t.FormFactor), "0123456789ABCDEF") != "" {
			return errors.New("tap form_factor must be 1 to 32 bytes of hex")
		}
	}
	return nil
}

// CtlsLimits are the contactless limits a pad applies to a tap whose AID has
// no record in its loaded tables, in minor units. Zero means no limit (for
// the floor limit: every amount above zero goes online).
//
// A plain value: safe for concurrent use when not modified.
type CtlsLimits struct {
	Transaction, CVM, Floor int64
}

// tables is the pad's EMV tables: the committed version and records, and a
// load in progress (TLI..TLE). Guarded by Pad.mu.
type tables struct {
	Version string   `json:"version"` // "0000000000": none
	Records []string `json:"records"`
	loading bool
	pending []string
	pendVer string
}

func (p *Pad) tablesPath() string {
	if p.statePath == "" {
		return ""
	}
	return p.statePath + ".tables"
}

func loadTables(path string) (tables, error) {
	t := tables{Version: "0000000000"}
	if path == "" {
		return t, nil
	}
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return t, nil
	}
	if err == nil {
		err = json.Unmarshal(b, &t)
	}
	if err != nil || len(t.Version) != 10 {
		return tables{}, fmt.Errorf("padsim: tables file %s is unreadable (%v): delete it to start without tables", path, err)
	}
	return t, nil
}

// TableVersion returns the version of the pad's committed EMV tables.
func (p *Pad) TableVersion() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.tables.Version
}

// TableRecords returns how many table records the pad holds.
func (p *Pad) TableRecords() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.tables.Records)
}

// tableCommand answers GTS, TLI, TLR and TLE; ok is false for other commands.
func (p *Pad) tableCommand(cmd abecs.Command) (abecs.Response, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	t := &p.tables
	switch cmd.ID {
	case abecs.CmdTabVer:
		if len(cmd.Blocks) != 1 {
			return status(cmd.ID, abecs.StatusInvalidParameter), true
		}
		if _, err := abecs.ParseTableVersionRequest(cmd.Blocks[0]); err != nil {
			p.logf("GTS: malformed -> 011")
			return status(cmd.ID, abecs.StatusInvalidParameter), true
		}
		p.logf("GTS -> 000 %s", t.Version)
		return abecs.Response{ID: cmd.ID, Blocks: [][]byte{[]byte(t.Version)}}, true
	case abecs.CmdTabInit:
		if len(cmd.Blocks) != 1 {
			return status(cmd.ID, abecs.StatusInvalidParameter), true
		}
		_, ver, err := abecs.ParseTableInit(cmd.Blocks[0])
		if err != nil {
			p.logf("TLI: malformed -> 011")
			return status(cmd.ID, abecs.StatusInvalidParameter), true
		}
		t.loading, t.pending, t.pendVer = true, nil, ver
		code := abecs.StatusOK
		if ver != t.Version {
			code = abecs.StatusTableVersion
		}
		p.logf("TLI %s -> %03d", ver, code)
		return status(cmd.ID, code), true
	case abecs.CmdTabRec:
		if !t.loading {
			p.logf("TLR without TLI -> 010")
			return status(cmd.ID, abecs.StatusInvalidCall), true
		}
		if len(cmd.Blocks) != 1 {
			return status(cmd.ID, abecs.StatusInvalidParameter), true
		}
		recs, err := abecs.ParseTableRecords(cmd.Blocks[0])
		if err != nil {
			p.logf("TLR: %v -> 011", strings.TrimPrefix(err.Error(), "abecs: "))
			return status(cmd.ID, abecs.StatusInvalidParameter), true
		}
		for _, r := range recs {
			switch {
			case r[3] == '1' && len(r) >= abecs.TableAIDLen, r[3] == '2' && len(r) == abecs.TableCAPKLen, r[3] == '3' && len(r) == abecs.TableRevokedLen:
			default:
				p.logf("TLR: record of table %c, %d bytes -> 021", r[3], len(r))
				return status(cmd.ID, abecs.StatusTableError), true
			}
			t.pending = append(t.pending, string(r))
		}
		p.logf("TLR %d records -> 000", len(recs))
		return status(cmd.ID, abecs.StatusOK), true
	case abecs.CmdTabEnd:
		if !t.loading {
			p.logf("TLE without TLI -> 010")
			return status(cmd.ID, abecs.StatusInvalidCall), true
		}
		next := tables{Version: t.pendVer, Records: t.pending}
		if path := p.tablesPath(); path != "" {
			b, _ := json.Marshal(next)
			if err := atomicfile.WriteFile(path, b, 0o600); err != nil {
				p.logf("TLE: %v -> 021", err)
				t.loading = false
				return status(cmd.ID, abecs.StatusTableError), true
			}
		}
		*t = next
		p.logf("TLE -> 000: version %s, %d records", t.Version, len(t.Records))
		return status(cmd.ID, abecs.StatusOK), true
	}
	return abecs.Response{}, false
}

// limitsFor returns the contactless limits of aid (hex): its AID record's,
// or the pad's defaults. The caller holds p.mu.
func (p *Pad) limitsFor(aid string) CtlsLimits {
	for _, r := range p.tables.Records {
		if r[3] != '1' {
			continue
		}
		rec, err := abecs.ParseAIDRecord([]byte(r))
		if err == nil && strings.EqualFold(rec.AID, aid) {
			return CtlsLimits{Transaction: rec.CtlsTxnLimit, CVM: rec.CtlsCVMLimit, Floor: rec.CtlsFloorLimit}
		}
	}
	return p.ctlsLimits
}

// tapCard answers GCR with a tap: 087 at or above the contactless
// transaction limit, else the card's data (type 06 or 05).
func (p *Pad) tapCard(id, what string, t *Tap, amount int64) abecs.Response {
	p.mu.Lock()
	lim := p.limitsFor(def(t.AID, "A0000000031010"))
	p.mu.Unlock()
	if lim.Transaction > 0 && amount >= lim.Transaction {
		p.logf("%s: %v: amount at or above the contactless limit %d -> 087", what, t, lim.Transaction)
		return status(id, abecs.StatusCtlsChange)
	}
	c := &t.Chip
	cd := abecs.NewContactlessCard(abecs.ChipFields{
		PAN: c.PAN, Track2: c.track2(), Expiry: c.expiry(), ServiceCode: c.serviceCode(),
		PANSequence: c.panSeq(), Label: def(c.Label, "CREDIT"), Name: c.Name, IssuerCountry: p.country,
	}, t.Mode != TapMagstripe)
	block, err := abecs.AppendCardData(nil, cd)
	if err != nil {
		p.logf("%s: %v: %v -> 040", what, t, strings.TrimPrefix(err.Error(), "abecs: "))
		return status(id, abecs.StatusInternal)
	}
	p.mu.Lock()
	if t.Mode == TapMagstripe {
		p.chip = chipState{atc: p.chip.atc}
	} else {
		p.chip.card, p.chip.tap, p.chip.reported, p.chip.stage, p.chip.fallback = c, t, true, stageRead, false
		p.chip.limits = lim
	}
	p.mu.Unlock()
	p.logf("%s: %v -> 000", what, cd)
	return abecs.Response{ID: id, Status: abecs.StatusOK, Blocks: [][]byte{block}}
}

// throttled slows a port to rate bytes per second in each direction, as a
// serial line at that speed would (a pty has no baud rate).
type throttled struct {
	rw   io.ReadWriter
	rate int
}

func (t throttled) wait(n int) {
	if n > 0 {
		time.Sleep(time.Duration(n) * time.Second / time.Duration(t.rate))
	}
}

func (t throttled) Read(b []byte) (int, error) {
	n, err := t.rw.Read(b)
	t.wait(n)
	return n, err
}

func (t throttled) Write(b []byte) (int, error) {
	t.wait(len(b))
	return t.rw.Write(b)
}

// LinkStats are the bytes the pad read and wrote on its link and the commands it
// handled, since New.
//
// A plain value: safe for concurrent use when not modified.
type LinkStats struct {
	BytesIn, BytesOut, Commands int64
}

// LinkStats returns the pad's link counters. Safe to call concurrently with Serve.
func (p *Pad) LinkStats() LinkStats {
	return LinkStats{BytesIn: p.bytesIn.Load(), BytesOut: p.bytesOut.Load(), Commands: p.commands.Load()}
}

// counting counts the bytes through a port.
type counting struct {
	rw      io.ReadWriter
	in, out *atomic.Int64
}

func (c counting) Read(b []byte) (int, error) {
	n, err := c.rw.Read(b)
	c.in.Add(int64(n))
	return n, err
}

func (c counting) Write(b []byte) (int, error) {
	n, err := c.rw.Write(b)
	c.out.Add(int64(n))
	return n, err
}
