package store

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/posd-dev/posd/store/internal/boltpage"
)

// salvagePlan is what is written to dst.
type salvagePlan struct {
	journal, open, rev, adv, counters, audit, panIndex, till []boltpage.Elem // key, value
	journalSeq, queueSeq, auditSeq                           uint64
	detail                                                   string // of the audit entry recording the salvage
}

// plan turns st into the contents of dst, reporting as it goes: bucket by bucket, what is
// read checked first, then what is lost, then what the copy holds.
func (st *salvageState) plan(o SalvageOptions, rep *SalvageReport) *salvagePlan {
	pl := &salvagePlan{}
	st.checkRecords(rep)
	itemLost := st.checkItems(rep)
	st.placeholders(o, rep)
	if itemLost {
		st.missingItems(rep)
	}
	st.planJournal(pl, rep)
	st.planQueue(pl, rep)
	st.planSequences(pl, o, rep)
	st.planCounters(pl, o, rep)

	// The audit chain up to its first damaged entry.
	pl.audit, pl.auditSeq = st.auditChain(o.Margin, rep)
	rep.AuditLinks = len(pl.audit)

	pl.detail = salvageDetail(rep)
	return pl
}

// lose reports something not copied, or possibly missing, with what to do.
func (rep *SalvageReport) lose(what, do string) { rep.Lost = append(rep.Lost, Problem{what, do}) }

// note reports something copied with a change.
func (rep *SalvageReport) note(what, do string) { rep.Notes = append(rep.Notes, Problem{what, do}) }

// checkRecords checks the journal records read, re-encoding those where something had to
// change, and reports the records that do not decode and the journal's unreadable ranges.
func (st *salvageState) checkRecords(rep *SalvageReport) {
	jt := st.tree(bucketJournal)
	for _, id := range salvageSorted(st.records) {
		r := st.records[id]
		if salvageTrailing(r.raw) {
			rep.note(fmt.Sprintf("record %d: bytes after its end", id), "none: copied without them")
			r.raw = nil
		}
		if longestDigitRun(r.rec.Intent.MaskedPAN) > maxDigitRun {
			r.rec.Intent.MaskedPAN, r.raw = salvageRemask(r.rec.Intent.MaskedPAN), nil
			rep.note(fmt.Sprintf("record %d: its masked PAN reads with more than %d digits in a row (damaged)", id, maxDigitRun), "none: copied masked to its last 4 digits")
		}
		if longestDigitRun(r.rec.Intent.PANHash) > maxDigitRun {
			r.rec.Intent.PANHash, r.raw = "", nil
			rep.note(fmt.Sprintf("record %d: its PAN hash reads with more than %d digits in a row (damaged)", id, maxDigitRun), "none: copied without it; the card's other transactions are still found by theirs")
		}
		if out := r.rec.Outcome; out != nil && !out.State.final() {
			rep.lose(fmt.Sprintf("record %d (%s): its outcome is unreadable (state %q): copied without it, as open", id, salvageDescribe(r.rec), salvageQuote(string(out.State))),
				"posd records it outcome-unknown at its next start and queues its reversal; ask the acquirer how it ended")
			r.rec.Outcome, r.raw = nil, nil
		}
	}
	for _, id := range salvageSorted(st.badRecord) {
		do := "this transaction's record is lost: find it in the till's and the acquirer's records"
		if st.wasOpen[id] {
			do = "it had no outcome yet, so the host may have approved it: ask the acquirer, and reverse it there if so"
		}
		rep.lose(fmt.Sprintf("record %d: cannot be decoded (%s): not copied", id, st.badRecord[id]), do)
	}
	for _, r := range boltpage.Merge(jt.Lost) {
		what, ids := salvageRangeText("journal record", r, jt)
		var open []string
		for id := range st.wasOpen {
			if r.Contains(id.key()) {
				open = append(open, fmt.Sprint(uint64(id)))
			}
		}
		sort.Strings(open)
		do := "these transactions' records are lost: find them in the till's and the acquirer's records"
		if before, after := st.neighbours(r); before != "" || after != "" {
			do += fmt.Sprintf(" (they were made %s)", strings.TrimSpace(before+" "+after))
		}
		if len(open) > 0 {
			do += fmt.Sprintf("; %s of them had no outcome yet, so the host may have approved them: ask the acquirer, and reverse them there if so", strings.Join(open, ", "))
		}
		rep.lose(fmt.Sprintf("%s: unreadable (%s): not copied%s", what, r.Why, ids), do)
	}
}

