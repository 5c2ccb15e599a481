package store

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/posd-dev/posd/store/internal/boltpage"
	bolt "go.etcd.io/bbolt"
)

// salvSealer is an AES-GCM Sealer with an in-memory key.
type salvSealer struct{ aead cipher.AEAD }

func newSalvSealer(t testing.TB) *salvSealer {
	key := make([]byte, 32)
	rand.Read(key)
	b, err := aes.NewCipher(key)
	if err != nil {
		t.Fatal(err)
	}
	a, err := cipher.NewGCM(b)
	if err != nil {
		t.Fatal(err)
	}
	return &salvSealer{a}
}

func (g *salvSealer) Seal(_ context.Context, _ string, plaintext, aad []byte) ([]byte, error) {
	nonce := make([]byte, g.aead.NonceSize())
	rand.Read(nonce)
	return g.aead.Seal(nonce, nonce, plaintext, aad), nil
}

func (g *salvSealer) Open(_ context.Context, _ string, sealed, aad []byte) ([]byte, error) {
	n := g.aead.NonceSize()
	if len(sealed) < n {
		return nil, errors.New("short")
	}
	return g.aead.Open(nil, sealed[:n], sealed[n:], aad)
}

const salvPAN = "4761739001010010"

// salvFixture is a store built through the Store's API, and what it holds.
type salvFixture struct {
	path    string
	sealer  *salvSealer
	records map[TxnID]Record
	items   map[QueueID]Item
	rawItem map[QueueID][]byte // as the kind buckets hold them
	audit   []AuditEntry
	stan    uint32
	maxTxn  TxnID
	maxItem QueueID
}

