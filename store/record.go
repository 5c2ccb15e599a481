package store

import (
	"bytes"
	"encoding/json"
	"fmt"
	"unicode/utf8"
)

// A journal record's stored value: versioned JSON of its intent and, once finished, its
// outcome (jsonRecord). encode.go writes the common shapes without reflection.

// encodeRecord returns the stored value of a record with intent in and outcome out (nil:
// not finished yet).
func encodeRecord(in Intent, out *Outcome) ([]byte, error) {
	if out == nil {
		return encodeIntentRecord(in) // a sale's begin: see encode.go
	}
	o := jsonOutcome(*out)
	return json.Marshal(jsonRecord{V: recordVersion, Intent: jsonIntent(in), Outcome: &o})
}

// decodeRecord reads record id's stored value; anything but this version's JSON is ErrCorrupt.
func decodeRecord(id TxnID, v []byte) (Record, error) {
	var r jsonRecord
	d := json.NewDecoder(bytes.NewReader(v))
	d.DisallowUnknownFields()
	if err := d.Decode(&r); err != nil {
		return Record{}, fmt.Errorf("record %d: %w: %w", id, ErrCorrupt, err)
	}
	if r.V != recordVersion {
		return Record{}, fmt.Errorf("record %d: version %d, this posd reads %d: %w", id, r.V, recordVersion, ErrCorrupt)
	}
	rec := Record{ID: id, Intent: Intent(r.Intent)}
	if r.Outcome != nil {
		o := Outcome(*r.Outcome)
		rec.Outcome = &o
	}
	return rec, nil
}

// plainJSON reports whether v is ASCII without a backslash: then every string in it is as
// it was before encoding (nothing was escaped or replaced), and decoding v and encoding it
// again gives v back.
func plainJSON(v []byte) bool {
	for _, c := range v {
		if c >= utf8.RuneSelf || c == '\\' {
			return false
		}
	}
	return true
}

// withOutcome returns record v, as encodeRecord made it without an outcome, with out: the
// bytes encodeRecord gives for the same intent and out (the outcome is jsonRecord's last
// field), made without decoding v. Only for a v that decoding and encoding again gives back
// (plainJSON of encodeRecord's), so that the bytes are those a replay of the log makes (it
// decodes the record and encodes it with the outcome).
func withOutcome(v []byte, out *Outcome) ([]byte, error) {
	o, err := json.Marshal(jsonOutcome(*out))
	if err != nil {
		return nil, err
	}
	return withOutcomeJSON(v, o)
}

// withOutcomeJSON is withOutcome with the outcome encoded already (o: json.Marshal of its
// jsonOutcome).
func withOutcomeJSON(v, o []byte) ([]byte, error) {
	nv := withLastField(v, "outcome", o)
	if nv == nil {
		return nil, fmt.Errorf("record of %d bytes does not end its object: %w", len(v), ErrCorrupt)
	}
	return nv, nil
}