// checkItems checks the queued items read, re-encoding (their sealed data unchanged) those
// where something had to change, and reports the items that do not decode and the queue's
// unreadable ranges. It returns whether any item is lost.
func (st *salvageState) checkItems(rep *SalvageReport) (itemLost bool) {
	qt, rt, at := st.tree(bucketQueue), st.tree(bucketQueueRev), st.tree(bucketQueueAdv)
	for _, id := range salvageSorted(st.items) {
		si := st.items[id]
		if salvageTrailing(si.raw) {
			rep.note(fmt.Sprintf("queue item %d: bytes after its end", id), "none: copied without them")
			si.raw = nil
		}
		if longestDigitRun(si.it.MaskedPAN) > maxDigitRun {
			si.it.MaskedPAN, si.raw = salvageRemask(si.it.MaskedPAN), nil
			rep.note(fmt.Sprintf("queue item %d: its masked PAN reads with more than %d digits in a row (damaged)", id, maxDigitRun), "none: copied masked to its last 4 digits")
		}
		if si.it.State != QueuePending && si.it.State != QueueParked {
			rep.note(fmt.Sprintf("queue item %d (%s): its state is unreadable (%q)", id, salvageDescribeItem(si.it), salvageQuote(string(si.it.State))),
				"it was copied parked: check it with the acquirer, then `posctl saf unpark` it or settle it and `posctl saf delete` it")
			si.it.State, si.it.ParkedBy, si.it.ParkReason, si.raw = QueueParked, "posd store salvage", "its state was unreadable after a salvage", nil
		}
	}
	for _, id := range salvageSorted(st.badItem) {
		itemLost = true
		kind := st.itemKind[id]
		rep.lose(fmt.Sprintf("queue item %d (%s): cannot be decoded (%s): not copied", id, salvageArticle(kind), st.badItem[id]), salvageItemAdvice(kind))
	}
	for _, b := range []struct {
		t    *boltpage.Tree
		kind Kind
	}{{rt, KindReversal}, {at, KindAdvice}} {
		for _, r := range boltpage.Merge(b.t.Lost) {
			itemLost = true
			what, ids := salvageRangeText("queue item", r, qt)
			rep.lose(fmt.Sprintf("%s still queued as %ss: unreadable (%s): not copied%s", what, b.kind, r.Why, ids), salvageItemAdvice(b.kind))
		}
	}
	return itemLost
}

// placeholders rebuilds, as placeholders, the records of items whose record is lost.
func (st *salvageState) placeholders(o SalvageOptions, rep *SalvageReport) {
	settles := map[TxnID][]*salvageItem{}
	for _, id := range salvageSorted(st.items) {
		si := st.items[id]
		settles[si.it.TxnID] = append(settles[si.it.TxnID], si)
	}
	for _, txn := range salvageSorted(settles) {
		if st.records[txn] != nil {
			continue
		}
		its := settles[txn]
		rec := Record{ID: txn, Intent: Intent{Kind: "salvaged", AmountMinor: its[0].it.AmountMinor, Currency: its[0].it.Currency,
			MaskedPAN: its[0].it.MaskedPAN, Time: its[0].it.Created}}
		state, names := StateUnknown, []string{}
		for _, si := range its {
			if si.it.Kind == KindAdvice {
				state = StateApprovedOffline
			}
			names = append(names, fmt.Sprintf("%s %d", si.it.Kind, si.it.ID))
		}
		rec.Outcome = &Outcome{State: state, Time: o.Now(),
			Reason: fmt.Sprintf("journal record lost in a damaged store; rebuilt by posd store salvage from queue %s", strings.Join(names, ", "))}
		st.records[txn] = &salvageRecord{rec: rec, placeholder: true}
		rep.Placeholders++
		rep.lose(fmt.Sprintf("record %d: lost; a placeholder (kind \"salvaged\", %s) was written for queue %s", txn, state, strings.Join(names, ", ")),
			"the queued message is kept and will be sent; look the transaction up in the till's and the acquirer's records")
	}
}

