package padsim

// This file holds the script queue and the command dispatcher with GCR.

import (
	"fmt"
	"strings"
	"time"

	"github.com/posd-dev/posd/terminal/abecs"
)

// takeDelays removes the delay events at the head of the script and returns
// their sum.
func (p *Pad) takeDelays() time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	var d time.Duration
	for len(p.events) > 0 && p.events[0].Delay > 0 {
		d += p.events[0].Delay
		p.events = p.events[1:]
	}
	return d
}

// peek returns the next event, if any.
func (p *Pad) peek() (Event, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.events) == 0 {
		return Event{}, false
	}
	return p.events[0], true
}

func (p *Pad) consume() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.events) > 0 {
		p.events = p.events[1:]
	}
}

func status(id string, code int) abecs.Response { return abecs.Response{ID: id, Status: code} }

func (p *Pad) handle(cmd abecs.Command) abecs.Response {
	p.commands.Add(1)
	switch cmd.ID {
	case abecs.CmdOpen:
		if len(cmd.Blocks) != 0 {
			p.logf("OPN with parameters -> 011")
			return status(cmd.ID, abecs.StatusInvalidParameter)
		}
		p.logf("OPN -> 000")
		return status(cmd.ID, abecs.StatusOK)
	case abecs.CmdDisplay, abecs.CmdClose:
		if len(cmd.Blocks) != 1 {
			p.logf("%s with %d blocks -> 011", cmd.ID, len(cmd.Blocks))
			return status(cmd.ID, abecs.StatusInvalidParameter)
		}
		l1, l2, err := abecs.ParseDisplay(cmd.Blocks[0])
		if err != nil {
			p.logf("%s: malformed text -> 011", cmd.ID)
			return status(cmd.ID, abecs.StatusInvalidParameter)
		}
		if cmd.ID == abecs.CmdClose {
			p.endSession()
		}
		p.logf("%s %q %q -> 000", cmd.ID, l1, l2)
		return status(cmd.ID, abecs.StatusOK)
	case abecs.CmdInfo:
		return p.info(cmd)
	case abecs.CmdEvent:
		return p.waitEvent(cmd)
	case abecs.CmdGetCard:
		return p.getCard(cmd)
	case abecs.CmdGetPIN:
		return p.getPIN(cmd)
	case abecs.CmdGoChip:
		return p.goChip(cmd)
	case abecs.CmdFinChip:
		return p.finishChip(cmd)
	}
	if r, ok := p.tableCommand(cmd); ok {
		return r
	}
	if p.firmware != nil {
		if r, ok := p.firmware.Handle(cmd); ok {
			return r
		}
	}
	p.logf("%q: unknown command -> ERR010", cmd.ID)
	return status(abecs.CmdError, abecs.StatusInvalidCall)
}

// cardholder answers the events any cardholder command shares: none left,
// cancel, timeout. ok is false when one of them answered.
func (p *Pad) cardholder(id, what string, ev Event, have bool) (abecs.Response, bool) {
	switch {
	case !have:
		p.logf("%s: script exhausted -> 012", what)
		return status(id, abecs.StatusTimeout), false
	case ev.Cancel:
		p.consume()
		p.logf("%s: cancel -> 013", what)
		return status(id, abecs.StatusCancelled), false
	case ev.Timeout:
		p.consume()
		p.logf("%s: timeout -> 012", what)
		return status(id, abecs.StatusTimeout), false
	}
	return abecs.Response{}, true
}

func (p *Pad) getCard(cmd abecs.Command) abecs.Response {
	var req abecs.CardRequest
	switch {
	case len(cmd.Blocks) == 0 && p.pendingGCR != nil:
		req = *p.pendingGCR // the bare GCR that resumes after 020
	case len(cmd.Blocks) != 1:
		p.logf("GCR with %d blocks -> 011", len(cmd.Blocks))
		return status(cmd.ID, abecs.StatusInvalidParameter)
	default:
		var err error
		if req, err = abecs.ParseCardRequest(cmd.Blocks[0]); err != nil {
			p.logf("GCR: %v -> 011", strings.TrimPrefix(err.Error(), "abecs: "))
			return status(cmd.ID, abecs.StatusInvalidParameter)
		}
	}
	p.pendingGCR = nil
	what := fmt.Sprintf("GCR amount %d", req.AmountMinor)
	if req.Contactless && p.ctls {
		what += " ctls"
	}
	if v := p.TableVersion(); req.TableVersion != v {
		p.pendingGCR = &req
		p.logf("%s: table version %q, the pad has %q -> 020", what, req.TableVersion, v)
		return status(cmd.ID, abecs.StatusTableVersion)
	}
	if c := p.insertedCard(); c != nil {
		return p.chipCardData(cmd.ID, what, c)
	}
	ev, ok := p.peek()
	if resp, ok := p.cardholder(cmd.ID, what, ev, ok); !ok {
		return resp
	}
	switch {
	case ev.Tap != nil && req.Contactless && p.ctls:
		p.consume()
		return p.tapCard(cmd.ID, what, ev.Tap, req.AmountMinor)
	case ev.Insert != nil:
		p.consume()
		p.insert(ev.Insert)
		return p.chipCardData(cmd.ID, what, ev.Insert)
	case ev.ChipFault != "":
		p.consume()
		p.chipFailed()
		code := abecs.StatusFallback
		if ev.ChipFault == ChipMute {
			code = abecs.StatusMuteCard
		}
		p.logf("%s: chip fault %s -> %03d", what, ev.ChipFault, code)
		return status(cmd.ID, code)
	case ev.Swipe == nil:
		p.logf("%s: next script event is %v, not a card or cancel -> 040", what, ev)
		return status(cmd.ID, abecs.StatusInternal)
	}
	fallback := p.takeFallback()
	cd := abecs.NewMagstripeCard(ev.Swipe.Track1, ev.Swipe.Track2)
	note := ""
	if fallback {
		cd, note = abecs.NewFallbackCard(ev.Swipe.Track1, ev.Swipe.Track2), " (fallback)"
	}
	block, err := abecs.AppendCardData(nil, cd)
	if err != nil {
		p.logf("%s: %v: %v -> 040", what, ev, strings.TrimPrefix(err.Error(), "abecs: "))
		return status(cmd.ID, abecs.StatusInternal)
	}
	p.consume()
	p.logf("%s: %v%s -> 000", what, ev, note)
	return abecs.Response{ID: cmd.ID, Status: abecs.StatusOK, Blocks: [][]byte{block}}
}
