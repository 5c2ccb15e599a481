package store

import (
	"encoding/json"
	"strconv"
	"time"
)

// The JSON of what a sale writes (its journal record, its log records, its audit links),
// written out directly instead of by json.Marshal's reflection: the bytes are json.Marshal's,
// byte for byte (the audit chain's sums and MACs cover them, and a record replayed from the
// log after a crash is encoded again by json.Marshal), and anything out of the ordinary
// (a string json.Marshal escapes, a time it refuses, a shape a sale does not write) is left
// to json.Marshal. encode_test.go compares the two.

// encodeLogOp returns op's log payload: the bytes json.Marshal(op) gives, written directly
// for what a sale writes (a begin whose record encodeRecord made, a finish without items,
// links sealed by newLink) so that the record and the links are not encoded again, and by
// json.Marshal otherwise.
func encodeLogOp(op logOp) ([]byte, error) {
	fast := len(op.Items) == 0 && (op.Op == opFinish || op.Op == opSTAN || op.Op == opBegin && op.encoded)
	n := 64 + len(op.Record) + len(op.PANHash)
	for _, l := range op.Links {
		fast = fast && l.enc != nil
		n += len(l.enc) + 1
	}
	if !fast {
		return json.Marshal(op)
	}
	b := make([]byte, 0, n+256)
	b = append(b, `{"op":`...)
	b = appendJSONString(b, op.Op)
	if op.Txn != 0 {
		b = strconv.AppendUint(append(b, `,"txn":`...), uint64(op.Txn), 10)
	}
	if op.STAN != 0 {
		b = strconv.AppendUint(append(b, `,"stan":`...), uint64(op.STAN), 10)
	}
	if len(op.Record) > 0 {
		b = append(append(b, `,"record":`...), op.Record...) // encodeRecord's: compact already
	}
	if op.PANHash != "" {
		b = appendJSONString(append(b, `,"pan_hash":`...), op.PANHash)
	}
	if len(op.Till) > 0 {
		b = append(b, `,"till":[`...)
		for i, k := range op.Till {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendJSONString(b, k)
		}
		b = append(b, ']')
	}
	if op.Outcome != nil {
		o := op.outcomeJSON
		if o == nil {
			var err error
			if o, err = json.Marshal(op.Outcome); err != nil {
				return nil, err
			}
		}
		b = append(append(b, `,"outcome":`...), o...)
	}
	if len(op.Links) > 0 {
		b = append(b, `,"links":[`...)
		for i, l := range op.Links {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, l.enc...)
		}
		b = append(b, ']')
	}
	return append(b, '}'), nil
}

// appendJSONString appends s as json.Marshal writes a string: quoted as is when it is
// printable ASCII with nothing json.Marshal escapes, by json.Marshal otherwise.
func appendJSONString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, _ := json.Marshal(s) // a string always encodes
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

// appendLinkJSON appends l as json.Marshal writes it: written out directly for a link of
// one record or item (no Archive, no Refs), by json.Marshal otherwise.
func appendLinkJSON(b []byte, l jsonLink) ([]byte, error) {
	marshal := func() ([]byte, error) {
		v, err := json.Marshal(l)
		return append(b, v...), err
	}
	if l.Archive != nil || l.Refs != nil {
		return marshal()
	}
	start := len(b)
	b = strconv.AppendInt(append(b, `{"v":`...), int64(l.V), 10)
	b = strconv.AppendUint(append(b, `,"seq":`...), l.Seq, 10)
	b, ok := appendJSONTime(append(b, `,"time":`...), l.Time)
	if !ok {
		b = b[:start]
		return marshal()
	}
	b = appendJSONString(append(b, `,"kind":`...), l.Kind)
	if l.Ref != "" {
		b = appendJSONString(append(b, `,"ref":`...), l.Ref)
	}
	if l.Sum != "" {
		b = appendJSONString(append(b, `,"sum":`...), l.Sum)
	}
	if l.Who != "" {
		b = appendJSONString(append(b, `,"who":`...), l.Who)
	}
	if l.Detail != "" {
		b = appendJSONString(append(b, `,"detail":`...), l.Detail)
	}
	if l.Txn != 0 {
		b = strconv.AppendUint(append(b, `,"txn":`...), l.Txn, 10)
	}
	if l.Queue != 0 {
		b = strconv.AppendUint(append(b, `,"queue":`...), l.Queue, 10)
	}
	if l.Key != "" {
		b = appendJSONString(append(b, `,"key":`...), l.Key)
	}
	b = appendJSONString(append(b, `,"prev":`...), l.Prev)
	if l.MAC != "" {
		b = appendJSONString(append(b, `,"mac":`...), l.MAC)
	}
	return append(b, '}'), nil
}

// appendJSONTime appends t as json.Marshal writes a time.Time, and false when json.Marshal
// would refuse it (a year outside 0-9999, a zone offset of 24 hours or more, or one with
// seconds): the caller then leaves the whole value to json.Marshal.
func appendJSONTime(b []byte, t time.Time) ([]byte, bool) {
	if y := t.Year(); y < 0 || y > 9999 {
		return b, false
	}
	if _, off := t.Zone(); off%60 != 0 || off <= -24*3600 || off >= 24*3600 {
		return b, false
	}
	b = append(b, '"')
	return append(t.AppendFormat(b, time.RFC3339Nano), '"'), true
}