// missingItems reports the queued messages the journal expects and the copy lacks, when
// some of the queue was lost.
func (st *salvageState) missingItems(rep *SalvageReport) {
	has := map[TxnID]map[Kind]bool{}
	for _, si := range st.items {
		if has[si.it.TxnID] == nil {
			has[si.it.TxnID] = map[Kind]bool{}
		}
		has[si.it.TxnID][si.it.Kind] = true
	}
	for _, id := range salvageSorted(st.records) {
		for _, kind := range salvageExpects(st.records[id].rec) {
			if !has[id][kind] {
				rep.lose(fmt.Sprintf("transaction %d (%s): its %s is not in the copy and the journal has no acknowledgement of it: it may be one of the lost queue items", id, salvageDescribe(st.records[id].rec), kind),
					salvageItemAdvice(kind))
			}
		}
	}
}

// planJournal plans the journal, the open index, the pan index and the till index, from the
// records.
func (st *salvageState) planJournal(pl *salvagePlan, rep *SalvageReport) {
	tillSeen := map[string]bool{}
	for _, id := range salvageSorted(st.records) {
		r := st.records[id]
		v := r.raw
		if v == nil {
			var err error
			if v, err = encodeRecord(r.rec.Intent, r.rec.Outcome); err != nil {
				rep.lose(fmt.Sprintf("record %d: cannot be encoded again (%v): not copied", id, err), "report this to support")
				continue
			}
		}
		pl.journal = append(pl.journal, boltpage.Elem{Key: id.key(), Value: v})
		if h := r.rec.Intent.PANHash; h != "" {
			pl.panIndex = append(pl.panIndex, boltpage.Elem{Key: panIndexKey(h, id)})
		}
		for _, k := range append(tillKeys(r.rec.Intent), refundKeys(r.rec.Intent, id)...) {
			if !tillSeen[k] { // the first transaction keeps a key, as putTillKeys does
				tillSeen[k] = true
				pl.till = append(pl.till, boltpage.Elem{Key: []byte(k), Value: id.key()})
			}
		}
		if r.rec.Outcome == nil {
			pl.open = append(pl.open, boltpage.Elem{Key: id.key()})
		}
		if !r.placeholder {
			rep.Records++
		}
		if ot := st.buckets[string(bucketOpen)]; ot != nil && ot.Found && len(ot.Lost) == 0 && st.badRecord[id] == "" && st.wasOpen[id] != (r.rec.Outcome == nil) && r.raw != nil {
			rep.note(fmt.Sprintf("record %d: the open index said %v, the record says %v", id, salvageOpenWord(st.wasOpen[id]), salvageOpenWord(r.rec.Outcome == nil)), "none: the copy's open index follows the record")
		}
	}
	rep.Open = len(pl.open)
}

// planQueue plans the queued reversals and advices.
func (st *salvageState) planQueue(pl *salvagePlan, rep *SalvageReport) {
	for _, id := range salvageSorted(st.items) {
		si := st.items[id]
		v := si.raw
		if v == nil {
			var err error
			if v, err = encodeItem(si.it, si.sealed); err != nil {
				rep.lose(fmt.Sprintf("queue item %d: cannot be encoded again (%v): not copied", id, err), "report this to support")
				continue
			}
		}
		e := boltpage.Elem{Key: id.key(), Value: v}
		if si.it.Kind == KindReversal {
			pl.rev = append(pl.rev, e)
			rep.Reversals++
		} else {
			pl.adv = append(pl.adv, e)
			rep.Advices++
		}
		if si.it.State == QueueParked {
			rep.Parked++
		}
	}
}