// salvBuild makes a store of n sales: most approved, every tenth from the 3rd outcome
// unknown with a reversal queued (the first of them acknowledged), every tenth from the 7th
// approved offline with an advice queued (the first of them parked), the last two open;
// and three audit entries.
func salvBuild(t testing.TB, n int) *salvFixture {
	t.Helper()
	ctx := context.Background()
	fx := &salvFixture{path: filepath.Join(t.TempDir(), "posd.db"), sealer: newSalvSealer(t)}
	// Folded only when a read or another write needs it: the same layout every run.
	s, err := Open(fx.path, &Options{Sealer: fx.sealer, Timeout: time.Second, FoldDelay: -1})
	if err != nil {
		t.Fatal(err)
	}
	base := time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)
	var firstRev, firstAdv QueueID
	for i := 1; i <= n; i++ {
		in := Intent{Kind: "sale", MTI: "0200", TerminalID: "TERM0001", SaleID: fmt.Sprintf("SALE-%04d", i),
			SaleTransactionID: fmt.Sprintf("till-transaction-%04d", i), AmountMinor: int64(100 + i), Currency: "EUR",
			MaskedPAN: "476173******0010", EntryMode: "051", Time: base.Add(time.Duration(i) * time.Minute)}
		id, _, err := s.BeginWithSTAN(ctx, in)
		if err != nil {
			t.Fatal(err)
		}
		at := in.Time.Add(2 * time.Second)
		switch {
		case i > n-2:
			// left open
		case i%10 == 3 || i%10 == 7:
			kind, state := KindReversal, StateUnknown
			if i%10 == 7 {
				kind, state = KindAdvice, StateApprovedOffline
			}
			stan, err := s.NextSTAN(ctx)
			if err != nil {
				t.Fatal(err)
			}
			it := Item{Kind: kind, STAN: stan, AmountMinor: in.AmountMinor, Currency: "EUR", MaskedPAN: in.MaskedPAN,
				Payload: fmt.Appendf(nil, `{"mti":"0400","sale":"SALE-%04d"}`, i), Sensitive: []byte(`{"pan":"` + salvPAN + `"}`), Created: at}
			ids, err := s.FinishAndQueue(ctx, id, Outcome{State: state, Time: at, Reason: "no answer"}, it)
			if err != nil {
				t.Fatal(err)
			}
			if kind == KindReversal && firstRev == 0 {
				firstRev = ids[0]
			}
			if kind == KindAdvice && firstAdv == 0 {
				firstAdv = ids[0]
			}
		default:
			if err := s.Finish(ctx, id, Outcome{State: StateApproved, ResponseCode: "00", ApprovalCode: "A1B2C3", RRN: "506012345678", Time: at}); err != nil {
				t.Fatal(err)
			}
		}
	}
	if firstRev != 0 {
		if err := s.Settle(ctx, []Result{{ID: firstRev, Acked: true, ResponseCode: "00", Time: base}}); err != nil {
			t.Fatal(err)
		}
	}
	if firstAdv != 0 {
		if err := s.Park(ctx, firstAdv, "operator-1", "host refuses it"); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 3 {
		if err := s.Audit(ctx, "tester", "firmware", fmt.Sprintf("installed 1.2.%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	fx.records, fx.items, fx.rawItem = map[TxnID]Record{}, map[QueueID]Item{}, map[QueueID][]byte{}
	if err := s.Records(ctx, func(r Record) error { fx.records[r.ID] = r; fx.maxTxn = max(fx.maxTxn, r.ID); return nil }); err != nil {
		t.Fatal(err)
	}
	items, err := s.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, it := range items {
		fx.items[it.ID] = it
	}
	if fx.audit, err = s.AuditLog(ctx); err != nil {
		t.Fatal(err)
	}
	err = s.view(ctx, "fixture", func(tx *bolt.Tx) error {
		fx.stan = binary.BigEndian.Uint32(tx.Bucket(bucketCounters).Get(keySTAN))
		fx.maxItem = QueueID(tx.Bucket(bucketQueue).Sequence())
		return forEachItem(tx, func(it Item, _ []byte) error {
			fx.rawItem[it.ID] = bytes.Clone(kindBucket(tx, it.Kind).Get(it.ID.key()))
			return nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	return fx
}

// copyTo copies the fixture's bbolt file (not its log) to a new path and returns it.
func (fx *salvFixture) copyTo(t testing.TB) string {
	t.Helper()
	b, err := os.ReadFile(fx.path)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "damaged.db")
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func salvHash(t testing.TB, path string) [32]byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(b)
}

func salvPageSize(t testing.TB, path string) int64 {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil || len(b) < 64 {
		t.Fatal("reading page size", err)
	}
	return int64(binary.NativeEndian.Uint32(b[boltpage.PageHeader+8:]))
}

// salvPagesWith returns the pages of the file holding marker. Only the page in use and free
// pages (old versions) can hold it: a page written again is written whole.
func salvPagesWith(t testing.TB, path string, marker string) []int64 {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	ps := salvPageSize(t, path)
	var pages []int64
	for off := 0; ; {
		i := bytes.Index(b[off:], []byte(marker))
		if i < 0 {
			break
		}
		pg := int64(off+i) / ps
		if len(pages) == 0 || pages[len(pages)-1] != pg {
			pages = append(pages, pg)
		}
		off += i + len(marker)
	}
	if len(pages) == 0 {
		t.Fatalf("%q is not in %s", marker, path)
	}
	return pages
}

// salvSalesOn returns the sale numbers whose records are on page pg.
func salvSalesOn(t testing.TB, path string, pg int64) []TxnID {
	t.Helper()
	b, _ := os.ReadFile(path)
	ps := salvPageSize(t, path)
	var ids []TxnID
	for _, m := range regexp.MustCompile(`"sale_id":"SALE-(\d{4})"`).FindAllSubmatch(b[pg*ps:(pg+1)*ps], -1) {
		n, _ := strconv.Atoi(string(m[1]))
		ids = append(ids, TxnID(n))
	}
	return ids
}

func salvWriteAt(t testing.TB, path string, off int64, data []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(data, off); err != nil {
		t.Fatal(err)
	}
}

// salvRun salvages src into a new file, checking that src is unchanged and nothing panics.
func salvRun(t *testing.T, src string) (string, SalvageReport, error) {
	t.Helper()
	before := salvHash(t, src)
	var logBefore [32]byte
	_, lerr := os.Stat(src + logSuffix)
	if lerr == nil {
		logBefore = salvHash(t, src+logSuffix)
	}
	dst := filepath.Join(t.TempDir(), "salvaged.db")
	rep, err := Salvage(context.Background(), src, dst, &SalvageOptions{Who: "test", Timeout: 200 * time.Millisecond})
	if salvHash(t, src) != before {
		t.Fatal("Salvage changed the damaged file")
	}
	if _, serr := os.Stat(src + logSuffix); lerr != nil && serr == nil {
		t.Errorf("Salvage created %s", src+logSuffix)
	} else if lerr == nil && salvHash(t, src+logSuffix) != logBefore {
		t.Errorf("Salvage changed %s", src+logSuffix)
	}
	if err != nil {
		if _, serr := os.Stat(dst); serr == nil {
			t.Errorf("Salvage failed (%v) and left %s behind", err, dst)
		}
	}
	return dst, rep, err
}

// salvOpen opens the salvaged file and checks it: every problem Check finds is a parked item.
func salvOpen(t *testing.T, fx *salvFixture, dst string, rep SalvageReport) *Store {
	t.Helper()
	if len(rep.Check.Problems) != rep.Check.Parked {
		t.Errorf("salvaged file's check found more than its parked items: %+v", rep.Check.Problems)
	}
	s, err := Open(dst, &Options{Sealer: fx.sealer, Timeout: time.Second})
	if err != nil {
		t.Fatalf("salvaged file does not open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	r, err := s.Check(context.Background())
	if err != nil || len(r.Problems) != r.Parked {
		t.Errorf("Check of the salvaged file: %v %+v", err, r.Problems)
	}
	if r.Parked != rep.Parked {
		t.Errorf("Check counts %d parked, the report %d", r.Parked, rep.Parked)
	}
	return s
}

var salvRangeRe = regexp.MustCompile(`(journal record|queue item|record|transaction)s? (\d+)(?: to (\d+)| from (\d+) on)?`)

// salvMentions reports whether a Lost entry names id (alone or in a range) with noun
// ("journal record", "queue item", "record").
func salvMentions(rep SalvageReport, noun string, id uint64) bool {
	for _, p := range rep.Lost {
		for _, m := range salvRangeRe.FindAllStringSubmatch(p.What, -1) {
			if m[1] != noun && !(noun == "journal record" && m[1] == "record") {
				continue
			}
			from, _ := strconv.ParseUint(m[2], 10, 64)
			to := from
			if m[3] != "" {
				to, _ = strconv.ParseUint(m[3], 10, 64)
			}
			if strings.HasSuffix(m[0], " on") {
				to = ^uint64(0)
			}
			if from <= id && id <= to {
				return true
			}
		}
	}
	return false
}

// salvContinues checks that the salvaged store hands out IDs and STANs after the fixture's.
func salvContinues(t *testing.T, fx *salvFixture, s *Store) {
	t.Helper()
	ctx := context.Background()
	id, stan, err := s.BeginWithSTAN(ctx, Intent{Kind: "sale", MTI: "0200", MaskedPAN: "476173******0010", Time: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	if id <= fx.maxTxn {
		t.Errorf("Begin on the salvaged store = %d, reusing an ID (max was %d)", id, fx.maxTxn)
	}
	if stan <= fx.stan {
		t.Errorf("STAN on the salvaged store = %d, not after %d", stan, fx.stan)
	}
	qids, err := s.FinishAndQueue(ctx, id, Outcome{State: StateUnknown, Time: time.Now()}, Item{Kind: KindReversal, STAN: stan, Currency: "EUR", Sensitive: []byte("x")})
	if err != nil {
		t.Fatal(err)
	}
	if qids[0] <= fx.maxItem {
		t.Errorf("queue ID on the salvaged store = %d, reusing an ID (max was %d)", qids[0], fx.maxItem)
	}
}

func salvLost(rep SalvageReport) string {
	var b strings.Builder
	for _, p := range rep.Lost {
		fmt.Fprintf(&b, "  LOST %s\n    do: %s\n", p.What, p.Do)
	}
	for _, p := range rep.Notes {
		fmt.Fprintf(&b, "  NOTE %s\n    do: %s\n", p.What, p.Do)
	}
	return b.String()
}

func TestSalvageHealthyStoreCopiesEverything(t *testing.T) {
	fx := salvBuild(t, 60)
	dst, rep, err := salvRun(t, fx.path)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("report: %+v\n%s", rep, salvLost(rep))
	if !rep.Complete() || len(rep.Lost) != 0 {
		t.Errorf("a healthy store is not copied completely:\n%s", salvLost(rep))
	}
	if rep.Records != len(fx.records) || rep.Open != 2 || rep.Reversals+rep.Advices != len(fx.items) || rep.Parked != 1 || rep.AuditEntries != len(fx.audit) || rep.STAN != fx.stan {
		t.Errorf("report counts %+v; fixture has %d records, %d items, %d audit entries, STAN %d", rep, len(fx.records), len(fx.items), len(fx.audit), fx.stan)
	}
	s := salvOpen(t, fx, dst, rep)
	ctx := context.Background()
	got := map[TxnID]Record{}
	s.Records(ctx, func(r Record) error { got[r.ID] = r; return nil })
	if !reflect.DeepEqual(got, fx.records) {
		t.Errorf("records differ after salvage")
	}
	items, _ := s.List(ctx)
	for _, it := range items {
		if !reflect.DeepEqual(it, fx.items[it.ID]) {
			t.Errorf("item %d: %+v, want %+v", it.ID, it, fx.items[it.ID])
		}
	}
	if len(items) != len(fx.items) {
		t.Errorf("%d items, want %d", len(items), len(fx.items))
	}
	s.view(ctx, "raw", func(tx *bolt.Tx) error {
		for id, raw := range fx.rawItem {
			if v := kindBucket(tx, fx.items[id].Kind).Get(id.key()); !bytes.Equal(v, raw) {
				t.Errorf("item %d not copied byte for byte", id)
			}
		}
		return nil
	})
	// The sealed data opens under the same ids: the reversals are due with their card data.
	due, err := s.Due(ctx, time.Now(), 0, KindReversal)
	if err != nil || len(due) == 0 {
		t.Fatalf("Due = %d items, %v", len(due), err)
	}
	for _, it := range due {
		if !bytes.Contains(it.Sensitive, []byte(salvPAN)) {
			t.Errorf("item %d's card data did not unseal after salvage", it.ID)
		}
	}
	log, _ := s.AuditLog(ctx)
	if len(log) != len(fx.audit)+1 || !reflect.DeepEqual(log[:len(fx.audit)], fx.audit) {
		t.Fatalf("audit log after salvage: %+v", log)
	}
	last := log[len(log)-1]
	if last.Who != "test" || last.Action != "salvage" || !strings.Contains(last.Detail, "nothing lost") || !strings.Contains(last.Detail, rep.SourceSHA256) {
		t.Errorf("salvage audit entry: %+v", last)
	}
	salvContinues(t, fx, s)
}

// salvLivePage returns which of pages bbolt has in use (the others are free pages holding
// old versions).
func salvLivePage(t *testing.T, path string, pages []int64) int64 {
	t.Helper()
	cp := filepath.Join(t.TempDir(), "pages.db")
	b, _ := os.ReadFile(path)
	os.WriteFile(cp, b, 0o600)
	db, err := bolt.Open(cp, 0o600, &bolt.Options{ReadOnly: true, PreLoadFreelist: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	live := int64(-1)
	db.View(func(tx *bolt.Tx) error {
		for _, pg := range pages {
			info, err := tx.Page(int(pg))
			if err == nil && info != nil && info.Type == "leaf" {
				if live >= 0 {
					t.Fatalf("pages %d and %d both in use", live, pg)
				}
				live = pg
			}
		}
		return nil
	})
	if live < 0 {
		t.Fatalf("none of pages %v is in use", pages)
	}
	return live
}

func TestSalvageGarbageJournalPage(t *testing.T) {
	fx := salvBuild(t, 80)
	src := fx.copyTo(t)
	// The page holding the record of sale 73, whose reversal is queued.
	pages := salvPagesWith(t, src, `"sale_id":"SALE-0073"`)
	live := salvLivePage(t, src, pages)
	gone := salvSalesOn(t, src, live)
	if len(gone) < 2 || len(gone) > 20 {
		t.Fatalf("page %d holds records %v", live, gone)
	}
	ps := salvPageSize(t, src)
	junk := make([]byte, ps)
	rand.Read(junk)
	salvWriteAt(t, src, live*ps, junk)

	dst, rep, err := salvRun(t, src)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("page %d held records %v\n%s", live, gone, salvLost(rep))
	s := salvOpen(t, fx, dst, rep)
	ctx := context.Background()
	lost := map[TxnID]bool{}
	for _, id := range gone {
		lost[id] = true
		if !salvMentions(rep, "journal record", uint64(id)) {
			t.Errorf("record %d is not reported lost", id)
		}
	}
	wantPlaceholders := 0
	for _, it := range fx.items {
		if lost[it.TxnID] {
			wantPlaceholders++
		}
	}
	if wantPlaceholders == 0 {
		t.Fatal("the damaged page settles no queued item; pick another")
	}
	got := map[TxnID]Record{}
	s.Records(ctx, func(r Record) error { got[r.ID] = r; return nil })
	for id, want := range fx.records {
		r, ok := got[id]
		switch {
		case !lost[id] && !reflect.DeepEqual(r, want):
			t.Errorf("record %d: %+v, want %+v", id, r, want)
		case lost[id] && ok && r.Intent.Kind != "salvaged":
			t.Errorf("record %d was on the damaged page, yet copied: %+v", id, r)
		case lost[id] && ok:
			wantPlaceholders--
			if r.Outcome == nil || r.Intent.MaskedPAN != fx.records[id].Intent.MaskedPAN || !salvMentions(rep, "record", uint64(id)) {
				t.Errorf("placeholder %d: %+v", id, r)
			}
		}
	}
	if wantPlaceholders != 0 || rep.Placeholders == 0 {
		t.Errorf("placeholders: %d left unmatched, report says %d", wantPlaceholders, rep.Placeholders)
	}
	if rep.Records != len(fx.records)-len(gone) {
		t.Errorf("report: %d records copied, want %d", rep.Records, len(fx.records)-len(gone))
	}
	items, _ := s.List(ctx)
	if len(items) != len(fx.items) {
		t.Errorf("%d items copied, want all %d", len(items), len(fx.items))
	}
	if rep.Complete() {
		t.Error("report says complete")
	}
	salvContinues(t, fx, s)
}

func TestSalvageDamagedQueueItem(t *testing.T) {
	fx := salvBuild(t, 80)
	src := fx.copyTo(t)
	var victim QueueID
	for id, it := range fx.items {
		if it.TxnID == 77 {
			victim = id
		}
	}
	// Break the JSON of the advice of sale 77 wherever it is (in use, or an old version on a
	// free page): its payload is stored base64.
	b, _ := os.ReadFile(src)
	marker := []byte(`"payload":"`)
	enc := []byte(fmt.Sprintf("%s", mustJSON(t, []byte(`{"mti":"0400","sale":"SALE-0077"}`))))
	n := 0
	for i := bytes.Index(b, enc); i >= 0; i = bytes.Index(b, enc) {
		copy(b[i-len(marker):], `"paylaod":"`)
		b[i] = 'X' // not the same string any more
		n++
	}
	if n == 0 {
		t.Fatal("the advice of sale 77 is not in the file")
	}
	os.WriteFile(src, b, 0o600)

	dst, rep, err := salvRun(t, src)
	if err != nil {
		t.Fatal(err)
	}
	t.Log(salvLost(rep))
	s := salvOpen(t, fx, dst, rep)
	if !salvMentions(rep, "queue item", uint64(victim)) {
		t.Errorf("queue item %d is not reported lost", victim)
	}
	if !salvMentions(rep, "transaction", 77) {
		t.Error("transaction 77, whose advice is lost, is not named")
	}
	if len(rep.Lost) != 2 {
		t.Errorf("%d things reported lost, want 2 (the item and its transaction)", len(rep.Lost))
	}
	ctx := context.Background()
	items, _ := s.List(ctx)
	if len(items) != len(fx.items)-1 {
		t.Errorf("%d items copied, want %d", len(items), len(fx.items)-1)
	}
	s.view(ctx, "raw", func(tx *bolt.Tx) error {
		for id, raw := range fx.rawItem {
			if v := kindBucket(tx, fx.items[id].Kind).Get(id.key()); id != victim && !bytes.Equal(v, raw) {
				t.Errorf("item %d not copied byte for byte", id)
			}
		}
		return nil
	})
	got := 0
	s.Records(ctx, func(r Record) error {
		got++
		if !reflect.DeepEqual(r, fx.records[r.ID]) {
			t.Errorf("record %d changed", r.ID)
		}
		return nil
	})
	if got != len(fx.records) {
		t.Errorf("%d records, want %d", got, len(fx.records))
	}
	salvContinues(t, fx, s)
}

func mustJSON(t *testing.T, b []byte) []byte {
	t.Helper()
	v, err := encodeItem(Item{Payload: b}, nil)
	if err != nil {
		t.Fatal(err)
	}
	i := bytes.Index(v, []byte(`"payload":"`)) + len(`"payload":"`)
	return v[i : i+bytes.IndexByte(v[i:], '"')]
}

func TestSalvageZeroedMetaPage(t *testing.T) {
	fx := salvBuild(t, 60)
	for pg := int64(0); pg < 2; pg++ {
		t.Run(fmt.Sprint("page", pg), func(t *testing.T) {
			src := fx.copyTo(t)
			ps := salvPageSize(t, src)
			salvWriteAt(t, src, pg*ps, make([]byte, ps))
			dst, rep, err := salvRun(t, src)
			if err != nil {
				t.Fatal(err)
			}
			t.Log(salvLost(rep))
			if len(rep.Lost) != 1 || !strings.Contains(rep.Lost[0].What, fmt.Sprintf("meta page %d is damaged", pg)) {
				t.Errorf("want the damaged meta page reported as the one thing that may be lost:\n%s", salvLost(rep))
			}
			if rep.STAN < fx.stan+999 {
				t.Errorf("STAN counter %d, want it moved well past %d", rep.STAN, fx.stan)
			}
			s := salvOpen(t, fx, dst, rep)
			ctx := context.Background()
			got := map[TxnID]Record{}
			s.Records(ctx, func(r Record) error { got[r.ID] = r; return nil })
			if !reflect.DeepEqual(got, fx.records) {
				t.Errorf("records differ")
			}
			id, err := s.Begin(ctx, Intent{Kind: "sale", MaskedPAN: "476173******0010"})
			if err != nil || id < fx.maxTxn+1000 {
				t.Errorf("Begin = %d, %v: want the transaction ids moved ahead past %d", id, err, fx.maxTxn+1000)
			}
			salvContinues(t, fx, s)
		})
	}
}

func TestSalvageBothMetaPagesDamaged(t *testing.T) {
	fx := salvBuild(t, 10)
	src := fx.copyTo(t)
	ps := salvPageSize(t, src)
	salvWriteAt(t, src, 0, make([]byte, 2*ps))
	_, _, err := salvRun(t, src)
	if !errors.Is(err, ErrLayout) || !strings.Contains(err.Error(), "both of its meta pages") {
		t.Errorf("err = %v", err)
	}
}

func TestSalvageTruncated(t *testing.T) {
	fx := salvBuild(t, 80)
	whole, _ := os.ReadFile(fx.path)
	ps := salvPageSize(t, fx.path)
	db, err := bolt.Open(fx.path, 0o600, &bolt.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	var inUse int64
	db.View(func(tx *bolt.Tx) error { inUse = tx.Size(); return nil })
	db.Close()
	partial, refused := 0, 0
	var cuts []int64
	for c := int64(len(whole)) - ps; c >= 2*ps; c -= ps {
		cuts = append(cuts, c)
	}
	cuts = append(cuts, 2*ps+100, int64(len(whole))/3)
	for _, cut := range cuts {
		t.Run(fmt.Sprint(cut), func(t *testing.T) {
			src := filepath.Join(t.TempDir(), "cut.db")
			os.WriteFile(src, whole[:cut], 0o600)
			dst, rep, err := salvRun(t, src)
			if err != nil {
				refused++
				if !errors.Is(err, ErrLayout) && !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "truncated") && !strings.Contains(err.Error(), "file size too small") {
					t.Errorf("cut at %d: %v", cut, err)
				}
				return
			}
			if testing.Verbose() && cut == int64(len(whole))/3 {
				t.Logf("cut at %d of %d:\n%s", cut, len(whole), salvLost(rep))
			}
			s := salvOpen(t, fx, dst, rep)
			ctx := context.Background()
			got := map[TxnID]Record{}
			s.Records(ctx, func(r Record) error { got[r.ID] = r; return nil })
			for id, want := range fx.records {
				r, ok := got[id]
				switch {
				case ok && r.Intent.Kind != "salvaged" && !reflect.DeepEqual(r, want):
					t.Errorf("record %d: %+v, want %+v", id, r, want)
				case (!ok || r.Intent.Kind == "salvaged") && !salvMentions(rep, "journal record", uint64(id)):
					t.Errorf("record %d is missing and not reported", id)
				}
			}
			items, _ := s.List(ctx)
			have := map[QueueID]bool{}
			for _, it := range items {
				have[it.ID] = true
			}
			for id, it := range fx.items {
				if !have[id] && !salvMentions(rep, "queue item", uint64(id)) && !salvMentions(rep, "transaction", uint64(it.TxnID)) {
					t.Errorf("queue item %d (transaction %d) is missing and not reported", id, it.TxnID)
				}
			}
			if len(got) > 0 && len(rep.Lost) > 0 {
				partial++
			}
			if truncated := len(rep.Notes) > 0 && strings.Contains(rep.Notes[0].What, "the file is truncated"); truncated != (cut < inUse) {
				t.Errorf("cut at %d, %d bytes in use: reported truncated %v", cut, inUse, truncated)
			}
			salvContinues(t, fx, s)
		})
	}
	t.Logf("%d cuts: %d partial copies, %d refused", len(cuts), partial, refused)
	if partial == 0 {
		// bbolt writes a commit's pages where it finds room, the bucket list among the last:
		// when no page of a bucket's tree lies after it (only free pages and the freelist),
		// every cut that loses a page in use loses the bucket list too, and a refusal is all
		// there is to give.
		f, err := os.Open(fx.path)
		if err != nil {
			t.Fatal(err)
		}
		m := boltpage.ReadMetas(f, uint64(ps))
		f.Close()
		root := m.Meta[m.Newest()].Root
		db, err := bolt.Open(fx.path, 0o600, &bolt.Options{ReadOnly: true, PreLoadFreelist: true})
		if err != nil {
			t.Fatal(err)
		}
		var after []int // tree pages after the bucket list
		db.View(func(tx *bolt.Tx) error {
			for id := int(root) + 1; ; {
				info, err := tx.Page(id)
				if err != nil || info == nil {
					return err
				}
				if info.Type == "leaf" || info.Type == "branch" {
					after = append(after, id)
				}
				id += 1 + info.OverflowCount
			}
		})
		db.Close()
		if len(after) == 0 {
			t.Logf("the bucket list is page %d and no tree page lies after it: no cut keeps it and loses data", root)
		} else {
			t.Errorf("no cut gave a partial copy, though tree pages %v lie after the bucket list (page %d)", after, root)
		}
	}
}

func TestSalvageBrokenAuditChain(t *testing.T) {
	fx := salvBuild(t, 20)
	src := fx.copyTo(t)
	b, _ := os.ReadFile(src)
	n := bytes.Count(b, []byte("installed 1.2.1"))
	if n == 0 {
		t.Fatal("audit entry not found")
	}
	os.WriteFile(src, bytes.ReplaceAll(b, []byte("installed 1.2.1"), []byte("installed 6.6.6")), 0o600)
	dst, rep, err := salvRun(t, src)
	if err != nil {
		t.Fatal(err)
	}
	t.Log(salvLost(rep))
	s := salvOpen(t, fx, dst, rep)
	log, _ := s.AuditLog(context.Background())
	// Entries: park, 1.2.0, 1.2.1 (altered), 1.2.2; then the salvage's.
	if len(log) != 3 || !reflect.DeepEqual(log[:2], fx.audit[:2]) || log[2].Action != "salvage" || log[2].Prev != fx.audit[1].Hash {
		t.Errorf("audit log after salvage: %+v", log)
	}
	if rep.AuditEntries != 2 || len(rep.Lost) != 1 || !strings.Contains(rep.Lost[0].What, "2 readable entries") {
		t.Errorf("report: %d audit entries copied; lost:\n%s", rep.AuditEntries, salvLost(rep))
	}
}

func TestSalvageRefuses(t *testing.T) {
	ctx := context.Background()
	fx := salvBuild(t, 5)
	dir := t.TempDir()

	dst := filepath.Join(dir, "taken.db")
	os.WriteFile(dst, []byte("keep me"), 0o600)
	if _, err := Salvage(ctx, fx.path, dst, nil); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "not empty") {
		t.Errorf("non-empty destination: %v", err)
	}
	if b, _ := os.ReadFile(dst); string(b) != "keep me" {
		t.Error("Salvage changed a file it refused to write")
	}

	s, err := Open(fx.path, &Options{Sealer: fx.sealer})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Salvage(ctx, fx.path, filepath.Join(dir, "a.db"), &SalvageOptions{Timeout: 100 * time.Millisecond}); !errors.Is(err, ErrLocked) {
		t.Errorf("store in use: %v", err)
	}
	s.Close()

	garbage := filepath.Join(dir, "garbage.db")
	os.WriteFile(garbage, bytes.Repeat([]byte("not a journal "), 1000), 0o600)
	if _, err := Salvage(ctx, garbage, filepath.Join(dir, "b.db"), nil); !errors.Is(err, ErrLayout) {
		t.Errorf("garbage: %v", err)
	}

	foreign := filepath.Join(dir, "foreign.db")
	db, err := bolt.Open(foreign, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	db.Update(func(tx *bolt.Tx) error {
		b, _ := tx.CreateBucket([]byte("widgets"))
		return b.Put([]byte("k"), []byte("v"))
	})
	db.Close()
	if _, err := Salvage(ctx, foreign, filepath.Join(dir, "c.db"), nil); !errors.Is(err, ErrLayout) || !strings.Contains(err.Error(), "something other than posd") {
		t.Errorf("foreign bbolt file: %v", err)
	}

	if _, err := Salvage(ctx, filepath.Join(dir, "absent.db"), filepath.Join(dir, "d.db"), nil); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("absent source: %v", err)
	}
	for _, p := range []string{"a.db", "b.db", "c.db", "d.db"} {
		if _, err := os.Stat(filepath.Join(dir, p)); err == nil {
			t.Errorf("%s was left behind", p)
		}
	}
}

// TestSalvageReplaysLog copies a store and its write-ahead log as a killed process leaves
// them (records in the log, not yet folded) and checks that the copy has them.
func TestSalvageReplaysLog(t *testing.T) {
	ctx := context.Background()
	sealer := newSalvSealer(t)
	path := filepath.Join(t.TempDir(), "posd.db")
	s, err := Open(path, &Options{Sealer: sealer, FoldDelay: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var ids []TxnID
	for i := range 4 {
		id, _, err := s.BeginWithSTAN(ctx, Intent{Kind: "sale", MTI: "0200", SaleID: fmt.Sprint(i), AmountMinor: 500, Currency: "EUR", MaskedPAN: "476173******0010", Time: time.Now()})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	if err := s.Finish(ctx, ids[0], Outcome{State: StateApproved, Time: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.FinishAndQueue(ctx, ids[1], Outcome{State: StateUnknown, Time: time.Now()}, Item{Kind: KindReversal, STAN: 99, Currency: "EUR", Sensitive: []byte("card")}); err != nil {
		t.Fatal(err)
	}
	crash := filepath.Join(t.TempDir(), "crashed.db")
	for _, suffix := range []string{"", logSuffix} {
		b, err := os.ReadFile(path + suffix)
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(crash+suffix, b, 0o600)
	}
	want := map[TxnID]Record{}
	s.Records(ctx, func(r Record) error { want[r.ID] = r; return nil })
	if len(want) != 4 {
		t.Fatalf("%d records", len(want))
	}
	// The records are in the log, not in the bbolt file: a salvage without the log has none.
	if b, _ := os.ReadFile(crash); bytes.Contains(b, []byte(`"sale_id":"3"`)) {
		t.Fatal("the records were folded already; the test needs them in the log")
	}

	dst, rep, err := salvRun(t, crash)
	if err != nil {
		t.Fatal(err)
	}
	t.Log(salvLost(rep))
	if !rep.Complete() || rep.Records != 4 || rep.Open != 2 || rep.Reversals != 1 {
		t.Errorf("report: %+v", rep)
	}
	d, err := Open(dst, &Options{Sealer: sealer})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	got := map[TxnID]Record{}
	d.Records(ctx, func(r Record) error { got[r.ID] = r; return nil })
	if !reflect.DeepEqual(got, want) {
		t.Errorf("records after salvage:\n%+v\nwant\n%+v", got, want)
	}
	due, err := d.Due(ctx, time.Now(), 0)
	if err != nil || len(due) != 1 || string(due[0].Sensitive) != "card" {
		t.Errorf("Due = %+v, %v", due, err)
	}
	if id, err := d.Begin(ctx, Intent{Kind: "sale", MaskedPAN: "x"}); err != nil || id != ids[3]+1 {
		t.Errorf("Begin = %d, %v, want %d", id, err, ids[3]+1)
	}

	// A log that belongs to another store is not replayed, and says so.
	other := filepath.Join(t.TempDir(), "other.db")
	o, err := Open(other, nil)
	if err != nil {
		t.Fatal(err)
	}
	o.Close()
	b, _ := os.ReadFile(crash + logSuffix)
	os.WriteFile(other+logSuffix, b, 0o600)
	_, rep, err = salvRun(t, other)
	if err != nil || len(rep.Lost) != 1 || !strings.Contains(rep.Lost[0].What, "belongs to another store") {
		t.Errorf("foreign log: %v\n%s", err, salvLost(rep))
	}
}

// TestSalvageRandomDamage flips random bytes all over a store: Salvage never panics, and
// what it writes always opens and checks.
func TestSalvageRandomDamage(t *testing.T) {
	fx := salvBuild(t, 60)
	whole, _ := os.ReadFile(fx.path)
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := mrand.New(mrand.NewPCG(seed, 7))
	outcomes := map[string]int{}
	for i := range 200 {
		b := bytes.Clone(whole)
		for range 1 + rng.IntN(12) {
			b[rng.IntN(len(b))] = byte(rng.IntN(256))
		}
		if rng.IntN(4) == 0 { // a run of garbage
			off := rng.IntN(len(b) - 64)
			for j := range 64 {
				b[off+j] = byte(rng.IntN(256))
			}
		}
		src := filepath.Join(t.TempDir(), fmt.Sprintf("flip%d.db", i))
		os.WriteFile(src, b, 0o600)
		dst, rep, err := salvRun(t, src)
		if err != nil {
			outcomes["refused"]++
			continue
		}
		if rep.Complete() {
			outcomes["complete"]++
		} else {
			outcomes["partial"]++
		}
		if len(rep.Check.Problems) != rep.Check.Parked {
			t.Fatalf("iteration %d: the copy does not check: %+v\n%s", i, rep.Check.Problems, salvLost(rep))
		}
		s, err := Open(dst, &Options{Sealer: fx.sealer})
		if err != nil {
			t.Fatalf("iteration %d: the copy does not open: %v", i, err)
		}
		ctx := context.Background()
		var maxID TxnID
		s.Records(ctx, func(r Record) error { maxID = max(maxID, r.ID); return nil })
		if id, err := s.Begin(ctx, Intent{Kind: "sale", MaskedPAN: "x"}); err != nil || id <= maxID {
			t.Errorf("iteration %d: Begin = %d, %v after records up to %d", i, id, err, maxID)
		}
		s.Close()
		for _, p := range append(rep.Lost, rep.Notes...) {
			if strings.Contains(p.What+p.Do, salvPAN) {
				t.Fatalf("iteration %d: the report holds the PAN", i)
			}
		}
	}
	t.Logf("outcomes: %v", outcomes)
}

// TestSalvageReadsPreviousCommit damages a page the last commit wrote: its key range is read
// from the previous commit's tree (intact, on other pages), one commit old, and reported.
func TestSalvageReadsPreviousCommit(t *testing.T) {
	fx := salvBuild(t, 60)
	ctx := context.Background()
	s, err := Open(fx.path, &Options{Sealer: fx.sealer, FoldDelay: -1})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Finish(ctx, 60, Outcome{State: StateDeclined, ResponseCode: "05", Time: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil { // the last commit: folds the outcome
		t.Fatal(err)
	}
	src := fx.copyTo(t)
	live := salvLivePage(t, src, salvPagesWith(t, src, `"sale_id":"SALE-0060"`))
	onPage := salvSalesOn(t, src, live)
	ps := salvPageSize(t, src)
	salvWriteAt(t, src, live*ps, bytes.Repeat([]byte{0xA5}, int(ps)))

	dst, rep, err := salvRun(t, src)
	if err != nil {
		t.Fatal(err)
	}
	t.Log(salvLost(rep))
	d := salvOpen(t, fx, dst, rep)
	got := map[TxnID]Record{}
	d.Records(ctx, func(r Record) error { got[r.ID] = r; return nil })
	for _, id := range onPage {
		if !reflect.DeepEqual(got[id], fx.records[id]) { // as before the last commit
			t.Errorf("record %d: %+v, want %+v", id, got[id], fx.records[id])
		}
	}
	if len(got) != len(fx.records) || rep.Open != 2 {
		t.Errorf("%d records, %d open; want %d and 2 (record 60's outcome was in the lost commit)", len(got), rep.Open, len(fx.records))
	}
	if len(rep.Lost) != 1 || !strings.Contains(rep.Lost[0].What, "read from the previous commit") || !strings.Contains(rep.Lost[0].What, fmt.Sprint(onPage[0])) {
		t.Errorf("want one loss naming the range read from the previous commit:\n%s", salvLost(rep))
	}
	salvContinues(t, fx, d)
}

func TestSalvageProbe(t *testing.T) {
	fx := salvBuild(t, 80)
	ctx := context.Background()
	if err := probePages(ctx, fx.path); err != nil {
		t.Errorf("healthy store: %v", err)
	}
	src := fx.copyTo(t)
	live := salvLivePage(t, src, salvPagesWith(t, src, `"sale_id":"SALE-0042"`))
	ps := salvPageSize(t, src)
	salvWriteAt(t, src, live*ps, bytes.Repeat([]byte{0x5A}, int(ps)))
	before := salvHash(t, src)
	err := probePages(ctx, src)
	if !errors.Is(err, ErrCorrupt) || strings.Count(err.Error(), "bucket ") != 1 || !strings.Contains(err.Error(), fmt.Sprintf("page %d", live)) || !strings.Contains(err.Error(), "posd store salvage --path "+src) {
		t.Errorf("damaged store: %v", err)
	}
	if salvHash(t, src) != before {
		t.Error("the probe changed the file")
	}
}

// FuzzSalvagePage feeds the page parser arbitrary pages and key bounds: it never panics,
// and what it accepts lies inside the page, in key order, within the bounds.
func FuzzSalvagePage(f *testing.F) {
	fx := salvBuild(f, 20)
	b, err := os.ReadFile(fx.path)
	if err != nil {
		f.Fatal(err)
	}
	ps := int(salvPageSize(f, fx.path))
	for off := 2 * ps; off+ps <= len(b); off += ps {
		f.Add(b[off:off+ps], []byte(nil), []byte(nil))
	}
	f.Add(make([]byte, 16), []byte{1}, []byte{0})
	f.Fuzz(func(t *testing.T, page, lo, hi []byte) {
		leaf, elems, err := boltpage.ParsePage(page, lo, hi)
		if err != nil {
			return
		}
		var prev []byte
		for i, e := range elems {
			if len(e.Key) == 0 || (lo != nil && bytes.Compare(e.Key, lo) < 0) || (hi != nil && bytes.Compare(e.Key, hi) >= 0) || (i > 0 && bytes.Compare(e.Key, prev) <= 0) {
				t.Fatalf("element %d: key %x accepted out of order or bounds [%x, %x)", i, e.Key, lo, hi)
			}
			if !leaf && e.Value != nil && len(e.Value) != 0 {
				t.Fatalf("branch element %d has a value", i)
			}
			prev = e.Key
		}
	})
}
