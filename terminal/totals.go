package terminal

// Batch totals: what the open batch (or any batch) holds, per transaction type and per card
// brand, as nexo's TransactionTotals and the 0500's fields 74-77 and 86-89 count it.

import (
	"context"
	"fmt"
	"sort"

	"github.com/posd-dev/posd/iso8583"
	"github.com/posd-dev/posd/store"
)

// Transaction types of batch totals, nexo's TransactionType values where nexo has one.
const (
	TypeDebit          = "Debit"         // sales
	TypeCredit         = "Credit"        // refunds
	TypeReverseDebit   = "ReverseDebit"  // voided or reversed sales
	TypeReverseCredit  = "ReverseCredit" // voided or reversed refunds
	TypeOfflinePending = "OfflinePending"
)

// TypeTotal is a count and an amount of one transaction type.
//
// A plain value: safe for concurrent use when not modified.
type TypeTotal struct {
	Type        string `json:"type"`
	Count       int64  `json:"count"`
	AmountMinor int64  `json:"amount_minor"`
}

// BrandTotals are the totals of one card brand ("Visa", "Mastercard", "Amex", "Other").
//
// A plain value: safe for concurrent use when not modified.
type BrandTotals struct {
	Brand  string      `json:"brand"`
	Totals []TypeTotal `json:"totals"`
}

// BatchTotals are a batch's totals. A transaction reversed (or voided) with the host's
// acknowledgement counts among the sales (or refunds) and among their reversals, as the
// 0500 counts it. Offline approvals whose advice the host has not acknowledged count only
// as OfflinePending: the host does not know them yet.
//
// A plain value: safe for concurrent use when not modified.
type BatchTotals struct {
	Batch    uint64         `json:"batch"`
	Currency string         `json:"currency"`
	Types    []TypeTotal    `json:"types"`  // Debit, Credit, ReverseDebit, ReverseCredit, OfflinePending
	Brands   []BrandTotals  `json:"brands"` // by brand name
	ISO      iso8583.Totals `json:"-"`
	// Net is what the batch settles: sales less their reversals, less refunds net of theirs.
	NetMinor int64 `json:"net_minor"`
	records  []batchTxn
}

// batchTxn is one transaction of a batch as the host should have it.
type batchTxn struct {
	rec      store.Record
	amount   int64
	credit   bool
	reversed bool
}

// brandOf is the brand of a masked PAN's BIN.
func brandOf(masked string) string {
	if b := (SaleResult{MaskedPAN: masked}).Brand(); b != "" {
		return b
	}
	return "Other"
}

// classify says how a record counts: at the host (with its amount, credit and reversed),
// pending offline, or not at all.
func classify(r store.Record) (txn batchTxn, host, pending bool) {
	o := r.Outcome
	if o == nil || (r.Intent.Kind != "sale" && r.Intent.Kind != "refund") {
		return txn, false, false
	}
	txn = batchTxn{rec: r, amount: r.Intent.AmountMinor, credit: r.Intent.Kind == "refund"}
	if o.AuthorizedMinor > 0 {
		txn.amount = o.AuthorizedMinor
	}
	hostReversed := o.Reversed != nil && o.Reversed.ResponseCode == iso8583.RCApproved
	switch o.State {
	case store.StateApproved:
		host = true
	case store.StateApprovedOffline:
		if o.Voided != nil && o.Voided.Withdrawn {
			return txn, false, false // its advice was never sent: the host never knew it
		}
		host, pending = o.Advised != nil, o.Advised == nil
	case store.StateUnknown:
		host = hostReversed // the host had it only if it acknowledged its reversal
	}
	txn.reversed = host && hostReversed
	return txn, host, pending
}

// Totals returns the totals of batch n (the open batch: Store.OpenBatch).
func (t *Terminal) Totals(ctx context.Context, n uint64) (BatchTotals, error) {
	bt := BatchTotals{Batch: n, Currency: t.opts.Currency.Code}
	types := map[string]*TypeTotal{}
	brands := map[string]map[string]*TypeTotal{}
	add := func(brand, typ string, amount int64) {
		for _, m := range []map[string]*TypeTotal{types, brandMap(brands, brand)} {
			tt := m[typ]
			if tt == nil {
				tt = &TypeTotal{Type: typ}
				m[typ] = tt
			}
			tt.Count++
			tt.AmountMinor += amount
		}
	}
	err := t.st.BatchRecords(ctx, n, func(r store.Record) error {
		txn, host, pending := classify(r)
		brand := brandOf(r.Intent.MaskedPAN)
		switch {
		case pending:
			add(brand, TypeOfflinePending, txn.amount)
			return nil
		case !host:
			return nil
		}
		bt.records = append(bt.records, txn)
		typ, rev := TypeDebit, TypeReverseDebit
		if txn.credit {
			typ, rev = TypeCredit, TypeReverseCredit
		}
		add(brand, typ, txn.amount)
		if txn.reversed {
			add(brand, rev, txn.amount)
		}
		return nil
	})
	if err != nil {
		return BatchTotals{}, fmt.Errorf("terminal: totals of batch %d: %w", n, err)
	}
	order := []string{TypeDebit, TypeCredit, TypeReverseDebit, TypeReverseCredit, TypeOfflinePending}
	list := func(m map[string]*TypeTotal) []TypeTotal {
		out := []TypeTotal{}
		for _, typ := range order {
			if tt := m[typ]; tt != nil {
				out = append(out, *tt)
			}
		}
		return out
	}
	bt.Types = list(types)
	for brand, m := range brands {
		bt.Brands = append(bt.Brands, BrandTotals{Brand: brand, Totals: list(m)})
	}
	sort.Slice(bt.Brands, func(i, j int) bool { return bt.Brands[i].Brand < bt.Brands[j].Brand })
	get := func(typ string) TypeTotal {
		if tt := types[typ]; tt != nil {
			return *tt
		}
		return TypeTotal{}
	}
	d, c, rd, rc := get(TypeDebit), get(TypeCredit), get(TypeReverseDebit), get(TypeReverseCredit)
	bt.ISO = iso8583.Totals{CreditsCount: c.Count, CreditsAmount: c.AmountMinor, CreditReversalsCount: rc.Count, CreditReversalsAmount: rc.AmountMinor,
		DebitsCount: d.Count, DebitsAmount: d.AmountMinor, DebitReversalsCount: rd.Count, DebitReversalsAmount: rd.AmountMinor}
	bt.NetMinor = bt.ISO.Net()
	return bt, nil
}

func brandMap(m map[string]map[string]*TypeTotal, brand string) map[string]*TypeTotal {
	if m[brand] == nil {
		m[brand] = map[string]*TypeTotal{}
	}
	return m[brand]
}

// Summary is the totals on one line.
func (bt BatchTotals) Summary() string {
	t := bt.ISO
	return fmt.Sprintf("sales %d/%d, refunds %d/%d, reversed sales %d/%d, reversed refunds %d/%d, net %d %s",
		t.DebitsCount, t.DebitsAmount, t.CreditsCount, t.CreditsAmount, t.DebitReversalsCount, t.DebitReversalsAmount,
		t.CreditReversalsCount, t.CreditReversalsAmount, bt.NetMinor, bt.Currency)
}

// OpenTotals returns the totals of the open batch (its number in BatchTotals.Batch).
func (t *Terminal) OpenTotals(ctx context.Context) (BatchTotals, error) {
	return t.Totals(ctx, t.st.OpenBatch())
}