// planSequences sets the journal's and the queue's ID sequences: past every ID seen or lost,
// and moved ahead where src does not tell them for certain.
func (st *salvageState) planSequences(pl *salvagePlan, o SalvageOptions, rep *SalvageReport) {
	jt, qt, rt, at := st.tree(bucketJournal), st.tree(bucketQueue), st.tree(bucketQueueRev), st.tree(bucketQueueAdv)
	var maxJournal, maxQueue uint64
	if len(pl.journal) > 0 {
		maxJournal = binary.BigEndian.Uint64(pl.journal[len(pl.journal)-1].Key)
	}
	for id := range st.badRecord {
		maxJournal = max(maxJournal, uint64(id))
	}
	for id := range st.items {
		maxQueue = max(maxQueue, uint64(id))
	}
	for id := range st.badItem {
		maxQueue = max(maxQueue, uint64(id))
	}
	pl.journalSeq = st.sequence("journal", jt, maxJournal, jt.Lost, o.Margin, rep)
	pl.queueSeq = st.sequence("queue", qt, maxQueue, append(append([]boltpage.Range(nil), rt.Lost...), at.Lost...), o.Margin, rep)
}

// planCounters copies the counters, the STAN counter moved ahead when it is not known for
// certain.
func (st *salvageState) planCounters(pl *salvagePlan, o SalvageOptions, rep *SalvageReport) {
	ct := st.tree(bucketCounters)
	for _, e := range ct.Entries {
		if string(e.Key) != string(keySTAN) && e.Flags == 0 {
			pl.counters = append(pl.counters, boltpage.Elem{Key: e.Key, Value: e.Value})
		}
	}
	if !ct.Found || len(ct.Lost) > 0 {
		why := "unreadable"
		if len(ct.Lost) > 0 {
			why += " (" + ct.Lost[0].Why + ")"
		}
		rep.note("the counters bucket is "+why, "none: the STAN counter was moved ahead (below)")
	}
	stan := st.stan
	if !st.stanKnown || st.uncertain != "" {
		base, why := stan, "the STAN counter may be behind ("+st.uncertain+")"
		if !st.stanKnown {
			base, why = st.newestSTAN(), "the STAN counter is unreadable"
		}
		next := uint64(base) + o.Margin
		if next > maxSTAN {
			next = (next-1)%maxSTAN + 1
		}
		rep.note(fmt.Sprintf("%s: it was set to %d, %d past the newest STAN seen (%d)", why, next, o.Margin, base), "none: STANs continue from there, so that none is reused")
		stan = uint32(next)
	}
	rep.STAN = stan
	pl.counters = append(pl.counters, boltpage.Elem{Key: keySTAN, Value: binary.BigEndian.AppendUint32(nil, stan)})
	sort.Slice(pl.counters, func(i, j int) bool { return bytes.Compare(pl.counters[i].Key, pl.counters[j].Key) < 0 })
}

// sequence returns the sequence for a bucket: its own, past the highest ID seen or lost, and
// moved ahead by margin when it is not known for certain.
func (st *salvageState) sequence(name string, t *boltpage.Tree, maxSeen uint64, lost []boltpage.Range, margin uint64, rep *SalvageReport) uint64 {
	seq := max(t.Seq, maxSeen)
	for _, r := range lost {
		if len(r.Hi) == 8 {
			seq = max(seq, binary.BigEndian.Uint64(r.Hi)-1)
		}
	}
	switch {
	case !t.Found:
		rep.Notes = append(rep.Notes, Problem{fmt.Sprintf("the %s ID sequence is unreadable: it was set to %d, %d past the highest ID seen", name, seq+margin, margin), "none: IDs continue from there, so that none is reused"})
		return seq + margin
	case st.uncertain != "":
		rep.Notes = append(rep.Notes, Problem{fmt.Sprintf("the %s ID sequence may be behind (%s): it was set to %d, %d past %d", name, st.uncertain, seq+margin, margin, seq), "none: IDs continue from there, so that none is reused"})
		return seq + margin
	}
	return seq
}

// newestSTAN returns the STAN of the newest record or item (by time): the STAN counter's
// value when it was written, or close to it.
func (st *salvageState) newestSTAN() uint32 {
	var stan uint32
	var at time.Time
	for _, r := range st.records {
		if !r.placeholder && !r.rec.Intent.Time.Before(at) {
			stan, at = r.rec.Intent.STAN, r.rec.Intent.Time
		}
	}
	for _, si := range st.items {
		if !si.it.Created.Before(at) {
			stan, at = si.it.STAN, si.it.Created
		}
	}
	return min(stan, maxSTAN)
}

