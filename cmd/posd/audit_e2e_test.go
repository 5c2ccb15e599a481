package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"
)

// checkAuditVerify runs the built `posd audit verify` on the journal file of a stopped
// posd (cfg names its key): it verifies as it is, and a copy altered with bbolt directly,
// as an insider with the file would, is caught each way, naming the first broken link.
func checkAuditVerify(t *testing.T, c *captured, dbPath, cfg string) {
	t.Helper()
	if code, out := c.run(t, "posd", "audit", "verify", "--path", dbPath, "--config", cfg); code != 0 || !strings.Contains(out, "audit verify: ok") || !strings.Contains(out, "keyed") {
		t.Fatalf("posd audit verify of an intact journal: exit %d\n%s", code, out)
	}
	tamper := map[string]func(j *bolt.Bucket) error{
		"edited record": func(j *bolt.Bucket) error {
			k, v := j.Cursor().First()
			return j.Put(k, bytes.Replace(v, []byte(`"amount_minor":1250`), []byte(`"amount_minor":125`), 1))
		},
		"deleted record": func(j *bolt.Bucket) error {
			k, _ := j.Cursor().Last()
			return j.Delete(k)
		},
		"swapped records": func(j *bolt.Bucket) error {
			c := j.Cursor()
			k1, v1 := c.First()
			k2, v2 := c.Next()
			v1, v2 = bytes.Clone(v1), bytes.Clone(v2)
			k1, k2 = bytes.Clone(k1), bytes.Clone(k2)
			if err := j.Put(k1, v2); err != nil {
				return err
			}
			return j.Put(k2, v1)
		},
	}
	for name, f := range tamper {
		dir := t.TempDir()
		copyPath := filepath.Join(dir, "posd.db")
		for _, suffix := range []string{"", "-wal"} {
			b, err := os.ReadFile(dbPath + suffix)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(copyPath+suffix, b, 0o600); err != nil {
				t.Fatal(err)
			}
		}
		db, err := bolt.Open(copyPath, 0o600, nil)
		if err != nil {
			t.Fatal(err)
		}
		err = db.Update(func(tx *bolt.Tx) error { return f(tx.Bucket([]byte("journal"))) })
		db.Close()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if code, out := c.run(t, "posd", "audit", "verify", "--path", copyPath, "--config", cfg); code != 1 || !strings.Contains(out, "BROKEN at link") {
			t.Errorf("posd audit verify of a journal with a %s: exit %d, want 1 naming the broken link\n%s", name, code, out)
		}
	}
}
