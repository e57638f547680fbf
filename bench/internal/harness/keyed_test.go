package harness

import (
	"encoding/json"
	"testing"
)

func TestSpreadKeys(t *testing.T) {
	for _, keys := range []int{1, 7, 7919, 1000, 1_000_000} {
		rec := SpreadKeys(keys)
		seen := make([]bool, keys)
		for i := range keys {
			k, v := rec(i)
			if k < 0 || k >= keys || seen[k] {
				t.Fatalf("keys=%d: record %d has key %d (out of range or seen before the first round ended)", keys, i, k)
			}
			if v < 1 || v > 100 {
				t.Fatalf("keys=%d: record %d has v %d", keys, i, v)
			}
			seen[k] = true
		}
		if k1, _ := rec(keys); keys > 1 {
			if k0, _ := rec(0); k0 != k1 {
				t.Errorf("keys=%d: the second round does not repeat the first (%d, %d)", keys, k0, k1)
			}
		}
	}
	if k, _ := SpreadKeys(1000)(1); k == 1 {
		t.Error("keys come in their own order")
	}
}

func TestKeyedRecord(t *testing.T) {
	b := KeyedRecord(nil, 42, -7)
	if string(b) != `{"k":"key-0000042","v":-7}` {
		t.Errorf("record %s", b)
	}
	var r struct {
		K string `json:"k"`
		V int64  `json:"v"`
	}
	if err := json.Unmarshal(KeyedRecord(nil, 12_345_678, 100), &r); err != nil || r.K != "key-12345678" || r.V != 100 {
		t.Errorf("decoded %+v, %v", r, err)
	}
}