// auditChain returns the audit entries that verify, in order, up to the first that does not
// (or the first gap), and the audit sequence.
func (st *salvageState) auditChain(margin uint64, rep *SalvageReport) ([]boltpage.Elem, uint64) {
	t := st.buckets[string(bucketAudit)]
	if t == nil {
		t = &boltpage.Tree{Lost: []boltpage.Range{{Why: "it is missing from the file"}}}
	}
	// Entries at or after the lowest key of an unreadable range follow a gap in the chain.
	var firstLost []byte
	gap, gapWhy := len(t.Lost) > 0, ""
	for i, r := range t.Lost {
		if r.Lo == nil {
			firstLost, gapWhy = nil, r.Why
			break
		}
		if i == 0 || bytes.Compare(r.Lo, firstLost) < 0 {
			firstLost, gapWhy = r.Lo, r.Why
		}
	}
	var out []boltpage.Elem
	var maxSeq uint64
	prev, broken, notCopied := "", "", 0
	for _, e := range t.Entries {
		if len(e.Key) == 8 {
			maxSeq = max(maxSeq, binary.BigEndian.Uint64(e.Key))
		}
		switch {
		case broken != "":
		case gap && (firstLost == nil || bytes.Compare(e.Key, firstLost) >= 0):
			broken = "the entries before it are unreadable: " + gapWhy
		default:
			if len(e.Key) != 8 || e.Flags != 0 {
				broken = fmt.Sprintf("entry %x cannot be read", e.Key)
				break
			}
			seq := binary.BigEndian.Uint64(e.Key)
			if len(out) > 0 && seq != binary.BigEndian.Uint64(out[len(out)-1].Key)+1 {
				broken = fmt.Sprintf("entries before %d are missing", seq)
				break
			}
			mac, ok := salvageLink(seq, e.Value, prev)
			if !ok {
				broken = fmt.Sprintf("entry %d does not verify", seq)
				break
			}
			prev = mac
			out = append(out, boltpage.Elem{Key: e.Key, Value: e.Value})
			if operatorEntry(e.Value) {
				rep.AuditEntries++
			}
			continue
		}
		notCopied++
	}
	last := "the start"
	if len(out) > 0 {
		last = fmt.Sprintf("entry %d", binary.BigEndian.Uint64(out[len(out)-1].Key))
	}
	switch {
	case broken != "":
		rep.Lost = append(rep.Lost, Problem{fmt.Sprintf("audit chain: %d readable entries after %s were not copied: the chain breaks there (%s)", notCopied, last, broken),
			"the damaged file still holds them: keep it as evidence; if the damage was not a disk fault, report it as a security incident"})
	case gap:
		rep.Lost = append(rep.Lost, Problem{fmt.Sprintf("audit chain: the entries after %s are unreadable (%s): not copied", last, gapWhy),
			"the damaged file still holds them: keep it as evidence; if the damage was not a disk fault, report it as a security incident"})
	}
	if len(out) > 0 {
		maxSeq = max(maxSeq, binary.BigEndian.Uint64(out[len(out)-1].Key))
	}
	return out, st.sequence("audit", t, maxSeq, t.Lost, margin, rep)
}

// salvageExpects returns the kinds of queued message a record's outcome says are still to be
// acknowledged by the host.
func salvageExpects(rec Record) []Kind {
	out := rec.Outcome
	if out == nil {
		return nil
	}
	var kinds []Kind
	if out.State == StateApprovedOffline && out.Advised == nil && (out.Voided == nil || !out.Voided.Withdrawn) {
		kinds = append(kinds, KindAdvice)
	}
	if out.Reversed == nil && (out.State == StateUnknown || (out.Voided != nil && !out.Voided.Withdrawn)) {
		kinds = append(kinds, KindReversal)
	}
	return kinds
}

// salvageTrailing reports whether v holds bytes after its JSON value.
func salvageTrailing(v []byte) bool {
	if v == nil {
		return false
	}
	d := json.NewDecoder(bytes.NewReader(v))
	var raw json.RawMessage
	if d.Decode(&raw) != nil {
		return false
	}
	return len(bytes.TrimSpace(v[d.InputOffset():])) > 0
}

func salvageSorted[K ~uint64, V any](m map[K]V) []K {
	keys := make([]K, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i] < keys[j] })
	return keys
}
