package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strconv"
	"strings"
)

// decodeConfig decodes the JSON document b into v (a pointer to a struct) strictly, walking
// the document with v's type so that every error names the full key path
// ("pinpad.ack_timeout"): an unknown key, a key given twice, a value of the wrong type, a
// value a field's UnmarshalJSON refuses, and an int below its field's `min` tag (a
// key written with 0 where 0 would only mean "the default" is refused; leaving the key
// out takes the default). A syntax error, truncated JSON or an empty document is reported
// with its line and column.
func decodeConfig(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	var raw json.RawMessage
	if err := dec.Decode(&raw); err != nil {
		return configSyntaxError(b, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		line, col := lineColumn(b, int(dec.InputOffset())-1) // just after the next value's first byte
		return fmt.Errorf("config: line %d, column %d: data after the JSON object (one object per file)", line, col)
	}
	w := configWalker{doc: b}
	return w.value(raw, 0, reflect.ValueOf(v).Elem(), "", "")
}

// configSyntaxError says where the document stops being JSON.
func configSyntaxError(b []byte, err error) error {
	var se *json.SyntaxError
	switch {
	case len(bytes.TrimSpace(b)) == 0:
		line, col := lineColumn(b, len(b))
		return fmt.Errorf(`config: line %d, column %d: the file is empty: it must hold a JSON object such as {"version": 1, ...}`, line, col)
	case errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF):
		line, col := lineColumn(b, len(b))
		return fmt.Errorf("config: line %d, column %d: the file ends inside the JSON object (truncated, or a closing } or \" is missing)", line, col)
	case errors.As(err, &se):
		line, col := lineColumn(b, int(se.Offset)-1) // Offset is just after the byte at fault
		return fmt.Errorf("config: line %d, column %d: not valid JSON: %s", line, col, strings.TrimPrefix(se.Error(), "json: "))
	}
	return fmt.Errorf("config: %w", err)
}

// lineColumn gives the 1-based line and column of the byte at offset off of b (off ==
// len(b): just after the last byte).
func lineColumn(b []byte, off int) (line, col int) {
	off = max(0, min(off, len(b)))
	before := b[:off]
	line = 1 + bytes.Count(before, []byte("\n"))
	col = off - (bytes.LastIndexByte(before, '\n') + 1) + 1
	return line, col
}

// configWalker decodes a config document field by field. Not safe for concurrent use.
type configWalker struct {
	doc []byte // the whole document: error positions are relative to it
}

var unmarshalerType = reflect.TypeFor[json.Unmarshaler]()

// value decodes raw (at byte offset base of the document) into v, whose key path is path;
// min is the field's `min` tag, if any.
func (w *configWalker) value(raw json.RawMessage, base int, v reflect.Value, path, minTag string) error {
	t := v.Type()
	if bytes.Equal(raw, []byte("null")) && (t.Kind() == reflect.Pointer || t.Kind() == reflect.Map || t.Kind() == reflect.Slice) {
		v.SetZero()
		return nil
	}
	if !reflect.PointerTo(t).Implements(unmarshalerType) {
		switch {
		case t.Kind() == reflect.Struct:
			return w.object(raw, base, path, func(key string) (reflect.Value, string, bool) {
				f, ok := fieldByJSONName(t, key)
				if !ok {
					return reflect.Value{}, "", false
				}
				return v.FieldByIndex(f.Index), f.Tag.Get("min"), true
			})
		case t.Kind() == reflect.Pointer && t.Elem().Kind() == reflect.Struct && !t.Implements(unmarshalerType):
			nv := reflect.New(t.Elem())
			if err := w.value(raw, base, nv.Elem(), path, minTag); err != nil {
				return err
			}
			v.Set(nv)
			return nil
		case t.Kind() == reflect.Map && t.Key().Kind() == reflect.String:
			m := reflect.MakeMap(t)
			var pending []reflect.Value // map values are not addressable: decode, then store
			err := w.object(raw, base, path, func(key string) (reflect.Value, string, bool) {
				e := reflect.New(t.Elem()).Elem()
				pending = append(pending, reflect.ValueOf(key), e)
				return e, "", true
			})
			if err != nil {
				return err
			}
			for i := 0; i < len(pending); i += 2 {
				m.SetMapIndex(pending[i].Convert(t.Key()), pending[i+1])
			}
			v.Set(m)
			return nil
		}
	}
	// A leaf: decoded strictly by encoding/json (lists, and types with their own UnmarshalJSON).
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v.Addr().Interface()); err != nil {
		return &ConfigError{path, leafReason(raw, err)}
	}
	if minTag != "" && v.CanInt() {
		lo, _ := strconv.ParseInt(minTag, 10, 64)
		if v.Int() < lo {
			return &ConfigError{path, fmt.Sprintf("%d is out of range: it must be at least %d (leave the key out for its default)", v.Int(), lo)}
		}
	}
	return nil
}

// leafReason words a leaf's decoding error without repeating its key.
func leafReason(raw json.RawMessage, err error) string {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		if te.Type != nil {
			return fmt.Sprintf("%s is not a JSON %s", truncate(string(raw)), jsonKind(te.Type))
		}
	}
	return strings.TrimPrefix(err.Error(), "json: ")
}

func jsonKind(t reflect.Type) string {
	switch t.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "integer"
	case reflect.Float32, reflect.Float64:
		return "number"
	case reflect.Slice, reflect.Array:
		return "list"
	case reflect.Map, reflect.Struct:
		return "object"
	}
	return t.Kind().String()
}

func truncate(s string) string {
	if len(s) > 40 {
		return s[:37] + "..."
	}
	return s
}

// object walks the JSON object raw: each key is looked up with field (which returns the
// value to decode into and its min tag, or false for an unknown key); a key given twice is
// refused.
func (w *configWalker) object(raw json.RawMessage, base int, path string, field func(key string) (reflect.Value, string, bool)) error {
	dec := json.NewDecoder(bytes.NewReader(raw))
	tok, err := dec.Token()
	if err != nil {
		return fmt.Errorf("config: %w", err) // raw was checked as JSON before: not reached
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		what := "an object of keys"
		if path == "" {
			return fmt.Errorf("config: the file must hold a JSON object (%s), not %s", what, truncate(string(raw)))
		}
		return &ConfigError{path, fmt.Sprintf("%s is not a JSON object", truncate(string(raw)))}
	}
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return fmt.Errorf("config: %w", err)
		}
		key := tok.(string) // object keys are strings
		kpath := key
		if path != "" {
			kpath = path + "." + key
		}
		var val json.RawMessage
		if err := dec.Decode(&val); err != nil {
			return fmt.Errorf("config: %w", err)
		}
		start := base + int(dec.InputOffset()) - len(val)
		if seen[key] {
			line, col := lineColumn(w.doc, start)
			return &ConfigError{kpath, fmt.Sprintf("given twice (again at line %d, column %d): keep one", line, col)}
		}
		seen[key] = true
		fv, minTag, ok := field(key)
		if !ok {
			return &ConfigError{kpath, "unknown key"}
		}
		if err := w.value(val, start, fv, kpath, minTag); err != nil {
			return err
		}
	}
	return nil
}

// fieldByJSONName finds the exported field of struct type t whose json tag is name
// (exactly: the file's keys are lower case, as documented).
func fieldByJSONName(t reflect.Type, name string) (reflect.StructField, bool) {
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		tag, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if tag == "-" {
			continue
		}
		if tag == "" {
			tag = f.Name
		}
		if tag == name {
			return f, true
		}
	}
	return reflect.StructField{}, false
}