// encodeIntentRecord is encodeRecord(in, nil).
func encodeIntentRecord(in Intent) ([]byte, error) {
	b := make([]byte, 0, 512)
	b = append(b, `{"v":`...)
	b = strconv.AppendInt(b, recordVersion, 10)
	b = appendJSONString(append(b, `,"intent":{"kind":`...), in.Kind)
	b = appendJSONString(append(b, `,"mti":`...), in.MTI)
	b = strconv.AppendUint(append(b, `,"stan":`...), uint64(in.STAN), 10)
	b = appendJSONString(append(b, `,"terminal_id":`...), in.TerminalID)
	b = appendJSONString(append(b, `,"sale_id":`...), in.SaleID)
	b = appendJSONString(append(b, `,"sale_transaction_id":`...), in.SaleTransactionID)
	b = appendOmitEmpty(b, `,"service_id":`, in.ServiceID)
	b = strconv.AppendInt(append(b, `,"amount_minor":`...), in.AmountMinor, 10)
	b = appendJSONString(append(b, `,"currency":`...), in.Currency)
	b = appendJSONString(append(b, `,"masked_pan":`...), in.MaskedPAN)
	b = appendOmitEmpty(b, `,"pan_hash":`, in.PANHash)
	b = appendJSONString(append(b, `,"entry_mode":`...), in.EntryMode)
	b, ok := appendJSONTime(append(b, `,"time":`...), in.Time)
	if !ok {
		return json.Marshal(jsonRecord{V: recordVersion, Intent: jsonIntent(in)})
	}
	if in.Chip {
		b = append(b, `,"chip":true`...)
	}
	if in.PINEntered {
		b = append(b, `,"pin_entered":true`...)
	}
	b = appendOmitEmpty(b, `,"cvm":`, in.CVM)
	if in.Signature {
		b = append(b, `,"signature":true`...)
	}
	b = appendOmitEmpty(b, `,"aid":`, in.AID)
	b = appendOmitEmpty(b, `,"app_label":`, in.AppLabel)
	b = appendOmitEmpty(b, `,"tvr":`, in.TVR)
	b = appendOmitEmpty(b, `,"tsi":`, in.TSI)
	b = appendOmitEmpty(b, `,"cryptogram":`, in.Cryptogram)
	b = appendOmitEmpty(b, `,"form_factor":`, in.FormFactor)
	b = appendOmitEmpty(b, `,"processing_code":`, in.ProcessingCode)
	if in.Original != 0 {
		b = strconv.AppendUint(append(b, `,"original":`...), uint64(in.Original), 10)
	}
	b = appendOmitEmpty(b, `,"host":`, in.Host)
	return append(b, '}', '}'), nil
}

// withLastField returns the JSON object obj with `,"name":value` added as its last member,
// as json.Marshal writes a struct whose last field that is; nil when obj does not end its
// object. obj is not changed.
func withLastField(obj []byte, name string, value []byte) []byte {
	if len(obj) < 2 || obj[len(obj)-1] != '}' {
		return nil
	}
	nv := make([]byte, 0, len(obj)+len(name)+len(value)+4)
	nv = append(nv, obj[:len(obj)-1]...)
	nv = append(append(append(nv, `,"`...), name...), `":`...)
	nv = append(nv, value...)
	return append(nv, '}')
}

// appendOmitEmpty appends field and s, as json.Marshal writes an omitempty string: nothing
// when s is "".
func appendOmitEmpty(b []byte, field, s string) []byte {
	if s == "" {
		return b
	}
	return appendJSONString(append(b, field...), s)
}

// encodeOutcome is json.Marshal(o), written out for an outcome as a sale's finish records it
// (not reversed, advised, voided or undelivered).
func encodeOutcome(o jsonOutcome) ([]byte, error) {
	if o.Reversed != nil || o.Advised != nil || o.Voided != nil || o.Undelivered != nil {
		return json.Marshal(o)
	}
	b := make([]byte, 0, 256)
	b = appendJSONString(append(b, `{"state":`...), string(o.State))
	b = appendOmitEmpty(b, `,"response_code":`, o.ResponseCode)
	b = appendOmitEmpty(b, `,"approval_code":`, o.ApprovalCode)
	b = appendOmitEmpty(b, `,"rrn":`, o.RRN)
	b = appendOmitEmpty(b, `,"reason":`, o.Reason)
	b, ok := appendJSONTime(append(b, `,"time":`...), o.Time)
	if !ok {
		return json.Marshal(o)
	}
	b = appendOmitEmpty(b, `,"condition":`, o.Condition)
	b = appendOmitEmpty(b, `,"message":`, o.Message)
	if o.AuthorizedMinor != 0 {
		b = strconv.AppendInt(append(b, `,"authorized_minor":`...), o.AuthorizedMinor, 10)
	}
	if o.Batch != 0 {
		b = strconv.AppendUint(append(b, `,"batch":`...), o.Batch, 10)
	}
	return append(b, '}'), nil
}
