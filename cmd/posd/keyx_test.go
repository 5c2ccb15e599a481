package main

import (
	"encoding/json"
	"errors"
	"testing"
)

func TestKeyChangeConfig(t *testing.T) {
	var k KeyChangeConfig
	if err := json.Unmarshal([]byte(`{}`), &k); err != nil {
		t.Fatal(err)
	}
	if err := k.fill(); err != nil || len(k.Keys) != 1 || k.Keys[0] != "mac" || k.KEK != "kek" || !*k.AtSignOn || k.Every != 0 {
		t.Fatalf("defaults: %+v, %v", k, err)
	}
	for _, c := range []struct{ json, key string }{
		{`{"keys": ["kek"]}`, "acquirer.key_change.keys[0]"},
		{`{"keys": ["mac", "mac"]}`, "acquirer.key_change.keys[1]"},
		{`{"every": "10s"}`, "acquirer.key_change.every"},
		{`{"after_transactions": -1}`, "acquirer.key_change.after_transactions"},
	} {
		var k KeyChangeConfig
		if err := json.Unmarshal([]byte(c.json), &k); err != nil {
			t.Fatalf("%s: %v", c.json, err)
		}
		var ce *ConfigError
		if err := k.fill(); !errors.As(err, &ce) || ce.Key != c.key {
			t.Errorf("%s: got %v, want an error at %s", c.json, err, c.key)
		}
	}
}
