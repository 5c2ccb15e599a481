package iso8583_test

import (
	"errors"
	"fmt"
	"maps"
	"runtime"
	"testing"
	"time"

	moov "github.com/moov-io/iso8583"
	"github.com/moov-io/iso8583/field"
	"github.com/moov-io/iso8583/padding"

	"github.com/posd-dev/posd/iso8583"
)

// spec87ASCII is moov-io's specs.Spec87ASCII (v0.26.1), made here from moov's root
// Spec87, from which it differs in exactly three places: a 16-byte bitmap field (written as
// 32 hexadecimal characters), field 3 left-padded with zeros, and no field 70. (Importing
// moov's specs package needs gopkg.in/yaml.v3 in go.mod, which this module does not list.)
func spec87ASCII() *moov.MessageSpec {
	fields := maps.Clone(moov.Spec87.Fields)
	bm := *fields[1].Spec()
	bm.Length = 16
	fields[1] = field.NewBitmap(&bm)
	pc := *fields[3].Spec()
	pc.Pad = padding.Left('0')
	fields[3] = field.NewNumeric(&pc)
	delete(fields, 70)
	return &moov.MessageSpec{Name: "ISO 8583 v1987 ASCII", Fields: fields}
}

// moovSale is the chip 0200 for moov's struct path: the same fields as chipSale.
type moovSale struct {
	MTI            string `iso8583:"0"`
	ProcessingCode int64  `iso8583:"3"`
	Amount         string `iso8583:"4"`
	Transmission   string `iso8583:"7"`
	STAN           string `iso8583:"11"`
	LocalTime      string `iso8583:"12"`
	LocalDate      string `iso8583:"13"`
	EntryMode      string `iso8583:"22"`
	Track2         string `iso8583:"35"`
	TerminalID     string `iso8583:"41"`
	MerchantID     string `iso8583:"42"`
	Currency       string `iso8583:"49"`
	ICC            string `iso8583:"55"`
}

// chipSale is typicalSale without online PIN (fields 52 and 62): moov's Spec87ASCII cannot
// carry a standard field 52 (it writes 32 hexadecimal characters for 8 bytes and then
// misreads what follows), so the comparison leaves it out on both sides.
func chipSale(b *testing.B) iso8583.Authorization {
	a := typicalSale(b)
	a.PINBlock, a.KSN = nil, ""
	return a
}

func moovSaleOf(b *testing.B) moovSale {
	a := chipSale(b)
	return moovSale{MTI: "0200", ProcessingCode: 0, Amount: fmt.Sprintf("%012d", a.AmountMinor),
		Transmission: a.TransmissionTime.UTC().Format("0102150405"), STAN: fmt.Sprintf("%06d", a.STAN),
		LocalTime: a.LocalTime.Format("150405"), LocalDate: a.LocalTime.Format("0102"), EntryMode: a.EntryMode,
		Track2: a.Track2, TerminalID: a.TerminalID, MerchantID: a.MerchantID, Currency: a.CurrencyNumeric,
		ICC: fmt.Sprintf("%X", a.Field55)}
}

// BenchmarkPackUnpack0200 packs and unpacks a chip 0200 (12 fields: track 2 equivalent,
// 21 EMV tags in field 55): build from typed values, pack, unpack, read fields back.
// "posd" is this package; "moov-spec87ascii" is moov-io's own path on its Spec87ASCII
// (Marshal, Pack, Unpack, Unmarshal) for the same fields; "posd-pin" adds the PIN block
// and KSN (14 fields), which moov's spec cannot carry.
func BenchmarkPackUnpack0200(b *testing.B) {
	b.Run("posd", func(b *testing.B) { benchPosdPackUnpack(b, chipSale(b)) })
	b.Run("posd-pin", func(b *testing.B) { benchPosdPackUnpack(b, typicalSale(b)) })
	b.Run("moov-spec87ascii", func(b *testing.B) {
		spec := spec87ASCII()
		data := moovSaleOf(b)
		b.ReportAllocs()
		for b.Loop() {
			if err := moovPackUnpack(spec, &data); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// moovPackUnpack is moov's own path for the chip 0200: Marshal, Pack, Unpack, Unmarshal.
func moovPackUnpack(spec *moov.MessageSpec, data *moovSale) error {
	m := moov.NewMessage(spec)
	if err := m.Marshal(data); err != nil {
		return err
	}
	wire, err := m.Pack()
	if err != nil {
		return err
	}
	back := moov.NewMessage(spec)
	if err := back.Unpack(wire); err != nil {
		return err
	}
	var got moovSale
	if err := back.Unmarshal(&got); err != nil {
		return err
	}
	if got.Track2 != data.Track2 || got.ICC != data.ICC {
		return errors.New("fields lost")
	}
	return nil
}

// posdPackUnpack is this package's path: build from typed values, pack, unpack, read
// fields back.
func posdPackUnpack(spec *iso8583.MessageSpec, a iso8583.Authorization) error {
	m, err := a.Message()
	if err != nil {
		return err
	}
	wire, err := iso8583.Pack(m)
	if err != nil {
		return err
	}
	back, err := iso8583.Unpack(spec, wire)
	if err != nil {
		return err
	}
	if v, err := back.GetBytes(55); err != nil || len(v) != len(a.Field55) {
		return errors.New("field 55 lost")
	}
	if s, _ := back.GetString(35); s != a.Track2 {
		return errors.New("track 2 lost")
	}
	return nil
}

func benchPosdPackUnpack(b *testing.B, a iso8583.Authorization) {
	spec := iso8583.DefaultDialect().Spec
	b.ReportAllocs()
	for b.Loop() {
		if err := posdPackUnpack(spec, a); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCodecVsMoov is BenchmarkPackUnpack0200's "posd" against "moov-spec87ascii" in
// interleaved pairs (posd, moov, posd, moov, ...) in one run, so that both see the same
// machine: x-moov-time is the median over the pairs of posd's time over moov's,
// x-moov-allocs posd's allocations over moov's. `make bench-compare` calls it by name.
func BenchmarkCodecVsMoov(b *testing.B) {
	const pairs = 8
	spec := iso8583.DefaultDialect().Spec
	a := chipSale(b)
	mspec := spec87ASCII()
	data := moovSaleOf(b)
	per := max(1, (b.N+pairs-1)/pairs)
	mallocs := func() uint64 {
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.Mallocs
	}
	var times []float64
	var posdTime, moovTime time.Duration
	var posdAllocs, moovAllocs uint64
	b.ResetTimer()
	for range pairs {
		m0, t0 := mallocs(), time.Now()
		for range per {
			if err := posdPackUnpack(spec, a); err != nil {
				b.Fatal(err)
			}
		}
		pt, pa := time.Since(t0), mallocs()-m0
		m0, t0 = mallocs(), time.Now()
		for range per {
			if err := moovPackUnpack(mspec, &data); err != nil {
				b.Fatal(err)
			}
		}
		mt, ma := time.Since(t0), mallocs()-m0
		posdTime, moovTime, posdAllocs, moovAllocs = posdTime+pt, moovTime+mt, posdAllocs+pa, moovAllocs+ma
		times = append(times, float64(pt)/float64(mt))
	}
	b.StopTimer()
	n := float64(per * pairs)
	b.ReportMetric(float64(posdTime.Nanoseconds())/n, "ns/op")
	b.ReportMetric(float64(moovTime.Nanoseconds())/n, "moov-ns/op")
	b.ReportMetric(float64(posdAllocs)/n, "posd-allocs/op")
	b.ReportMetric(float64(moovAllocs)/n, "moov-allocs/op")
	b.ReportMetric(median(times), "x-moov-time")
	b.ReportMetric(float64(posdAllocs)/float64(moovAllocs), "x-moov-allocs")
}
